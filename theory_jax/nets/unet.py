"""The DDPM U-Net (Ho et al. 2020, appendix B; Nichol & Dhariwal 2021) in flax (linen), images NHWC.

The twin of ``practice_torch/nets/unet.py``: same class names, fields and attribute names, so
``shared_specs.interop`` maps every weight one-to-one (torch ``down.3.conv_1`` <-> flax ``down_3/conv_1``).
The convention traps are pinned down explicitly here: GroupNorm epsilon 1e-5 (torch's; flax's default is
1e-6) with two-pass variance, conv padding given as explicit pairs (never 'SAME'), nearest upsampling by
repetition, attention tokens in (h, w) row-major order like torch's ``flatten(2)``, exact SiLU, skip
concatenation [h | skip] on the channel axis, and the timestep embedding in blocks [sin | cos].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

GROUPNORM_EPS = 1e-5  # torch's default; flax's default is 1e-6 (docs/ARCHITECTURE.md, "Convention traps")
PAD_1 = ((1, 1), (1, 1))  # torch's padding=1 on both sides of H and W


def timestep_frequencies(dim: int) -> np.ndarray:
    """w_i = 10000^(-i / (dim/2)), i = 0..dim/2-1 (Vaswani et al. 2017, sec. 3.5), in float64 by NumPy. (dim/2,)."""
    half = dim // 2
    return np.exp(-math.log(10000.0) * np.arange(half) / half)


def timestep_embedding(t, dim: int):
    """[sin(t w) | cos(t w)] (Ho et al.'s block order). t: (B,) any real -> (B, dim), float32 for integer t."""
    dtype = jnp.promote_types(t.dtype, jnp.float32)
    angles = t.astype(dtype)[:, None] * jnp.asarray(timestep_frequencies(dim), dtype=dtype)[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def group_norm(groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, epsilon=GROUPNORM_EPS, use_fast_variance=False)


class TimeEmbedding(nn.Module):
    """t: (B,) -> sinusoid (B, C) -> Dense -> SiLU -> Dense -> (B, 4C)."""

    channels: int

    def setup(self):
        self.linear_1 = nn.Dense(4 * self.channels)
        self.linear_2 = nn.Dense(4 * self.channels)

    def __call__(self, t):
        return self.linear_2(nn.silu(self.linear_1(timestep_embedding(t, self.channels))))


class ConditionEmbedding(nn.Module):
    """c: (B, P) -> Dense -> SiLU -> Dense -> (B, E): a continuous condition added to the time embedding."""

    emb: int

    def setup(self):
        self.linear_1 = nn.Dense(self.emb)
        self.linear_2 = nn.Dense(self.emb)

    def __call__(self, c):
        return self.linear_2(nn.silu(self.linear_1(c)))


class AttentionBlock(nn.Module):
    """x + out(softmax(q k^T / sqrt(d)) v) over the H W positions on GroupNorm(x); ``qkv`` output blocks
    [q | k | v], each split into ``heads`` heads of d = C / heads. x: (B, H, W, C) -> (B, H, W, C)."""

    channels: int
    heads: int = 1
    groups: int = 8

    def setup(self):
        self.norm = group_norm(self.groups)
        self.qkv = nn.Dense(3 * self.channels)
        self.out = nn.Dense(self.channels)

    def __call__(self, x):
        b, h, w, c = x.shape
        d = c // self.heads
        tokens = self.norm(x).reshape(b, h * w, c)  # position index h * W + w, as torch's flatten(2)
        qkv = self.qkv(tokens).reshape(b, h * w, 3, self.heads, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, HW, heads, d)
        weights = nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d), axis=-1)
        a = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, h * w, c)
        return x + self.out(a).reshape(b, h, w, c)


class CrossAttentionBlock(nn.Module):
    """x + out(softmax(q k^T / sqrt(d)) v) where the H W positions of x ask and the S tokens of ``context`` answer
    (Rombach et al. 2022, eq. 3) on GroupNorm(x); ``kv`` output blocks [k | v], each split into ``heads`` heads of
    d = C / heads; -inf logits at padded tokens (mask False), so their weights are exactly 0.
    x: (B, H, W, C), context: (B, S, D), mask: (B, S) bool or None -> (B, H, W, C)."""

    channels: int
    context_dim: int  # D: flax infers it from ``context``; kept so both twins take the same settings
    heads: int = 1
    groups: int = 8

    def setup(self):
        self.norm = group_norm(self.groups)
        self.q = nn.Dense(self.channels)
        self.kv = nn.Dense(2 * self.channels)
        self.out = nn.Dense(self.channels)

    def __call__(self, x, context, mask=None):
        b, h, w, c = x.shape
        d = c // self.heads
        q = self.q(self.norm(x).reshape(b, h * w, c)).reshape(b, h * w, self.heads, d)  # (B, HW, heads, d)
        kv = self.kv(context).reshape(b, context.shape[1], 2, self.heads, d)
        k, v = kv[:, :, 0], kv[:, :, 1]  # (B, S, heads, d)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d)
        if mask is not None:
            logits = jnp.where(mask[:, None, None, :], logits, -jnp.inf)
        a = jnp.einsum("bhqk,bkhd->bqhd", nn.softmax(logits, axis=-1), v).reshape(b, h * w, c)
        return x + self.out(a).reshape(b, h, w, c)


class ResBlock(nn.Module):
    """h = conv_1(SiLU(norm_1(x))) + emb_proj(SiLU(emb)); h = conv_2(dropout(SiLU(norm_2(h)))); x' + h with x' = x
    or a 1x1 ``shortcut``; then self-attention when ``attention``, and cross-attention to ``context`` when
    ``context_dim`` > 0 too. x: (B, H, W, C_in), emb: (B, E), context: (B, S, D), mask: (B, S) -> (B, H, W, C_out)."""

    in_channels: int
    out_channels: int
    emb_dim: int
    groups: int = 8
    dropout: float = 0.0
    attention: bool = False
    heads: int = 1
    context_dim: int = 0

    def setup(self):
        self.norm_1 = group_norm(self.groups)
        self.conv_1 = nn.Conv(self.out_channels, (3, 3), padding=PAD_1)
        self.emb_proj = nn.Dense(self.out_channels)
        self.norm_2 = group_norm(self.groups)
        self.drop = nn.Dropout(self.dropout)
        self.conv_2 = nn.Conv(self.out_channels, (3, 3), padding=PAD_1)
        self.shortcut = nn.Conv(self.out_channels, (1, 1)) if self.in_channels != self.out_channels else None
        self.attn = AttentionBlock(self.out_channels, self.heads, self.groups) if self.attention else None
        self.cross = (CrossAttentionBlock(self.out_channels, self.context_dim, self.heads, self.groups)
                      if self.attention and self.context_dim else None)

    def __call__(self, x, emb, train: bool = False, context=None, mask=None):
        h = self.conv_1(nn.silu(self.norm_1(x)))
        h = h + self.emb_proj(nn.silu(emb))[:, None, None, :]
        h = self.conv_2(self.drop(nn.silu(self.norm_2(h)), deterministic=not train))
        h = h + (x if self.shortcut is None else self.shortcut(x))
        h = h if self.attn is None else self.attn(h)
        return h if self.cross is None else self.cross(h, context, mask)


class Downsample(nn.Module):
    """3x3 conv, stride 2, padding 1 on each side. (B, H, W, C) -> (B, H/2, W/2, C)."""

    channels: int

    @nn.compact
    def __call__(self, x):
        return nn.Conv(self.channels, (3, 3), strides=(2, 2), padding=PAD_1, name="conv")(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 (each pixel repeated), then a 3x3 conv. (B, H, W, C) -> (B, 2H, 2W, C)."""

    channels: int

    @nn.compact
    def __call__(self, x):
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return nn.Conv(self.channels, (3, 3), padding=PAD_1, name="conv")(x)


class UNet(nn.Module):
    """eps_theta(x, t[, y][, cond][, context]); fields as ``practice_torch.nets.UNetConfig``.
    x: (B, H, W, in_channels), t: (B,) float or int, y: (B,) int or None (the null token),
    cond: (B, cond_dim) or None, context: (B, S, context_dim) token states with context_mask (B, S) bool or None
    (when context_dim > 0) -> (B, H, W, out_channels)."""

    in_channels: int = 1
    out_channels: int = 1
    channels: int = 32
    channel_mults: Sequence[int] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_levels: Sequence[int] = (2,)
    heads: int = 1
    groups: int = 8
    dropout: float = 0.0
    num_classes: int = 0
    cond_dim: int = 0
    context_dim: int = 0

    def setup(self):
        c, emb, levels = self.channels, 4 * self.channels, len(self.channel_mults)
        self.time_embedding = TimeEmbedding(c)
        self.class_embedding = nn.Embed(self.num_classes + 1, emb) if self.num_classes else None
        self.cond_embedding = ConditionEmbedding(emb) if self.cond_dim else None
        self.conv_in = nn.Conv(c, (3, 3), padding=PAD_1)

        def res(i: int, o: int, attention: bool) -> ResBlock:
            return ResBlock(i, o, emb, self.groups, self.dropout, attention, self.heads, self.context_dim)

        down, skips, ch = [], [c], c
        for level, mult in enumerate(self.channel_mults):
            for _ in range(self.num_res_blocks):
                down.append(res(ch, c * mult, level in self.attention_levels))
                ch = c * mult
                skips.append(ch)
            if level < levels - 1:
                down.append(Downsample(ch))
                skips.append(ch)
        self.down = down
        self.mid = [res(ch, ch, True), res(ch, ch, False)]
        up = []
        for level, mult in reversed(list(enumerate(self.channel_mults))):
            for _ in range(self.num_res_blocks + 1):
                up.append(res(ch + skips.pop(), c * mult, level in self.attention_levels))
                ch = c * mult
            if level > 0:
                up.append(Upsample(ch))
        self.up = up
        self.norm_out = group_norm(self.groups)
        self.conv_out = nn.Conv(self.out_channels, (3, 3), padding=PAD_1)

    def embed(self, t, y=None, cond=None):
        """Time (+ class, + condition) embedding. t: (B,), y: (B,) int or None (the null token, row num_classes),
        cond: (B, cond_dim) or None -> (B, 4C)."""
        emb = self.time_embedding(t)
        p = self.cond_dim
        if (cond is None) != (p == 0) or (cond is not None and tuple(cond.shape) != (t.shape[0], p)):
            got = "None" if cond is None else tuple(cond.shape)
            raise ValueError(f"this U-Net takes cond of shape ({t.shape[0]}, {p}), got {got}" if p
                             else "this U-Net has cond_dim=0: pass cond=None")
        if p:
            emb = emb + self.cond_embedding(cond)
        if not self.num_classes:
            if y is not None:
                raise ValueError("this U-Net is unconditional (num_classes=0): pass y=None")
            return emb
        y = jnp.full(t.shape[:1], self.num_classes, dtype=jnp.int32) if y is None else y
        return emb + self.class_embedding(y)

    def __call__(self, x, t, y=None, cond=None, train: bool = False, context=None, context_mask=None):
        scale = 2 ** (len(self.channel_mults) - 1)
        if x.ndim != 4 or x.shape[-1] != self.in_channels or x.shape[1] % scale or x.shape[2] % scale:
            raise ValueError(f"U-Net input must be (B, H, W, {self.in_channels}) with H and W divisible by {scale}, "
                             f"got {tuple(x.shape)}")
        # t's sinusoid in the images' precision (at least float32), as the torch twin computes it in its weights'
        t = jnp.broadcast_to(jnp.asarray(t), x.shape[:1]).astype(jnp.promote_types(x.dtype, jnp.float32))
        check_context(context, self.context_dim, x.shape[0])
        emb = self.embed(t, y, cond)
        c = (train, context, context_mask)
        h = self.conv_in(x)
        skips = [h]
        for block in self.down:
            h = block(h, emb, *c) if isinstance(block, ResBlock) else block(h)
            skips.append(h)
        for block in self.mid:
            h = block(h, emb, *c)
        for block in self.up:
            h = block(jnp.concatenate([h, skips.pop()], axis=-1), emb, *c) if isinstance(block, ResBlock) else block(h)
        return self.conv_out(nn.silu(self.norm_out(h)))


def check_context(context, context_dim: int, batch: int) -> None:
    """A one-line ValueError unless ``context`` is (batch, S, context_dim) when context_dim > 0 and None otherwise."""
    if context_dim == 0 and context is not None:
        raise ValueError("this U-Net has context_dim=0: pass context=None")
    if context_dim and (context is None or context.ndim != 3 or context.shape[0] != batch
                        or context.shape[2] != context_dim):
        got = None if context is None else tuple(context.shape)
        raise ValueError(f"this U-Net cross-attends to context of shape ({batch}, S, {context_dim}), got {got}")
