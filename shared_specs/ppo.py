"""Spec cases for ``ppo``: the clipped surrogate, GAE and the KL estimators, in float64.

Each function runs in ``theory_jax.ppo`` and ``practice_torch.ppo`` on the same NumPy inputs, gradients included
(the surrogate's ratios straddle the clip range, so both the clipped and the unclipped branches are compared).
Third witnesses: NumPy's closed forms (GAE's discounted sum of TD errors, the surrogate written out).
"""

from __future__ import annotations

import numpy as np

from shared_specs.case import FunctionCase, gaussian

B, T, N = 3, 6, 24


def ref_gae(rewards, values, gamma, lam):
    deltas = rewards + gamma * values[:, 1:] - values[:, :-1]
    return np.stack([np.sum(deltas[:, s:] * (gamma * lam) ** np.arange(T - s), 1) for s in range(T)], 1)


def _surrogate_inputs(rng):
    old = gaussian(rng, N) - 2
    return {"log_probs": old + rng.uniform(-0.5, 0.5, N), "old_log_probs": old, "advantages": gaussian(rng, N)}


def ref_surrogate(log_probs, old_log_probs, advantages, clip):
    ratio = np.exp(log_probs - old_log_probs)
    return -np.mean(np.minimum(ratio * advantages, np.clip(ratio, 1 - clip, 1 + clip) * advantages))


def _log_probs(rng):
    return {"policy_log_probs": gaussian(rng, N) - 3, "ref_log_probs": gaussian(rng, N) - 3}


CASES = (
    FunctionCase("ppo/clipped_surrogate_loss", "clipped_surrogate_loss", _surrogate_inputs,
                 grad_wrt=("log_probs", "old_log_probs", "advantages"), static={"clip": 0.2}, reference=ref_surrogate),
    FunctionCase("ppo/gae", "gae", lambda r: {"rewards": gaussian(r, B, T), "values": gaussian(r, B, T + 1)},
                 grad_wrt=("rewards", "values"), static={"gamma": 0.95, "lam": 0.8}, reference=ref_gae),
    FunctionCase("ppo/kl_k1", "kl_k1", _log_probs, grad_wrt=("policy_log_probs", "ref_log_probs"),
                 reference=lambda policy_log_probs, ref_log_probs: policy_log_probs - ref_log_probs),
    FunctionCase("ppo/kl_k3", "kl_k3", _log_probs, grad_wrt=("policy_log_probs", "ref_log_probs"),
                 reference=lambda policy_log_probs, ref_log_probs: (np.exp(ref_log_probs - policy_log_probs) - 1)
                 - (ref_log_probs - policy_log_probs)),
)
