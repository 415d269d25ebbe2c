"""loss.py against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from a3c_course.loss import A3CLoss, a3c_loss, gae_advantages, n_step_returns

# The worked example: 3 steps, gamma = 0.9, the episode ends after step 1, bootstrap V(s_3) = 10.
REWARDS = torch.tensor([1.0, 0.0, 2.0])
DONES = torch.tensor([0.0, 1.0, 0.0])
VALUES = torch.tensor([0.5, 1.0, 2.0])
BOOTSTRAP = 10.0
GAMMA = 0.9


def test_n_step_returns_by_hand() -> None:
    # R_2 = 2 + 0.9 * 10          = 11
    # R_1 = 0 + 0.9 * 0 (done)    = 0     nothing flows back across the episode's end
    # R_0 = 1 + 0.9 * R_1         = 1
    returns = n_step_returns(REWARDS, DONES, BOOTSTRAP, GAMMA)
    torch.testing.assert_close(returns, torch.tensor([1.0, 0.0, 11.0]))


def test_n_step_returns_without_done() -> None:
    # R_2 = 2 + 9 = 11, R_1 = 0 + 0.9 * 11 = 9.9, R_0 = 1 + 0.9 * 9.9 = 9.91
    returns = n_step_returns(REWARDS, torch.zeros(3), torch.tensor(BOOTSTRAP), GAMMA)
    torch.testing.assert_close(returns, torch.tensor([9.91, 9.9, 11.0]))


def test_gae_by_hand() -> None:
    # lambda = 0.5.  next values: V_1 = 1, V_2 = 2, bootstrap 10.
    # delta_2 = 2 + 0.9 * 10 - 2         = 9
    # delta_1 = 0 + 0 (done) - 1         = -1
    # delta_0 = 1 + 0.9 * 1 - 0.5        = 1.4
    # A_2 = 9
    # A_1 = -1 + 0.45 * 0 (done) * A_2   = -1
    # A_0 = 1.4 + 0.45 * (-1)            = 0.95
    advantages = gae_advantages(REWARDS, VALUES, DONES, BOOTSTRAP, GAMMA, 0.5)
    torch.testing.assert_close(advantages, torch.tensor([0.95, -1.0, 9.0]))


def test_gae_lambda_zero_is_the_one_step_td_error() -> None:
    advantages = gae_advantages(REWARDS, VALUES, DONES, BOOTSTRAP, GAMMA, 0.0)
    torch.testing.assert_close(advantages, torch.tensor([1.4, -1.0, 9.0]))


@pytest.mark.parametrize("dones", [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
def test_gae_lambda_one_is_return_minus_value(dones: list[float]) -> None:
    done = torch.tensor(dones)
    advantages = gae_advantages(REWARDS, VALUES, done, BOOTSTRAP, GAMMA, 1.0)
    returns = n_step_returns(REWARDS, done, BOOTSTRAP, GAMMA)
    torch.testing.assert_close(advantages, returns - VALUES)


def test_gae_lambda_one_by_hand() -> None:
    # R - V = [1 - 0.5, 0 - 1, 11 - 2]
    advantages = gae_advantages(REWARDS, VALUES, DONES, BOOTSTRAP, GAMMA, 1.0)
    torch.testing.assert_close(advantages, torch.tensor([0.5, -1.0, 9.0]))


# The a3c_loss example: 2 steps, 2 actions, gamma = 0.5, bootstrap 2, no done.
#   logits [0, 0]     -> pi = [1/2, 1/2], action 0: log pi = ln 1/2
#   logits [ln 3, 0]  -> pi = [3/4, 1/4], action 1: log pi = ln 1/4
#   R_1 = 0 + 0.5 * 2 = 1,  R_0 = 1 + 0.5 * 1 = 1.5
#   V = [1, 0.25]  ->  A = R - V = [0.5, 0.75]
LOGITS = [[0.0, 0.0], [math.log(3.0), 0.0]]
ACTIONS = [0, 1]
LOSS_REWARDS = [1.0, 0.0]
LOSS_VALUES = [1.0, 0.25]
POLICY = -(math.log(0.5) * 0.5 + math.log(0.25) * 0.75)  # = 2 ln 2
VALUE = 0.5 * (0.5**2 + 0.75**2)  # = 0.40625
ENTROPY = math.log(2.0) - (0.75 * math.log(0.75) + 0.25 * math.log(0.25))


def _loss(logits: torch.Tensor, values: torch.Tensor, **kw: float) -> A3CLoss:
    return a3c_loss(logits, values, torch.tensor(ACTIONS), torch.tensor(LOSS_REWARDS),
                    torch.zeros(2), 2.0, gamma=0.5, **kw)


def test_a3c_loss_terms_by_hand() -> None:
    assert POLICY == pytest.approx(2 * math.log(2.0))
    loss = _loss(torch.tensor(LOGITS), torch.tensor(LOSS_VALUES), entropy_coef=0.1,
                 value_coef=0.5)
    assert loss.policy.item() == pytest.approx(POLICY, rel=1e-6)
    assert loss.value.item() == pytest.approx(VALUE, rel=1e-6)
    assert loss.entropy.item() == pytest.approx(ENTROPY, rel=1e-6)
    total = POLICY + 0.5 * VALUE - 0.1 * ENTROPY
    assert loss.total.item() == pytest.approx(total, rel=1e-6)


def test_a3c_loss_uses_gae_when_lambda_below_one() -> None:
    # lambda = 0: A_t = r_t + gamma V_{t+1} - V_t = [1 + 0.5 * 0.25 - 1, 0 + 0.5 * 2 - 0.25]
    loss = _loss(torch.tensor(LOGITS), torch.tensor(LOSS_VALUES), gae_lambda=0.0)
    policy = -(math.log(0.5) * 0.125 + math.log(0.25) * 0.75)
    assert loss.policy.item() == pytest.approx(policy, rel=1e-6)
    assert loss.value.item() == pytest.approx(VALUE, rel=1e-6)  # the value target stays R


def test_policy_gradient_does_not_flow_into_the_value() -> None:
    logits = torch.tensor(LOGITS, requires_grad=True)
    values = torch.tensor(LOSS_VALUES, requires_grad=True)
    _loss(logits, values).policy.backward()
    # The advantage is a constant for the policy term.
    assert values.grad is None or torch.count_nonzero(values.grad) == 0
    # d/dlogits of -A log pi(a) = A * (pi - onehot(a))
    pi = torch.tensor([[0.5, 0.5], [0.75, 0.25]])
    onehot = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = torch.tensor([[0.5], [0.75]]) * (pi - onehot)
    torch.testing.assert_close(logits.grad, expected)


def test_value_gradient_is_the_value_error() -> None:
    logits = torch.tensor(LOGITS, requires_grad=True)
    values = torch.tensor(LOSS_VALUES, requires_grad=True)
    _loss(logits, values).value.backward()
    # d/dV of 0.5 (R - V)^2 = -(R - V) = -A; the value term does not touch the policy.
    torch.testing.assert_close(values.grad, torch.tensor([-0.5, -0.75]))
    assert logits.grad is None or torch.count_nonzero(logits.grad) == 0


def test_total_gradient_into_the_value_is_value_coef_times_the_error() -> None:
    logits = torch.tensor(LOGITS, requires_grad=True)
    values = torch.tensor(LOSS_VALUES, requires_grad=True)
    _loss(logits, values, value_coef=0.5, entropy_coef=0.01).total.backward()
    torch.testing.assert_close(values.grad, 0.5 * torch.tensor([-0.5, -0.75]))


def test_entropy_bonus_lowers_the_loss() -> None:
    logits, values = torch.tensor(LOGITS), torch.tensor(LOSS_VALUES)
    without = _loss(logits, values, entropy_coef=0.0).total
    with_bonus = _loss(logits, values, entropy_coef=0.5).total
    torch.testing.assert_close(without - with_bonus, torch.tensor(0.5 * ENTROPY))


def test_normalized_advantages_by_hand() -> None:
    # A = [0.5, 0.75]: mean 0.625, std 0.25 / sqrt(2) -> normalised [-1/sqrt(2), +1/sqrt(2)]
    loss = _loss(torch.tensor(LOGITS), torch.tensor(LOSS_VALUES), normalize_advantages=True)
    a = 1 / math.sqrt(2.0)
    policy = -(math.log(0.5) * -a + math.log(0.25) * a)
    assert loss.policy.item() == pytest.approx(policy, rel=1e-5)
    assert loss.value.item() == pytest.approx(VALUE, rel=1e-6)  # the value target stays R


def test_normalized_advantages_span_every_game_of_a_batch() -> None:
    # Two games side by side (shape (T, k) = (2, 2)): one mean and std over all four steps.
    logits = torch.zeros(2, 2, 2)
    values = torch.tensor([[1.0, 0.0], [0.25, 0.0]])
    rewards = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    actions = torch.zeros(2, 2, dtype=torch.int64)
    plain = a3c_loss(logits, values, actions, rewards, torch.zeros(2, 2), torch.tensor([2.0, 0.0]),
                     gamma=0.5)
    normed = a3c_loss(logits, values, actions, rewards, torch.zeros(2, 2),
                      torch.tensor([2.0, 0.0]), gamma=0.5, normalize_advantages=True)
    # A = [[0.5, 3], [0.75, 0]]: the normalised advantages sum to 0, so with log pi = ln 1/2
    # everywhere the policy term vanishes, while the plain one does not.
    assert normed.policy.item() == pytest.approx(0.0, abs=1e-6)
    assert plain.policy.item() == pytest.approx(-math.log(0.5) * 4.25, rel=1e-6)
    assert normed.value.item() == pytest.approx(plain.value.item())
