"""WaveNet: mu-law companding, dilated causal convolutions, gated residual blocks with a global condition.

Lectures: autoregressive audio; WaveNet (van den Oord et al. 2016, "WaveNet: a generative model for raw audio"):
p(x) = prod_t p(x_t | x_1, ..., x_{t-1}, h) (eq. 1, with the condition h of eq. 3), a 256-way softmax over mu-law
levels (eq. 2, ITU-T G.711), dilated causal convolutions (section 2.1), the gated activation unit and residual and
skip connections (sections 2.3-2.4), global conditioning (section 2.5).

Pure JAX functions with the same names and arguments as ``practice_torch/wavenet/functions.py``; kernels are in the
torch layout (O, C, K) and signals NCT, so the spec cases hand the same arrays to both. The derivation
(``theory_jax/derivations/wavenet.py``) checks: the companding inverse (SymPy and numerically), its derivative, the
quantisation error bound in the mu-law and in the waveform domain, the causal convolution against a brute-force sum,
causality and the receptive field of a stack of gated residual blocks measured by autodiff gradients (and a centred
padding caught leaking the future).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


# 1. mu-law companding ------------------------------------------------------------------------------------------------
def mu_law_compand(x, mu: float = 255.0):
    """f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu), x in [-1, 1] -> [-1, 1] (WaveNet eq. 2). Any shape."""
    return jnp.sign(x) * jnp.log1p(mu * jnp.abs(x)) / math.log1p(mu)


def mu_law_expand(y, mu: float = 255.0):
    """The inverse of ``mu_law_compand``: x = sign(y) ((1 + mu)^|y| - 1) / mu. Any shape."""
    return jnp.sign(y) * jnp.expm1(jnp.abs(y) * math.log1p(mu)) / mu


def quantize(y, levels: int = 256):
    """y in [-1, 1] -> the nearest of ``levels`` equally spaced values, as its class q in 0..levels-1 (int64)."""
    return jnp.round((jnp.clip(y, -1, 1) + 1) / 2 * (levels - 1)).astype(jnp.int64)


def dequantize(q, levels: int = 256):
    """Class q in 0..levels-1 -> its level 2 q / (levels - 1) - 1 in [-1, 1]."""
    return 2.0 * jnp.asarray(q, jnp.float64) / (levels - 1) - 1.0


def mu_law_encode(x, levels: int = 256):
    """Waveform in [-1, 1] -> mu-law classes (mu = levels - 1): quantize(compand(x)). Any shape -> int64."""
    return quantize(mu_law_compand(x, levels - 1.0), levels)


def mu_law_decode(q, levels: int = 256):
    """mu-law classes -> waveform: expand(dequantize(q)). Any shape -> float64."""
    return mu_law_expand(dequantize(q, levels), levels - 1.0)


# 2. Dilated causal convolutions --------------------------------------------------------------------------------------
def causal_conv1d(x, weight, bias, dilation: int = 1, padding: tuple[int, int] | None = None):
    """y[b, o, t] = bias[o] + sum_{c, k} weight[o, c, k] x[b, c, t - (K - 1 - k) d], zeros before t = 0.

    x: (B, C, T), weight: (O, C, K) (torch layout), bias: (O,) -> (B, O, T). ``padding`` (left, right) overrides the
    causal ((K - 1) d, 0): only the derivation's negative control uses it.
    """
    pad = ((weight.shape[-1] - 1) * dilation, 0) if padding is None else padding
    y = jax.lax.conv_general_dilated(x, weight, window_strides=(1,), padding=[pad], rhs_dilation=(dilation,),
                                     dimension_numbers=("NCH", "OIH", "NCH"),
                                     precision=jax.lax.Precision.HIGHEST)
    return y + bias[:, None]


def receptive_field(kernel_size: int, dilations: Sequence[int]) -> int:
    """Samples that one output of a stack of causal convolutions sees: 1 + (K - 1) sum_l d_l. For dilations
    1, 2, ..., 2^k repeated r times: 1 + (K - 1) r (2^(k + 1) - 1)."""
    return 1 + (kernel_size - 1) * sum(dilations)


# 3. Gated residual blocks --------------------------------------------------------------------------------------------
def gated_activation(filter_pre, gate_pre):
    """z = tanh(W_f * x + V_f h) . sigmoid(W_g * x + V_g h) (WaveNet eq. 3), given the two pre-activations."""
    return jnp.tanh(filter_pre) * jax.nn.sigmoid(gate_pre)


def gated_residual_block(x, h, w_filter, w_gate, b_filter, b_gate, v_filter, v_gate, w_res, b_res, w_skip, b_skip,
                         dilation: int = 1, padding: tuple[int, int] | None = None):
    """One residual block (WaveNet fig. 4): z = gated_activation(causal conv_f(x) + V_f h, causal conv_g(x) + V_g h),
    then (x + W_res z, W_skip z) with 1x1 convolutions.

    x: (B, C, T), h: (B, L); w_filter, w_gate: (C, C, K); v_filter, v_gate: (C, L); w_res: (C, C); w_skip: (S, C)
    -> ((B, C, T), (B, S, T)).
    """
    filter_pre = causal_conv1d(x, w_filter, b_filter, dilation, padding) + (h @ v_filter.T)[..., None]
    gate_pre = causal_conv1d(x, w_gate, b_gate, dilation, padding) + (h @ v_gate.T)[..., None]
    z = gated_activation(filter_pre, gate_pre)
    residual = jnp.einsum("oc,bct->bot", w_res, z) + b_res[:, None]
    skip = jnp.einsum("oc,bct->bot", w_skip, z) + b_skip[:, None]
    return x + residual, skip


def block_weights(rng: np.random.Generator, channels: int, cond: int, skip: int, kernel: int) -> dict:
    """Random weights of one gated residual block (N(0, 1/fan_in) kernels, N(0, 0.1^2) biases), float64."""
    def w(*shape):
        return rng.standard_normal(shape) / math.sqrt(math.prod(shape[1:]))

    def b(n):
        return 0.1 * rng.standard_normal(n)

    return {"w_filter": w(channels, channels, kernel), "w_gate": w(channels, channels, kernel), "b_filter": b(channels),
            "b_gate": b(channels), "v_filter": w(channels, cond), "v_gate": w(channels, cond),
            "w_res": w(channels, channels), "b_res": b(channels), "w_skip": w(skip, channels), "b_skip": b(skip)}


def block_stack(x, h, blocks: Sequence[dict], dilations: Sequence[int], padding=None):
    """A stack of gated residual blocks; returns the sum of their skip outputs. x: (B, C, T) -> (B, S, T)."""
    total = 0.0
    for weights, dilation in zip(blocks, dilations):
        x, skip = gated_residual_block(x, h, **weights, dilation=dilation,
                                       padding=None if padding is None else padding(weights, dilation))
        total = total + skip
    return total


@partial(jax.jit, static_argnames=("dilations", "t", "padding"))
def input_gradient(x, h, blocks, dilations: tuple[int, ...], t: int, padding=None):
    """|d sum_s out[0, s, t] / d x[0, :, tau]| summed over channels: (T,) -- which inputs output t sees."""
    grad = jax.grad(lambda xx: jnp.sum(block_stack(xx, h, blocks, dilations, padding)[0, :, t]))(x)
    return jnp.sum(jnp.abs(grad[0]), axis=0)


def centred_padding(weights: dict, dilation: int) -> tuple[int, int]:
    """'same' padding, (K - 1) d split between left and right: the non-causal mistake the negative controls catch."""
    total = (weights["w_filter"].shape[-1] - 1) * dilation
    return total // 2, total - total // 2


# 4. The clock: local conditioning on the position in the clip ----------------------------------------------------
def clock_features(positions, sample_rate: int, pairs: int):
    """Where each sample lies in its clip, as ``pairs`` sine/cosine pairs of its time in seconds with periods 2 s,
    1 s, 0.5 s, ... (the sinusoidal position code of Vaswani et al. 2017, sec. 3.5, over time instead of tokens).
    positions: (B, T) sample indices from the clip start -> (B, 2 pairs, T)."""
    periods = 2.0 / 2.0 ** jnp.arange(pairs, dtype=jnp.float64)
    angle = 2 * math.pi * (positions.astype(jnp.float64) / sample_rate)[:, None, :] / periods[None, :, None]
    return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], 1)


# 5. The network as flax modules: the twins of practice_torch.wavenet.networks, checked under the weight converter ----
# Written with flax's own layers in the channels-last layout (NWC), not with the functions above, so the module specs
# compare two implementations: torch's Conv1d (O, C, K) with an explicit left pad against flax's Conv (K, C, O) with
# causal padding ((K - 1) d, 0) and kernel_dilation d. Submodule names are torch's (``blocks_i`` for ``blocks.i``,
# ``head_1``/``head_3`` for the Sequential's convolutions), so ``shared_specs.interop`` maps them without a new rule.
def _causal_conv(features: int, kernel: int, dilation: int, name: str) -> nn.Conv:
    return nn.Conv(features, (kernel,), kernel_dilation=(dilation,), padding=[((kernel - 1) * dilation, 0)],
                   precision=jax.lax.Precision.HIGHEST, name=name)


class GatedResidualBlock(nn.Module):
    """x: (B, T, C), h: (B, L) -> (x + W_res z (B, T, C), W_skip z (B, T, S)) with
    z = tanh(W_f * x + V_f h) . sigmoid(W_g * x + V_g h) (WaveNet eq. 3, fig. 4)."""

    channels: int
    skip: int
    num_classes: int
    kernel: int
    dilation: int

    @nn.compact
    def __call__(self, x, h):
        dense = partial(nn.Dense, self.channels, use_bias=False, precision=jax.lax.Precision.HIGHEST)
        conv = partial(_causal_conv, self.channels, self.kernel, self.dilation)
        filter_pre = conv("filter")(x) + dense(name="cond_filter")(h)[:, None]
        gate_pre = conv("gate")(x) + dense(name="cond_gate")(h)[:, None]
        z = gated_activation(filter_pre, gate_pre)
        residual = _causal_conv(self.channels, 1, 1, "res")(z)
        return x + residual, _causal_conv(self.skip, 1, 1, "skip")(z)


class WaveNet(nn.Module):
    """q: (B, T) mu-law classes, y: (B,) labels, start: (B,) the clip position of q[:, 0] (default 0) -> logits
    (B, T, levels); position t predicts q[:, t + 1]. Embedding (plus, with ``amplitude``, a bias-free projection of
    each sample's decoded amplitude, and with ``clock`` > 0, one of the clock code of its position), gated residual
    blocks (one per dilation) conditioned on the label's one-hot, the sum of their skips, then ReLU, 1x1, ReLU, 1x1."""

    levels: int = 256
    channels: int = 32
    skip: int = 64
    num_classes: int = 10
    kernel: int = 2
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    clock: int = 0
    sample_rate: int = 8000
    amplitude: bool = False

    @nn.compact
    def __call__(self, q, y, start=None):
        x = nn.Embed(self.levels, self.channels, name="embed")(q)
        if self.amplitude:
            wave = mu_law_decode(q, self.levels).astype(x.dtype)[..., None]
            x = x + nn.Dense(self.channels, use_bias=False, precision=jax.lax.Precision.HIGHEST, name="amplitude")(wave)
        if self.clock:
            offset = jnp.zeros(q.shape[0], dtype=jnp.int32) if start is None else start
            code = clock_features(offset[:, None] + jnp.arange(q.shape[1]), self.sample_rate, self.clock)
            x = x + nn.Dense(self.channels, use_bias=False, precision=jax.lax.Precision.HIGHEST,
                             name="clock")(jnp.swapaxes(code, 1, 2).astype(x.dtype))
        h = jax.nn.one_hot(y, self.num_classes, dtype=x.dtype)
        total = 0.0
        for i, dilation in enumerate(self.dilations):
            x, skip = GatedResidualBlock(self.channels, self.skip, self.num_classes, self.kernel, dilation,
                                         name=f"blocks_{i}")(x, h)
            total = total + skip
        hidden = _causal_conv(self.skip, 1, 1, "head_1")(jax.nn.relu(total))
        return _causal_conv(self.levels, 1, 1, "head_3")(jax.nn.relu(hidden))
