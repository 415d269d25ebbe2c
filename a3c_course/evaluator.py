"""Greedy play: the seed's validation agent, and the scorer behind `a3c evaluate`.

The evaluator process takes the most probable action (argmax, no sampling), reports the real
game score of every episode, and reloads the shared weights after each one to follow
training. When an episode reaches the target score it confirms it: `eval_episodes` fresh
episodes with the same frozen weights, whose mean decides whether the run is done. While it
confirms, the workers wait (`confirm_pause`): the confirmation then has the cores to itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from .children import (
    Confirmation,
    Evaluation,
    ParentWatch,
    SharedState,
    init_child,
    lower_priority,
    wait_for,
)
from .config import Config
from .envs import make_env
from .models import ActorCritic, build_model, copy_weights


@dataclass(frozen=True)
class PlayedStep:
    """One step of :func:`play_episode`, as its `on_step` hears it."""

    step: int  # 0, 1, ... within the episode
    action: int
    probs: np.ndarray  # pi(.|s): the policy the action was taken from
    value: float  # V(s), the critic's estimate before the step
    reward: float  # the real game reward the step brought


@torch.no_grad()
def play_episode(model: ActorCritic, env: gym.Env, seed: int | None = None, greedy: bool = True,
                 on_frame: Callable[[np.ndarray], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_step: Callable[[PlayedStep], None] | None = None) -> tuple[float, int]:
    """Play one episode; return (real game score, agent steps).

    `on_frame` receives ``env.render()`` after every step (for video), `on_step` a
    :class:`PlayedStep` (for diagnostics); `should_stop` is polled every 200 steps so a long
    episode can be abandoned.
    """
    obs, _ = env.reset(seed=seed)
    state = model.initial_state()
    score, steps = 0.0, 0
    if on_frame is not None:
        on_frame(env.render())
    while True:
        logits, value, state = model(torch.from_numpy(obs).unsqueeze(0), state)
        if greedy:
            action = int(logits.argmax())
        else:
            action = int(torch.multinomial(torch.softmax(logits, -1), 1))
        obs, reward, terminated, truncated, _ = env.step(action)
        score += float(reward)
        if on_step is not None:
            on_step(PlayedStep(steps, action, torch.softmax(logits, -1)[0].numpy(),
                               float(value), float(reward)))
        steps += 1
        if on_frame is not None:
            on_frame(env.render())
        if terminated or truncated:
            return score, steps
        if should_stop is not None and steps % 200 == 0 and should_stop():
            return score, steps


def evaluate_model(model: ActorCritic, config: Config, episodes: int, seed: int = 0
                   ) -> list[float]:
    """Greedy real scores of `episodes` episodes, seeded seed, seed+1, ..."""
    env = make_env(config, train=False)
    try:
        return [play_episode(model, env, seed=seed + i)[0] for i in range(episodes)]
    finally:
        env.close()


def evaluator_process(config: Config, shared: SharedState, parent_pid: int, seed: int) -> None:
    """The body of the evaluator child."""
    init_child()
    lower_priority(config.eval_nice)  # yield the cores to the workers; evaluation can wait
    # A restarted evaluator may have died while confirming: the workers must not keep waiting.
    shared.pause.clear()
    parent = ParentWatch(parent_pid)
    env = make_env(config, train=False, render_mode="human" if config.eval_render else None)
    model = build_model(config, int(env.action_space.n), env.observation_space.shape)
    model.eval()

    def should_stop() -> bool:
        return shared.stop.is_set() or not parent.alive()

    episode = 0
    while not should_stop():
        copy_weights(model, shared.model)  # follow training: fresh weights every episode
        steps_at_load = shared.counters.steps()
        score, length = play_episode(model, env, seed=seed + episode, should_stop=should_stop)
        episode += 1
        if should_stop():
            break
        shared.events.put(Evaluation(score, length, steps_at_load))
        if config.target_score is not None and score >= config.target_score:
            # CONFIRM: the same frozen weights, fresh episodes, the mean decides. The workers
            # wait meanwhile (confirm_pause), so this takes seconds, not minutes at nice 10.
            scores = []
            steps_before = shared.counters.steps()
            if config.confirm_pause:
                shared.pause.set()
            try:
                for _ in range(config.eval_episodes):
                    scores.append(play_episode(model, env, seed=seed + episode,
                                               should_stop=should_stop)[0])
                    episode += 1
                    if should_stop():
                        break
            finally:
                shared.pause.clear()
            steps_during = shared.counters.steps() - steps_before
            if len(scores) == config.eval_episodes:
                # The weights travel along: the trainer keeps the best confirmed agent, since
                # the shared weights go on changing after this.
                weights = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
                shared.events.put(Confirmation(scores, steps_at_load, weights, steps_during))
        if config.eval_interval_s:
            wait_for(shared.stop, config.eval_interval_s)
    env.close()
