"""One Hogwild actor-learner: the loop the seed describes, top to bottom.

Each worker process owns an environment and a local copy of the model. Forever: copy the
shared weights, play `num_steps` steps sampling from softmax(logits), compute the A3C loss
on that rollout, clip the gradients, hand them to the shared model and step the shared Adam.
No locks: concurrent updates of the shared parameters are the Hogwild bargain.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from .config import Config
from .envs import make_env
from .loss import a3c_loss
from .models import ActorCritic, build_model, copy_weights
from .shared_adam import SharedAdam

# A worker that meets this many non-finite updates in a row stops the run: the model has
# diverged and skipping more updates would only hide it.
MAX_NONFINITE_IN_A_ROW = 50
EXIT_DIVERGED = 3


class SharedFlag:
    """A flag in shared memory (stop, pause), read without any lock.

    multiprocessing.Event takes a lock on every ``is_set()``; a worker killed (SIGKILL, the
    out-of-memory killer) while holding it would block every other process for good. One
    shared byte cannot be left locked.
    """

    def __init__(self) -> None:
        self._flag = torch.zeros(1, dtype=torch.uint8).share_memory_()

    def set(self) -> None:
        self._flag[0] = 1

    def clear(self) -> None:
        self._flag[0] = 0

    def is_set(self) -> bool:
        return bool(self._flag[0])

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, waking early once the flag is set."""
        deadline = time.monotonic() + timeout
        while not self.is_set() and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return self.is_set()


@dataclass
class SharedState:
    """What the trainer hands to every child process (all of it in shared memory)."""

    model: ActorCritic
    optimizer: SharedAdam
    steps: torch.Tensor  # int64 [num_workers]: agent steps per worker; one writer per slot
    updates: torch.Tensor  # int64 [num_workers]: applied updates per worker
    nonfinite: torch.Tensor  # int64 [num_workers]: updates skipped for a non-finite gradient
    stop: SharedFlag  # set by the trainer to end every child
    pause: SharedFlag  # set by the evaluator while it confirms the target (workers wait)
    events: Any  # multiprocessing Queue: episodes, evaluations, fatal errors -> trainer


def init_child(threads: int = 1) -> None:
    """Common set-up of every child process: the trainer owns Ctrl-C, one torch thread."""
    # The trainer decides how to stop; a Ctrl-C in the terminal reaches the whole process
    # group, and children dying half-way through an update would only make noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)  # OpenCV's resize would start a thread pool per process


def parent_alive(parent_pid: int) -> bool:
    """False once the trainer is gone (we were re-parented): time to exit, not to orphan."""
    return os.getppid() == parent_pid


def apply_gradients(local: ActorCritic, shared: ActorCritic, optimizer: SharedAdam,
                    max_grad_norm: float) -> bool:
    """Clip the local gradients, hand them to the shared parameters, step the shared Adam.

    Returns False, touching nothing shared, when the gradient is not finite.
    """
    norm = torch.nn.utils.clip_grad_norm_(local.parameters(), max_grad_norm)
    if not torch.isfinite(norm):
        return False
    for local_p, shared_p in zip(local.parameters(), shared.parameters(), strict=True):
        shared_p.grad = local_p.grad  # the hand-over (ikostrikov's ensure_shared_grads)
    optimizer.step()
    return True


def child_seed(seed: int, *path: int) -> int:
    """A seed for one child (worker index, resume generation, restart count...): distinct for
    every path, unlike sums of offsets, which collide."""
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0])


def train_worker(index: int, config: Config, shared: SharedState, parent_pid: int,
                 seed: int) -> None:
    """The body of worker process `index` (runs until `shared.stop` is set)."""
    init_child()
    torch.manual_seed(seed)
    env = make_env(config, train=True)
    model = build_model(config, int(env.action_space.n), env.observation_space.shape)
    T = config.num_steps

    # The observation buffer is allocated once: the step loop copies each frame into it.
    observations = torch.zeros((T + 1, *env.observation_space.shape))

    obs, _ = env.reset(seed=seed)
    state = model.initial_state()
    nonfinite_in_a_row = 0

    while not shared.stop.is_set() and parent_alive(parent_pid):
        # WAIT while the evaluator confirms the target: it then has the cores, and the
        # confirmation takes seconds instead of minutes at its nice-10 share.
        while shared.pause.is_set() and not shared.stop.is_set() and parent_alive(parent_pid):
            time.sleep(0.02)

        # SYNC: start every rollout from the shared weights.
        copy_weights(model, shared.model)
        start_state = state

        # ROLLOUT: T steps with the local model, sampling a ~ softmax(logits).
        actions, rewards, dones = [], [], []
        with torch.no_grad():
            for t in range(T):
                observations[t].copy_(torch.from_numpy(obs))
                logits, _, state = model(observations[t : t + 1], state)
                action = int(torch.multinomial(torch.softmax(logits, -1), 1))
                obs, reward, terminated, truncated, info = env.step(action)
                actions.append(action)
                rewards.append(float(reward))
                # A time-limit truncation is treated as an end too (no bootstrap across it):
                # rare in Atari (108,000 frames), and simpler than keeping the final frame.
                dones.append(float(terminated or truncated))
                if terminated or truncated:
                    episode = info["episode"]  # RecordEpisodeStatistics: the unclipped score
                    shared.events.put(("episode", index, float(episode["r"]), int(episode["l"])))
                    obs, _ = env.reset()
                    state = model.initial_state()
            observations[T].copy_(torch.from_numpy(obs))
        shared.steps[index] += T

        # LOSS: re-run the rollout with gradients in one batch; the value of the last
        # observation is the bootstrap (a constant, not trained through).
        done_mask = torch.tensor(dones)
        logits, values = model.unroll(observations, start_state, done_mask)
        loss = a3c_loss(logits[:T], values[:T], torch.tensor(actions), torch.tensor(rewards),
                        done_mask, values[T].detach(), config.gamma, config.gae_lambda,
                        config.entropy_coef, config.value_coef)
        model.zero_grad(set_to_none=True)
        loss.total.backward()

        # UPDATE: hand the gradients to the shared model and step the shared Adam.
        if apply_gradients(model, shared.model, shared.optimizer, config.max_grad_norm):
            shared.updates[index] += 1
            nonfinite_in_a_row = 0
        else:
            shared.nonfinite[index] += 1
            nonfinite_in_a_row += 1
            if nonfinite_in_a_row >= MAX_NONFINITE_IN_A_ROW:
                shared.events.put(("fatal", index, (
                    f"worker {index}: {nonfinite_in_a_row} non-finite gradients in a row; the "
                    "model diverged (try a smaller lr or max_grad_norm)")))
                env.close()
                raise SystemExit(EXIT_DIVERGED)
        state = state.detach()
    env.close()
