"""Spec cases for ``dpo``: the implicit reward, DPO's loss and the KL-regularised optimum, in float64.

Each function runs in ``theory_jax.dpo`` and ``practice_torch.dpo`` on the same NumPy inputs, gradients included:
DPO's loss moves the policy's log-probabilities and beta, never the reference's (held constant in both backends).
Third witnesses: ``scipy.special.log_expit`` and ``scipy.special.log_softmax``.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from shared_specs.case import FunctionCase, gaussian

B, K = 8, 6


def _logps(rng):
    return {name: gaussian(rng, B, scale=3.0) - 20.0
            for name in ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected")} | {"beta": np.asarray(0.3)}


def ref_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    return -np.mean(special.log_expit(beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))))


CASES = (
    FunctionCase("dpo/implicit_reward", "implicit_reward",
                 lambda r: {"policy_logps": gaussian(r, B) - 10, "ref_logps": gaussian(r, B) - 10,
                            "beta": np.asarray(0.1)},
                 grad_wrt=("policy_logps", "ref_logps", "beta"),
                 reference=lambda policy_logps, ref_logps, beta: beta * (policy_logps - ref_logps)),
    FunctionCase("dpo/dpo_loss", "dpo_loss", _logps, grad_wrt=("policy_chosen", "policy_rejected", "beta"),
                 reference=ref_dpo_loss),
    FunctionCase("dpo/kl_regularised_optimum", "kl_regularised_optimum",
                 lambda r: {"ref_log_probs": special.log_softmax(gaussian(r, 3, K), -1), "rewards": gaussian(r, 3, K),
                            "beta": np.asarray(0.5)},
                 grad_wrt=("ref_log_probs", "rewards", "beta"),
                 reference=lambda ref_log_probs, rewards, beta: special.log_softmax(ref_log_probs + rewards / beta, -1)),
)
