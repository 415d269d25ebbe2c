"""Turning an Atari frame into network input: pure functions on numpy arrays.

The seed's recipe: keep rows 35 .. 210-15 (no score board, no borders), scale 0-255 to 0-1,
resize to a fixed square, channels first. Everything here is a plain function so a notebook
can call it on one frame and a wrapper can call it on every frame.
"""

from __future__ import annotations

import cv2
import numpy as np


def crop(frame: np.ndarray, top: int = 35, bottom: int = 15) -> np.ndarray:
    """Drop `top` rows (score board) and `bottom` rows (border) of an HxW[xC] frame."""
    height = frame.shape[0]
    if top < 0 or bottom < 0 or top + bottom >= height:
        raise ValueError(
            f"crop top={top}, bottom={bottom} of a {height}-row frame: allowed are "
            f"non-negative values with top + bottom < {height}"
        )
    return frame[top : height - bottom]


def to_grayscale(frame: np.ndarray) -> np.ndarray:
    """RGB (HxWx3, uint8) to luminance (HxW, uint8); a 2-D frame is returned unchanged."""
    if frame.ndim == 2:
        return frame
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Resize HxW[xC] to size x size; area averaging keeps thin objects (the ball) visible."""
    if size < 1:
        raise ValueError(f"size={size}: allowed is a positive number of pixels")
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def scale(frame: np.ndarray) -> np.ndarray:
    """uint8 0..255 to float32 0..1."""
    return frame.astype(np.float32) * np.float32(1.0 / 255.0)


def standardize(frame: np.ndarray) -> np.ndarray:
    """Subtract the frame's mean, divide by its standard deviation (float32).

    A Pong frame scaled to 0..1 is mostly background near 0.35; the ball and paddles differ
    from it by ~0.3. Standardized, they stand out by several units, a contrast the first layer
    can use from the start instead of having to grow its weights for it.
    """
    frame = frame.astype(np.float32, copy=False)
    # OpenCV's one pass over all the values (as one column) instead of numpy's two (mean,
    # then std): this runs on every frame of training.
    mean, std = (np.float32(m[0, 0]) for m in cv2.meanStdDev(frame.reshape(-1, 1)))
    return (frame - mean) / (std + np.float32(1e-5))


def channels_first(frame: np.ndarray) -> np.ndarray:
    """HxW -> 1xHxW, HxWxC -> CxHxW (the layout torch's conv layers read)."""
    if frame.ndim == 2:
        return frame[None]
    return np.ascontiguousarray(frame.transpose(2, 0, 1))


def preprocess(
    frame: np.ndarray,
    top: int = 35,
    bottom: int = 15,
    size: int = 160,
    grayscale: bool = False,
    standardized: bool = False,
) -> np.ndarray:
    """The whole recipe: crop, (gray), resize, scale to [0, 1] (or standardize), channels
    first -> float32 CxSxS.

    Resizing runs on uint8 before scaling: faster, and the picture differs from resizing
    floats only by rounding to steps of 1/255.
    """
    out = crop(frame, top, bottom)
    if grayscale:
        out = to_grayscale(out)
    out = resize(out, size)
    return channels_first(standardize(out) if standardized else scale(out))
