"""The policy gradient theorem, REINFORCE with baselines, and an autoregressive language model as a policy.

Lectures: RL overview; policy gradient theorem; an autoregressive LM as an RL policy (Williams 1992, "Simple
statistical gradient-following algorithms", REINFORCE; Sutton et al. 2000, "Policy gradient methods for
reinforcement learning with function approximation", Theorem 1; Sutton & Barto 2018, ch. 13; Kool, van Hoof &
Welling 2019, "Buy 4 REINFORCE samples, get a baseline for free!", for the leave-one-out baseline).

For a policy pi_theta(a | s) and trajectories tau = (s_0, a_0, r_0, ..., s_{T-1}, a_{T-1}, r_{T-1}) of an episodic
MDP, J(theta) = E_tau[R(tau)] and

    grad J = E_tau[ sum_t grad log pi(a_t | s_t) G_t ],     G_t = sum_{t' >= t} gamma^{t'-t} r_{t'}    (Theorem 1)

since grad log p(tau) = sum_t grad log pi(a_t | s_t) (the dynamics do not depend on theta) and rewards before t do
not depend on a_t. Any baseline b(s_t) leaves it unbiased, E[grad log pi(a | s) b(s)] = 0, and a good one lowers
its variance. A language model generating y = (y_1, ..., y_T) token by token is such a policy: the state is the
prefix, the action the next token, log pi(y) = sum_t log p(y_t | y_<t), and a judge's reward arrives at the end.
Twin: ``practice_torch/policy_gradient`` (same names, same arguments); cases: ``shared_specs/policy_gradient.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


# 1. The pure functions (twins in practice_torch.policy_gradient) ------------------------------------------------
def action_log_probs(logits, actions):
    """log pi(a_t | s_t) from the policy's logits at the visited states. logits: (B, T, A), actions: (B, T) int ->
    (B, T)."""
    return jnp.take_along_axis(jax.nn.log_softmax(logits, -1), actions[..., None], -1)[..., 0]


def sequence_log_prob(logits, tokens, mask):
    """log pi(y) = sum_t log p(y_t | y_<t) over the positions the mask keeps (the generated tokens, not the
    prompt). logits: (B, T, V), tokens: (B, T) int, mask: (B, T) in {0, 1} -> (B,)."""
    return jnp.sum(action_log_probs(logits, tokens) * mask, axis=-1)


def rewards_to_go(rewards, gamma):
    """G_t = sum_{t' >= t} gamma^{t'-t} r_t', the return from step t on, by the backward recursion G_t = r_t + gamma
    G_{t+1} from G_T = 0. rewards: (B, T) each episode's rewards r_t; gamma: a float, the discount -> (B, T)."""
    def step(carry, r):
        g = r + gamma * carry
        return g, g
    _, out = jax.lax.scan(step, jnp.zeros(rewards.shape[0], rewards.dtype), rewards.T[::-1])
    return out[::-1].T


def leave_one_out_baseline(returns):
    """b_i = mean of the other K - 1 returns of the same prompt's K samples (Kool et al. 2019): independent of sample
    i, so the estimator stays unbiased. returns: (B, K) -> (B, K)."""
    k = returns.shape[-1]
    return (jnp.sum(returns, -1, keepdims=True) - returns) / (k - 1)


def reinforce_loss(log_probs, returns, baseline):
    """A surrogate whose gradient is REINFORCE's estimate of -grad J (Williams 1992): -mean_b (G_b - b_b) log pi(tau_b),
    the advantage G_b - b_b held constant. log_probs: (B,) each trajectory's log pi(tau_b); returns: (B,) its return
    G_b; baseline: (B,) its baseline b_b -> ()."""
    return -jnp.mean(jax.lax.stop_gradient(returns - baseline) * log_probs)
