"""Reward modelling: the Bradley-Terry likelihood of preferences, and why a reward is known only up to a constant.

Lectures: reward modelling (Bradley & Terry 1952; Christiano et al. 2017, "Deep reinforcement learning from human
preferences", eq. 1; Ouyang et al. 2022, "Training language models to follow instructions with human feedback",
eq. 1; Stiennon et al. 2020).

A judge who prefers y_w to y_l with probability

    P(y_w > y_l) = exp r(y_w) / (exp r(y_w) + exp r(y_l)) = sigmoid(r(y_w) - r(y_l))          (Bradley-Terry)

defines a reward only through differences: r + c gives every preference the same probability, so the likelihood
is flat along the constant direction and its Hessian has 1 in its null space. A reward model r_phi (an LM trunk
with a scalar head on the last token) is trained by maximum likelihood, loss = -mean log sigmoid(r_w - r_l).
Twin: ``practice_torch/reward_model`` (same names, same arguments); cases: ``shared_specs/reward_model.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


# 1. The pure functions (twins in practice_torch.reward_model) ---------------------------------------------------
def preference_prob(r_chosen, r_rejected):
    """P(chosen > rejected) = sigmoid(r_chosen - r_rejected) (Bradley-Terry). (B,), (B,) -> (B,)."""
    return jax.nn.sigmoid(r_chosen - r_rejected)


def preference_loss(r_chosen, r_rejected):
    """The reward model's loss, -mean log sigmoid(r_w - r_l) (Ouyang et al. eq. 1), stable for any margin.
    r_chosen, r_rejected: (B,) -> ()."""
    return jnp.mean(jax.nn.softplus(r_rejected - r_chosen))


def last_token_reward(hidden, lengths, w, b):
    """The scalar head on the last real token of each sequence: r = w . h_{L-1} + b. hidden: (B, T, H),
    lengths: (B,) int in [1, T], w: (1, H), b: (1,) -> (B,)."""
    last = jnp.take_along_axis(hidden, (lengths - 1)[:, None, None], axis=1)[:, 0]
    return (last @ w.T)[:, 0] + b[0]
