"""Exercises of coupling flows: the affine coupling layer and its log-determinant."""

from __future__ import annotations

import jax.numpy as jnp

from theory_jax.exercises import Exercise, Mistake


def _affine(x, mask, h, kind, mask_s=True, squash=True, log_det_of_exp=False):
    keep, change = mask, 1 - mask
    if kind == "additive":
        return keep * x + change * (x + h), jnp.zeros(x.shape[0], x.dtype)
    h_s, t = jnp.split(h, 2, axis=1)
    s = (jnp.tanh(h_s) if squash else h_s) * (change if mask_s else 1.0)
    y = keep * x + change * (x * jnp.exp(s) + t)
    terms = jnp.exp(s) if log_det_of_exp else s
    return y, terms.reshape(x.shape[0], -1).sum(axis=1)


def _unmasked_log_det(x, mask, h, kind="affine"):
    return _affine(x, mask, h, kind, mask_s=False)


def _raw_scale(x, mask, h, kind="affine"):
    return _affine(x, mask, h, kind, squash=False)


def _sum_of_scales(x, mask, h, kind="affine"):
    return _affine(x, mask, h, kind, log_det_of_exp=True)


EXERCISES = (
    Exercise(
        "coupling_transform",
        "the affine coupling layer: half the entries pass, the rest are scaled and shifted, and log |det| = sum s",
        ("Dinh et al. 2017, eq. 2: y = b x + (1 - b) (x exp(s) + t), with (s, t) from a network that reads only "
         "b x; its Jacobian is triangular (eq. 3).",
         "h splits in two along the channels (axis 1): h_s and t; the scale is s = tanh(h_s), counted only where "
         "the mask changes the entry.",
         "s = tanh(h_s) (1 - b); y = b x + (1 - b) (x exp(s) + t); log_det = sum of s over all but the batch axis; "
         "additive: y = b x + (1 - b) (x + h), log_det 0."),
        (Mistake("your log-determinant counts the scales of the entries the mask keeps: they pass unchanged, so "
                 "only (1 - b) s enters", _unmasked_log_det),
         Mistake("your scale is h_s itself: this layer squashes it, s = tanh(h_s), to keep exp(s) bounded",
                 _raw_scale),
         Mistake("your log-determinant sums exp(s): the diagonal of the Jacobian is exp(s), whose log is s, so "
                 "log |det| = sum s", _sum_of_scales))),
)
