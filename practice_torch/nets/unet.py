"""The DDPM U-Net (Ho et al. 2020, appendix B; Nichol & Dhariwal 2021): the denoiser eps_theta(x_t, t[, y]).

The twin of ``theory_jax/nets/unet.py`` (flax, NHWC): same class and attribute names, so
``shared_specs.interop`` maps every weight one-to-one. Layout (C = ``channels``, E = 4 C):

* time: sinusoidal embedding of a float t (dimension C, blocks sin | cos) -> Linear -> SiLU -> Linear -> (B, E);
  with ``num_classes = K > 0`` a class embedding of K + 1 rows is added (row K: the null token, y = None);
  with ``cond_dim = P > 0`` a continuous condition c: (B, P) (e.g. physical parameters) is embedded by
  Linear -> SiLU -> Linear to E and added too (Dhariwal & Nichol's conditioning by adding to the time embedding);
  with ``context_dim = D > 0`` every residual block with self-attention (the ``attention_levels`` and the middle)
  then cross-attends to a sequence of token states (B, S, D) with a padding mask (B, S) (``CrossAttentionBlock``:
  stable diffusion's text conditioning, Rombach et al. 2022, eq. 3);
* ``conv_in`` 3x3; ``down``: per level ``num_res_blocks`` residual blocks (self-attention after them at
  ``attention_levels``), then a strided 3x3 conv except at the last level; every output is kept for a skip;
* ``mid``: residual block, self-attention, residual block;
* ``up``: per level (deepest first) ``num_res_blocks + 1`` residual blocks on [h, skip] concatenated, then
  nearest-neighbour x2 + 3x3 conv except at level 0; ``norm_out``, SiLU, ``conv_out`` 3x3 (zero-initialised).

Residual block: GroupNorm, SiLU, conv 3x3, + Linear(SiLU(emb)), GroupNorm, SiLU, dropout, conv 3x3 (zero-init),
plus a 1x1 conv shortcut when the width changes. GroupNorm eps is 1e-5 everywhere (flax's default is 1e-6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

GROUPNORM_EPS = 1e-5


@dataclass(frozen=True)
class UNetConfig:
    """Widths of the U-Net: level i has ``channels * channel_mults[i]`` channels at resolution H / 2^i."""

    in_channels: int = 1
    out_channels: int = 1
    channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (2,)
    heads: int = 1
    groups: int = 8
    dropout: float = 0.0
    num_classes: int = 0
    cond_dim: int = 0  # width of a continuous condition vector (0: none)
    context_dim: int = 0  # width of the token states the attention levels cross-attend to (0: none)

    def check(self) -> UNetConfig:
        """This config, or a one-line ValueError naming what is wrong."""
        widths = [self.channels * m for m in self.channel_mults]
        if not widths or min(widths) <= 0 or self.channels % 2:
            raise ValueError(f"U-Net channels must be a positive even number and channel_mults non-empty, got "
                             f"channels={self.channels}, channel_mults={self.channel_mults}")
        if any(w % self.groups for w in widths):
            raise ValueError(f"U-Net widths {widths} must be divisible by groups={self.groups} (GroupNorm)")
        if max(widths) == self.groups:  # each block adds the embedding per channel, then a GroupNorm of one channel
            raise ValueError(f"U-Net widths {widths} are all groups={self.groups}: a GroupNorm of one channel a group "
                             f"removes the time and class embedding each block adds; use channels >= "
                             f"{2 * self.groups} or a channel_mults above 1")
        bad = [a for a in self.attention_levels if not 0 <= a < len(widths)]
        if bad:
            raise ValueError(f"U-Net attention_levels {bad} outside the {len(widths)} levels 0..{len(widths) - 1}")
        if any(widths[a] % self.heads for a in (*self.attention_levels, len(widths) - 1)):
            raise ValueError(f"U-Net heads={self.heads} must divide the width of every attention level")
        if (self.num_res_blocks < 1 or self.num_classes < 0 or min(self.cond_dim, self.context_dim) < 0
                or not 0 <= self.dropout < 1):
            raise ValueError(f"U-Net needs num_res_blocks >= 1, num_classes, cond_dim and context_dim >= 0 and "
                             f"0 <= dropout < 1, got {self.num_res_blocks}, {self.num_classes}, {self.cond_dim}, "
                             f"{self.context_dim}, {self.dropout}")
        return self


def timestep_frequencies(dim: int) -> np.ndarray:
    """w_i = 10000^(-i / (dim/2)), i = 0..dim/2-1: the Transformer's frequencies (Vaswani et al. 2017, sec. 3.5),
    computed once in float64 by NumPy so both backends use the same rounded float32 values. (dim/2,)."""
    half = dim // 2
    return np.exp(-math.log(10000.0) * np.arange(half) / half)


def timestep_embedding(t, dim: int, dtype=torch.float32, frequencies: torch.Tensor | None = None):
    """[sin(t w_0..w_{d/2-1}) | cos(t w_0..w_{d/2-1})] (Ho et al.'s block order, not interleaved).
    t: (B,) any real (an index or a noise level) -> (B, dim). ``frequencies``: ``timestep_frequencies(dim)`` as a
    float64 tensor already on t's device (``frequency_buffer``), which a network keeps so that its forward pass
    neither copies them from the host each call nor runs NumPy inside a compiled graph; rounded to ``dtype`` here,
    as from the NumPy array."""
    if frequencies is None:
        frequencies = torch.as_tensor(timestep_frequencies(dim), device=t.device)
    angles = t.to(dtype)[:, None] * frequencies.to(dtype)[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def frequency_buffer(module: nn.Module, dim: int) -> None:
    """``module.frequencies``: ``timestep_frequencies(dim)`` in float64 as a buffer that moves with the module and is
    not saved (``persistent=False``: checkpoints and the converter see the same weights as before)."""
    module.register_buffer("frequencies", torch.as_tensor(timestep_frequencies(dim), dtype=torch.float64),
                           persistent=False)


class TimeEmbedding(nn.Module):
    """t: (B,) -> sinusoid (B, C) -> Linear -> SiLU -> Linear -> (B, 4C)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.linear_1 = nn.Linear(channels, 4 * channels)
        self.linear_2 = nn.Linear(4 * channels, 4 * channels)
        frequency_buffer(self, channels)

    def forward(self, t):
        sinusoid = timestep_embedding(t, self.channels, self.linear_1.weight.dtype, self.frequencies)
        return self.linear_2(F.silu(self.linear_1(sinusoid)))


class ConditionEmbedding(nn.Module):
    """c: (B, P) -> Linear -> SiLU -> Linear -> (B, E): a continuous condition added to the time embedding."""

    def __init__(self, cond_dim: int, emb: int):
        super().__init__()
        self.linear_1 = nn.Linear(cond_dim, emb)
        self.linear_2 = nn.Linear(emb, emb)

    def forward(self, c):
        return self.linear_2(F.silu(self.linear_1(c)))


class AttentionBlock(nn.Module):
    """x + out(softmax(q k^T / sqrt(d)) v) over the H W positions, ``heads`` heads of d = C / heads, on
    GroupNorm(x); q, k, v from one Linear ``qkv`` (output blocks [q | k | v], each split into heads).
    x: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, heads: int = 1, groups: int = 8):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels, eps=GROUPNORM_EPS)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C), position index h * W + w
        q, k, v = self.qkv(tokens).view(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, d)
        a = self.out(a.transpose(1, 2).reshape(b, h * w, c))
        return x + a.transpose(1, 2).reshape(b, c, h, w)


class CrossAttentionBlock(nn.Module):
    """x + out(softmax(q k^T / sqrt(d)) v) where the H W positions of x ask and the S tokens of ``context`` answer
    (Rombach et al. 2022, eq. 3: Q = W_Q norm(x), K = W_K c, V = W_V c), ``heads`` heads of d = C / heads, on
    GroupNorm(x); k, v from one Linear ``kv`` (output blocks [k | v], each split into heads). A padded token (mask
    False) gets weight exactly 0; every row of the mask keeps at least one token (a caption's start token).
    x: (B, C, H, W), context: (B, S, D), mask: (B, S) bool or None -> (B, C, H, W)."""

    def __init__(self, channels: int, context_dim: int, heads: int = 1, groups: int = 8):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels, eps=GROUPNORM_EPS)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, context, mask=None):
        b, c, h, w = x.shape
        d = c // self.heads
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C), position index h * W + w
        q = self.q(tokens).view(b, h * w, self.heads, d).transpose(1, 2)  # (B, heads, HW, d)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.heads, d).permute(2, 0, 3, 1, 4)  # (B, heads, S, d)
        allowed = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, S): True takes part
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, heads, HW, d)
        a = self.out(a.transpose(1, 2).reshape(b, h * w, c))
        return x + a.transpose(1, 2).reshape(b, c, h, w)


class ResBlock(nn.Module):
    """h = conv_1(SiLU(norm_1(x))) + emb_proj(SiLU(emb)); h = conv_2(dropout(SiLU(norm_2(h)))); x' + h with x' = x
    or a 1x1 ``shortcut``; then self-attention when ``attention``, and cross-attention to ``context`` when
    ``context_dim`` > 0 too. x: (B, C_in, H, W), emb: (B, E), context: (B, S, D), mask: (B, S) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, groups: int = 8, dropout: float = 0.0,
                 attention: bool = False, heads: int = 1, context_dim: int = 0):
        super().__init__()
        self.norm_1 = nn.GroupNorm(groups, in_channels, eps=GROUPNORM_EPS)
        self.conv_1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_channels)
        self.norm_2 = nn.GroupNorm(groups, out_channels, eps=GROUPNORM_EPS)
        self.dropout = nn.Dropout(dropout)
        self.conv_2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_2.weight)
        nn.init.zeros_(self.conv_2.bias)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.attn = AttentionBlock(out_channels, heads, groups) if attention else None
        self.cross = CrossAttentionBlock(out_channels, context_dim, heads, groups) if attention and context_dim else None

    def forward(self, x, emb, context=None, mask=None):
        h = self.conv_1(F.silu(self.norm_1(x)))
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv_2(self.dropout(F.silu(self.norm_2(h))))
        h = h + (x if self.shortcut is None else self.shortcut(x))
        h = h if self.attn is None else self.attn(h)
        return h if self.cross is None else self.cross(h, context, mask)


class Downsample(nn.Module):
    """3x3 conv, stride 2, padding 1 on each side. (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv (padding 1). (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    """eps_theta(x, t[, y][, cond][, context]). ``UNet(UNetConfig(...))`` or ``UNet(**fields)`` (the spec cases build
    it that way).

    forward(x: (B, in_channels, H, W), t: (B,) float or long, y: (B,) long or None, cond: (B, cond_dim) float
    (required when cond_dim > 0), context: (B, S, context_dim) token states and context_mask: (B, S) bool (True: a
    real token; None: all real), required when context_dim > 0) -> (B, out_channels, H, W); H and W divisible by
    2^(levels - 1)."""

    def __init__(self, config: UNetConfig | None = None, **overrides):
        super().__init__()
        known = {f.name for f in fields(UNetConfig)}
        if set(overrides) - known:
            raise ValueError(f"unknown U-Net settings {sorted(set(overrides) - known)}; known: {sorted(known)}")
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        self.config = cfg = replace(config or UNetConfig(), **overrides).check()
        c, emb, g, levels = cfg.channels, 4 * cfg.channels, cfg.groups, len(cfg.channel_mults)
        self.time_embedding = TimeEmbedding(c)
        self.class_embedding = nn.Embedding(cfg.num_classes + 1, emb) if cfg.num_classes else None
        self.cond_embedding = ConditionEmbedding(cfg.cond_dim, emb) if cfg.cond_dim else None
        self.conv_in = nn.Conv2d(cfg.in_channels, c, 3, padding=1)

        def res(i: int, o: int, attention: bool) -> ResBlock:
            return ResBlock(i, o, emb, g, cfg.dropout, attention, cfg.heads, cfg.context_dim)

        self.down, skips, ch = nn.ModuleList(), [c], c
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                self.down.append(res(ch, c * mult, level in cfg.attention_levels))
                ch = c * mult
                skips.append(ch)
            if level < levels - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)
        self.mid = nn.ModuleList([res(ch, ch, True), res(ch, ch, False)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(res(ch + skips.pop(), c * mult, level in cfg.attention_levels))
                ch = c * mult
            if level > 0:
                self.up.append(Upsample(ch))
        self.norm_out = nn.GroupNorm(g, ch, eps=GROUPNORM_EPS)
        self.conv_out = nn.Conv2d(ch, cfg.out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, t, y=None, batch: int | None = None, cond=None):
        """Time (+ class, + condition) embedding. t: (B,) or a scalar, y: (B,) long or None (the null token),
        cond: (B, cond_dim) or None -> (B, 4C)."""
        t = torch.as_tensor(t, device=self.conv_in.weight.device)
        t = t.expand(batch) if t.ndim == 0 and batch is not None else t
        emb = self.time_embedding(t)
        p = self.config.cond_dim
        if (cond is None) != (p == 0) or (cond is not None and tuple(cond.shape) != (len(t), p)):
            got = "None" if cond is None else tuple(cond.shape)
            raise ValueError(f"this U-Net takes cond of shape ({len(t)}, {p}), got {got}" if p
                             else "this U-Net has cond_dim=0: pass cond=None")
        if p:
            emb = emb + self.cond_embedding(cond.to(emb.dtype))
        k = self.config.num_classes
        if k == 0:
            if y is not None:
                raise ValueError("this U-Net is unconditional (num_classes=0): pass y=None")
            return emb
        y = torch.full((len(t),), k, dtype=torch.long, device=emb.device) if y is None else y.long()
        return emb + self.class_embedding(y)

    def forward(self, x, t, y=None, cond=None, context=None, context_mask=None):
        cfg = self.config
        scale = 2 ** (len(cfg.channel_mults) - 1)
        if x.ndim != 4 or x.shape[1] != cfg.in_channels or x.shape[2] % scale or x.shape[3] % scale:
            raise ValueError(f"U-Net input must be (B, {cfg.in_channels}, H, W) with H and W divisible by {scale}, "
                             f"got {tuple(x.shape)}")
        check_context(context, cfg.context_dim, x.shape[0])
        emb = self.embed(t, y, batch=x.shape[0], cond=cond)
        c = (context, context_mask)
        h = self.conv_in(x)
        skips = [h]
        for block in self.down:
            h = block(h, emb, *c) if isinstance(block, ResBlock) else block(h)
            skips.append(h)
        for block in self.mid:
            h = block(h, emb, *c)
        for block in self.up:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, *c) if isinstance(block, ResBlock) else block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def check_context(context, context_dim: int, batch: int) -> None:
    """A one-line ValueError unless ``context`` is (batch, S, context_dim) when context_dim > 0 and None otherwise."""
    if context_dim == 0 and context is not None:
        raise ValueError("this U-Net has context_dim=0: pass context=None")
    if context_dim and (context is None or context.ndim != 3 or context.shape[0] != batch
                        or context.shape[2] != context_dim):
        got = None if context is None else tuple(context.shape)
        raise ValueError(f"this U-Net cross-attends to context of shape ({batch}, S, {context_dim}), got {got}")
