"""Spec cases for ``policy_gradient``: action and sequence log-probabilities, rewards-to-go, the leave-one-out
baseline and the REINFORCE surrogate, in float64.

Each function runs in ``theory_jax.policy_gradient`` and ``practice_torch.policy_gradient`` on the same NumPy
inputs, gradients included (the surrogate's gradient reaches the log-probabilities only: the advantage is held
constant in both). Third witnesses: SciPy's ``log_softmax``, and direct NumPy sums.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from shared_specs.case import FunctionCase, gaussian

B, T, A, K = 3, 5, 4, 4


def ref_action_log_probs(logits, actions):
    return np.take_along_axis(special.log_softmax(logits, -1), actions[..., None], -1)[..., 0]


def ref_rewards_to_go(rewards, gamma):
    discounts = gamma ** np.arange(rewards.shape[1])
    return np.stack([np.sum(rewards[:, t:] * discounts[: rewards.shape[1] - t], 1) for t in range(rewards.shape[1])], 1)


def _mask(rng):
    prompt = rng.integers(1, 3, size=B)
    return (np.arange(T)[None] >= prompt[:, None]).astype(np.float64)


CASES = (
    FunctionCase("policy_gradient/action_log_probs", "action_log_probs",
                 lambda r: {"logits": gaussian(r, B, T, A, scale=2.0), "actions": r.integers(0, A, (B, T))},
                 grad_wrt=("logits",), reference=ref_action_log_probs),
    FunctionCase("policy_gradient/sequence_log_prob", "sequence_log_prob",
                 lambda r: {"logits": gaussian(r, B, T, A, scale=2.0), "tokens": r.integers(0, A, (B, T)),
                            "mask": _mask(r)},
                 grad_wrt=("logits",),
                 reference=lambda logits, tokens, mask: np.sum(ref_action_log_probs(logits, tokens) * mask, -1)),
    FunctionCase("policy_gradient/rewards_to_go", "rewards_to_go", lambda r: {"rewards": gaussian(r, B, T)},
                 grad_wrt=("rewards",), static={"gamma": 0.9}, reference=ref_rewards_to_go),
    FunctionCase("policy_gradient/leave_one_out_baseline", "leave_one_out_baseline",
                 lambda r: {"returns": gaussian(r, B, K)}, grad_wrt=("returns",),
                 reference=lambda returns: np.stack([np.delete(row, i).mean() for row in returns
                                                     for i in range(K)]).reshape(B, K)),
    FunctionCase("policy_gradient/reinforce_loss", "reinforce_loss",
                 lambda r: {"log_probs": -np.abs(gaussian(r, B * K)), "returns": gaussian(r, B * K),
                            "baseline": gaussian(r, B * K, scale=0.5)},
                 grad_wrt=("log_probs",),  # returns and baseline are held constant (stop_gradient / detach)
                 reference=lambda log_probs, returns, baseline: -np.mean((returns - baseline) * log_probs)),
)
