"""Adam whose moment estimates live in shared memory, so every Hogwild worker's step uses
and updates the same statistics (written by hand: torch has no shared optimizer)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


def moment_bound(beta1: float, beta2: float) -> float:
    """K with m**2 <= K v for every Adam state reached without races.

    m = sum (1-b1) b1^k g_k and v = sum (1-b2) b2^k g_k^2, so by Cauchy-Schwarz
    m^2 <= v sum (1-b1)^2 b1^2k / ((1-b2) b2^k) = v K (52.9 for the usual betas), which caps
    an update at sqrt(K) lr (7.3 lr).
    """
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1 and beta1 ** 2 < beta2):
        raise ValueError(f"betas=({beta1}, {beta2}): SharedAdam needs 0 <= beta < 1 and "
                         "beta1**2 < beta2")
    return (1 - beta1) ** 2 / ((1 - beta2) * (1 - beta1 ** 2 / beta2))


def decayed_lr(lr: float, decay_updates: float, updates: float) -> float:
    """`lr` decayed linearly to 0 at `decay_updates` updates (0: no decay, always `lr`)."""
    if decay_updates <= 0:
        return lr
    return lr * max(0.0, 1.0 - updates / decay_updates)


class SharedAdam(torch.optim.Adam):
    """Adam with its state created eagerly, kept in shared memory, and a Hogwild-safe step.

    torch creates Adam's state lazily, inside the first ``step()``, in whichever process
    runs it. Here the state exists before the workers start and sits in shared memory, so
    every worker's ``step()`` reads and writes the same moments.

    In one process the step gives torch's Adam's numbers. With several workers stepping at
    once, unlocked writes lose updates now and then, and can leave an element whose first
    moment holds a gradient that its second moment lost: with a zero gradient and a zero
    second moment (sparse inputs make both common) torch's step is then ``m / eps``, a jump of
    tens of thousands of ``lr`` that a short Pong run showed several times. So each worker
    computes the new moments into private tensors from one reading, REPAIRS them so that
    ``m**2 <= K v`` (true of every state reached without races, see :func:`moment_bound`),
    updates the parameters from them (at most ``sqrt(K) lr`` = 7.3 ``lr`` per step), and then
    writes them back, second moment first (it reads the first moment first).

    With ``lr_decay_updates`` > 0 the learning rate falls linearly from ``lr`` to 0 over that
    many updates, counted by the shared step count (so every worker, and a resumed run, agrees
    on where the schedule stands).
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, lr_decay_updates: float = 0.0) -> None:
        if lr_decay_updates < 0:
            raise ValueError(f"lr_decay_updates={lr_decay_updates}: allowed is 0 (constant lr) "
                             "or a positive number of updates")
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         foreach=False)
        # A group key, not an attribute: the optimizer travels to the workers by pickling,
        # which keeps only its defaults, state and groups.
        for group in self.param_groups:
            group["lr_decay_updates"] = float(lr_decay_updates)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        moment_bound(*betas)  # a ValueError now rather than in a worker
        self.share_memory()

    def share_memory(self) -> SharedAdam:
        """Move every state tensor to shared memory (also after ``load_state_dict``)."""
        for state in self.state.values():
            for value in state.values():
                if torch.is_tensor(value):
                    value.share_memory_()
        return self

    def load_state_dict(self, state_dict: dict) -> None:
        """The saved moments and step counts; the learning rate and its schedule stay this
        optimizer's own (the run's config decides them, not the checkpoint)."""
        schedule = [(g["lr"], g["lr_decay_updates"]) for g in self.param_groups]
        super().load_state_dict(state_dict)
        for group, (lr, decay) in zip(self.param_groups, schedule, strict=True):
            group["lr"], group["lr_decay_updates"] = lr, decay
        self.share_memory()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One Adam update of every parameter that has a gradient (see the class doc)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            bound = moment_bound(beta1, beta2)
            eps, weight_decay = group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if weight_decay:
                    grad = grad.add(p, alpha=weight_decay)
                state = self.state[p]
                shared_m, shared_v, shared_step = (state["exp_avg"], state["exp_avg_sq"],
                                                   state["step"])
                # READ: first moment, then second (see the class doc for why this order).
                exp_avg = shared_m.mul(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq = shared_v.mul(beta2).addcmul_(grad, grad, value=1 - beta2)
                # REPAIR what a race broke: m**2 <= K v holds for every consistent state.
                exp_avg_sq = torch.maximum(exp_avg_sq, exp_avg.square().div_(bound))
                shared_step.add_(1)
                step = float(shared_step)
                lr = decayed_lr(group["lr"], group["lr_decay_updates"], step - 1)
                # UPDATE the parameters from this worker's own moments.
                bias_correction1 = 1 - beta1 ** step
                bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                p.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
                # WRITE the moments back: second, then first.
                shared_v.copy_(exp_avg_sq)
                shared_m.copy_(exp_avg)
        return loss
