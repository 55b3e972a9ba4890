"""Attention and the transformer: scaled dot-product attention, multi-head attention, position embeddings, norms.

Lectures: attention; transformer architecture; skip connections and normalisation; position embeddings
(Vaswani et al. 2017, "Attention is all you need"; Su et al. 2021, RoFormer; Ba et al. 2016, layer norm;
Zhang & Sennrich 2019, RMSNorm; Xiong et al. 2020, "On layer normalization in the transformer architecture").

The pure functions below are the twins of ``practice_torch/transformer.py`` (same names and arguments, weights in the
torch ``nn.Linear`` layout (out, in)); the flax trunk built from them is ``theory_jax/nets/transformer.py``. Its
derivation (``theory_jax/derivations/transformer.py``) checks: the causal mask (masked weights exactly 0, rows summing
to 1, output i independent of inputs j > i), the 1/sqrt(d) scaling, multi-head attention as the concat of heads and as
one block-diagonal attention, sinusoids as rotations, RoPE's relative-position property (symbolically and
numerically), the invariances of layer and RMS norm, and pre- against post-norm gradients through depth at
initialisation.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from theory_jax.nets.attention import (
    NORM_EPS,
    attention_weights,
    causal_mask,
    gelu,
    rope,
)
from theory_jax.nets.attention import (
    position_frequencies as position_frequencies,
)
from theory_jax.nets.attention import (
    sinusoidal_embedding as sinusoidal_embedding,
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
    return jnp.swapaxes(x.reshape(b, t, heads, c // heads), 1, 2)


def merge_heads(x):
    """(B, H, T, d) -> (B, T, H d): Concat(head_1, ..., head_H)."""
    b, h, t, d = x.shape
    return jnp.swapaxes(x, 1, 2).reshape(b, t, h * d)


def multi_head_attention(x, qkv_weight, qkv_bias, out_weight, out_bias, heads: int, causal: bool = True,
                         rotary: bool = False):
    """MultiHead(x) = Concat(head_1..head_H) W_O^T + b_O, head_h = Attention(x W_Q^h, x W_K^h, x W_V^h) (sec. 3.2.2),
    one head at a time. ``qkv_weight``: (3 D, D), output blocks [q | k | v]; ``out_weight``: (D, D); with
    ``rotary`` each head's q and k are rotated by ``rope`` at positions 0..T-1. x: (B, T, D) -> (B, T, D)."""
    d_model = x.shape[-1]
    q, k, v = jnp.split(x @ qkv_weight.T + qkv_bias, 3, axis=-1)
    d = d_model // heads
    positions = jnp.arange(x.shape[-2], dtype=x.dtype)
    outputs = []
    for h in range(heads):
        part = slice(h * d, (h + 1) * d)
        q_h, k_h = q[..., part], k[..., part]
        if rotary:
            q_h, k_h = rope(q_h, positions), rope(k_h, positions)
        outputs.append(scaled_dot_product_attention(q_h, k_h, v[..., part], causal=causal))
    return jnp.concatenate(outputs, axis=-1) @ out_weight.T + out_bias


# 3. Position embeddings -----------------------------------------------------------------------------------------
def learned_embedding(table, positions):
    """P[p]: one trained row per position (GPT's wpe). table: (max_len, D), positions: (T,) int -> (T, D)."""
    return table[positions]


# 4. Normalisation, the position-wise MLP and the residual sub-layer ---------------------------------------------
def layer_norm(x, weight, bias, eps: float = NORM_EPS):
    """LN(x) = (x - mean) / sqrt(var + eps) * g + b over the last axis, biased variance (Ba et al. 2016). (..., D)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * weight + bias


def rms_norm(x, weight, eps: float = NORM_EPS):
    """RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g (Zhang & Sennrich 2019): no centring, no bias. (..., D)."""
    return x / jnp.sqrt((x**2).mean(axis=-1, keepdims=True) + eps) * weight


def mlp(x, fc_weight, fc_bias, proj_weight, proj_bias):
    """FFN(x) = GELU(x W_1^T + b_1) W_2^T + b_2 at every position (sec. 3.3). fc_weight: (F, D), proj: (D, F)."""
    return gelu(x @ fc_weight.T + fc_bias) @ proj_weight.T + proj_bias


def residual(x, branch, norm, placement: str = "pre"):
    """Pre-norm x + f(N(x)) (Xiong et al. 2020) or post-norm N(x + f(x)) (Vaswani et al.)."""
    if placement == "pre":
        return x + branch(norm(x))
    if placement == "post":
        return norm(x + branch(x))
    raise ValueError(f"norm placement must be 'pre' or 'post', got {placement!r}")


def block_diagonal_attention(x, qkv_weight, qkv_bias, out_weight, out_bias, heads: int):
    """Multi-head attention as ONE causal attention over the H T (head, position) tokens of dimension d, with a
    block-diagonal mask: a token sees only tokens of its own head. x: (B, T, D) -> (B, T, D)."""
    b, t, dim = x.shape
    q, k, v = (split_heads(z, heads).reshape(b, heads * t, dim // heads)
               for z in jnp.split(x @ qkv_weight.T + qkv_bias, 3, axis=-1))
    mask = jnp.kron(jnp.eye(heads), causal_mask(t, t)).astype(bool)
    out = scaled_dot_product_attention(q, k, v, mask=mask).reshape(b, heads, t, dim // heads)
    return merge_heads(out) @ out_weight.T + out_bias


def last_layer_gradient_norms(stacks, x, cotangent, depths, heads: int) -> dict[str, np.ndarray]:
    """RMS over draws of || d <f(x), c> / d W_L || for the last block L of the first ``depth`` blocks, per depth,
    for pre- and post-norm blocks. Blocks beyond the depth are skipped (a select: they add no gradient); pre-norm
    ends with a final norm. ``stacks``: (draws, layers, ...), x, cotangent: (draws, B, T, D). One compiled function
    serves every depth and both placements. -> {placement: (len(depths),)}."""
    dim = x.shape[-1]

    def norm(y):
        return layer_norm(y, jnp.ones(dim), jnp.zeros(dim))

    def block(h, p, placement):
        h = residual(h, lambda z: multi_head_attention(z, p["qkv"], 0.0, p["out"], 0.0, heads), norm, placement)
        return residual(h, lambda z: mlp(z, p["fc"], 0.0, p["proj"], 0.0), norm, placement)

    def loss(params, x, cotangent, depth, pre):
        def body(h, layer):
            p, index = layer
            y = jnp.where(pre, block(h, p, "pre"), block(h, p, "post"))
            return jnp.where(index < depth, y, h), None

        h, _ = jax.lax.scan(body, x, (params, jnp.arange(len(params["qkv"]))))
        return jnp.sum(jnp.where(pre, norm(h), h) * cotangent)

    def squared_norm(params, x, cotangent, depth, pre):
        g = jax.grad(loss)(params, x, cotangent, depth, pre)
        return sum(jnp.sum(v[depth - 1] ** 2) for v in g.values())

    # one compilation for every depth and both placements, at XLA's lowest backend optimisation level: compiling
    # the 32-block scan costs far more than running it
    per_draw = jax.jit(jax.vmap(squared_norm, in_axes=(0, 0, 0, None, None))).lower(
        stacks, x, cotangent, depths[0], True).compile(compiler_options={"xla_backend_optimization_level": "0"})
    return {placement: np.array([math.sqrt(float(per_draw(stacks, x, cotangent, depth, placement == "pre").mean()))
                                 for depth in depths])
            for placement in ("pre", "post")}
