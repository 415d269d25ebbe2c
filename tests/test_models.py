"""models.py: shapes, the seed's layer widths, the GRU state, unroll, copy_weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from a3c_course.config import Config, ConfigError, make_config
from a3c_course.models import (
    ActorCritic,
    GRUActorCritic,
    StackActorCritic,
    build_model,
    copy_weights,
    count_parameters,
)
from a3c_course.preprocess import preprocess

ACTIONS = 6


def _obs(config: Config, frames: list[np.ndarray]) -> torch.Tensor:
    """A batch of real model inputs: each entry stacks `frames` as the config says."""
    size, gray = config.frame_size, config.grayscale
    per_frame = [torch.from_numpy(preprocess(f, size=size, grayscale=gray)) for f in frames]
    if config.model == "stack":
        # Oldest first; the batch holds one stack ending at each frame.
        k = config.stack_frames
        padded = [per_frame[0]] * (k - 1) + per_frame
        return torch.stack([torch.cat(padded[i : i + k]) for i in range(len(frames))])
    return torch.stack(per_frame)


def _convs(model: ActorCritic) -> list[nn.Conv2d]:
    return [m for m in model.encoder if isinstance(m, nn.Conv2d)]


@pytest.fixture(scope="module")
def frames(pong_frames, spaceinvaders_frames) -> list[np.ndarray]:
    return [f.pixels for f in (*pong_frames, *spaceinvaders_frames)]


@pytest.mark.parametrize("preset", ["default", "seed"])
@pytest.mark.parametrize("kind", ["gru", "stack"])
def test_output_shapes(preset: str, kind: str, frames: list[np.ndarray]) -> None:
    torch.manual_seed(0)
    config = make_config(preset, model=kind)
    model = build_model(config, ACTIONS)
    assert isinstance(model, GRUActorCritic if kind == "gru" else StackActorCritic)
    obs = _obs(config, frames)
    assert obs.shape == (4, config.input_channels, config.frame_size, config.frame_size)
    state = model.initial_state(4)
    logits, value, next_state = model(obs, state)
    assert logits.shape == (4, ACTIONS)
    assert value.shape == (4,)
    hidden = config.hidden_size if kind == "gru" else 0
    assert state.shape == next_state.shape == (4, hidden)
    assert torch.isfinite(logits).all() and torch.isfinite(value).all()
    # Different frames give different values (the network reads its input).
    assert value.unique().numel() == 4


def test_seed_preset_layer_widths() -> None:
    gru = build_model(make_config("seed", model="gru"), ACTIONS)
    stack = build_model(make_config("seed", model="stack"), ACTIONS)
    g, s = _convs(gru), _convs(stack)
    # The seed: 3 -> 8 -> 16 -> ... for one RGB frame; 12 (3x4) -> 16 -> 16 -> ... for four.
    assert (g[0].in_channels, g[0].out_channels) == (3, 8)
    assert (s[0].in_channels, s[0].out_channels) == (12, 16)
    assert (g[1].out_channels, s[1].out_channels) == (16, 16)
    assert len(g) == len(s) == 5
    for a, b in zip(g[2:], s[2:], strict=True):
        assert a.weight.shape == b.weight.shape
    assert all(c.kernel_size == (3, 3) and c.stride == (2, 2) for c in g + s)
    assert gru.feature_size == stack.feature_size == 64 * 5 * 5  # 160 / 2**5 = 5
    assert gru.policy.weight.shape == stack.policy.weight.shape == (ACTIONS, 256)
    assert gru.value.weight.shape == stack.value.weight.shape == (1, 256)
    assert isinstance(gru.core, nn.GRUCell) and isinstance(stack.core, nn.Linear)


def test_default_preset_layer_widths() -> None:
    gru = build_model(make_config(model="gru"), ACTIONS)
    stack = build_model(make_config(model="stack"), ACTIONS)
    assert [c.out_channels for c in _convs(gru)] == [16, 32, 32, 32]
    assert _convs(gru)[0].in_channels == 1 and _convs(stack)[0].in_channels == 4
    assert [c.out_channels for c in _convs(stack)] == [16, 32, 32, 32]  # not widened
    assert gru.feature_size == 32 * 3 * 3  # 42 -> 21 -> 11 -> 6 -> 3


def test_the_stack_model_widens_its_first_layer_as_the_seed_did() -> None:
    wide = build_model(make_config(model="stack", stack_widen_first=True), ACTIONS)
    assert [c.out_channels for c in _convs(wide)] == [32, 32, 32, 32]
    assert _convs(wide)[0].in_channels == 4
    seed = build_model(make_config("seed", model="stack"), ACTIONS)
    assert [c.out_channels for c in _convs(seed)][:3] == [16, 16, 32]  # 12 -> 16 -> 16 -> 32
    # Unwidened, one layer is enough; widening needs a second layer to copy.
    build_model(make_config(model="stack", conv_channels=(8,)), ACTIONS)
    with pytest.raises(ConfigError, match="at least 2 layers"):
        make_config(model="stack", conv_channels=(8,), stack_widen_first=True)


def test_gru_state_changes_and_is_carried(pong_frame: np.ndarray) -> None:
    torch.manual_seed(0)
    config = make_config(model="gru")
    model = build_model(config, ACTIONS)
    obs = _obs(config, [pong_frame])
    s0 = model.initial_state()
    assert torch.count_nonzero(s0) == 0
    with torch.no_grad():
        logits1, value1, s1 = model(obs, s0)
        logits2, value2, s2 = model(obs, s1)
    # Same frame twice: the state moves on, and the outputs depend on it.
    assert torch.count_nonzero(s1) > 0
    assert not torch.allclose(s1, s2)
    assert not torch.allclose(value1, value2)
    assert not torch.equal(logits1, logits2)
    # The state is an input, not something the model keeps: s0 again gives step 1 again.
    with torch.no_grad():
        again, value_again, s_again = model(obs, s0)
    assert torch.equal(again, logits1) and torch.equal(value_again, value1)
    assert torch.equal(s_again, s1)


def test_stack_model_has_no_state(pong_frame: np.ndarray) -> None:
    config = make_config(model="stack")
    model = build_model(config, ACTIONS)
    state = model.initial_state()
    with torch.no_grad():
        _, _, next_state = model(_obs(config, [pong_frame]), state)
    assert next_state.numel() == 0


def _step_by_step(model: ActorCritic, obs: torch.Tensor, state: torch.Tensor,
                  dones: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference for unroll: one forward per step, state reset after each done."""
    all_logits, all_values = [], []
    for t in range(obs.shape[0]):
        logits, value, state = model(obs[t : t + 1], state)
        all_logits.append(logits)
        all_values.append(value)
        if t < dones.shape[0] and dones[t]:
            state = model.initial_state()
    return torch.cat(all_logits), torch.cat(all_values)


@pytest.mark.parametrize("kind", ["gru", "stack"])
@pytest.mark.parametrize("dones", [
    [0, 0, 0, 0, 0, 0],
    [0, 0, 1, 0, 0, 0],  # an episode ends mid-rollout
    [1, 0, 0, 1, 0, 1],  # ... at the first and the last step too
], ids=["none", "middle", "first-and-last"])
def test_unroll_equals_step_by_step(kind: str, dones: list[int]) -> None:
    torch.manual_seed(1)
    config = make_config(model=kind, frame_size=16, conv_channels=(8, 8), hidden_size=32)
    model = build_model(config, ACTIONS)
    done = torch.tensor(dones, dtype=torch.float32)
    obs = torch.rand(len(dones) + 1, config.input_channels, 16, 16)
    # Start mid-episode: a non-zero state, as a worker's second rollout has.
    start = torch.randn(1, 32) if kind == "gru" else model.initial_state()

    logits, values = model.unroll(obs, start, done)
    ref_logits, ref_values = _step_by_step(model, obs, start, done)
    assert logits.shape == (len(dones) + 1, ACTIONS) and values.shape == (len(dones) + 1,)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, ref_values, atol=1e-5, rtol=1e-5)

    # The gradients agree too (the worker trains through unroll).
    model.zero_grad()
    (values.sum() + logits.pow(2).sum()).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    (ref_values.sum() + ref_logits.pow(2).sum()).backward()
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["gru", "stack"])
def test_unroll_of_k_games_equals_each_game_step_by_step(kind: str) -> None:
    """k = 3 rollouts side by side, the games ending at different steps (the GRU's sequence
    is cut there): each game's outputs and the summed gradients are those of its own
    step-by-step reference."""
    torch.manual_seed(3)
    config = make_config(model=kind, frame_size=16, conv_channels=(8, 8), hidden_size=32)
    model = build_model(config, ACTIONS)
    dones = torch.tensor([[0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]],
                         dtype=torch.float32)
    obs = torch.rand(6, 3, config.input_channels, 16, 16)
    start = torch.randn(3, 32) if kind == "gru" else model.initial_state(3)

    logits, values = model.unroll(obs, start, dones)
    assert logits.shape == (6, 3, ACTIONS) and values.shape == (6, 3)
    refs = [_step_by_step(model, obs[:, i], start[i : i + 1], dones[:, i]) for i in range(3)]
    for i, (ref_logits, ref_values) in enumerate(refs):
        torch.testing.assert_close(logits[:, i], ref_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(values[:, i], ref_values, atol=1e-5, rtol=1e-5)

    model.zero_grad()
    (values.sum() + logits.pow(2).sum()).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    sum(v.sum() + lg.pow(2).sum() for lg, v in refs).backward()
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=1e-4)


def test_unroll_resets_the_state_at_a_done() -> None:
    # The reset matters: with and without the done, the steps after it differ (GRU only).
    torch.manual_seed(2)
    config = make_config(frame_size=16, conv_channels=(8, 8), hidden_size=32)
    model = build_model(config, ACTIONS)
    obs = torch.rand(5, 1, 16, 16)
    start = torch.randn(1, 32)
    with torch.no_grad():
        _, v_done = model.unroll(obs, start, torch.tensor([0.0, 1.0, 0.0, 0.0]))
        _, v_none = model.unroll(obs, start, torch.zeros(4))
        _, v_fresh = model.unroll(obs[2:], model.initial_state(), torch.zeros(2))
    torch.testing.assert_close(v_done[:2], v_none[:2])
    assert not torch.allclose(v_done[2:], v_none[2:])
    torch.testing.assert_close(v_done[2:], v_fresh, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["gru", "stack"])
def test_copy_weights(kind: str) -> None:
    config = make_config(model=kind)
    torch.manual_seed(0)
    src = build_model(config, ACTIONS)
    torch.manual_seed(1)
    dst = build_model(config, ACTIONS)
    assert not torch.equal(src.policy.weight, dst.policy.weight)
    copy_weights(dst, src)
    for (name, d), s in zip(dst.named_parameters(), src.parameters(), strict=True):
        assert torch.equal(d, s), name
        assert d.data_ptr() != s.data_ptr()  # a copy, not shared storage
    with torch.no_grad():
        src.value.bias.add_(1.0)
    assert not torch.equal(dst.value.bias, src.value.bias)


def test_cartpole_models_read_vectors() -> None:
    config = make_config(env="CartPole-v1", model="stack", hidden_size=8)
    model = build_model(config, 2, obs_shape=(16,))
    logits, value, _ = model(torch.zeros(3, 16), model.initial_state(3))
    assert logits.shape == (3, 2) and value.shape == (3,)
    # By hand: Linear(16, 64), Linear(64, 64), core Linear(64, 8), heads Linear(8, 2), (8, 1).
    expected = (16 * 64 + 64) + (64 * 64 + 64) + (64 * 8 + 8) + (8 * 2 + 2) + (8 + 1)
    assert count_parameters(model) == expected

    gru = build_model(make_config(env="CartPole-v1", hidden_size=8), 2, obs_shape=(4,))
    logits, value, state = gru(torch.zeros(1, 4), gru.initial_state())
    assert logits.shape == (1, 2) and state.shape == (1, 8)


def test_first_policy_is_nearly_uniform(pong_frame: np.ndarray) -> None:
    # Small policy weights at the start: every action gets tried.
    config = make_config()
    model = build_model(config, ACTIONS)
    with torch.no_grad():
        logits, _, _ = model(_obs(config, [pong_frame]), model.initial_state())
    probs = torch.softmax(logits, -1)
    torch.testing.assert_close(probs, torch.full_like(probs, 1 / ACTIONS), atol=0.02, rtol=0)
