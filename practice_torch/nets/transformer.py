"""The transformer trunk shared by every model that needs one (Vaswani et al. 2017; GPT-2 layout, as nanoGPT).

The twin of ``theory_jax/nets/transformer.py`` (flax): same class and attribute names, so
``shared_specs.interop`` maps every weight one-to-one (torch ``blocks.1.attn.qkv`` <-> flax ``blocks_1/attn/qkv``).
The math is ``practice_torch/transformer.py`` (checked there); this is its fast form:

* ``MultiHeadAttention``: one fused Linear ``qkv`` (output blocks [q | k | v], each split into heads), rotary
  embedding of q and k per head when ``rope``, ``F.scaled_dot_product_attention`` (causal), Linear ``out``;
* ``MLP``: Linear ``fc`` (D -> mlp_ratio D), exact GELU, Linear ``proj``;
* ``Block``: pre-norm h + attn(norm_1(h)), h + mlp(norm_2(h)), or post-norm norm_1(h + attn(h)), norm_2(h + mlp(h));
  LayerNorm or RMSNorm, eps 1e-5;
* ``Transformer``: positions (learned table ``position_embedding`` or sinusoids added to h by ``embed_positions``;
  rope inside attention; or none), ``layers`` blocks, and a ``final_norm`` for pre-norm;
* ``KVCache``: the keys and values of the positions seen so far, for incremental decoding: ``forward(h, cache=c)``
  on the next tokens equals the rows of the full forward (tests/test_transformer.py).

Token embedding and output head belong to the model (``language_model``); the trunk maps (B, T, dim) -> (B, T, dim).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import nn
from torch.nn import functional as F

from practice_torch.nets.attention import NORM_EPS, causal_mask, rope, sinusoidal_embedding

POSITIONS = ("learned", "sinusoidal", "rope", "none")


@dataclass(frozen=True)
class TransformerConfig:
    """The trunk's sizes and choices (nanoGPT's shakespeare_char CPU size by default: 4 x 4 heads x 128)."""

    dim: int = 128
    heads: int = 4
    layers: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    norm: str = "pre"  # "pre" | "post": where the residual sub-layers normalise
    norm_kind: str = "layer"  # "layer" | "rms"
    bias: bool = True  # biases of every Linear and LayerNorm
    position: str = "learned"  # "learned" | "sinusoidal" | "rope" | "none"
    max_len: int = 256
    causal: bool = True

    def check(self) -> TransformerConfig:
        """This config, or a one-line ValueError naming what is wrong."""
        if min(self.dim, self.heads, self.layers, self.mlp_ratio, self.max_len) < 1 or self.dim % self.heads:
            raise ValueError(f"transformer needs positive sizes and heads dividing dim, got dim={self.dim}, "
                             f"heads={self.heads}, layers={self.layers}, mlp_ratio={self.mlp_ratio}, "
                             f"max_len={self.max_len}")
        if self.norm not in ("pre", "post") or self.norm_kind not in ("layer", "rms"):
            raise ValueError(f"transformer norm must be 'pre'|'post' and norm_kind 'layer'|'rms', got "
                             f"{self.norm!r}, {self.norm_kind!r}")
        if self.position not in POSITIONS:
            raise ValueError(f"transformer position must be one of {', '.join(POSITIONS)}, got {self.position!r}")
        if self.position in ("sinusoidal", "rope") and (self.dim // (self.heads if self.position == "rope" else 1)) % 2:
            raise ValueError(f"{self.position} positions need an even {'head ' if self.position == 'rope' else ''}"
                             f"width, got dim={self.dim}, heads={self.heads}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"transformer dropout must be in [0, 1), got {self.dropout}")
        return self


def make_norm(dim: int, kind: str = "layer", bias: bool = True) -> nn.Module:
    """LayerNorm (with or without bias) or RMSNorm, eps 1e-5 in both backends."""
    return nn.LayerNorm(dim, eps=NORM_EPS, bias=bias) if kind == "layer" else nn.RMSNorm(dim, eps=NORM_EPS)


@dataclass
class KVCache:
    """Keys and values of the first ``length`` positions, per layer: ``keys[l]``, ``values[l]``: (B, H, max_len, d).
    ``Transformer.forward(h, cache=c)`` reads positions 0..length-1, writes the new ones and advances ``length``."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int = 0

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def select(self, index) -> KVCache:
        """This cache with its batch rows taken at ``index`` (B',) long (beam search reorders its hypotheses)."""
        self.keys, self.values = [k[index] for k in self.keys], [v[index] for v in self.values]
        return self


class MultiHeadAttention(nn.Module):
    """out(Concat_h softmax(q_h k_h^T / sqrt(d) + M) v_h), d = dim / heads; q, k, v from one Linear ``qkv``.
    x: (B, T, dim) -> (B, T, dim)."""

    def __init__(self, dim: int, heads: int, bias: bool = True, causal: bool = True, rope: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        self.heads, self.causal, self.rope, self.dropout = heads, causal, rope, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, kv: tuple[torch.Tensor, torch.Tensor] | None = None, offset: int = 0):
        """``kv``: this layer's cache buffers (B, H, max_len, d), holding positions < ``offset``; x holds
        positions offset .. offset + T - 1."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T, d)
        if self.rope:
            positions = torch.arange(offset, offset + t, device=x.device)
            q, k = rope(q, positions), rope(k, positions)
        if kv is not None:
            kv[0][:, :, offset:offset + t] = k
            kv[1][:, :, offset:offset + t] = v
            k, v = kv[0][:, :, :offset + t], kv[1][:, :, :offset + t]
        s = k.shape[2]
        square = self.causal and t == s  # the usual training case: the fused kernel's own causal mask
        mask = causal_mask(t, s, x.device) if self.causal and 1 < t < s else None
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=square,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.out(a.transpose(1, 2).reshape(b, t, c)))


class MLP(nn.Module):
    """proj(GELU(fc(x))), hidden width ``mlp_ratio * dim``, exact GELU. x: (B, T, dim) -> (B, T, dim)."""

    def __init__(self, dim: int, mlp_ratio: int = 4, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(dim, mlp_ratio * dim, bias=bias)
        self.proj = nn.Linear(mlp_ratio * dim, dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm: x + attn(norm_1(x)), then x + mlp(norm_2(x)); post-norm: norm_1(x + attn(x)), norm_2(x + mlp(x)).
    x: (B, T, dim) -> (B, T, dim)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.0, norm: str = "pre",
                 norm_kind: str = "layer", bias: bool = True, rope: bool = False, causal: bool = True):
        super().__init__()
        self.pre = norm == "pre"
        self.norm_1 = make_norm(dim, norm_kind, bias)
        self.attn = MultiHeadAttention(dim, heads, bias, causal, rope, dropout)
        self.norm_2 = make_norm(dim, norm_kind, bias)
        self.mlp = MLP(dim, mlp_ratio, bias, dropout)

    def forward(self, x, kv=None, offset: int = 0):
        if self.pre:
            x = x + self.attn(self.norm_1(x), kv, offset)
            return x + self.mlp(self.norm_2(x))
        x = self.norm_1(x + self.attn(x, kv, offset))
        return self.norm_2(x + self.mlp(x))


class Transformer(nn.Module):
    """The trunk. ``Transformer(TransformerConfig(...))`` or ``Transformer(**fields)`` (the spec cases build it so).

    forward(h: (B, T, dim), *, cache: KVCache | None) -> (B, T, dim): positions added (learned, sinusoidal) or
    applied in attention (rope), ``layers`` blocks, final norm for pre-norm. Weights start as GPT-2's:
    N(0, 0.02), the residual projections N(0, 0.02 / sqrt(2 layers)), zero biases."""

    def __init__(self, config: TransformerConfig | None = None, **overrides):
        super().__init__()
        known = {f.name for f in fields(TransformerConfig)}
        if set(overrides) - known:
            raise ValueError(f"unknown transformer settings {sorted(set(overrides) - known)}; known: {sorted(known)}")
        self.config = cfg = replace(config or TransformerConfig(), **overrides).check()
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.dim) if cfg.position == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.norm, cfg.norm_kind, cfg.bias,
                  cfg.position == "rope", cfg.causal) for _ in range(cfg.layers))
        self.final_norm = make_norm(cfg.dim, cfg.norm_kind, cfg.bias) if cfg.norm == "pre" else None
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith(("attn.out.weight", "mlp.proj.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def embed_positions(self, h, offset: int = 0):
        """h + P[offset .. offset + T - 1] for learned or sinusoidal positions; h itself for rope and none.
        h: (B, T, dim) -> (B, T, dim)."""
        cfg, t = self.config, h.shape[1]
        if cfg.position == "learned":
            if offset + t > cfg.max_len:
                raise ValueError(f"positions up to {offset + t} exceed max_len={cfg.max_len} of the learned table")
            return h + self.position_embedding(torch.arange(offset, offset + t, device=h.device))
        if cfg.position == "sinusoidal":
            return h + sinusoidal_embedding(torch.arange(offset, offset + t, device=h.device), cfg.dim, h.dtype)
        return h

    def init_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """An empty cache for ``batch`` sequences of up to ``max_len`` (default config.max_len) positions."""
        cfg, p = self.config, self.blocks[0].attn.qkv.weight
        shape = (batch, cfg.heads, max_len or cfg.max_len, cfg.dim // cfg.heads)
        return KVCache([p.new_zeros(shape) for _ in range(cfg.layers)], [p.new_zeros(shape) for _ in range(cfg.layers)])

    def forward(self, h, *, cache: KVCache | None = None):
        cfg = self.config
        if h.ndim != 3 or h.shape[-1] != cfg.dim:
            raise ValueError(f"transformer input must be (B, T, {cfg.dim}), got {tuple(h.shape)}")
        offset = 0 if cache is None else cache.length
        if cache is not None and offset + h.shape[1] > cache.capacity:
            raise ValueError(f"the cache holds {cache.capacity} positions; {offset} + {h.shape[1]} do not fit")
        h = self.drop(self.embed_positions(h, offset))
        for i, block in enumerate(self.blocks):
            h = block(h, None if cache is None else (cache.keys[i], cache.values[i]), offset)
        if cache is not None:
            cache.length += h.shape[1]
        return h if self.final_norm is None else self.final_norm(h)
