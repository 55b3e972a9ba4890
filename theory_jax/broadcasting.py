"""Per-example coefficients: the one broadcasting rule of the twin formulas (PyTorch twin:
``practice_torch.broadcasting``).

A coefficient of a batch (a noise level alpha_bar_t, a time t, a guidance scale w, a Langevin step size) is a number,
a () array, or a (B,) array with one value per example. ``per_example`` shapes it to broadcast over the trailing axes
of the batch x: (B, ...), so one formula serves images (B, H, W, C), sequences (B, L) and points (B, D).
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["per_example"]


def per_example(c, x):
    """c: a number, () or (B,) -> an array of x's dtype: () stays (), (B,) becomes (B, 1, ..., 1) against x: (B, ...).
    Raises ValueError, with the shapes, for anything else (shapes are static under jit)."""
    c = jnp.asarray(c, dtype=x.dtype)
    if c.ndim == 0:
        return c
    if c.ndim != 1 or c.shape[0] != x.shape[0]:
        raise ValueError(f"per-example coefficient must be a scalar or ({x.shape[0]},), got {tuple(c.shape)}")
    return c.reshape(c.shape + (1,) * (x.ndim - 1))
