"""Shared fixtures: real ALE frames, played once per test session with fixed seeds."""

from __future__ import annotations

from dataclasses import dataclass

import ale_py
import gymnasium as gym
import numpy as np
import pytest
import torch

gym.register_envs(ale_py)
# The tensors here are small: one thread avoids oversubscribing a 2-core machine that other
# processes (a training run, other test workers) share.
torch.set_num_threads(1)

# Pong's ball and SpaceInvaders' aliens, as RGB colours of the raw 210x160 frame.
PONG_BALL = (236, 236, 236)
INVADER = (134, 134, 29)
# Rows of the raw frame that hold the playing field (the seed's crop: 35 .. 210 - 15).
FIELD = slice(35, 195)


@dataclass(frozen=True)
class Frame:
    """One raw RGB frame and the game score when it was shown."""

    pixels: np.ndarray
    score: float


def _play(env_id: str, seed: int, actions: list[int], keep: tuple[int, ...]) -> list[Frame]:
    """Play `actions` deterministically (no sticky actions); keep the frames after steps `keep`."""
    env = gym.make(env_id, repeat_action_probability=0.0, frameskip=4)
    try:
        env.reset(seed=seed)
        score, kept = 0.0, []
        for step, action in enumerate(actions, start=1):
            frame, reward, terminated, truncated, _ = env.step(action)
            assert not (terminated or truncated), "the episode ended before the kept frames"
            score += float(reward)
            if step in keep:
                frame.setflags(write=False)  # shared by every test: nobody may change it
                kept.append(Frame(frame, score))
        return kept
    finally:
        env.close()


def _shows(frame: np.ndarray, colour: tuple[int, int, int]) -> bool:
    """True when `colour` appears inside the playing field (below the score board)."""
    return bool((frame[FIELD] == colour).all(-1).any())


@pytest.fixture(scope="session")
def pong_frames() -> tuple[Frame, Frame]:
    """Two Pong frames with the ball in play: score 0 (step 40), then after a lost point."""
    # NOOP: the opponent wins the first point at step 64; at 40 and 90 the ball is on screen.
    before, after = _play("ALE/Pong-v5", 0, [0] * 90, keep=(40, 90))
    assert before.score == 0.0 and after.score == -1.0
    assert _shows(before.pixels, PONG_BALL) and _shows(after.pixels, PONG_BALL)
    return before, after


@pytest.fixture(scope="session")
def spaceinvaders_frames() -> tuple[Frame, Frame]:
    """Two SpaceInvaders frames with the aliens on screen: score 0 (step 50), then 10."""
    # FIRE and LEFT in turn: the first aliens are hit at steps 105 and 115.
    before, after = _play("ALE/SpaceInvaders-v5", 0, [1, 3] * 60, keep=(50, 120))
    assert before.score == 0.0 and after.score > 0.0
    assert _shows(before.pixels, INVADER) and _shows(after.pixels, INVADER)
    return before, after


@pytest.fixture(scope="session")
def pong_frame(pong_frames: tuple[Frame, Frame]) -> np.ndarray:
    """A Pong RGB frame, 210x160x3 uint8, ball in play (read-only)."""
    return pong_frames[0].pixels


@pytest.fixture(scope="session")
def spaceinvaders_frame(spaceinvaders_frames: tuple[Frame, Frame]) -> np.ndarray:
    """A SpaceInvaders RGB frame, 210x160x3 uint8, aliens on screen (read-only)."""
    return spaceinvaders_frames[0].pixels


@pytest.fixture(scope="session", params=["pong", "spaceinvaders"])
def game_frames(request: pytest.FixtureRequest) -> tuple[Frame, Frame]:
    """Both games' frame pairs, one per test run."""
    return request.getfixturevalue(f"{request.param}_frames")
