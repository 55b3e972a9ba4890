"""The Bradley-Terry reward model (Christiano et al. 2017, eq. 1; Ouyang et al. 2022, eq. 1). Twins of
``theory_jax/reward_model.py``, same names and arguments."""

from __future__ import annotations

import torch


def preference_prob(r_chosen, r_rejected):
    """P(chosen > rejected) = sigmoid(r_chosen - r_rejected). (B,), (B,) -> (B,)."""
    return torch.sigmoid(r_chosen - r_rejected)


def preference_loss(r_chosen, r_rejected):
    """-mean log sigmoid(r_w - r_l), as mean softplus(r_l - r_w) written exactly (logaddexp). (B,), (B,) -> ()."""
    margin = r_rejected - r_chosen
    return torch.mean(torch.logaddexp(margin, torch.zeros((), dtype=margin.dtype, device=margin.device)))


def last_token_reward(hidden, lengths, w, b):
    """r = w . h_{L-1} + b at each sequence's last real token. hidden: (B, T, H), lengths: (B,) int in [1, T],
    w: (1, H), b: (1,) -> (B,)."""
    index = (lengths.long() - 1)[:, None, None].expand(-1, 1, hidden.shape[-1])
    last = torch.gather(hidden, 1, index)[:, 0]
    return (last @ w.T)[:, 0] + b[0]
