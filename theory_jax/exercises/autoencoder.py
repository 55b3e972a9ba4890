"""Exercises of the autoencoder: its Bernoulli reconstruction loss, on logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from theory_jax.exercises import Exercise, Mistake


def _naive(x, logits):
    p = jax.nn.sigmoid(logits)
    return jnp.mean((-(x * jnp.log(p) + (1 - x) * jnp.log(1 - p))).reshape(x.shape[0], -1), axis=-1)


def _summed(x, logits):
    return jnp.sum((jax.nn.softplus(logits) - x * logits).reshape(x.shape[0], -1), axis=-1)


def _batch_mean(x, logits):
    return jnp.mean(jax.nn.softplus(logits) - x * logits)


EXERCISES = (
    Exercise(
        "reconstruction_bce",
        "binary cross-entropy from logits, per example, without ever taking log(0)",
        ("-log Bernoulli(x; sigmoid(l)) = -x log sigmoid(l) - (1 - x) log(1 - sigmoid(l)); simplify it in l.",
         "It equals softplus(l) - x l, finite for every l (log(1 - sigmoid(l)) rounds to log 0 for a large l, "
         "in float32 from l of about 17).",
         "mean over every non-batch axis of softplus(logits) - x logits: reshape to (B, -1), mean over axis 1."),
        (Mistake("you compute log(sigmoid(l)) and log(1 - sigmoid(l)): they round to log 0 = -inf for large logits; "
                 "write the loss as softplus(l) - x l", _naive),
         Mistake("your loss sums over the pixels: this one averages over every non-batch axis", _summed),
         Mistake("your loss is one number for the batch: it is one per example, (B,)", _batch_mean))),
)
