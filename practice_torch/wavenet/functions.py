"""WaveNet's pure functions in PyTorch: the twin of ``theory_jax/wavenet.py`` (same names, same arguments).

* mu-law companding (ITU-T G.711; van den Oord et al. 2016, eq. 2) and its inverse, the quantisation to ``levels``
  integer classes and back;
* the dilated causal convolution (section 2.1): output t sees inputs t - (K - 1) d, ..., t only;
* the receptive field of a stack of them, in closed form;
* the gated activation unit (eq. 2 of the paper's section 2.3) and one gated residual block with its skip output,
  conditioned on a global vector h (section 2.5, eq. 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


# 1. mu-law companding ------------------------------------------------------------------------------------------------
def mu_law_compand(x: torch.Tensor, mu: float = 255.0) -> torch.Tensor:
    """f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu), x in [-1, 1] -> [-1, 1] (WaveNet eq. 2). Any shape."""
    return torch.sign(x) * torch.log1p(mu * torch.abs(x)) / math.log1p(mu)


def mu_law_expand(y: torch.Tensor, mu: float = 255.0) -> torch.Tensor:
    """The inverse of ``mu_law_compand``: x = sign(y) ((1 + mu)^|y| - 1) / mu. Any shape."""
    return torch.sign(y) * torch.expm1(torch.abs(y) * math.log1p(mu)) / mu


def quantize(y: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """y in [-1, 1] -> the nearest of ``levels`` equally spaced values, as its class q in 0..levels-1 (int64)."""
    return torch.round((y.clamp(-1, 1) + 1) / 2 * (levels - 1)).long()


def dequantize(q: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """Class q in 0..levels-1 -> its level 2 q / (levels - 1) - 1 in [-1, 1] (float64 here, float32 in the net)."""
    return 2.0 * q.to(torch.float64) / (levels - 1) - 1.0


def mu_law_encode(x: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """Waveform in [-1, 1] -> mu-law classes (mu = levels - 1): quantize(compand(x)). Any shape -> int64."""
    return quantize(mu_law_compand(x, levels - 1.0), levels)


def mu_law_decode(q: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """mu-law classes -> waveform: expand(dequantize(q)). Any shape -> float64."""
    return mu_law_expand(dequantize(q, levels), levels - 1.0)


# 2. Dilated causal convolutions --------------------------------------------------------------------------------------
def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dilation: int = 1) -> torch.Tensor:
    """y[b, o, t] = bias[o] + sum_{c, k} weight[o, c, k] x[b, c, t - (K - 1 - k) d], zeros before t = 0.

    Causal by left padding (K - 1) d (never 'same' padding). x: (B, C, T), weight: (O, C, K), bias: (O,) -> (B, O, T).
    """
    pad = (weight.shape[-1] - 1) * dilation
    return F.conv1d(F.pad(x, (pad, 0)), weight, bias, dilation=dilation)


def receptive_field(kernel_size: int, dilations: Sequence[int]) -> int:
    """Samples that one output of a stack of causal convolutions sees: 1 + (K - 1) sum_l d_l. For dilations
    1, 2, ..., 2^k repeated r times: 1 + (K - 1) r (2^(k + 1) - 1)."""
    return 1 + (kernel_size - 1) * sum(dilations)


# 3. Gated residual blocks --------------------------------------------------------------------------------------------
def gated_activation(filter_pre: torch.Tensor, gate_pre: torch.Tensor) -> torch.Tensor:
    """z = tanh(W_f * x + V_f h) . sigmoid(W_g * x + V_g h) (WaveNet eq. 3), given the two pre-activations."""
    return torch.tanh(filter_pre) * torch.sigmoid(gate_pre)


def gated_residual_block(x: torch.Tensor, h: torch.Tensor, w_filter: torch.Tensor, w_gate: torch.Tensor,
                         b_filter: torch.Tensor, b_gate: torch.Tensor, v_filter: torch.Tensor, v_gate: torch.Tensor,
                         w_res: torch.Tensor, b_res: torch.Tensor, w_skip: torch.Tensor, b_skip: torch.Tensor,
                         dilation: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """One residual block (WaveNet fig. 4): z = gated_activation(causal conv_f(x) + V_f h, causal conv_g(x) + V_g h),
    then (x + W_res z, W_skip z) with 1x1 convolutions.

    x: (B, C, T), h: (B, L) global condition; w_filter, w_gate: (C, C, K); b_filter, b_gate: (C,); v_filter,
    v_gate: (C, L); w_res: (C, C), b_res: (C,); w_skip: (S, C), b_skip: (S,) -> ((B, C, T), (B, S, T)).
    """
    filter_pre = causal_conv1d(x, w_filter, b_filter, dilation) + (h @ v_filter.T)[..., None]
    gate_pre = causal_conv1d(x, w_gate, b_gate, dilation) + (h @ v_gate.T)[..., None]
    z = gated_activation(filter_pre, gate_pre)
    residual = torch.einsum("oc,bct->bot", w_res, z) + b_res[:, None]
    skip = torch.einsum("oc,bct->bot", w_skip, z) + b_skip[:, None]
    return x + residual, skip


# 4. The clock: local conditioning on the position in the clip ------------------------------------------------------
def clock_features(positions: torch.Tensor, sample_rate: int, pairs: int) -> torch.Tensor:
    """Where each sample lies in its clip, as ``pairs`` sine/cosine pairs of its time in seconds with periods 2 s,
    1 s, 0.5 s, ... (the sinusoidal position code of Vaswani et al. 2017, sec. 3.5, over time instead of tokens).
    positions: (B, T) sample indices from the clip start -> (B, 2 pairs, T)."""
    periods = 2.0 / 2.0 ** torch.arange(pairs, device=positions.device, dtype=torch.float64)
    angle = 2 * math.pi * (positions.double() / sample_rate)[:, None, :] / periods[None, :, None]
    return torch.cat([torch.sin(angle), torch.cos(angle)], 1)
