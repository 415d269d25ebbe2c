"""The two actor-critic networks of the seed, built by name.

Both read frames through the same stack of 3x3 stride-2 convolutions and end in the same
two heads (policy logits, state value). They differ only where the seed says:

- ``gru``:   one frame in (C channels), a GRUCell carries what earlier frames showed.
- ``stack``: the last k frames concatenated (k*C channels), a dense layer instead of the GRUCell.
  In the seed its first layer is as wide as its second (12->16->16 instead of 3->8->16;
  ``Config.stack_widen_first``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import Config


class ActorCritic(nn.Module):
    """Conv encoder -> core -> policy and value heads. Subclasses define the core."""

    recurrent = False

    def __init__(self, encoder: nn.Module, feature_size: int, hidden_size: int,
                 num_actions: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.feature_size = feature_size
        self.hidden_size = hidden_size
        self.core = self._make_core(feature_size, hidden_size)
        self.policy = nn.Linear(hidden_size, num_actions)
        self.value = nn.Linear(hidden_size, 1)
        self._init_weights()
        # NHWC layout for the conv weights: ~1.5x faster batch-1 convolutions on the CPU.
        self.encoder.to(memory_format=torch.channels_last)

    def _make_core(self, feature_size: int, hidden_size: int) -> nn.Module:
        raise NotImplementedError

    def _init_weights(self) -> None:
        # Orthogonal weights, and a nearly uniform first policy: every action gets tried.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(m.weight, math.sqrt(2))
                nn.init.zeros_(m.bias)
        nn.init.orthogonal_(self.policy.weight, 0.01)
        nn.init.orthogonal_(self.value.weight, 1.0)

    def initial_state(self, batch: int = 1) -> torch.Tensor:
        """The core's state at the start of an episode (empty for a feed-forward core)."""
        return torch.zeros(batch, self.hidden_size if self.recurrent else 0)

    def forward(self, obs: torch.Tensor, state: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: obs (B,C,H,W) and core state -> logits (B,A), value (B,), next state."""
        hidden, state = self._core_step(self.encoder(obs), state)
        return self.policy(hidden), self.value(hidden).squeeze(-1), state

    def unroll(self, obs: torch.Tensor, state: torch.Tensor, dones: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole rollout at once: obs (T+1,C,H,W) from `state` (1,H), dones (T,) -> logits
        (T+1,A), values (T+1,). Or k rollouts side by side: obs (T+1,k,C,H,W), state (k,H),
        dones (T,k) -> logits (T+1,k,A), values (T+1,k).

        ``dones[t]`` says an episode ended after step t, so the core state is reset before
        obs t+1. The convolutions run on all frames in one batch (the costly part); only the
        GRUCell, if any, loops over time.
        """
        if dones.dim() == 1:  # one rollout
            features = self.encoder(obs)
        else:
            steps, k = obs.shape[:2]
            features = self.encoder(obs.flatten(0, 1)).view(steps, k, -1)
        hidden = self._core_unroll(features, state, dones)
        return self.policy(hidden), self.value(hidden).squeeze(-1)

    def _core_step(self, features: torch.Tensor, state: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _core_unroll(self, features: torch.Tensor, state: torch.Tensor, dones: torch.Tensor
                     ) -> torch.Tensor:
        raise NotImplementedError


class GRUActorCritic(ActorCritic):
    """One frame in; a GRUCell remembers the past (the seed's basic model)."""

    recurrent = True

    def _make_core(self, feature_size: int, hidden_size: int) -> nn.Module:
        return nn.GRUCell(feature_size, hidden_size)

    def _init_weights(self) -> None:
        super()._init_weights()
        for name, p in self.core.named_parameters():
            if "bias" in name:
                nn.init.zeros_(p)
            else:
                nn.init.orthogonal_(p)

    def _core_step(self, features: torch.Tensor, state: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.core(features, state)
        return state, state

    def _core_unroll(self, features: torch.Tensor, state: torch.Tensor, dones: torch.Tensor
                     ) -> torch.Tensor:
        single = dones.dim() == 1  # one rollout: make it k = 1 rollouts
        if single:
            features, dones = features.unsqueeze(1), dones.unsqueeze(1)
        # The same GRUCell weights, run over time by torch's fused sequence kernel (torch.gru)
        # on all k games at once: the numbers equal a Python loop over self.core, at a third
        # of the cost. The sequence is cut after each step where some game ended; there that
        # game's state restarts from zeros, the others' carry on (gradients flow through).
        cell = self.core
        weights = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        steps = features.shape[0]
        cuts = (torch.nonzero(dones[: steps - 1].any(dim=1)).flatten() + 1).tolist()
        outputs, start = [], 0
        for end in [*cuts, steps]:
            out, _ = torch.gru(features[start:end], state.unsqueeze(0), weights, True, 1, 0.0,
                               self.training, False, False)
            outputs.append(out)
            if end < steps:
                state = out[-1] * (1.0 - dones[end - 1]).unsqueeze(-1)
            start = end
        hidden = torch.cat(outputs)
        return hidden.squeeze(1) if single else hidden


class StackActorCritic(ActorCritic):
    """The last k frames concatenated; a dense layer where the GRU model has its GRUCell."""

    def _make_core(self, feature_size: int, hidden_size: int) -> nn.Module:
        return nn.Linear(feature_size, hidden_size)

    def _core_step(self, features: torch.Tensor, state: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        return F.relu(self.core(features)), state

    def _core_unroll(self, features: torch.Tensor, state: torch.Tensor, dones: torch.Tensor
                     ) -> torch.Tensor:
        return F.relu(self.core(features))


def conv_encoder(in_channels: int, channels: tuple[int, ...], frame_size: int
                 ) -> tuple[nn.Module, int]:
    """3x3 stride-2 convolutions with ReLU, flattened; returns (encoder, feature size)."""
    layers: list[nn.Module] = []
    for out_channels in channels:
        layers += [nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.ReLU()]
        in_channels = out_channels
        frame_size = math.ceil(frame_size / 2)
    encoder = nn.Sequential(*layers, nn.Flatten())
    return encoder, in_channels * frame_size * frame_size


def mlp_encoder(obs_size: int, width: int = 64) -> tuple[nn.Module, int]:
    """For vector observations (CartPole in the tests): two dense layers."""
    return nn.Sequential(nn.Linear(obs_size, width), nn.ReLU(), nn.Linear(width, width),
                         nn.ReLU()), width


def build_model(config: Config, num_actions: int,
                obs_shape: tuple[int, ...] | None = None) -> ActorCritic:
    """The network `config.model` names, sized by the config.

    `obs_shape` is needed only for non-Atari environments (vector observations); Atari
    input shapes follow from the config.
    """
    kind = {"gru": GRUActorCritic, "stack": StackActorCritic}.get(config.model)
    if kind is None:
        raise ValueError(f"model={config.model!r} is unknown: allowed are 'gru', 'stack'")
    if obs_shape is not None and len(obs_shape) == 1:
        encoder, features = mlp_encoder(obs_shape[0])
    else:
        c = config.conv_channels
        # The seed widened its stack model's first layer to its second's (12->16->16).
        widen = config.model == "stack" and config.stack_widen_first
        channels = (c[1], *c[1:]) if widen else c
        encoder, features = conv_encoder(config.input_channels, channels, config.frame_size)
    return kind(encoder, features, config.hidden_size, num_actions)


def copy_weights(dst: nn.Module, src: nn.Module) -> None:
    """Overwrite `dst`'s parameters with `src`'s (the worker's sync from the shared model)."""
    with torch.no_grad():
        for d, s in zip(dst.parameters(), src.parameters(), strict=True):
            d.copy_(s)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
