"""Atari environments through gymnasium + ale-py, wrapped with gymnasium's own wrappers."""

from __future__ import annotations

from functools import partial
from typing import Any, SupportsFloat

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import (
    AtariPreprocessing,
    ClipReward,
    DtypeObservation,
    FrameStackObservation,
    RecordEpisodeStatistics,
    ReshapeObservation,
    TransformObservation,
)

from .config import Config, is_atari
from .preprocess import preprocess

gym.register_envs(ale_py)  # makes the ALE/... ids known; the ROMs ship inside ale-py's wheel
# Warnings and errors only: ALE's start-up banner, printed by every process, is noise.
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Warning)


def make_emulator(config: Config, render_mode: str | None = None) -> gym.Env:
    """The bare ALE game of `config`: frame skip and sticky actions, no preprocessing (what
    the benchmarks time as the emulator's own speed); a non-Atari id is its bare env."""
    if not is_atari(config.env_id):
        return gym.make(config.env_id, render_mode=render_mode)
    return _ale(config, config.frame_skip, render_mode)


def _ale(config: Config, frameskip: int, render_mode: str | None) -> gym.Env:
    return gym.make(
        config.env_id,
        obs_type="grayscale" if config.grayscale else "rgb",
        frameskip=frameskip,
        repeat_action_probability=config.repeat_action_probability,
        full_action_space=False,
        render_mode=render_mode,
    )


def make_game(config: Config, render_mode: str | None = None) -> gym.Env:
    """The ALE game as the agent sees it before preprocessing: :func:`make_emulator`, or with
    `max_pool_frames` each step's last two frames pooled pixel-wise by gymnasium's
    AtariPreprocessing (which then does the frame skip; it is told the frame's own size, so
    it resizes nothing and the crop still sees the real rows)."""
    if not config.max_pool_frames:
        return make_emulator(config, render_mode)
    # Some games draw objects on alternate frames only (SpaceInvaders' bullets): the last of
    # every 4th frame never shows them, the max of the last two always does.
    env = _ale(config, 1, render_mode)
    height, width = env.observation_space.shape[:2]
    return AtariPreprocessing(env, noop_max=0, frame_skip=config.frame_skip,
                              screen_size=(width, height), terminal_on_life_loss=False,
                              grayscale_obs=config.grayscale, scale_obs=False)


class LifeLoss(gym.Wrapper):
    """Marks ``info["life_lost"]`` on a step where the game took a life and goes on; the
    worker ends the return there (`life_loss_terminal`). Gymnasium has no such wrapper: its
    AtariPreprocessing can only end (and so restart) the whole game on a lost life."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.lives = self.unwrapped.ale.lives()
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.unwrapped.ale.lives()
        info["life_lost"] = lives < self.lives and not (terminated or truncated)
        self.lives = lives
        return obs, reward, terminated, truncated, info


def make_env(config: Config, train: bool = True, render_mode: str | None = None,
             statistics: bool = True) -> gym.Env:
    """The game of `config`, preprocessed as the config says.

    Wrappers, inside out: ALE (frame skip, sticky actions, maybe max-pooling: :func:`make_game`)
    -> lost lives marked (training with `life_loss_terminal` only) -> episode statistics (the
    real game score, in ``info["episode"]``) -> crop/resize/scale -> frame stack (`stack`
    model only) -> reward clipping (training only, so evaluation reports real scores).
    Non-Atari ids (CartPole) keep their vector observations, as float32. `statistics=False`
    leaves out the statistics and the clipping (:func:`make_worker_envs` adds both around
    all its games).
    """
    if not is_atari(config.env_id):
        env = gym.make(config.env_id, render_mode=render_mode)
        if statistics:
            env = RecordEpisodeStatistics(env)
        env = DtypeObservation(env, np.float32)
        if config.model == "stack":
            env = FrameStackObservation(env, stack_size=config.stack_frames)
            env = ReshapeObservation(env, (int(np.prod(env.observation_space.shape)),))
        return env
    env = make_game(config, render_mode)
    if train and config.life_loss_terminal:
        env = LifeLoss(env)
    if statistics:
        env = RecordEpisodeStatistics(env)
    shape = (config.frame_channels, config.frame_size, config.frame_size)
    env = TransformObservation(
        env,
        partial(
            preprocess,
            top=config.crop_top,
            bottom=config.crop_bottom,
            size=config.frame_size,
            grayscale=config.grayscale,
            standardized=config.standardize,
        ),
        observation_space=gym.spaces.Box(
            -np.inf if config.standardize else 0.0, np.inf if config.standardize else 1.0,
            shape, np.float32),
    )
    if config.model == "stack":
        env = FrameStackObservation(env, stack_size=config.stack_frames)
        env = ReshapeObservation(env, (config.input_channels, config.frame_size, config.frame_size))
    if train and statistics and config.clip_rewards:
        env = ClipReward(env, -1.0, 1.0)
    return env


def make_worker_envs(config: Config) -> gym.vector.VectorEnv:
    """A worker's `config.envs_per_worker` training games side by side (gymnasium's
    SyncVectorEnv). A game that ends is reset in the same step: the observation it returns
    is the new episode's first, and ``info["episode"]`` (masked by ``info["_episode"]``)
    holds the finished one's real score and length. Rewards are clipped after the
    statistics are taken, as in :func:`make_env`."""
    envs: gym.vector.VectorEnv = gym.vector.SyncVectorEnv(
        [partial(make_env, config, train=True, statistics=False)] * config.envs_per_worker,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    if config.clip_rewards:
        envs = gym.wrappers.vector.ClipReward(envs, -1.0, 1.0)
    return envs


def env_spaces(config: Config) -> tuple[tuple[int, ...], int]:
    """(observation shape after preprocessing, number of actions) of the config's game."""
    env = make_env(config, train=False)
    try:
        return tuple(env.observation_space.shape), int(env.action_space.n)
    finally:
        env.close()
