"""worker.py: apply_gradients hands finite gradients over (returning their norm) and refuses
non-finite ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from a3c_course.config import make_config
from a3c_course.models import ActorCritic, build_model, copy_weights
from a3c_course.preprocess import preprocess
from a3c_course.shared_adam import SharedAdam
from a3c_course.worker import apply_gradients

CONFIG = make_config(frame_size=42, conv_channels=(8, 8, 8), hidden_size=32)
ACTIONS = 6


def _setup(frame: np.ndarray) -> tuple[ActorCritic, ActorCritic, SharedAdam]:
    """A shared model with its shared Adam, and a worker's local copy holding real gradients."""
    torch.manual_seed(0)
    shared = build_model(CONFIG, ACTIONS)
    shared.share_memory()
    optimizer = SharedAdam(shared.parameters(), lr=1e-3)
    local = build_model(CONFIG, ACTIONS)
    copy_weights(local, shared)
    obs = torch.from_numpy(preprocess(frame, size=42, grayscale=True))[None]
    logits, value, _ = local(obs, local.initial_state())
    (torch.log_softmax(logits, -1)[0, 2] + value.sum()).backward()
    return local, shared, optimizer


def _snapshot(shared: ActorCritic, optimizer: SharedAdam) -> list[torch.Tensor]:
    tensors = [p.detach().clone() for p in shared.parameters()]
    for state in optimizer.state.values():
        tensors += [t.clone() for t in state.values()]
    return tensors


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_gradient_touches_nothing_shared(pong_frame: np.ndarray, bad: float) -> None:
    local, shared, optimizer = _setup(pong_frame)
    before = _snapshot(shared, optimizer)
    # One poisoned entry somewhere in the middle of the network is enough.
    local.core.weight_hh.grad[3, 5] = bad
    assert apply_gradients(local, shared, optimizer, max_grad_norm=40.0) is None
    assert _same(_snapshot(shared, optimizer), before)
    assert all(p.grad is None for p in shared.parameters())
    assert all(float(s["step"]) == 0.0 for s in optimizer.state.values())


def test_finite_gradient_updates_the_shared_model(pong_frame: np.ndarray) -> None:
    local, shared, optimizer = _setup(pong_frame)
    before = _snapshot(shared, optimizer)
    weights_before = [p.detach().clone() for p in shared.parameters()]
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in local.parameters()))
    assert apply_gradients(local, shared, optimizer, max_grad_norm=40.0) == pytest.approx(
        float(norm), rel=1e-5)
    assert not _same(_snapshot(shared, optimizer), before)
    assert all(float(s["step"]) == 1.0 for s in optimizer.state.values())
    # Every parameter with a non-zero gradient moved; the local copy did not.
    for p, p0, lp in zip(shared.parameters(), weights_before, local.parameters(), strict=True):
        if torch.count_nonzero(lp.grad):
            assert not torch.equal(p, p0)
        assert torch.equal(lp, p0)


def test_gradients_are_clipped_before_the_hand_over(pong_frame: np.ndarray) -> None:
    local, shared, optimizer = _setup(pong_frame)
    for p in local.parameters():
        p.grad.mul_(1e6)
    assert apply_gradients(local, shared, optimizer, max_grad_norm=0.5) > 0.5  # before clipping
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in shared.parameters()))
    assert float(norm) == pytest.approx(0.5, rel=1e-4)


# ---------------------------------------------------------------------- k games per worker
def _rollout(config, seed: int, steps: int = 20):  # type: ignore[no-untyped-def]
    from a3c_course.envs import make_worker_envs
    from a3c_course.worker import play_rollout

    envs = make_worker_envs(config)
    torch.manual_seed(seed)
    model = build_model(config, int(envs.single_action_space.n))
    obs, _ = envs.reset(seed=seed)
    state = model.initial_state(envs.num_envs)
    rollout, _, _ = play_rollout(model, envs, obs, state, steps)
    envs.close()
    return model, rollout


@pytest.mark.parametrize("model_name", ["gru", "stack"])
def test_the_batched_loss_is_the_sum_of_the_single_rollouts_losses(model_name: str) -> None:
    """k = 3 real Pong rollouts in one batch: the same loss, and the same gradient, as the
    three rollouts taken one at a time (with an episode end inside one of them)."""
    from a3c_course.worker import Rollout, rollout_loss

    config = CONFIG.replace(model=model_name, envs_per_worker=3)
    model, rollout = _rollout(config, seed=4)
    rollout.dones[7, 1] = 1.0  # an episode end: no bootstrap across it, the state restarts
    rollout.terminals[7, 1] = 1.0
    rollout.terminals[12, 2] = 1.0  # a lost life: no bootstrap across it, the state goes on
    rollout.start_state = torch.randn_like(rollout.start_state)  # a state from before
    batched = rollout_loss(model, rollout, config)
    model.zero_grad()
    batched.total.backward()
    batched_grads = [p.grad.clone() for p in model.parameters()]

    singles = []
    model.zero_grad()
    for i in range(3):
        one = Rollout(rollout.observations[:, i], rollout.actions[:, i], rollout.rewards[:, i],
                      rollout.dones[:, i], rollout.terminals[:, i],
                      rollout.start_state[i : i + 1])
        singles.append(rollout_loss(model, one, config))
        singles[-1].total.backward()  # gradients add up over the three
    for term in ("total", "policy", "value", "entropy"):
        assert getattr(batched, term).item() == pytest.approx(
            sum(getattr(s, term).item() for s in singles), rel=1e-5, abs=1e-6), term
    for p, g in zip(model.parameters(), batched_grads, strict=True):
        # float32 sums in another order: tolerance relative to the gradient's own scale
        assert torch.allclose(p.grad, g, rtol=1e-4, atol=1e-5 * float(g.abs().max()))


def test_one_game_per_worker_is_the_seeds_loop() -> None:
    """k = 1: play_rollout takes the very actions and sees the very frames of the seed's
    loop (one env, one frame at a time, multinomial sampling), from the same seeds."""
    from a3c_course.envs import make_env

    config = CONFIG.replace(envs_per_worker=1)
    model, rollout = _rollout(config, seed=11, steps=30)

    # The seed's loop, written out plainly.
    env = make_env(config, train=True)
    torch.manual_seed(11)
    seed_model = build_model(config, int(env.action_space.n))
    obs, _ = env.reset(seed=11)
    state = seed_model.initial_state()
    frames, actions, rewards = [], [], []
    with torch.no_grad():
        for _ in range(30):
            frames.append(torch.from_numpy(obs))
            logits, _, state = seed_model(torch.from_numpy(obs).unsqueeze(0), state)
            action = int(torch.multinomial(torch.softmax(logits, -1), 1))
            obs, reward, terminated, truncated, _ = env.step(action)
            actions.append(action)
            rewards.append(float(reward))
            assert not (terminated or truncated)
    env.close()
    assert rollout.actions[:, 0].tolist() == actions
    assert rollout.rewards[:, 0].tolist() == rewards
    assert torch.equal(rollout.observations[:30, 0], torch.stack(frames))
    assert torch.equal(rollout.observations[30, 0], torch.from_numpy(obs))


def test_finished_games_are_reported_and_restart_their_state() -> None:
    """CartPole ends often: every finished game is reported with its real score, its next
    observation is a fresh episode's, and its core state starts from zeros again."""
    from a3c_course.envs import make_worker_envs
    from a3c_course.worker import play_rollout

    config = make_config(env="CartPole-v1", model="gru", hidden_size=16, envs_per_worker=3)
    envs = make_worker_envs(config)
    torch.manual_seed(0)
    model = build_model(config, 2, envs.single_observation_space.shape)
    obs, _ = envs.reset(seed=0)
    episodes: list[tuple[int, float, int]] = []
    rollout, _, state = play_rollout(model, envs, obs, model.initial_state(3), 200,
                                     lambda i, r, n: episodes.append((i, r, n)))
    envs.close()
    assert rollout.observations.shape == (201, 3, 4) and rollout.dones.shape == (200, 3)
    assert len(episodes) == int(rollout.dones.sum()) > 3
    assert all(score == length for _, score, length in episodes)  # 1 point per step
    assert {i for i, _, _ in episodes} == {0, 1, 2}
    # The last step of game i that ended there leaves it a zero state.
    for i in range(3):
        if rollout.dones[-1, i]:
            assert torch.count_nonzero(state[i]) == 0


def test_a_lost_life_ends_the_return_but_not_the_game() -> None:
    """life_loss_terminal on real SpaceInvaders: the steps where a game lost a life and went on
    are terminals (no bootstrap) but not dones (same game, same core state); without the option
    terminals are the dones."""
    from a3c_course.envs import make_worker_envs
    from a3c_course.loss import n_step_returns
    from a3c_course.worker import play_rollout

    lost_lives = {}
    for option in (False, True):
        config = CONFIG.replace(env="spaceinvaders", envs_per_worker=2,
                                life_loss_terminal=option)
        envs = make_worker_envs(config)
        torch.manual_seed(0)
        model = build_model(config, int(envs.single_action_space.n))
        obs, _ = envs.reset(seed=3)
        rollout, _, _ = play_rollout(model, envs, obs, model.initial_state(2), 600)
        envs.close()
        lost = rollout.terminals - rollout.dones
        assert lost.min() >= 0  # every game end is a terminal too
        lost_lives[option] = int(lost.sum())
        if option:
            t, i = (int(x) for x in torch.nonzero(lost)[0])
            returns = n_step_returns(rollout.rewards, rollout.terminals, torch.full((2,), 9.0),
                                     0.99)
            assert returns[t, i] == rollout.rewards[t, i]  # nothing from after the lost life
    assert lost_lives[False] == 0
    assert lost_lives[True] >= 2  # random play loses lives within 600 steps in 2 games
