"""Proximal policy optimisation: the clipped surrogate, generalised advantage estimation and the KL penalty.

Lectures: proximal policy optimisation (Schulman et al. 2017, "Proximal policy optimization algorithms", eq. 6-7 and
11-12; Schulman et al. 2016, "High-dimensional continuous control using generalized advantage estimation", eq. 16;
Ziegler et al. 2019 and Ouyang et al. 2022 for the per-token KL penalty; Schulman 2020, "Approximating KL
divergence", for the k1/k3 estimators).

With the probability ratio rho_t = pi(a_t | s_t) / pi_old(a_t | s_t) and advantages A_t,

    L_clip = E_t[min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t)]                                    (eq. 7)

a pessimistic bound on the unclipped surrogate that stops pushing a ratio past 1 +- eps in the advantage's direction.
GAE's advantage is the exponentially weighted sum of TD errors delta_t = r_t + gamma V(s_{t+1}) - V(s_t),

    A_t = sum_{l >= 0} (gamma lambda)^l delta_{t+l} = delta_t + gamma lambda A_{t+1}                     (eq. 16)

For an LM, the reward is the judge's score minus beta times the KL to the frozen reference, estimated per token from
samples of the policy: k1 = log pi/pi_ref (unbiased, may be negative) or k3 = (r - 1) - log r with
r = pi_ref/pi (unbiased, never negative, lower variance when the two are close).
Twin: ``practice_torch/ppo`` (same names, same arguments); cases: ``shared_specs/ppo.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from theory_jax.subgradients import clamp


# 1. The pure functions (twins in practice_torch.ppo) ------------------------------------------------------------
def clipped_surrogate_loss(log_probs, old_log_probs, advantages, clip):
    """-mean min(rho A, clip(rho, 1 - eps, 1 + eps) A), rho = exp(log pi - log pi_old) (Schulman et al. 2017,
    eq. 7, as a loss). log_probs: (N,) the actions' log pi(a|s) under the current policy; old_log_probs: (N,) their
    log pi_old(a|s) under the policy that collected them; advantages: (N,) A; clip: a float, eps -> ().
    A ratio exactly on 1 +- eps counts as inside the range (``clamp`` passes its bounds, as torch.clamp does), so
    the gradient there is -rho A / N, the unclipped one, and not jnp.clip's half of it."""
    ratio = jnp.exp(log_probs - old_log_probs)
    return -jnp.mean(jnp.minimum(ratio * advantages, clamp(ratio, 1 - clip, 1 + clip) * advantages))


def gae(rewards, values, gamma, lam):
    """Generalised advantage estimates by the backward recursion A_t = delta_t + gamma lambda A_{t+1}, with
    delta_t = r_t + gamma V_{t+1} - V_t (GAE eq. 16). rewards: (B, T), values: (B, T + 1) (V_T the bootstrap, 0 at a
    terminal state), gamma, lam: python floats -> (B, T)."""
    deltas = rewards + gamma * values[:, 1:] - values[:, :-1]

    def step(carry, delta):
        a = delta + gamma * lam * carry
        return a, a
    _, out = jax.lax.scan(step, jnp.zeros(rewards.shape[0], rewards.dtype), deltas.T[::-1])
    return out[::-1].T


def kl_k1(policy_log_probs, ref_log_probs):
    """k1 = log pi(x) - log pi_ref(x) for x ~ pi: unbiased for KL(pi || pi_ref), can be negative. (...) -> (...)."""
    return policy_log_probs - ref_log_probs


def kl_k3(policy_log_probs, ref_log_probs):
    """k3 = (r - 1) - log r, r = pi_ref(x)/pi(x), for x ~ pi: unbiased, never negative (Schulman 2020). (...)."""
    log_r = ref_log_probs - policy_log_probs
    return jnp.expm1(log_r) - log_r
