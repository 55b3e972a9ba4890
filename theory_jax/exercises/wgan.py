"""Exercises of WGAN-GP: the gradient penalty on the critic's input gradients."""

from __future__ import annotations

import jax.numpy as jnp

from theory_jax.exercises import Exercise, Mistake


def _last_axis_norms(grads):
    return jnp.mean((jnp.sqrt(jnp.sum(grads ** 2, axis=-1)) - 1) ** 2)


def _squared_norm(grads):
    return jnp.mean((jnp.sum(jnp.reshape(grads, (grads.shape[0], -1)) ** 2, axis=-1) - 1) ** 2)


def _one_sided(grads):
    norms = jnp.sqrt(jnp.sum(jnp.reshape(grads, (grads.shape[0], -1)) ** 2, axis=-1))
    return jnp.mean(jnp.maximum(norms - 1, 0.0) ** 2)


EXERCISES = (
    Exercise(
        "gradient_penalty",
        "WGAN-GP's soft Lipschitz constraint: each example's input-gradient norm pulled to 1 (Gulrajani et al. eq. 3)",
        ("One norm per example, over all of that example's dimensions (an image's channels, rows and columns).",
         "Flatten each example's gradient to a vector, take its Euclidean norm, and penalise (norm - 1)^2 on both "
         "sides of 1.",
         "norms = sqrt(sum(reshape(grads, (B, -1))^2, axis=1)); return mean((norms - 1)^2)."),
        (Mistake("your norms run over the last axis only: each example's gradient norm is over all its dimensions "
                 "(flatten it first)", _last_axis_norms),
         Mistake("you penalise the squared norm, (|g|^2 - 1)^2: eq. 3 penalises (|g| - 1)^2", _squared_norm),
         Mistake("your penalty is one-sided, max(0, |g| - 1)^2 (Petzka et al.'s, this topic's lipschitz_penalty): "
                 "WGAN-GP's pulls the norm to 1 from both sides", _one_sided))),
)
