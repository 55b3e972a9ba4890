"""Spec cases for ``reward_model``: Bradley-Terry probabilities, the reward model's loss and its scalar head on the
last real token, in float64.

Each function runs in ``theory_jax.reward_model`` and ``practice_torch.reward_model`` on the same NumPy inputs,
gradients included. Third witnesses: ``scipy.special.expit`` / ``log_expit`` and an explicit loop over sequences.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from shared_specs.case import FunctionCase, gaussian

B, T, H = 5, 6, 4


def _rewards(rng):
    return {"r_chosen": gaussian(rng, B, scale=20.0), "r_rejected": gaussian(rng, B, scale=20.0)}


CASES = (
    FunctionCase("reward_model/preference_prob", "preference_prob", _rewards, grad_wrt=("r_chosen", "r_rejected"),
                 reference=lambda r_chosen, r_rejected: special.expit(r_chosen - r_rejected)),
    FunctionCase("reward_model/preference_loss", "preference_loss", _rewards, grad_wrt=("r_chosen", "r_rejected"),
                 reference=lambda r_chosen, r_rejected: -np.mean(special.log_expit(r_chosen - r_rejected))),
    FunctionCase("reward_model/last_token_reward", "last_token_reward",
                 lambda r: {"hidden": gaussian(r, B, T, H), "lengths": r.integers(1, T + 1, size=B),
                            "w": gaussian(r, 1, H), "b": gaussian(r, 1)},
                 grad_wrt=("hidden", "w", "b"),
                 reference=lambda hidden, lengths, w, b: np.array([hidden[k, lengths[k] - 1] @ w[0] + b[0]
                                                                   for k in range(len(lengths))])),
)
