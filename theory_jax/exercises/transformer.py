"""Exercises of the transformer: scaled dot-product attention with a causal mask."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from theory_jax.exercises import Exercise, Mistake


def _attention(q, k, v, causal, scale=True, future=False, over_queries=False):
    logits = q @ jnp.swapaxes(k, -2, -1) / (math.sqrt(q.shape[-1]) if scale else 1.0)
    if causal:
        t, s = q.shape[-2], k.shape[-2]
        j, i = jnp.arange(s)[None, :], jnp.arange(t)[:, None] + (s - t)
        logits = jnp.where(j >= i if future else j <= i, logits, -jnp.inf)
    return jax.nn.softmax(logits, axis=-2 if over_queries else -1) @ v


def _unscaled(q, k, v, mask=None, causal=False):
    return _attention(q, k, v, causal, scale=False)


def _future(q, k, v, mask=None, causal=False):
    return _attention(q, k, v, causal, future=True)


def _over_queries(q, k, v, mask=None, causal=False):
    return _attention(q, k, v, causal, over_queries=True)


EXERCISES = (
    Exercise(
        "scaled_dot_product_attention",
        "attention as a soft lookup, scaled so its softmax does not saturate, and masked so no token sees its future",
        ("Vaswani et al. eq. 1: softmax(q k^T / sqrt(d)) v, the softmax over the keys of each query.",
         "Causal: query i may attend to key j only when j <= i (with as many keys as queries); put -inf on the "
         "other logits before the softmax, so their weights are exactly 0.",
         "logits = q @ swapaxes(k, -2, -1) / sqrt(d); where(tril mask, logits, -inf); softmax(axis=-1) @ v."),
        (Mistake("your logits are not divided by sqrt(d): the dot products of d-dimensional vectors grow like "
                 "sqrt(d) and saturate the softmax", _unscaled),
         Mistake("your mask lets each token attend to the future and not the past: key j is allowed for query i "
                 "when j <= i", _future),
         Mistake("your softmax runs over the queries: each query's weights over the keys sum to 1 (axis -1)",
                 _over_queries)),
        withhold=("attention_weights", "causal_mask")),
)
