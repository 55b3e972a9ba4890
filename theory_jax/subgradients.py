"""Kinks with torch's subgradient: where a piecewise function's pieces meet, both backends take the same slope.

At a point where a loss is not differentiable (a ratio exactly on PPO's clip bound, a residual of exactly 0 in an L1
loss, a pre-activation of exactly 0), any element of the subdifferential is a valid gradient, and the two frameworks
choose differently:

| function | torch's slope at the tie | jax.numpy's | here |
|---|---|---|---|
| ``clamp(x, lo, hi)`` at ``x = lo`` or ``hi`` | 1 (the bounds belong to the identity piece) | ``jnp.clip``: 1/2 | 1 |
| ``abs(x)`` at 0 | sign(0) = 0 | ``jnp.abs``: 1 | 0 |
| ``leaky_relu(x, a)`` at 0 | a (the identity piece is x > 0) | ``jax.nn.leaky_relu``: 1 | a |
| ``minimum(a, b)``, ``maximum`` at ``a = b`` | 1/2 to each | 1/2 to each | ``jnp.minimum`` as it is |
| ``relu(x)`` at 0 | 0 | 0 | ``jax.nn.relu`` as it is |

The JAX twins use these three where torch's twin calls ``torch.clamp``, ``torch.abs`` or ``F.leaky_relu`` in a
differentiated computation, so that the twins' gradients agree on every input, ties included (spec cases place
inputs on the ties). torch's choice is also the better one where it matters: PPO's surrogate at a ratio exactly on
1 - eps with A > 0 is rho A on both sides, and only a clamp that passes its bound gives that slope (``ppo``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def clamp(x, lo=None, hi=None):
    """min(max(x, lo), hi) with slope 1 on the closed interval [lo, hi] and 0 outside (torch.clamp's backward).
    ``lo``/``hi``: python floats, arrays broadcasting with x, or None for no bound. (...) -> (...)."""
    if lo is not None:
        x = jnp.where(x < lo, lo, x)
    if hi is not None:
        x = jnp.where(x > hi, hi, x)
    return x


@jax.custom_jvp
def absolute(x):
    """|x| with slope sign(x), 0 at 0 (torch.abs's backward; the subgradient of least norm). (...) -> (...)."""
    return jnp.abs(x)


@absolute.defjvp
def _absolute_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return jnp.abs(x), jnp.sign(x) * dx


def leaky_relu(x, negative_slope: float = 0.01):
    """x for x > 0, a x otherwise: slope a at 0 (torch's F.leaky_relu; flax's ``nn.leaky_relu`` takes 1 there).
    (...) -> (...)."""
    return jnp.where(x > 0, x, negative_slope * x)
