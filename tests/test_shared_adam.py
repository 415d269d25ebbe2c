"""shared_adam.py: eager shared state, torch Adam's numbers, updates from other processes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import multiprocessing as mp
from torch import nn

from a3c_course.shared_adam import SharedAdam, moment_bound

LR = 0.1


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))


def _grads(model: nn.Module, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g) for p in model.parameters()]


def _set_grads(model: nn.Module, grads: list[torch.Tensor]) -> None:
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = g.clone()


def _reference(model: nn.Module, steps: list[list[torch.Tensor]]) -> tuple[nn.Module,
                                                                            torch.optim.Adam]:
    """torch's own Adam on a copy of `model`, one step per gradient list."""
    ref = copy.deepcopy(model)
    optimizer = torch.optim.Adam(ref.parameters(), lr=LR)
    for grads in steps:
        _set_grads(ref, grads)
        optimizer.step()
    return ref, optimizer


def test_state_exists_before_any_step_in_shared_memory() -> None:
    model = _model()
    optimizer = SharedAdam(model.parameters(), lr=LR)
    params = list(model.parameters())
    assert len(optimizer.state) == len(params)
    for p in params:
        state = optimizer.state[p]
        assert set(state) == {"step", "exp_avg", "exp_avg_sq"}
        assert float(state["step"]) == 0.0
        for name in ("exp_avg", "exp_avg_sq"):
            assert state[name].shape == p.shape
            assert torch.count_nonzero(state[name]) == 0
        assert all(t.is_shared() for t in state.values()), "Adam state must be in shared memory"


def test_one_step_equals_torch_adam() -> None:
    model = _model()
    grads = _grads(model, 1)
    ref, ref_opt = _reference(model, [grads])
    optimizer = SharedAdam(model.parameters(), lr=LR)
    _set_grads(model, grads)
    optimizer.step()
    moved = False
    for p, r, p0 in zip(model.parameters(), ref.parameters(), _model().parameters(), strict=True):
        torch.testing.assert_close(p, r)
        moved |= not torch.allclose(p, p0)
        for key in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(optimizer.state[p][key], ref_opt.state[r][key])
    assert moved


def test_many_steps_with_weight_decay_equal_torch_adam() -> None:
    model = _model()
    steps = [_grads(model, seed) for seed in range(1, 6)]
    ref = copy.deepcopy(model)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=LR, weight_decay=0.01)
    optimizer = SharedAdam(model.parameters(), lr=LR, weight_decay=0.01)
    for grads in steps:
        _set_grads(ref, grads)
        ref_opt.step()
        _set_grads(model, grads)
        optimizer.step()
    for p, r in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, r)
        assert float(optimizer.state[p]["step"]) == len(steps)


def test_a_parameter_without_gradient_is_left_alone() -> None:
    model = _model()
    optimizer = SharedAdam(model.parameters(), lr=LR)
    first, *rest = list(model.parameters())
    before = first.detach().clone()
    for p, g in zip(rest, _grads(model, 1)[1:], strict=True):
        p.grad = g
    optimizer.step()
    assert torch.equal(first, before) and float(optimizer.state[first]["step"]) == 0.0


def test_a_moment_broken_by_a_race_is_repaired_not_divided_by_eps() -> None:
    # What an unlocked write can leave behind: a first moment whose gradient the second
    # moment lost, on an element whose gradient is now zero. torch's Adam steps m / eps.
    model = _model()
    optimizer = SharedAdam(model.parameters(), lr=LR)
    ref = copy.deepcopy(model)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=LR, foreach=False)
    for opt, net in ((optimizer, model), (ref_opt, ref)):
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()  # torch's lazy state now exists; both have taken one (zero) step
        for p in net.parameters():
            opt.state[p]["exp_avg"].fill_(1e-3)
            opt.state[p]["exp_avg_sq"].zero_()
    before = [p.detach().clone() for p in model.parameters()]
    ref_before = [p.detach().clone() for p in ref.parameters()]
    optimizer.step()
    ref_opt.step()
    cap = moment_bound(0.9, 0.999) ** 0.5 * LR
    for p, p0 in zip(model.parameters(), before, strict=True):
        assert 0 < float((p - p0).detach().abs().max()) <= cap
        # the repaired second moment went back to shared memory
        assert float(optimizer.state[p]["exp_avg_sq"].min()) > 0
    assert max(float((p - p0).detach().abs().max())
               for p, p0 in zip(ref.parameters(), ref_before, strict=True)) > 1000 * cap


def test_betas_without_a_bound_are_refused() -> None:
    with pytest.raises(ValueError, match=r"betas=\(0.99, 0.9\)"):
        SharedAdam(_model().parameters(), betas=(0.99, 0.9))


def test_load_state_dict_keeps_the_state_shared() -> None:
    model = _model()
    source = SharedAdam(model.parameters(), lr=LR)
    _set_grads(model, _grads(model, 1))
    source.step()
    target = SharedAdam(_model().parameters(), lr=LR)
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    for state in target.state.values():
        assert float(state["step"]) == 1.0
        assert all(t.is_shared() for t in state.values())


def _child_step(model: nn.Module, optimizer: SharedAdam, grads: list[torch.Tensor],
                wait_for: Any, then_set: Any) -> None:
    """A worker's update in another process: set the gradients, step the shared Adam.

    `wait_for` / `then_set`: multiprocessing Events (or None) that order the two children.
    """
    torch.set_num_threads(1)
    if wait_for is not None and not wait_for.wait(timeout=120):
        raise SystemExit(2)
    _set_grads(model, grads)
    optimizer.step()
    if then_set is not None:
        then_set.set()


def test_two_processes_update_the_same_shared_parameters() -> None:
    model = _model()
    model.share_memory()
    optimizer = SharedAdam(model.parameters(), lr=LR)
    g1, g2 = _grads(model, 1), _grads(model, 2)
    ctx = mp.get_context("spawn")
    first_done = ctx.Event()
    # Both start at once (their imports overlap); the second steps after the first has.
    first = ctx.Process(target=_child_step, args=(model, optimizer, g1, None, first_done))
    second = ctx.Process(target=_child_step, args=(model, optimizer, g2, first_done, None))
    first.start()
    second.start()
    first.join(timeout=120)
    second.join(timeout=120)
    for child in (first, second):
        if child.is_alive():
            child.kill()
    assert (first.exitcode, second.exitcode) == (0, 0)

    # Both updates landed in this process's tensors: the shared Adam took two steps, and the
    # second used the moments the first left (torch's Adam, two steps in a row, agrees).
    ref, ref_opt = _reference(_model(), [g1, g2])
    for p, r in zip(model.parameters(), ref.parameters(), strict=True):
        # .get: an optimizer whose state a child created lazily leaves nothing here.
        assert float(optimizer.state[p].get("step", 0)) == 2.0
        torch.testing.assert_close(p, r)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(optimizer.state[p][key], ref_opt.state[r][key])
    # Had the second process started from fresh moments, the result would differ.
    alone, _ = _reference(_reference(_model(), [g1])[0], [g2])
    assert not all(torch.allclose(p, a) for p, a in zip(model.parameters(), alone.parameters(),
                                                        strict=True))


def test_a_linear_lr_decay_equals_torch_adam_under_lambda_lr() -> None:
    # torch's own scheduler, stepped after each update, is the reference for the schedule.
    decay = 4
    model = _model()
    steps = [_grads(model, seed) for seed in range(1, 7)]  # two past the end: lr 0, no move
    ref = copy.deepcopy(model)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(ref_opt, lambda u: max(0.0, 1 - u / decay))
    optimizer = SharedAdam(model.parameters(), lr=LR, lr_decay_updates=decay)
    for grads in steps:
        _set_grads(ref, grads)
        ref_opt.step()
        schedule.step()
        _set_grads(model, grads)
        optimizer.step()
    for p, r in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, r)
    undecayed = copy.deepcopy(_model())
    plain = SharedAdam(undecayed.parameters(), lr=LR)
    for grads in steps:
        _set_grads(undecayed, grads)
        plain.step()
    assert not torch.allclose(next(undecayed.parameters()), next(model.parameters()))


def test_load_state_dict_keeps_its_own_lr_and_schedule() -> None:
    model = _model()
    source = SharedAdam(model.parameters(), lr=LR, lr_decay_updates=10)
    _set_grads(model, _grads(model, 1))
    source.step()
    old_style = copy.deepcopy(source.state_dict())
    for group in old_style["param_groups"]:  # a checkpoint from before the schedule existed
        del group["lr_decay_updates"]
    target = SharedAdam(_model().parameters(), lr=LR / 2, lr_decay_updates=20)
    target.load_state_dict(old_style)
    assert [(g["lr"], g["lr_decay_updates"]) for g in target.param_groups] == [(LR / 2, 20.0)]
    assert float(target.state[next(iter(target.state))]["step"]) == 1.0


def test_a_negative_decay_is_refused() -> None:
    with pytest.raises(ValueError, match="lr_decay_updates=-1"):
        SharedAdam(_model().parameters(), lr_decay_updates=-1)
