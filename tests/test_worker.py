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
