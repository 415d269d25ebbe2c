"""envs.py: the wrapped games, their observation shapes and reward clipping."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from a3c_course.config import Config, ConfigError, make_config
from a3c_course.envs import env_spaces, make_env, make_game


def _play(env: gym.Env, actions: list[int], seed: int = 0) -> tuple[list[float], list[dict]]:
    """Rewards and infos of `actions` from a seeded reset (stops early at the episode's end)."""
    env.reset(seed=seed)
    rewards, infos = [], []
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
        infos.append(info)
        if terminated or truncated:
            break
    return rewards, infos


@pytest.mark.parametrize("game", ["pong", "spaceinvaders"])
@pytest.mark.parametrize(("model", "grayscale", "size", "shape"), [
    ("gru", True, 42, (1, 42, 42)),
    ("stack", True, 42, (4, 42, 42)),
    ("gru", False, 64, (3, 64, 64)),
    ("stack", False, 64, (12, 64, 64)),
])
def test_observation_shapes(game: str, model: str, grayscale: bool, size: int,
                            shape: tuple[int, ...]) -> None:
    config = make_config(env=game, model=model, grayscale=grayscale, frame_size=size)
    env = make_env(config)
    try:
        obs, _ = env.reset(seed=0)
        assert env.observation_space.shape == shape
        assert obs.shape == shape and obs.dtype == np.float32
        obs, *_ = env.step(1)
        assert obs.shape == shape and obs.dtype == np.float32
        if config.standardize:  # the default: each frame has mean 0, std 1
            assert abs(float(obs.mean())) < 1e-4 and abs(float(obs.std()) - 1.0) < 1e-3
        else:
            assert 0.0 <= obs.min() and obs.max() <= 1.0 and obs.max() > 0.0
        assert env.observation_space.contains(obs)
        assert shape[0] == config.input_channels
    finally:
        env.close()


@pytest.mark.parametrize("grayscale", [True, False])
def test_stack_holds_the_last_frames_newest_last(grayscale: bool) -> None:
    common = dict(env="pong", repeat_action_probability=0.0, grayscale=grayscale)
    single = make_env(make_config(model="gru", **common))
    stacked = make_env(make_config(model="stack", stack_frames=4, **common))
    c = single.observation_space.shape[0]
    try:
        frames = [single.reset(seed=3)[0]]
        stack, _ = stacked.reset(seed=3)
        for _ in range(5):
            frames.append(single.step(2)[0])
            stack = stacked.step(2)[0]
        # Pong's frames differ from step to step, so the order is visible.
        assert not np.array_equal(frames[-1], frames[-2])
        expected = np.concatenate(frames[-4:])
        assert stack.shape == expected.shape == (4 * c, 42, 42)
        np.testing.assert_array_equal(stack, expected)
    finally:
        single.close()
        stacked.close()


def test_training_clips_rewards_but_reports_the_real_score() -> None:
    config = make_config(env="spaceinvaders", repeat_action_probability=0.0)
    train_env, eval_env = make_env(config, train=True), make_env(config, train=False)
    # Random play with a fixed seed: SpaceInvaders ends after ~550 steps, scoring 5..30 a hit.
    actions = np.random.default_rng(0).integers(6, size=3000).tolist()
    try:
        clipped, train_infos = _play(train_env, actions)
        real, eval_infos = _play(eval_env, actions)
    finally:
        train_env.close()
        eval_env.close()
    assert len(clipped) == len(real) < len(actions), "the episode must end"
    assert max(real) > 1.0  # the game pays more than 1 for an alien
    assert set(clipped) <= {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(clipped, np.clip(real, -1.0, 1.0))
    # The episode statistics hold the real score, in the training env too.
    assert train_infos[-1]["episode"]["r"] == pytest.approx(sum(real))
    assert eval_infos[-1]["episode"]["r"] == pytest.approx(sum(real))
    assert train_infos[-1]["episode"]["l"] == len(real)
    assert sum(clipped) < sum(real)


@pytest.mark.parametrize(("clip", "train"), [(False, True), (True, False)])
def test_rewards_unclipped_when_off_or_evaluating(clip: bool, train: bool) -> None:
    config = make_config(env="spaceinvaders", repeat_action_probability=0.0, clip_rewards=clip)
    env = make_env(config, train=train)
    try:
        rewards, _ = _play(env, [1, 3] * 60)  # FIRE, LEFT: hits aliens at steps 105 and 115
    finally:
        env.close()
    assert [r for r in rewards if r] == [5.0, 10.0]


@pytest.mark.parametrize("p", [0.0, 0.1, 0.25])
def test_sticky_actions_and_frame_skip_are_passed_to_ale(p: float) -> None:
    env = make_env(make_config(repeat_action_probability=p, frame_skip=3))
    try:
        ale_env = env.unwrapped
        assert ale_env.ale.getFloat("repeat_action_probability") == pytest.approx(p)
        assert ale_env._frameskip == 3
    finally:
        env.close()


def test_minimal_action_sets() -> None:
    assert env_spaces(make_config(env="pong")) == ((1, 42, 42), 6)
    assert env_spaces(make_config(env="spaceinvaders", model="stack")) == ((4, 42, 42), 6)


def test_an_ale_id_works() -> None:
    config = make_config(env="ALE/Breakout-v5")
    assert config.env_id == "ALE/Breakout-v5"
    env = make_env(config)
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == (1, 42, 42) and obs.dtype == np.float32
        assert env.action_space.n == 4
        env.step(1)
    finally:
        env.close()


@pytest.mark.parametrize(("model", "shape"), [("gru", (4,)), ("stack", (16,))])
def test_cartpole_keeps_vector_observations(model: str, shape: tuple[int, ...]) -> None:
    config: Config = make_config(env="CartPole-v1", model=model)
    env = make_env(config)
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == shape and obs.dtype == np.float32
        rewards, infos = _play(env, [0, 1] * 300)
        assert set(rewards) == {1.0}
        assert infos[-1]["episode"]["r"] == pytest.approx(len(rewards))
    finally:
        env.close()
    assert env_spaces(config) == (shape, 2)


@pytest.mark.parametrize("grayscale", [True, False])
def test_max_pool_frames_shows_the_max_of_each_steps_last_two_frames(grayscale: bool) -> None:
    """With `max_pool_frames` the agent sees, at every step, the pixel-wise max of the last
    two of its `frame_skip` frames: checked against the same game stepped frame by frame."""
    config = make_config(env="spaceinvaders", grayscale=grayscale, max_pool_frames=True,
                         repeat_action_probability=0.0)
    pooled = make_game(config)
    frames = make_game(config.replace(max_pool_frames=False, frame_skip=1))
    rng = np.random.default_rng(0)
    try:
        pooled.reset(seed=5)
        frames.reset(seed=5)
        differs_from_last = 0
        for _ in range(300):
            action = int(rng.integers(pooled.action_space.n))
            obs, _, terminated, truncated, _ = pooled.step(action)
            seen = [frames.step(action)[0] for _ in range(config.frame_skip)]
            np.testing.assert_array_equal(obs, np.maximum(seen[-2], seen[-1]))
            differs_from_last += not np.array_equal(obs, seen[-1])
            assert not (terminated or truncated)
        # SpaceInvaders draws objects on alternate frames: the last frame alone misses some.
        assert differs_from_last > 30
    finally:
        pooled.close()
        frames.close()


def test_max_pool_frames_keeps_the_pipeline_and_real_scores() -> None:
    """The whole make_env pipeline on pooled frames: same shapes, episode statistics count
    agent steps (not frames), and evaluation reports the real score."""
    config = make_config(env="spaceinvaders", model="stack", max_pool_frames=True)
    env = make_env(config, train=False)
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == (4, 42, 42) and obs.dtype == np.float32
        steps, score = 0, 0.0
        while True:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            steps, score = steps + 1, score + float(reward)
            if terminated or truncated:
                break
        assert info["episode"]["l"] == steps and info["episode"]["r"] == score
        assert score > 1  # unclipped: SpaceInvaders' invaders are worth 5 to 30 points
    finally:
        env.close()


def test_max_pool_frames_needs_an_atari_game_and_two_frames() -> None:
    with pytest.raises(ConfigError, match="max_pool_frames"):
        make_config(max_pool_frames=True, frame_skip=1)
    with pytest.raises(ConfigError, match="max_pool_frames"):
        make_config(env="CartPole-v1", max_pool_frames=True)


def test_max_pool_frames_keeps_sticky_actions() -> None:
    env = make_env(make_config(env="spaceinvaders", max_pool_frames=True))
    try:
        assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
        assert env.unwrapped._frameskip == 1  # the pooling wrapper repeats the action instead
    finally:
        env.close()


def test_life_loss_marks_each_lost_life_of_a_game_that_goes_on() -> None:
    """SpaceInvaders starts with 3 lives: a whole random game marks exactly 2 lost lives (the
    third ends the game, which is a termination, not a mark); evaluation marks none."""
    config = make_config(env="spaceinvaders", life_loss_terminal=True)
    marks = {}
    for train in (True, False):
        env = make_env(config, train=train)
        try:
            env.reset(seed=1)
            env.action_space.seed(1)
            marks[train] = 0
            while True:
                _, _, terminated, truncated, info = env.step(env.action_space.sample())
                marks[train] += bool(info.get("life_lost", False))
                if terminated or truncated:
                    break
            assert terminated and env.unwrapped.ale.lives() == 0
        finally:
            env.close()
    assert marks == {True: 2, False: 0}


def test_life_loss_terminal_needs_an_atari_game() -> None:
    with pytest.raises(ConfigError, match="life_loss_terminal"):
        make_config(env="CartPole-v1", life_loss_terminal=True)
