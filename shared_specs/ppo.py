"""Spec cases for ``ppo``: the clipped surrogate, GAE and the KL estimators, in float64.

Each function runs in ``theory_jax.ppo`` and ``practice_torch.ppo`` on the same NumPy inputs, gradients included
(the surrogate's ratios straddle the clip range, so both the clipped and the unclipped branches are compared, and a
second case puts ratios exactly on both bounds, where the gradient is torch.clamp's subgradient in both).
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


def _surrogate_on_the_bounds(rng, clip=0.2):
    """Ratios exactly on 1 - eps and 1 + eps (old log-probabilities 0, log-ratios the doubles nearest log(1 +- eps),
    whose exp is 1 +- eps to within 0.07 ulp, so every backend's exp lands on the bound), each with advantages of
    both signs, beside ordinary samples: where jnp.clip and torch.clamp took different slopes."""
    ties = np.repeat(np.log([1 - clip, 1 + clip]), 2)  # lower bound A > 0, A < 0; upper bound A > 0, A < 0
    assert np.all(np.exp(ties) == np.repeat([1 - clip, 1 + clip], 2)), "the log-ratios miss the clip bounds"
    free = _surrogate_inputs(rng)
    return {"log_probs": np.concatenate([ties, free["log_probs"][:4]]),
            "old_log_probs": np.concatenate([np.zeros(4), free["old_log_probs"][:4]]),
            "advantages": np.concatenate([[1.0, -1.0, 1.0, -1.0], free["advantages"][:4]])}


def ref_surrogate(log_probs, old_log_probs, advantages, clip):
    ratio = np.exp(log_probs - old_log_probs)
    return -np.mean(np.minimum(ratio * advantages, np.clip(ratio, 1 - clip, 1 + clip) * advantages))


def _log_probs(rng):
    return {"policy_log_probs": gaussian(rng, N) - 3, "ref_log_probs": gaussian(rng, N) - 3}


CASES = (
    FunctionCase("ppo/clipped_surrogate_loss", "clipped_surrogate_loss", _surrogate_inputs,
                 grad_wrt=("log_probs", "old_log_probs", "advantages"), static={"clip": 0.2}, reference=ref_surrogate),
    FunctionCase("ppo/clipped_surrogate_loss/on_the_bounds", "clipped_surrogate_loss", _surrogate_on_the_bounds,
                 grad_wrt=("log_probs", "old_log_probs", "advantages"), static={"clip": 0.2}, reference=ref_surrogate),
    FunctionCase("ppo/gae", "gae", lambda r: {"rewards": gaussian(r, B, T), "values": gaussian(r, B, T + 1)},
                 grad_wrt=("rewards", "values"), static={"gamma": 0.95, "lam": 0.8}, reference=ref_gae),
    FunctionCase("ppo/kl_k1", "kl_k1", _log_probs, grad_wrt=("policy_log_probs", "ref_log_probs"),
                 reference=lambda policy_log_probs, ref_log_probs: policy_log_probs - ref_log_probs),
    FunctionCase("ppo/kl_k3", "kl_k3", _log_probs, grad_wrt=("policy_log_probs", "ref_log_probs"),
                 reference=lambda policy_log_probs, ref_log_probs: (np.exp(ref_log_probs - policy_log_probs) - 1)
                 - (ref_log_probs - policy_log_probs)),
)
