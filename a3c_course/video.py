"""Gameplay video: play greedily, encode an mp4 (imageio + its bundled ffmpeg), embed it.

Code hosts (GitHub, GitLab) strip ``<video>`` from a rendered notebook, so a recording can
also write a *strip*: a PNG of frames taken evenly across the game, which renders anywhere.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np

from .config import Config
from .envs import make_env
from .evaluator import play_episode
from .models import ActorCritic

STRIP_KEEP_EVERY = 8  # frames kept in memory for the strip: one in 8 (~4 a second)


def record_video(model: ActorCritic, config: Config, path: str | Path, seed: int = 0,
                 fps: int = 30, max_frames: int | None = None, scale: int = 2,
                 strip: str | Path | None = None, strip_frames: int = 8
                 ) -> tuple[float, int]:
    """Play one greedy episode, write its frames to an H.264 mp4; return (score, steps).

    `max_frames` caps the video (the episode still plays to the end for its score); `scale`
    enlarges pixels (nearest neighbour) so the small Atari screen is watchable. With `strip`
    (a .png path), also write `strip_frames` frames from across the video side by side: the
    fallback that a code host shows where it drops the video.
    """
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"video path {str(path)!r} must end in .mp4")
    if strip is not None and Path(strip).suffix.lower() != ".png":
        raise ValueError(f"strip path {str(strip)!r} must end in .png")
    if strip_frames < 1:
        raise ValueError(f"strip_frames={strip_frames}: allowed is 1 or more")
    path.parent.mkdir(parents=True, exist_ok=True)
    env = make_env(config, train=False, render_mode="rgb_array")
    written = 0
    kept: list[np.ndarray] = []
    # yuv420p + H.264 is what every browser plays; macro_block_size=1 keeps 160x210 as is.
    with imageio.get_writer(path, fps=fps, codec="libx264", pixelformat="yuv420p",
                            macro_block_size=1, quality=6) as writer:

        def on_frame(frame: np.ndarray) -> None:
            nonlocal written
            if max_frames is None or written < max_frames:
                if strip is not None and written % STRIP_KEEP_EVERY == 0:
                    kept.append(frame)
                if scale > 1:
                    frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
                writer.append_data(frame)
                written += 1

        try:
            result = play_episode(model, env, seed=seed, on_frame=on_frame)
        finally:
            env.close()
    if strip is not None:
        write_strip(kept, strip, strip_frames)
    return result


def write_strip(frames: list[np.ndarray], path: str | Path, count: int = 8, gap: int = 4
                ) -> Path:
    """`count` frames taken evenly from `frames` (first and last included), side by side
    with a white gap, as one PNG."""
    if not frames:
        raise ValueError("no frames to draw a strip from")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round()
                      .astype(int))
    height, _, channels = frames[0].shape
    spacer = np.full((height, gap, channels), 255, dtype=np.uint8)
    row: list[np.ndarray] = []
    for i in picks:
        row += [frames[i], spacer]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, np.concatenate(row[:-1], axis=1))
    return path


def video_html(path: str | Path, width: int = 320) -> str:
    """An HTML <video> with the mp4 embedded as a data URI: plays in the browser and survives
    export to HTML (no link to a local file)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<video controls loop autoplay muted playsinline width="{width}" '
            f'src="data:video/mp4;base64,{data}"></video>')


def show_video(path: str | Path, width: int = 320, strip: str | Path | None = None) -> Any:
    """Display an embedded video in a notebook; with `strip`, also the PNG of its frames as a
    separate output, which code hosts render where they drop the video."""
    from IPython.display import HTML, Image, display

    video = HTML(video_html(path, width))
    if strip is None:
        return video
    display(video)
    display(Image(filename=str(strip)))
    return None
