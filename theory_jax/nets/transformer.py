"""The transformer trunk in flax (linen): the twin of ``practice_torch/nets/transformer.py``.

Same class names, fields and attribute names, so ``shared_specs.interop`` maps every weight one-to-one
(torch ``blocks.1.attn.qkv`` <-> flax ``blocks_1/attn/qkv``). Built from the pure functions of
``theory_jax/transformer.py`` (attention written out with its causal mask, ``rope``, ``sinusoidal_embedding``),
so the spec of the trunk is also a spec of the fast torch path (fused qkv, SDPA) against the math.
Convention traps pinned down here: LayerNorm/RMSNorm epsilon 1e-5 (torch's; flax's default is 1e-6) with
two-pass variance, exact GELU (flax's ``nn.gelu`` defaults to the tanh approximation), qkv output blocks
[q | k | v] each split into heads, RoPE on interleaved pairs (x_{2i}, x_{2i+1}), sinusoids interleaved
[sin, cos, sin, ...]. No key-value cache here: incremental decoding is the torch trunk's business.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from theory_jax.nets.attention import NORM_EPS, attention_weights, gelu, rope, sinusoidal_embedding


def make_norm(kind: str = "layer", bias: bool = True) -> nn.Module:
    """LayerNorm (with or without bias) or RMSNorm, eps 1e-5 as torch's."""
    if kind == "layer":
        return nn.LayerNorm(epsilon=NORM_EPS, use_bias=bias, use_fast_variance=False)
    return nn.RMSNorm(epsilon=NORM_EPS)


class MultiHeadAttention(nn.Module):
    """out(Concat_h softmax(q_h k_h^T / sqrt(d) + M) v_h), d = dim / heads; q, k, v from one Dense ``qkv``.
    x: (B, T, dim) -> (B, T, dim)."""

    dim: int
    heads: int
    bias: bool = True
    causal: bool = True
    rope: bool = False
    dropout: float = 0.0

    def setup(self):
        self.qkv = nn.Dense(3 * self.dim, use_bias=self.bias)
        self.out = nn.Dense(self.dim, use_bias=self.bias)
        self.drop = nn.Dropout(self.dropout)

    def __call__(self, x, train: bool = False):
        b, t, c = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, T, d)
        if self.rope:
            positions = jnp.arange(t)
            q, k = rope(q, positions), rope(k, positions)
        weights = self.drop(attention_weights(q, k, causal=self.causal), deterministic=not train)
        a = (weights @ v).transpose(0, 2, 1, 3).reshape(b, t, c)
        return self.drop(self.out(a), deterministic=not train)


class MLP(nn.Module):
    """proj(GELU(fc(x))), hidden width ``mlp_ratio * dim``, exact GELU. x: (B, T, dim) -> (B, T, dim)."""

    dim: int
    mlp_ratio: int = 4
    bias: bool = True
    dropout: float = 0.0

    def setup(self):
        self.fc = nn.Dense(self.mlp_ratio * self.dim, use_bias=self.bias)
        self.proj = nn.Dense(self.dim, use_bias=self.bias)
        self.drop = nn.Dropout(self.dropout)

    def __call__(self, x, train: bool = False):
        return self.drop(self.proj(gelu(self.fc(x))), deterministic=not train)


class Block(nn.Module):
    """Pre-norm: x + attn(norm_1(x)), then x + mlp(norm_2(x)); post-norm: norm_1(x + attn(x)), norm_2(x + mlp(x)).
    x: (B, T, dim) -> (B, T, dim)."""

    dim: int
    heads: int
    mlp_ratio: int = 4
    dropout: float = 0.0
    norm: str = "pre"
    norm_kind: str = "layer"
    bias: bool = True
    rope: bool = False
    causal: bool = True

    def setup(self):
        self.norm_1 = make_norm(self.norm_kind, self.bias)
        self.attn = MultiHeadAttention(self.dim, self.heads, self.bias, self.causal, self.rope, self.dropout)
        self.norm_2 = make_norm(self.norm_kind, self.bias)
        self.mlp = MLP(self.dim, self.mlp_ratio, self.bias, self.dropout)

    def __call__(self, x, train: bool = False):
        if self.norm == "pre":
            x = x + self.attn(self.norm_1(x), train)
            return x + self.mlp(self.norm_2(x), train)
        x = self.norm_1(x + self.attn(x, train))
        return self.norm_2(x + self.mlp(x, train))


class Transformer(nn.Module):
    """The trunk; fields as ``practice_torch.nets.TransformerConfig``. h: (B, T, dim) -> (B, T, dim)."""

    dim: int = 128
    heads: int = 4
    layers: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    norm: str = "pre"
    norm_kind: str = "layer"
    bias: bool = True
    position: str = "learned"
    max_len: int = 256
    causal: bool = True

    def setup(self):
        self.position_embedding = nn.Embed(self.max_len, self.dim) if self.position == "learned" else None
        self.drop = nn.Dropout(self.dropout)
        self.blocks = [Block(self.dim, self.heads, self.mlp_ratio, self.dropout, self.norm, self.norm_kind, self.bias,
                             self.position == "rope", self.causal) for _ in range(self.layers)]
        self.final_norm = make_norm(self.norm_kind, self.bias) if self.norm == "pre" else None

    def embed_positions(self, h, offset: int = 0):
        """h + P[offset .. offset + T - 1] for learned or sinusoidal positions; h itself for rope and none."""
        t = h.shape[1]
        if self.position == "learned":
            if offset + t > self.max_len:
                raise ValueError(f"positions up to {offset + t} exceed max_len={self.max_len} of the learned table")
            return h + self.position_embedding(jnp.arange(offset, offset + t))
        if self.position == "sinusoidal":
            return h + sinusoidal_embedding(jnp.arange(offset, offset + t), self.dim, h.dtype)
        return h

    def __call__(self, h, train: bool = False):
        if h.ndim != 3 or h.shape[-1] != self.dim:
            raise ValueError(f"transformer input must be (B, T, {self.dim}), got {tuple(h.shape)}")
        h = self.drop(self.embed_positions(h), deterministic=not train)
        for block in self.blocks:
            h = block(h, train)
        return h if self.final_norm is None else self.final_norm(h)
