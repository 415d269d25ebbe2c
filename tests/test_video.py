"""video.py: an mp4 of a greedy game, and the strip of frames that code hosts can show."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from a3c_course.checkpoint import load_model
from a3c_course.video import record_video, write_strip


def test_a_recording_writes_the_video_and_its_strip(tmp_path: Path) -> None:
    model, config = load_model("pretrained:pong")
    video, strip = tmp_path / "game.mp4", tmp_path / "game.png"
    score, steps = record_video(model, config, video, seed=3, max_frames=80, strip=strip)
    assert -21 <= score <= 21 and steps > 80  # the game plays to its end; the video stops
    assert video.read_bytes()[4:8] == b"ftyp"
    image = imageio.imread(strip)
    # 80 frames, one in 8 kept: 10 candidates, 8 drawn, 4-pixel white gaps between them.
    assert image.shape == (210, 8 * 160 + 7 * 4, 3)
    assert (image[:, 160:164] == 255).all()
    assert image[:, :160].std() > 0  # a real frame, not a blank


def test_strip_picks_frames_evenly_and_refuses_bad_input(tmp_path: Path) -> None:
    frames = [np.full((4, 3, 3), i, dtype=np.uint8) for i in range(10)]
    image = imageio.imread(write_strip(frames, tmp_path / "s.png", count=3, gap=1))
    assert image.shape == (4, 3 * 3 + 2, 3)
    assert [int(image[0, x, 0]) for x in (0, 4, 8)] == [0, 4, 9]  # first, middle, last
    with pytest.raises(ValueError, match="no frames"):
        write_strip([], tmp_path / "t.png")
    model, config = load_model("pretrained:pong")
    with pytest.raises(ValueError, match=r"must end in \.png"):
        record_video(model, config, tmp_path / "v.mp4", strip=tmp_path / "v.gif")
