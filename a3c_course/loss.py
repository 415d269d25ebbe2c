"""The A3C loss on one rollout: n-step returns, advantages, and the three loss terms.

Notation (T steps, t = 0..T-1): rewards r_t, values V_t = V(s_t), bootstrap V_T = V(s_T),
dones d_t (the episode ended after step t, so nothing is bootstrapped across it). Every
tensor may carry a second axis of k rollouts side by side (shape (T, k)); the loss then sums
over them, exactly the sum of the k rollouts' own losses (unless the advantages are normalised:
that is done over all T x k of them at once).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F


def n_step_returns(rewards: torch.Tensor, dones: torch.Tensor,
                   bootstrap_value: float | torch.Tensor, gamma: float) -> torch.Tensor:
    """R_t = r_t + gamma * (1 - d_t) * R_{t+1}, starting from R_T = V(s_T)."""
    returns = torch.empty_like(rewards)
    running = torch.as_tensor(bootstrap_value, dtype=rewards.dtype)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * (1.0 - dones[t]) * running
        returns[t] = running
    return returns


def gae_advantages(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
                   bootstrap_value: float | torch.Tensor, gamma: float, lam: float
                   ) -> torch.Tensor:
    """Generalised advantage estimation; lam = 1 gives exactly R_t - V_t.

    delta_t = r_t + gamma (1 - d_t) V_{t+1} - V_t,  A_t = delta_t + gamma lam (1 - d_t) A_{t+1}.
    """
    bootstrap = torch.as_tensor(bootstrap_value, dtype=values.dtype)
    next_values = torch.cat([values[1:], bootstrap.reshape(1, *values.shape[1:])])
    deltas = rewards + gamma * (1.0 - dones) * next_values - values
    advantages = torch.empty_like(rewards)
    running = torch.zeros(rewards.shape[1:], dtype=rewards.dtype)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * (1.0 - dones[t]) * running
        advantages[t] = running
    return advantages


class A3CLoss(NamedTuple):
    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor


def a3c_loss(logits: torch.Tensor, values: torch.Tensor, actions: torch.Tensor,
             rewards: torch.Tensor, dones: torch.Tensor, bootstrap_value: float | torch.Tensor,
             gamma: float = 0.99, gae_lambda: float = 1.0, entropy_coef: float = 0.01,
             value_coef: float = 0.5, normalize_advantages: bool = False) -> A3CLoss:
    """The loss whose gradient A3C hands to the shared model (sums over the T steps).

    - value loss   0.5 * sum_t (R_t - V_t)^2          (R - V read as the value's error)
    - policy loss  -sum_t log pi(a_t|s_t) * A_t        (A = R - V read as Q - V; GAE if lam < 1)
    - entropy      sum_t H(pi(.|s_t)), a bonus: subtracted, to keep the policy exploring
    - total        policy + value_coef * value - entropy_coef * entropy

    `normalize_advantages` rescales the policy term's advantages to mean 0 and std 1 over the
    whole rollout (PPO's habit); the value target stays R.
    """
    with torch.no_grad():
        returns = n_step_returns(rewards, dones, bootstrap_value, gamma)
        if gae_lambda == 1.0:
            advantages = returns - values
        else:
            advantages = gae_advantages(rewards, values, dones, bootstrap_value, gamma, gae_lambda)
        if normalize_advantages and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    log_probs = F.log_softmax(logits, dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1).sum()
    policy_loss = -(log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1) * advantages).sum()
    value_loss = 0.5 * (returns - values).pow(2).sum()
    total = policy_loss + value_coef * value_loss - entropy_coef * entropy
    return A3CLoss(total, policy_loss, value_loss, entropy)
