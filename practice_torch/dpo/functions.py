"""DPO (Rafailov et al. 2023, eq. 4-7). Twins of ``theory_jax/dpo.py``, same names and arguments."""

from __future__ import annotations

import torch


def implicit_reward(policy_logps, ref_logps, beta):
    """r_hat(y) = beta (log pi(y) - log pi_ref(y)). (B,), (B,), () -> (B,)."""
    return beta * (policy_logps - ref_logps)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    """-mean log sigmoid(r_hat_w - r_hat_l) (Rafailov et al. 2023, eq. 7), with the implicit rewards
    r_hat = beta (log pi - log pi_ref) (``implicit_reward``) of the chosen answer w and the rejected one l.
    policy_chosen, policy_rejected: (B,) the policy's sequence log-probabilities of the chosen and the rejected
    answers; ref_chosen, ref_rejected: (B,) the reference model's, constants (detached: a reference that is
    updated is a bug); beta: () the KL weight -> ()."""
    margin = implicit_reward(policy_chosen, ref_chosen.detach(), beta) - implicit_reward(
        policy_rejected, ref_rejected.detach(), beta)
    return torch.mean(torch.logaddexp(-margin, torch.zeros((), dtype=margin.dtype, device=margin.device)))


def kl_regularised_optimum(ref_log_probs, rewards, beta):
    """log pi*(y) = log pi_ref(y) + r(y)/beta - log Z over K responses (eq. 4). (..., K), (..., K), () -> (..., K)."""
    return torch.log_softmax(ref_log_probs + rewards / beta, dim=-1)
