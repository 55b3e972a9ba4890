"""PPO's surrogate, GAE and the KL estimators (Schulman et al. 2017 eq. 7; Schulman et al. 2016 eq. 16; Schulman
2020). Twins of ``theory_jax/ppo.py``, same names and arguments."""

from __future__ import annotations

import torch


def clipped_surrogate_loss(log_probs, old_log_probs, advantages, clip):
    """-mean min(rho A, clip(rho, 1 - eps, 1 + eps) A), rho = exp(log pi - log pi_old) (Schulman et al. 2017,
    eq. 7, as a loss). log_probs: (N,) the actions' log pi(a|s) under the current policy; old_log_probs: (N,) their
    log pi_old(a|s) under the policy that collected them; advantages: (N,) A; clip: a float, eps -> ().
    A ratio exactly on 1 +- eps counts as inside the range (torch.clamp passes its gradient at its bounds), so the
    gradient there is -rho A / N, the unclipped one."""
    ratio = torch.exp(log_probs - old_log_probs)
    return -torch.mean(torch.minimum(ratio * advantages, torch.clamp(ratio, 1 - clip, 1 + clip) * advantages))


def gae(rewards, values, gamma, lam):
    """A_t = delta_t + gamma lambda A_{t+1}, delta_t = r_t + gamma V_{t+1} - V_t. rewards: (B, T), values: (B, T + 1),
    gamma, lam: floats -> (B, T)."""
    deltas = rewards + gamma * values[:, 1:] - values[:, :-1]
    out, carry = [], torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        carry = deltas[:, t] + gamma * lam * carry
        out.append(carry)
    return torch.stack(out[::-1], dim=1)


def kl_k1(policy_log_probs, ref_log_probs):
    """k1 = log pi(x) - log pi_ref(x), x ~ pi. (...) -> (...)."""
    return policy_log_probs - ref_log_probs


def kl_k3(policy_log_probs, ref_log_probs):
    """k3 = (r - 1) - log r, r = pi_ref(x)/pi(x), x ~ pi. (...) -> (...)."""
    log_r = ref_log_probs - policy_log_probs
    return torch.expm1(log_r) - log_r
