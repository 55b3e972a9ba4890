"""REINFORCE and its pieces (Williams 1992; Sutton et al. 2000, Theorem 1; Kool et al. 2019's leave-one-out
baseline). Twins of ``theory_jax/policy_gradient.py``, same names and arguments."""

from __future__ import annotations

import torch


def action_log_probs(logits, actions):
    """log pi(a_t | s_t). logits: (B, T, A), actions: (B, T) int -> (B, T)."""
    return torch.gather(torch.log_softmax(logits, -1), -1, actions.long()[..., None])[..., 0]


def sequence_log_prob(logits, tokens, mask):
    """log pi(y) = sum_t log p(y_t | y_<t) over the positions the mask keeps (generated tokens, not the prompt).
    logits: (B, T, V), tokens: (B, T) int, mask: (B, T) in {0, 1} -> (B,)."""
    return torch.sum(action_log_probs(logits, tokens) * mask, dim=-1)


def rewards_to_go(rewards, gamma):
    """G_t = sum_{t' >= t} gamma^{t'-t} r_t', the return from step t on, by the backward recursion G_t = r_t + gamma
    G_{t+1} from G_T = 0. rewards: (B, T) each episode's rewards r_t; gamma: a float, the discount -> (B, T)."""
    out, carry = [], torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        carry = rewards[:, t] + gamma * carry
        out.append(carry)
    return torch.stack(out[::-1], dim=1)


def leave_one_out_baseline(returns):
    """b_i = mean of the other K - 1 returns of the same prompt's K samples. returns: (B, K) -> (B, K)."""
    k = returns.shape[-1]
    return (torch.sum(returns, -1, keepdim=True) - returns) / (k - 1)


def reinforce_loss(log_probs, returns, baseline):
    """A surrogate whose gradient is REINFORCE's estimate of -grad J (Williams 1992): -mean_b (G_b - b_b) log pi(tau_b),
    the advantage G_b - b_b held constant. log_probs: (B,) each trajectory's log pi(tau_b); returns: (B,) its return
    G_b; baseline: (B,) its baseline b_b -> ()."""
    return -torch.mean((returns - baseline).detach() * log_probs)
