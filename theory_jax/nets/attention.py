"""Attention and position primitives of the flax transformer trunk (``theory_jax.nets.transformer``): the causal mask,
the attention weights, sinusoidal and rotary position embeddings, GELU, and the norm epsilon. The PyTorch twin is
``practice_torch/nets/attention.py``; ``theory_jax/transformer.py`` proves them (its derivation) and re-exports them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["NORM_EPS", "ROPE_BASE", "attention_weights", "causal_mask", "gelu", "position_frequencies", "rope",
           "sinusoidal_embedding"]

ROPE_BASE = 10000.0
NORM_EPS = 1e-5  # torch's LayerNorm default; flax's is 1e-6 (docs/ARCHITECTURE.md, "Convention traps")


def causal_mask(queries: int, keys: int):
    """M_ij = [j <= i + keys - queries]: query i sits at position keys - queries + i. -> (queries, keys) bool."""
    return jnp.arange(keys)[None, :] <= jnp.arange(queries)[:, None] + (keys - queries)


def attention_weights(q, k, mask=None, causal: bool = False):
    """A = softmax(q k^T / sqrt(d)) with -inf where the mask is False (Vaswani et al. eq. 1): masked weights are
    exactly 0, every row sums to 1. q: (..., T, d), k: (..., S, d), mask: (..., T, S) bool -> (..., T, S)."""
    logits = q @ jnp.swapaxes(k, -2, -1) / math.sqrt(q.shape[-1])
    if causal:
        allowed = causal_mask(q.shape[-2], k.shape[-2])
        mask = allowed if mask is None else mask & allowed
    if mask is not None:
        logits = jnp.where(mask, logits, -jnp.inf)
    return jax.nn.softmax(logits, axis=-1)


def position_frequencies(dim: int) -> np.ndarray:
    """theta_i = 10000^(-2i / dim), i = 0..dim/2-1 (Vaswani et al. sec. 3.5; Su et al. eq. 15), float64 NumPy. (dim/2,)."""
    return ROPE_BASE ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)


def _angles(positions, dim: int, dtype):
    return positions.astype(dtype)[..., None] * jnp.asarray(position_frequencies(dim), dtype=dtype)  # (..., T, dim/2)


def sinusoidal_embedding(positions, dim: int, dtype=None):
    """PE(p, 2i) = sin(p theta_i), PE(p, 2i + 1) = cos(p theta_i), interleaved as in the paper (sec. 3.5).
    positions: (T,) real -> (T, dim), in ``dtype`` (default: that of a float ``positions``, else float32)."""
    dtype = dtype or (positions.dtype if jnp.issubdtype(positions.dtype, jnp.floating) else jnp.float32)
    angles = _angles(positions, dim, dtype)
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*angles.shape[:-1], dim)


def rope(x, positions):
    """Rotary embedding (Su et al. eq. 34): rotate each pair (x_{2i}, x_{2i+1}) by the angle p theta_i.
    x: (..., T, d) with d even, positions: (T,) real -> (..., T, d)."""
    angles = _angles(positions, x.shape[-1], x.dtype)
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    return jnp.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1).reshape(x.shape)


def gelu(x):
    """GELU(x) = x Phi(x), the exact form (erf), not the tanh approximation (flax's default)."""
    return 0.5 * x * (1 + jax.scipy.special.erf(x / math.sqrt(2.0)))
