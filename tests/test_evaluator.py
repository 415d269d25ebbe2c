"""evaluator.py: play_episode takes the argmax action (or samples), reports the real game
score, films every frame, can be abandoned; evaluate_model seeds its episodes in turn.

Real Pong through the library's own environment; a small network whose policy head is set
by hand, so which actions it takes is known."""

from __future__ import annotations

from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest
import torch

from a3c_course.config import make_config
from a3c_course.envs import make_env
from a3c_course.evaluator import evaluate_model, play_episode
from a3c_course.models import ActorCritic, build_model

CONFIG = make_config(model="gru", conv_channels=(8, 8, 8), hidden_size=32,
                     repeat_action_probability=0.0)
RIGHT = 2  # Pong's action "up"; any fixed action would do


class RecordActions(gym.Wrapper):
    """Keeps every action the agent asked for."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.actions: list[int] = []

    def step(self, action: int) -> tuple:
        self.actions.append(int(action))
        return self.env.step(action)


def _model(env: gym.Env, favourite: int | None) -> ActorCritic:
    """A network that prefers action `favourite` by a wide margin (None: all equally)."""
    torch.manual_seed(0)
    model = build_model(CONFIG, int(env.action_space.n), env.observation_space.shape)
    with torch.no_grad():
        model.policy.weight.zero_()
        model.policy.bias.zero_()
        if favourite is not None:
            model.policy.bias[favourite] = 5.0  # still only ~97 % of the probability
    return model.eval()


@pytest.fixture()
def pong() -> Iterator[RecordActions]:
    env = RecordActions(make_env(CONFIG, train=False, render_mode="rgb_array"))
    yield env
    env.close()


def test_greedy_play_takes_the_most_probable_action_every_step(pong: RecordActions) -> None:
    play_episode(_model(pong, RIGHT), pong, seed=0, should_stop=lambda: True)
    assert pong.actions == [RIGHT] * 200  # sampling would stray within 200 steps


def test_sampled_play_draws_actions(pong: RecordActions) -> None:
    play_episode(_model(pong, None), pong, seed=0, greedy=False, should_stop=lambda: True)
    # Six equally likely actions, 200 draws: every one of them shows up.
    assert sorted(set(pong.actions)) == list(range(int(pong.action_space.n)))


def test_an_episode_is_filmed_frame_by_frame_and_scored_in_game_points(
        pong: RecordActions) -> None:
    frames: list[np.ndarray] = []
    score, steps = play_episode(_model(pong, RIGHT), pong, seed=0, on_frame=frames.append)
    # The first frame before any step, then one per step; full RGB screens.
    assert len(frames) == steps + 1 and len(pong.actions) == steps
    assert frames[0].shape == (210, 160, 3) and frames[0].dtype == np.uint8
    # A whole game of Pong ends when a side reaches 21 points: the score is the point
    # difference (a whole number, never 0), not a clipped or averaged reward.
    assert score == int(score) and 1 <= abs(score) <= 21
    assert steps > 200


def test_should_stop_abandons_an_episode_at_its_next_check(pong: RecordActions) -> None:
    calls: list[int] = []

    def stop_on_second_check() -> bool:
        calls.append(len(pong.actions))
        return len(calls) == 2

    _, steps = play_episode(_model(pong, RIGHT), pong, seed=0, should_stop=stop_on_second_check)
    assert calls == [200, 400] and steps == 400


def test_evaluate_model_plays_its_episodes_on_seeds_in_turn() -> None:
    config = CONFIG.replace(repeat_action_probability=0.25)  # the seed now shapes the game
    env = make_env(config, train=False)
    try:
        model = _model(env, None)  # a sampling-free but not constant policy: random weights
        torch.manual_seed(1)
        for p in model.policy.parameters():
            torch.nn.init.normal_(p, std=0.5)
        scores = evaluate_model(model, config, episodes=2, seed=7)
        alone = [play_episode(model, env, seed=s)[0] for s in (7, 8)]
    finally:
        env.close()
    assert scores == alone
    assert all(-21.0 <= s <= 21.0 for s in scores)


def test_on_step_hears_every_step_with_its_policy_value_and_reward(pong) -> None:
    heard = []
    score, steps = play_episode(_model(pong, RIGHT), pong, seed=0, on_step=heard.append)
    assert [s.step for s in heard] == list(range(steps))
    assert all(s.action == RIGHT for s in heard)
    assert all(abs(float(s.probs.sum()) - 1.0) < 1e-5 and s.probs.argmax() == RIGHT
               for s in heard)
    assert sum(s.reward for s in heard) == score
