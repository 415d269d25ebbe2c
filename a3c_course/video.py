"""Gameplay video: play greedily, encode an mp4 (imageio + its bundled ffmpeg), embed it."""

from __future__ import annotations

import base64
from pathlib import Path

import imageio.v2 as imageio

from .config import Config
from .envs import make_env
from .evaluator import play_episode
from .models import ActorCritic


def record_video(model: ActorCritic, config: Config, path: str | Path, seed: int = 0,
                 fps: int = 30, max_frames: int | None = None, scale: int = 2
                 ) -> tuple[float, int]:
    """Play one greedy episode, write its frames to an H.264 mp4; return (score, steps).

    `max_frames` caps the video (the episode still plays to the end for its score); `scale`
    enlarges pixels (nearest neighbour) so the small Atari screen is watchable.
    """
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"video path {str(path)!r} must end in .mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    env = make_env(config, train=False, render_mode="rgb_array")
    written = 0
    # yuv420p + H.264 is what every browser plays; macro_block_size=1 keeps 160x210 as is.
    with imageio.get_writer(path, fps=fps, codec="libx264", pixelformat="yuv420p",
                            macro_block_size=1, quality=6) as writer:

        def on_frame(frame):
            nonlocal written
            if max_frames is None or written < max_frames:
                if scale > 1:
                    frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
                writer.append_data(frame)
                written += 1

        try:
            return play_episode(model, env, seed=seed, on_frame=on_frame)
        finally:
            env.close()


def video_html(path: str | Path, width: int = 320) -> str:
    """An HTML <video> with the mp4 embedded as a data URI: plays in the browser and survives
    export to HTML (no link to a local file)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<video controls loop autoplay muted playsinline width="{width}" '
            f'src="data:video/mp4;base64,{data}"></video>')


def show_video(path: str | Path, width: int = 320):
    """Display an embedded video in a notebook."""
    from IPython.display import HTML

    return HTML(video_html(path, width))
