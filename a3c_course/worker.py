"""One Hogwild actor-learner: the loop the seed describes, top to bottom.

Each worker process owns its games and a local copy of the model. Forever: copy the shared
weights, play `num_steps` steps sampling from softmax(logits), compute the A3C loss on that
rollout, clip the gradients, hand them to the shared model and step the shared Adam. No
locks: concurrent updates of the shared parameters are the Hogwild bargain.

With ``envs_per_worker = k > 1`` the worker plays k games side by side: one forward pass
acts in all of them, and one update is made from their k rollouts (the loss is the sum of
the k rollouts' losses). With k = 1 it is exactly the seed's loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from .children import EXIT_DIVERGED, Episode, Fatal, ParentWatch, SharedState, init_child
from .config import Config
from .envs import make_worker_envs
from .loss import A3CLoss, a3c_loss
from .models import ActorCritic, build_model, copy_weights
from .shared_adam import SharedAdam

# A worker that meets this many non-finite updates in a row stops the run: the model has
# diverged and skipping more updates would only hide it.
MAX_NONFINITE_IN_A_ROW = 50


@dataclass
class Rollout:
    """T steps of k games, as the loss needs them."""

    observations: torch.Tensor  # (T+1, k, *obs): the T acted on, then the bootstrap one
    actions: torch.Tensor  # (T, k) int64
    rewards: torch.Tensor  # (T, k) training rewards (clipped)
    dones: torch.Tensor  # (T, k) 1.0 where a game ended after step t (its state restarts)
    terminals: torch.Tensor  # (T, k) 1.0 where the return stops after step t: a game ended,
    # or it lost a life and the env says so (`life_loss_terminal`); no bootstrap across it
    start_state: torch.Tensor  # (k, H) the core state before step 0, a constant (TBPTT)


def play_rollout(model: ActorCritic, envs: gym.vector.VectorEnv, obs: np.ndarray,
                 state: torch.Tensor, steps: int,
                 on_episode: Callable[[int, float, int], None] = lambda i, r, n: None
                 ) -> tuple[Rollout, np.ndarray, torch.Tensor]:
    """ROLLOUT: `steps` steps in every game, sampling a ~ softmax(logits); returns the
    rollout, and the observation and core state to go on from. `on_episode(game, score,
    length)` hears of every game that ended (its real, unclipped score)."""
    k = envs.num_envs
    observations = torch.empty((steps + 1, k, *obs.shape[1:]))
    actions = torch.empty((steps, k), dtype=torch.int64)
    rewards = torch.empty((steps, k))
    dones = torch.empty((steps, k))
    terminals = torch.empty((steps, k))
    start_state = state
    with torch.no_grad():
        for t in range(steps):
            observations[t].copy_(torch.from_numpy(obs))
            logits, _, state = model(observations[t], state)
            actions[t] = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(1)
            obs, reward, terminated, truncated, info = envs.step(actions[t].numpy())
            rewards[t] = torch.from_numpy(np.asarray(reward, dtype=np.float32))
            # A time-limit truncation is treated as an end too (no bootstrap across it):
            # rare in Atari (108,000 frames), and simpler than keeping the final frame.
            ended = np.logical_or(terminated, truncated)
            dones[t] = torch.from_numpy(ended.astype(np.float32))
            # A lost life (only marked with `life_loss_terminal`) ends the return, not the game.
            life_lost = info.get("life_lost", False) & info.get("_life_lost", False)
            terminals[t] = torch.from_numpy(np.logical_or(ended, life_lost).astype(np.float32))
            if ended.any():
                for i in np.flatnonzero(info["_episode"]):
                    on_episode(int(i), float(info["episode"]["r"][i]),
                               int(info["episode"]["l"][i]))
                # A finished game's next observation starts a new episode: so does its state.
                state = state * (1.0 - dones[t]).unsqueeze(1)
        observations[steps].copy_(torch.from_numpy(obs))
    return Rollout(observations, actions, rewards, dones, terminals, start_state), obs, state


def rollout_loss(model: ActorCritic, rollout: Rollout, config: Config) -> A3CLoss:
    """LOSS: re-run the rollout with gradients in one batch; the value of the last
    observation is the bootstrap (a constant, not trained through)."""
    steps = rollout.actions.shape[0]
    logits, values = model.unroll(rollout.observations, rollout.start_state, rollout.dones)
    return a3c_loss(logits[:steps], values[:steps], rollout.actions, rollout.rewards,
                    rollout.terminals, values[steps].detach(), config.gamma, config.gae_lambda,
                    config.entropy_coef, config.value_coef, config.normalize_advantages)


def apply_gradients(local: ActorCritic, shared: ActorCritic, optimizer: SharedAdam,
                    max_grad_norm: float) -> float | None:
    """Clip the local gradients, hand them to the shared parameters, step the shared Adam.

    Returns the gradient's norm before clipping, or None, touching nothing shared, when the
    gradient is not finite.
    """
    norm = torch.nn.utils.clip_grad_norm_(local.parameters(), max_grad_norm)
    if not torch.isfinite(norm):
        return None
    for local_p, shared_p in zip(local.parameters(), shared.parameters(), strict=True):
        shared_p.grad = local_p.grad  # the hand-over (ikostrikov's ensure_shared_grads)
    optimizer.step()
    return float(norm)


def train_worker(index: int, config: Config, shared: SharedState, parent_pid: int,
                 seed: int) -> None:
    """The body of worker `index` (runs until `shared.stop` is set or the trainer is gone)."""
    init_child()
    torch.manual_seed(seed)
    parent = ParentWatch(parent_pid)
    envs = make_worker_envs(config)
    model = build_model(config, int(envs.single_action_space.n),
                        envs.single_observation_space.shape)
    T, k = config.num_steps, envs.num_envs
    obs, _ = envs.reset(seed=seed)  # game i is seeded seed + i
    state = model.initial_state(k)
    nonfinite_in_a_row = 0

    def report(game: int, score: float, length: int) -> None:
        shared.events.put(Episode(index, score, length))

    while not shared.stop.is_set() and parent.alive():
        # WAIT while the evaluator confirms the target: it then has the cores, and the
        # confirmation takes seconds instead of minutes at its lower priority.
        while shared.pause.is_set() and not shared.stop.is_set() and parent.alive():
            time.sleep(0.02)

        # SYNC: start every rollout from the shared weights.
        copy_weights(model, shared.model)

        # ROLLOUT: T steps in each of the k games with the local model.
        rollout, obs, state = play_rollout(model, envs, obs, state, T, report)
        shared.counters.add_steps(index, T * k)

        # LOSS: the k rollouts' A3C losses, summed.
        loss = rollout_loss(model, rollout, config)
        model.zero_grad(set_to_none=True)
        loss.total.backward()

        # UPDATE: hand the gradients to the shared model and step the shared Adam.
        grad_norm = apply_gradients(model, shared.model, shared.optimizer, config.max_grad_norm)
        if grad_norm is not None:
            # DIAGNOSTICS: per-step means of the loss terms, for the trainer's progress rows.
            n = T * k
            shared.counters.add_update(index, loss.policy.item() / n, loss.value.item() / n,
                                       loss.entropy.item() / n, grad_norm)
            nonfinite_in_a_row = 0
        else:
            shared.counters.add_nonfinite(index)
            nonfinite_in_a_row += 1
            if nonfinite_in_a_row >= MAX_NONFINITE_IN_A_ROW:
                shared.events.put(Fatal(f"worker-{index}", (
                    f"worker {index}: {nonfinite_in_a_row} non-finite gradients in a row; the "
                    "model diverged (try a smaller lr or max_grad_norm)")))
                envs.close()
                raise SystemExit(EXIT_DIVERGED)
        # Truncated backpropagation through time: the next rollout starts from this state
        # as a constant, so gradients never flow back across rollouts.
        state = state.detach()
    envs.close()
