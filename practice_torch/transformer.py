"""Attention and the transformer's parts as pure PyTorch functions: the twin of ``theory_jax/transformer.py``.

Lectures: attention; transformer architecture; skip connections and normalisation; position embeddings
(Vaswani et al. 2017; Su et al. 2021, RoFormer; Ba et al. 2016; Zhang & Sennrich 2019; Xiong et al. 2020).
Each function here is written out from its equation and checked against the JAX twin and a NumPy reference
by ``shared_specs/transformer.py``; the network that trains (``practice_torch.nets.Transformer``: fused qkv,
``F.scaled_dot_product_attention``, a key-value cache) is checked against them through its flax twin.
Weights are passed in the torch ``nn.Linear`` layout: ``weight`` (out, in), ``y = x W^T + b``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

ROPE_BASE = 10000.0
NORM_EPS = 1e-5  # torch's LayerNorm default; flax's is 1e-6 (ARCHITECTURE.md convention traps)


# 1. Scaled dot-product attention and its causal mask ------------------------------------------------------------
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


def scaled_dot_product_attention(q, k, v, mask=None, causal: bool = False):
    """Attention(q, k, v) = softmax(q k^T / sqrt(d) + M) v (eq. 1). v: (..., S, d_v) -> (..., T, d_v)."""
    return attention_weights(q, k, mask, causal) @ v


# 2. Multi-head attention: the concat of heads, then the output projection ---------------------------------------
def split_heads(x, heads: int):
    """(B, T, H d) -> (B, H, T, d): head h takes the features h d .. (h + 1) d - 1."""
    b, t, c = x.shape
    return x.reshape(b, t, heads, c // heads).transpose(1, 2)


def merge_heads(x):
    """(B, H, T, d) -> (B, T, H d): Concat(head_1, ..., head_H)."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def multi_head_attention(x, qkv_weight, qkv_bias, out_weight, out_bias, heads: int, causal: bool = True,
                         rotary: bool = False):
    """MultiHead(x) = Concat(head_1..head_H) W_O^T + b_O, head_h = Attention(x W_Q^h, x W_K^h, x W_V^h) (sec. 3.2.2),
    one head at a time. ``qkv_weight``: (3 D, D), output blocks [q | k | v]; ``out_weight``: (D, D); with
    ``rotary`` each head's q and k are rotated by ``rope`` at positions 0..T-1. x: (B, T, D) -> (B, T, D)."""
    d_model = x.shape[-1]
    q, k, v = (x @ qkv_weight.T + qkv_bias).split(d_model, dim=-1)
    d = d_model // heads
    positions = torch.arange(x.shape[-2], dtype=x.dtype, device=x.device)
    outputs = []
    for h in range(heads):
        part = slice(h * d, (h + 1) * d)
        q_h, k_h = q[..., part], k[..., part]
        if rotary:
            q_h, k_h = rope(q_h, positions), rope(k_h, positions)
        outputs.append(scaled_dot_product_attention(q_h, k_h, v[..., part], causal=causal))
    return torch.cat(outputs, dim=-1) @ out_weight.T + out_bias


# 3. Position embeddings -----------------------------------------------------------------------------------------
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


def learned_embedding(table, positions):
    """P[p]: one trained row per position (GPT's wpe). table: (max_len, D), positions: (T,) int -> (T, D)."""
    return table[positions]


def rope(x, positions):
    """Rotary embedding (Su et al. eq. 34): rotate each pair (x_{2i}, x_{2i+1}) by the angle p theta_i,
    (x_{2i}, x_{2i+1}) -> (x_{2i} cos - x_{2i+1} sin, x_{2i} sin + x_{2i+1} cos). Then <rope(q, m), rope(k, n)>
    depends on m - n only. x: (..., T, d) with d even, positions: (T,) real -> (..., T, d)."""
    angles = _angles(positions, x.shape[-1], x.dtype)
    cos, sin = torch.cos(angles), torch.sin(angles)
    pairs = x.unflatten(-1, (-1, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)


# 4. Normalisation and the position-wise MLP ---------------------------------------------------------------------
def layer_norm(x, weight, bias, eps: float = NORM_EPS):
    """LN(x) = (x - mean) / sqrt(var + eps) * g + b over the last axis, biased variance (Ba et al. 2016).
    x: (..., D), weight, bias: (D,) -> (..., D)."""
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def rms_norm(x, weight, eps: float = NORM_EPS):
    """RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g (Zhang & Sennrich 2019): no centring, no bias. (..., D)."""
    return x / torch.sqrt((x**2).mean(dim=-1, keepdim=True) + eps) * weight


def gelu(x):
    """GELU(x) = x Phi(x), the exact form (erf), not the tanh approximation (Hendrycks & Gimpel 2016)."""
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2.0)))


def mlp(x, fc_weight, fc_bias, proj_weight, proj_bias):
    """FFN(x) = GELU(x W_1^T + b_1) W_2^T + b_2, applied to every position alike (sec. 3.3).
    x: (..., D), fc_weight: (F, D), proj_weight: (D, F) -> (..., D)."""
    return gelu(x @ fc_weight.T + fc_bias) @ proj_weight.T + proj_bias


def residual(x, branch, norm, placement: str = "pre"):
    """One residual sub-layer: pre-norm x + f(N(x)) (Xiong et al. 2020) or post-norm N(x + f(x)) (Vaswani et al.).
    ``branch`` and ``norm`` are callables (B, T, D) -> (B, T, D)."""
    if placement == "pre":
        return x + branch(norm(x))
    if placement == "post":
        return norm(x + branch(x))
    raise ValueError(f"norm placement must be 'pre' or 'post', got {placement!r}")


__all__ = ["NORM_EPS", "ROPE_BASE", "attention_weights", "causal_mask", "gelu", "layer_norm", "learned_embedding",
           "merge_heads", "mlp", "multi_head_attention", "position_frequencies", "residual", "rms_norm", "rope",
           "scaled_dot_product_attention", "sinusoidal_embedding", "split_heads"]
