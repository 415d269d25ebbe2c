"""preprocess.py on real Pong and SpaceInvaders frames."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FIELD, INVADER, PONG_BALL, Frame

from a3c_course.preprocess import (
    channels_first,
    crop,
    preprocess,
    resize,
    scale,
    to_grayscale,
)

# Pong's brown background: a known colour to check which output channel holds what.
PONG_BACKGROUND = (144, 72, 17)


def test_frames_are_raw_atari_frames(pong_frame: np.ndarray,
                                     spaceinvaders_frame: np.ndarray) -> None:
    for frame in (pong_frame, spaceinvaders_frame):
        assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8


@pytest.mark.parametrize(("size", "grayscale", "channels"), [
    (160, False, 3), (42, True, 1), (84, False, 3), (42, False, 3), (160, True, 1)])
def test_preprocess_shape_dtype_range(game_frames: tuple[Frame, Frame], size: int,
                                      grayscale: bool, channels: int) -> None:
    frame = game_frames[0].pixels
    out = preprocess(frame, size=size, grayscale=grayscale)
    assert out.shape == (channels, size, size)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.max() > 0.3  # not a black picture: the objects survived
    assert out.flags["C_CONTIGUOUS"]


def test_default_is_the_seeds_recipe(pong_frame: np.ndarray) -> None:
    # crop 35 / 15, RGB, 160x160: the cropped field is already 160x160, so nothing is resampled.
    out = preprocess(pong_frame)
    expected = pong_frame[35:195].transpose(2, 0, 1).astype(np.float32) / 255.0
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_channels_first_puts_red_green_blue_first(pong_frame: np.ndarray) -> None:
    out = preprocess(pong_frame, size=42)
    # The top-left corner of the field is background: R, G, B in channels 0, 1, 2.
    np.testing.assert_allclose(out[:, 0, 0], np.array(PONG_BACKGROUND) / 255.0, atol=1e-6)
    chw = channels_first(pong_frame)
    assert chw.shape == (3, 210, 160)
    for c in range(3):
        np.testing.assert_array_equal(chw[c], pong_frame[..., c])
    assert channels_first(pong_frame[..., 0]).shape == (1, 210, 160)


def test_grayscale_is_the_luminance_of_rgb(game_frames: tuple[Frame, Frame]) -> None:
    frame = game_frames[0].pixels
    gray = preprocess(frame, size=80, grayscale=True)[0]
    r, g, b = preprocess(frame, size=80, grayscale=False)
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    # Gray is computed (and rounded to uint8) before resizing: a couple of levels apart at most.
    np.testing.assert_allclose(gray, luminance, atol=2.5 / 255)
    assert not np.allclose(gray, r, atol=2.5 / 255)  # it is not just one channel


def test_to_grayscale(pong_frame: np.ndarray) -> None:
    gray = to_grayscale(pong_frame)
    assert gray.shape == (210, 160) and gray.dtype == np.uint8
    assert gray[40, 0] == round(0.299 * 144 + 0.587 * 72 + 0.114 * 17)
    assert to_grayscale(gray) is gray


def test_crop_is_the_field_rows(game_frames: tuple[Frame, Frame]) -> None:
    frame = game_frames[0].pixels
    np.testing.assert_array_equal(crop(frame), frame[35:195])
    np.testing.assert_array_equal(crop(frame, 10, 20), frame[10:190])
    np.testing.assert_array_equal(crop(frame, 0, 0), frame)


def test_crop_keeps_the_ball_and_the_aliens(pong_frame: np.ndarray,
                                            spaceinvaders_frame: np.ndarray) -> None:
    assert (crop(pong_frame) == PONG_BALL).all(-1).any()
    assert (crop(spaceinvaders_frame) == INVADER).all(-1).any()


def test_crop_removes_the_score_board(game_frames: tuple[Frame, Frame]) -> None:
    before, after = game_frames
    assert before.score != after.score
    top = before.pixels[:30] != after.pixels[:30]
    score_rows = np.nonzero(top.any(axis=(1, 2)))[0]
    # The score board changed between the frames, and all of it lies above the crop.
    assert len(score_rows) > 0
    assert score_rows.max() < FIELD.start

    # `after` with the old score board painted in: the network input does not change.
    repainted = after.pixels.copy()
    repainted[score_rows] = before.pixels[score_rows]
    assert not np.array_equal(repainted, after.pixels)
    np.testing.assert_array_equal(preprocess(repainted, size=42, grayscale=True),
                                  preprocess(after.pixels, size=42, grayscale=True))
    # Whereas a change inside the field does change it.
    repainted[100:104, 60:64] = 255
    assert not np.array_equal(preprocess(repainted, size=42, grayscale=True),
                              preprocess(after.pixels, size=42, grayscale=True))


def test_everything_outside_the_crop_is_ignored(pong_frames: tuple[Frame, Frame]) -> None:
    before, after = pong_frames
    mixed = before.pixels.copy()
    mixed[:35] = 255
    mixed[195:] = 0
    np.testing.assert_array_equal(preprocess(mixed), preprocess(before.pixels))
    assert not np.array_equal(preprocess(after.pixels), preprocess(before.pixels))


def test_crop_size_is_configurable(pong_frame: np.ndarray) -> None:
    out = preprocess(pong_frame, top=0, bottom=0, size=84)
    expected = resize(pong_frame, 84).transpose(2, 0, 1).astype(np.float32) / 255.0
    np.testing.assert_allclose(out, expected, atol=1e-7)
    # A different crop is a different picture.
    assert not np.array_equal(out, preprocess(pong_frame, size=84))


@pytest.mark.parametrize(("top", "bottom"), [(-1, 15), (35, -1), (105, 105), (210, 0), (0, 300)])
def test_bad_crop_raises_value_error(pong_frame: np.ndarray, top: int, bottom: int) -> None:
    with pytest.raises(ValueError, match=f"top={top}, bottom={bottom}"):
        crop(pong_frame, top, bottom)
    with pytest.raises(ValueError):
        preprocess(pong_frame, top=top, bottom=bottom)


def test_bad_size_raises_value_error(pong_frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="size=0"):
        preprocess(pong_frame, size=0)


def test_scale_maps_uint8_to_unit_interval() -> None:
    out = scale(np.array([0, 51, 255], dtype=np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.2, 1.0], atol=1e-7)


def test_preprocess_leaves_its_input_alone(pong_frame: np.ndarray) -> None:
    frame = pong_frame.copy()
    preprocess(frame, size=42, grayscale=True)
    np.testing.assert_array_equal(frame, pong_frame)


def test_standardize_gives_mean_zero_std_one_and_keeps_the_order(pong_frame: np.ndarray
                                                                 ) -> None:
    frame = pong_frame
    plain = preprocess(frame, size=42, grayscale=True)
    std = preprocess(frame, size=42, grayscale=True, standardized=True)
    assert std.dtype == np.float32 and std.shape == plain.shape
    assert abs(float(std.mean())) < 1e-5 and abs(float(std.std()) - 1.0) < 1e-4
    # An affine map of the plain frame: brighter pixels stay brighter (ball, paddles).
    assert np.array_equal(np.argsort(plain.ravel(), kind="stable"),
                          np.argsort(std.ravel(), kind="stable"))
    # ... and the contrast between them grows: what the standardization is for.
    assert np.ptp(std) > 5 * np.ptp(plain)
