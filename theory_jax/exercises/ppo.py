"""Exercises of PPO: the clipped surrogate objective."""

from __future__ import annotations

import jax.numpy as jnp

from theory_jax.exercises import Exercise, Mistake
from theory_jax.subgradients import clamp


def _maximum(log_probs, old_log_probs, advantages, clip):
    ratio = jnp.exp(log_probs - old_log_probs)
    return -jnp.mean(jnp.maximum(ratio * advantages, clamp(ratio, 1 - clip, 1 + clip) * advantages))


def _log_ratio(log_probs, old_log_probs, advantages, clip):
    ratio = log_probs - old_log_probs
    return -jnp.mean(jnp.minimum(ratio * advantages, clamp(ratio, 1 - clip, 1 + clip) * advantages))


def _jnp_clip(log_probs, old_log_probs, advantages, clip):
    ratio = jnp.exp(log_probs - old_log_probs)
    return -jnp.mean(jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - clip, 1 + clip) * advantages))


EXERCISES = (
    Exercise(
        "clipped_surrogate_loss",
        "PPO's pessimistic bound: the probability ratio's gain is clipped, its loss is not (Schulman et al. eq. 7)",
        ("rho = pi / pi_old, from log-probabilities; the objective is E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)], "
         "negated as a loss.",
         "The minimum takes the clipped term only when it is the smaller: beyond the range the gain stops, "
         "but a worse ratio still counts in full.",
         "At a ratio exactly on 1 +- eps, torch.clamp passes the gradient and jnp.clip halves it: clip with "
         "theory_jax.subgradients.clamp (or jnp.where) so both backends agree; then -mean(minimum(rho A, "
         "clamp(rho, 1 - clip, 1 + clip) A))."),
        (Mistake("you take the maximum of the two terms: PPO's bound is pessimistic, the minimum", _maximum),
         Mistake("your ratio is the difference of log-probabilities: rho = exp(log pi - log pi_old)", _log_ratio),
         Mistake("you clip with jnp.clip: at a ratio exactly on the bound its gradient is half of torch.clamp's "
                 "(the value is right); clip with subgradients.clamp or jnp.where", _jnp_clip))),
)
