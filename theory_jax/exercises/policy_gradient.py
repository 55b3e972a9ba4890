"""Exercises of the policy gradient: rewards-to-go and REINFORCE's surrogate loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from theory_jax.exercises import Exercise, Mistake


def _forward_sum(rewards, gamma):
    t = jnp.arange(rewards.shape[1])
    weights = jnp.where(t[None, :] <= t[:, None], gamma ** (t[:, None] - t[None, :]), 0.0)  # (T, T')
    return rewards @ weights.T


def _undiscounted(rewards, gamma):
    return jnp.flip(jnp.cumsum(jnp.flip(rewards, 1), axis=1), 1)


def _from_the_start(rewards, gamma):
    discounted = rewards * gamma ** jnp.arange(rewards.shape[1])
    return jnp.flip(jnp.cumsum(jnp.flip(discounted, 1), axis=1), 1)


def _ascent(log_probs, returns, baseline):
    return jnp.mean(jax.lax.stop_gradient(returns - baseline) * log_probs)


def _baseline_added(log_probs, returns, baseline):
    return -jnp.mean(jax.lax.stop_gradient(returns + baseline) * log_probs)


EXERCISES = (
    Exercise(
        "rewards_to_go",
        "the return from each step on, discounted from that step: what each action is credited with",
        ("G_t = sum over t' >= t of gamma^(t' - t) r_t': only the rewards after an action can be its consequence.",
         "Go backwards: G_t = r_t + gamma G_{t+1}, with G_T = 0 (jax.lax.scan over the reversed time axis, or a "
         "Python loop over T).",
         "carry = 0; for t from T - 1 down to 0: carry = r[:, t] + gamma carry, G[:, t] = carry."),
        (Mistake("you sum the rewards up to t: the reward-to-go sums those from t on, G_t = r_t + gamma G_{t+1}",
                 _forward_sum),
         Mistake("your rewards-to-go are not discounted: G_t = sum gamma^(t' - t) r_t'", _undiscounted),
         Mistake("you discount from the episode's start, gamma^t': each G_t discounts from its own step, "
                 "gamma^(t' - t)", _from_the_start))),
    Exercise(
        "reinforce_loss",
        "a loss whose gradient is the policy gradient: the log-probability weighted by a constant advantage",
        ("grad J = E[(G - b) grad log pi(tau)]: minimise a surrogate whose gradient is minus that.",
         "The advantage G - b is a weight, not a function of the policy: hold it constant (jax.lax.stop_gradient; "
         "torch: .detach()).",
         "-mean(stop_gradient(returns - baseline) * log_probs)."),
        (Mistake("your loss has the wrong sign: minimising it lowers the probability of good trajectories; the loss "
                 "is -mean (G - b) log pi", _ascent),
         Mistake("you add the baseline: the advantage is G - b, the return minus the baseline", _baseline_added))),
)
