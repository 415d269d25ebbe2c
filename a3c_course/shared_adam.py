"""Adam whose moment estimates live in shared memory, so every Hogwild worker's step uses
and updates the same statistics (written by hand: torch has no shared optimizer)."""

from __future__ import annotations

from collections.abc import Iterable

import torch


class SharedAdam(torch.optim.Adam):
    """torch's Adam with its state created eagerly and moved to shared memory.

    torch creates Adam's state lazily, inside the first ``step()``, in whichever process
    runs it. Here the state exists before the workers start and sits in shared memory, so
    the tensors a worker's ``step()`` updates in place are the ones every other worker reads.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         foreach=False)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        self.share_memory()

    def share_memory(self) -> SharedAdam:
        """Move every state tensor to shared memory (also after ``load_state_dict``)."""
        for state in self.state.values():
            for value in state.values():
                if torch.is_tensor(value):
                    value.share_memory_()
        return self

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.share_memory()
