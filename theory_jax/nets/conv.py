"""Layers of the flax conv twins (channels last) in the forms XLA's CPU backend runs fast: the same parameters as
flax's layers, the same numbers (to the bit, or to float round-off where a sum is taken in another order), less time
per training step. Times below: the conv VAE of ``python -m benchmarks vae_step`` (batch 128, 28 x 28, channels
(32, 64)) on one core.

1. ``ConvTranspose``, torch's ``ConvTranspose2d``. With stride s, torch's padding p and output padding q, and a
   k x k kernel w (k, k, O, I) as flax's ``ConvTranspose(transpose_kernel=True)`` stores it (torch's (I, O, k, k)
   weight permuted by ``shared_specs.interop``), the transposed convolution of x (N, H, W, I) is

       y[n, t, u, o] = sum_{h, v, i} x[n, h, v, i] w[t + p - s h, u + p - s v, o, i],   w = 0 outside [0, k)^2,

   t < H' = (H - 1) s - 2p + k + q (u likewise): each input pixel's x[n, h, v] @ w[a, b]^T added at
   (s h + a - p, s v + b - p); in x, the adjoint of the strided convolution of an (N, H', W', O) map by w.
   ``jax.lax.conv_transpose`` computes it as a convolution of x dilated by s (``lhs_dilation``), and reverse-mode AD
   takes its kernel gradient as another convolution of that dilated x, which XLA's CPU backend runs on a slow generic
   path: 66 ms for the VAE's 64 -> 32 channel layer (7 -> 14 pixels), against 2.5 ms for its input gradient.
   ``conv_transpose`` keeps the forward pass (``lax.conv_transpose``, the very call flax makes) and defines its
   derivative (``jax.custom_jvp``) with the kernel's part written with the roles of input and kernel swapped
   (``conv_transpose_swapped``): w zero-padded, as an image, correlated with x flipped and dilated by s, as a filter.
   Linear in w, it transposes to the correlation of the cotangent g (N, H', W', O) with x dilated by s,

       dL/dw[a, b, o, i] = sum_{n, h, v} g[n, s h + a - p, s v + b - p, o] x[n, h, v, i],

   the strided convolution's own kernel gradient, on XLA's fast path (3.5 ms for that layer).
2. ``GroupNorm`` (Wu & He 2018), torch's and flax's ``GroupNorm(use_fast_variance=False)``: per example n and group g
   of C/G channels, mean m and two-pass variance v = mean((x - m)^2) over H, W and the group's channels, then
   (x - m) / sqrt(v + eps) * scale + bias. ``group_norm`` sums over H, W first, per channel (the middle axis of
   (N, HW, C), which XLA vectorises over C), then over each group's C/G channels; flax reduces (N, H, W, G, C/G)
   over three axes at once, about 0.8 ms a statistic at (128, 14, 14, 32) against 0.06 ms.
3. ``UnflattenDense``, torch's ``Linear`` to C H W features viewed as a (C, H, W) map: the kernel's columns (d C H W
   numbers) permuted to channels-last order instead of the output (B C H W numbers), which spares XLA a transpose of
   the activations and of their gradient, each fused with their neighbours' work (about 2 ms).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.linen.dtypes import promote_dtype


# 1. The transposed convolution ------------------------------------------------------------------------------------
def conv_transpose_lax(x, w, stride: int, padding: int, output_padding: int):
    """``lax.conv_transpose`` as flax's ``ConvTranspose(transpose_kernel=True)`` calls it, torch's padding (p, q) as
    flax's explicit padding (k - 1 - p, k - 1 - p + q). x: (N, H, W, I), w: (k, k, O, I) -> (N, H', W', O)."""
    k = w.shape[0]
    pad = [(k - 1 - padding, k - 1 - padding + output_padding)] * 2
    return jax.lax.conv_transpose(x, w, (stride, stride), pad, rhs_dilation=(1, 1), transpose_kernel=True)


def conv_transpose_swapped(x, w, stride: int, padding: int, output_padding: int):
    """The same transposed convolution with the roles of input and kernel swapped: w, zero-padded by
    (s (H - 1) - p, s (H - 1) - p + q) a side, its O the batch and its I the features, correlated with x flipped and
    dilated by s, its N the output features: y[n, t, o] = sum_{h, i} w[t + p - s h, o, i] x[n, h, i] (one spatial
    axis shown). x: (N, H, W, I), w: (k, k, O, I) -> (N, H', W', O)."""
    s, p, q = stride, padding, output_padding
    pad = [(s * (size - 1) - p, s * (size - 1) - p + q) for size in x.shape[1:3]]
    return jax.lax.conv_general_dilated(w, jnp.flip(x, (1, 2)), (1, 1), pad, rhs_dilation=(s, s),
                                        dimension_numbers=("HWNC", "OHWI", "CHWN"))


@partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def conv_transpose(x, w, stride: int, padding: int, output_padding: int):
    """torch's ``conv_transpose2d(x, w, stride=s, padding=p, output_padding=q)``, channels last: the forward pass by
    ``conv_transpose_lax``, the kernel's derivative by ``conv_transpose_swapped``. x: (N, H, W, I), w: (k, k, O, I)
    -> (N, H', W', O)."""
    return conv_transpose_lax(x, w, stride, padding, output_padding)


@conv_transpose.defjvp
def _conv_transpose_jvp(stride, padding, output_padding, primals, tangents):
    """d(x (*) w) = dx (*) w + x (*) dw, bilinear: the input's part by ``lax.conv_transpose`` (its transpose, the
    strided convolution of the cotangent by w), the kernel's by ``conv_transpose_swapped`` (its transpose, the
    cotangent correlated with x dilated by s)."""
    (x, w), (dx, dw) = primals, tangents
    y = conv_transpose_lax(x, w, stride, padding, output_padding)
    return y, (conv_transpose_lax(dx, w, stride, padding, output_padding)
               + conv_transpose_swapped(x, dw, stride, padding, output_padding))


class ConvTranspose(nn.Module):
    """``flax.linen.ConvTranspose(features, kernel_size, strides, padding, transpose_kernel=True)`` for a square kernel,
    equal strides and the same explicit padding pair (lo, hi) = (k - 1 - p, k - 1 - p + q) on both axes, computed by
    ``conv_transpose``: the same parameters (``kernel`` (k, k, features, in), lecun-normal; ``bias`` (features,),
    zeros; float32), the same forward pass to the bit, a faster kernel gradient. x: (N, H, W, in) -> (N, H', W',
    features)."""

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        k, (lo, hi) = self.kernel_size[0], self.padding[0]
        if (tuple(self.kernel_size) != (k, k) or self.strides[0] != self.strides[1]
                or tuple(self.padding[1]) != (lo, hi) or not 0 <= lo <= min(hi, k - 1)):
            raise ValueError(f"ConvTranspose takes a square kernel, equal strides and one padding pair (lo, hi) for "
                             f"both axes, 0 <= lo <= k - 1 and lo <= hi (torch's p >= 0, q >= 0); got kernel "
                             f"{self.kernel_size}, strides {self.strides}, padding {self.padding}")
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, self.features, x.shape[-1]), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32) if self.use_bias else None
        x, kernel, bias = promote_dtype(x, kernel, bias)  # as flax's: float64 weights or inputs compute in float64
        y = conv_transpose(x, kernel, self.strides[0], k - 1 - lo, hi - lo)
        return y if bias is None else y + bias.reshape((1, 1, 1, -1))


# 2. Group normalisation -------------------------------------------------------------------------------------------
def group_norm(x, scale, bias, groups: int, epsilon: float):
    """(x - m) / sqrt(v + eps) * scale + bias, m and v the mean and two-pass variance of each example's group of C/G
    channels over every other axis, each sum taken per channel first. x: (N, ..., C), scale, bias: (C,) -> as x."""
    n, c = x.shape[0], x.shape[-1]
    flat = x.reshape(n, -1, c)
    count = flat.shape[1] * (c // groups)

    def group_mean(per_channel):  # (N, C) sums over the spatial axes -> (N, 1, C): each channel its group's mean
        return jnp.repeat(per_channel.reshape(n, groups, -1).sum(-1) / count, c // groups, axis=1)[:, None, :]

    centred = flat - group_mean(flat.sum(1))
    variance = group_mean((centred * centred).sum(1))
    return (centred * (jax.lax.rsqrt(variance + epsilon) * scale) + bias).reshape(x.shape)


class GroupNorm(nn.Module):
    """``flax.linen.GroupNorm(num_groups, epsilon, use_fast_variance=False)`` computed by ``group_norm``: the same
    parameters (``scale`` (C,), ones; ``bias`` (C,), zeros; float32). x: (N, ..., C) -> as x."""

    num_groups: int
    epsilon: float

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        if c % self.num_groups:
            raise ValueError(f"GroupNorm: {c} channels do not split into {self.num_groups} groups")
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        x, scale, bias = promote_dtype(x, scale, bias)
        return group_norm(x, scale, bias, self.num_groups, self.epsilon)


# 3. A linear layer to a (C, H, W) map -----------------------------------------------------------------------------
class UnflattenDense(nn.Module):
    """``flax.linen.Dense(C H W)`` whose outputs, in torch's (C, H, W) order, are returned as a channels-last map:
    the same parameters (``kernel`` (d, C H W), lecun-normal; ``bias`` (C H W,), zeros; float32) and the same
    numbers, bit for bit, as ``Dense`` then ``theory_jax.vae.unflatten_image``, with the kernel's columns permuted
    instead of the output. h: (B, d) -> (B, H, W, C)."""

    shape: Sequence[int]  # (C, H, W)

    @nn.compact
    def __call__(self, h):
        c, hgt, wid = self.shape
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (h.shape[-1], c * hgt * wid), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c * hgt * wid,), jnp.float32)
        h, kernel, bias = promote_dtype(h, kernel, bias)

        def channels_last(a):  # (..., C H W) -> (..., H W C)
            return jnp.moveaxis(a.reshape(*a.shape[:-1], c, hgt, wid), -3, -1).reshape(a.shape)

        y = jax.lax.dot_general(h, channels_last(kernel), (((h.ndim - 1,), (0,)), ((), ())))
        return (y + channels_last(bias)).reshape(-1, hgt, wid, c)
