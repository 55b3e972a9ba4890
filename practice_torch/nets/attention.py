"""Attention and position primitives of the transformer trunk (``practice_torch.nets.transformer``): the causal mask,
the attention weights, sinusoidal and rotary position embeddings, GELU, and the norm epsilon. The JAX twin is
``theory_jax/nets/attention.py``; the derivation ``python -m theory_jax transformer`` proves them, and
``practice_torch.transformer`` (the topic's math) re-exports them beside the rest of the transformer's parts.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["NORM_EPS", "ROPE_BASE", "attention_weights", "causal_mask", "gelu", "position_frequencies", "rope",
           "sinusoidal_embedding"]

ROPE_BASE = 10000.0
NORM_EPS = 1e-5  # torch's LayerNorm default; flax's is 1e-6 (docs/ARCHITECTURE.md, "Convention traps")


def causal_mask(queries: int, keys: int, device=None):
    """M_ij = [j <= i + keys - queries]: the queries are the last ``queries`` of ``keys`` positions (a key-value
    cache holds the earlier ones), so query i sits at position keys - queries + i. -> (queries, keys) bool."""
    i = torch.arange(queries, device=device)[:, None]
    return torch.arange(keys, device=device)[None, :] <= i + (keys - queries)


def attention_weights(q, k, mask=None, causal: bool = False):
    """A = softmax(q k^T / sqrt(d)) with -inf where the mask is False (Vaswani et al. eq. 1), so masked weights
    are exactly 0 and every row sums to 1. q: (..., T, d), k: (..., S, d), mask: (..., T, S) bool -> (..., T, S)."""
    logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        allowed = causal_mask(q.shape[-2], k.shape[-2], q.device)
        mask = allowed if mask is None else mask & allowed
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, dim=-1)


def position_frequencies(dim: int) -> np.ndarray:
    """theta_i = 10000^(-2i / dim), i = 0..dim/2-1 (Vaswani et al. sec. 3.5; Su et al. eq. 15), in float64 by NumPy
    so both backends round the same values. (dim/2,)."""
    return ROPE_BASE ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)


def _angles(positions, dim: int, dtype):
    freqs = torch.as_tensor(position_frequencies(dim), dtype=dtype, device=positions.device)
    return positions.to(dtype)[..., None] * freqs  # (..., T, dim/2)


def sinusoidal_embedding(positions, dim: int, dtype=None):
    """PE(p, 2i) = sin(p theta_i), PE(p, 2i + 1) = cos(p theta_i), interleaved as in the paper (sec. 3.5).
    positions: (T,) real -> (T, dim), in ``dtype`` (default: that of a float ``positions``, else float32)."""
    dtype = dtype or (positions.dtype if positions.is_floating_point() else torch.float32)
    angles = _angles(positions, dim, dtype)
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(-2)


def rope(x, positions):
    """Rotary embedding (Su et al. eq. 34): rotate each pair (x_{2i}, x_{2i+1}) by the angle p theta_i,
    (x_{2i}, x_{2i+1}) -> (x_{2i} cos - x_{2i+1} sin, x_{2i} sin + x_{2i+1} cos). Then <rope(q, m), rope(k, n)>
    depends on m - n only. x: (..., T, d) with d even, positions: (T,) real -> (..., T, d)."""
    angles = _angles(positions, x.shape[-1], x.dtype)
    cos, sin = torch.cos(angles), torch.sin(angles)
    pairs = x.unflatten(-1, (-1, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)


def gelu(x):
    """GELU(x) = x Phi(x), the exact form (erf), not the tanh approximation (Hendrycks & Gimpel 2016)."""
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2.0)))
