"""One Hogwild actor-learner: the loop the seed describes, top to bottom.

Each worker process owns an environment and a local copy of the model. Forever: copy the
shared weights, play `num_steps` steps sampling from softmax(logits), compute the A3C loss
on that rollout, clip the gradients, hand them to the shared model and step the shared Adam.
No locks: concurrent updates of the shared parameters are the Hogwild bargain.
"""

from __future__ import annotations

import time

import torch

from .children import EXIT_DIVERGED, Episode, Fatal, ParentWatch, SharedState, init_child
from .config import Config
from .envs import make_env
from .loss import a3c_loss
from .models import ActorCritic, build_model, copy_weights
from .shared_adam import SharedAdam

# A worker that meets this many non-finite updates in a row stops the run: the model has
# diverged and skipping more updates would only hide it.
MAX_NONFINITE_IN_A_ROW = 50


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
    env = make_env(config, train=True)
    model = build_model(config, int(env.action_space.n), env.observation_space.shape)
    T = config.num_steps

    # The observation buffer is allocated once: the step loop copies each frame into it.
    observations = torch.zeros((T + 1, *env.observation_space.shape))

    obs, _ = env.reset(seed=seed)
    state = model.initial_state()
    nonfinite_in_a_row = 0

    while not shared.stop.is_set() and parent.alive():
        # WAIT while the evaluator confirms the target: it then has the cores, and the
        # confirmation takes seconds instead of minutes at its lower priority.
        while shared.pause.is_set() and not shared.stop.is_set() and parent.alive():
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
                    shared.events.put(Episode(index, float(episode["r"]), int(episode["l"])))
                    obs, _ = env.reset()
                    state = model.initial_state()
            observations[T].copy_(torch.from_numpy(obs))
        shared.counters.add_steps(index, T)

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
        grad_norm = apply_gradients(model, shared.model, shared.optimizer, config.max_grad_norm)
        if grad_norm is not None:
            # DIAGNOSTICS: per-step means of the loss terms, for the trainer's progress rows.
            shared.counters.add_update(index, loss.policy.item() / T, loss.value.item() / T,
                                       loss.entropy.item() / T, grad_norm)
            nonfinite_in_a_row = 0
        else:
            shared.counters.add_nonfinite(index)
            nonfinite_in_a_row += 1
            if nonfinite_in_a_row >= MAX_NONFINITE_IN_A_ROW:
                shared.events.put(Fatal(f"worker-{index}", (
                    f"worker {index}: {nonfinite_in_a_row} non-finite gradients in a row; the "
                    "model diverged (try a smaller lr or max_grad_norm)")))
                env.close()
                raise SystemExit(EXIT_DIVERGED)
        # Truncated backpropagation through time: the next rollout starts from this state
        # as a constant, so gradients never flow back across rollouts.
        state = state.detach()
    env.close()
