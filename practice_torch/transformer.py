"""Attention and the transformer's parts as pure PyTorch functions: the twin of ``theory_jax/transformer.py``.

Lectures: attention; transformer architecture; skip connections and normalisation; position embeddings
(Vaswani et al. 2017; Su et al. 2021, RoFormer; Ba et al. 2016; Zhang & Sennrich 2019; Xiong et al. 2020).
Each function here is written out from its equation and checked against the JAX twin and a NumPy reference
by ``shared_specs/transformer.py``; the network that trains (``practice_torch.nets.Transformer``: fused qkv,
``F.scaled_dot_product_attention``, a key-value cache) is checked against them through its flax twin.
Weights are passed in the torch ``nn.Linear`` layout: ``weight`` (out, in), ``y = x W^T + b``.
"""

from __future__ import annotations

import torch

from practice_torch.nets.attention import (
    NORM_EPS,
    ROPE_BASE,
    attention_weights,
    causal_mask,
    gelu,
    position_frequencies,
    rope,
    sinusoidal_embedding,
)


# 1. Scaled dot-product attention and its causal mask ------------------------------------------------------------
def scaled_dot_product_attention(q, k, v, mask=None, causal: bool = False):
    """Attention(q, k, v) = softmax(q k^T / sqrt(d) + M) v (Vaswani et al. eq. 1), the softmax over the keys.
    q: (..., T, d), k: (..., S, d), v: (..., S, d_v) -> (..., T, d_v). ``mask``: None, or a boolean keep-mask
    (..., T, S), True where query i may attend to key j (not an additive one): M is 0 there and -inf elsewhere, so a
    masked weight is exactly 0. ``causal``: also keep query i from the keys after it, j > i + S - T (the queries are
    the last T of the S positions; j > i when S = T)."""
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
def learned_embedding(table, positions):
    """P[p]: one trained row per position (GPT's wpe). table: (max_len, D), positions: (T,) int -> (T, D)."""
    return table[positions]


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
