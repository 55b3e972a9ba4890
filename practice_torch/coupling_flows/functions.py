"""The layers of NICE, RealNVP and Glow as pure functions: the twins of ``theory_jax/coupling_flows.py``.

Same names, same arguments, same equations (numbered as there); weights and conditioner outputs are arguments, so
the spec (``shared_specs/coupling_flows.py``) calls both backends with the same NumPy arrays. Images are
(B, C, H, W); vectors (B, D) are the H = W = 1 case of every layer. Every ``*_forward`` returns (output,
log |det d output / d input|) per example, (B,); every ``*_inverse`` returns (input, the inverse's log-det).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from practice_torch.evaluation.metrics import bits_per_dim, nll_on_level_scale


def _sum_per_example(a):
    """Sum over every axis but the first. (B, ...) -> (B,)."""
    return a.reshape(a.shape[0], -1).sum(dim=1)


def _pixels(x) -> int:
    """H * W of images (B, C, H, W); 1 for vectors (B, D)."""
    return math.prod(x.shape[2:])


def _per_channel(v, x):
    """A per-channel vector (C,) shaped to broadcast against x: (1, C, 1, 1) for images, (C,) for vectors."""
    return v.reshape(1, -1, *([1] * (x.dim() - 2))) if x.dim() > 2 else v


# 1. Masks (RealNVP section 3.4) ----------------------------------------------------------------------------
def checkerboard_mask(x, parity: int = 0):
    """b[i, j] = 1 where (i + j + parity) is even, for images like x (B, C, H, W) -> (1, 1, H, W) in x's dtype."""
    i = torch.arange(x.shape[-2], device=x.device)[:, None]
    j = torch.arange(x.shape[-1], device=x.device)[None, :]
    return ((i + j + parity) % 2 == 0).to(x.dtype)[None, None]


def channel_mask(x, parity: int = 0):
    """b = 1 on the first half of the channels (parity 0) or the second (parity 1). x: (B, C, ...) ->
    (1, C, 1, 1) for images, (1, D) for vectors, in x's dtype."""
    c = x.shape[1]
    first = torch.arange(c, device=x.device) < c // 2
    keep = first if parity == 0 else ~first
    return keep.to(x.dtype).reshape(1, c, *([1] * (x.dim() - 2)))


# 2. Coupling (NICE eq. 4-5, RealNVP eq. 4-9) ------------------------------------------------------------------
def coupling_transform(x, mask, h, kind: str = "affine"):
    """The coupling law given the conditioner's output h = NN(b * x), which sees only the kept part b * x:

        affine (RealNVP eq. 9):  y = b x + (1 - b) (x exp(s) + t),  s = tanh(h_s), (h_s, t) = h split on axis 1
        additive (NICE eq. 5):   y = b x + (1 - b) (x + t),         t = h

    log |det dy/dx| = sum (1 - b) s (RealNVP eq. 6: the Jacobian is triangular); 0 for additive coupling.
    x: (B, C, ...) the input; mask: the binary mask b (1: kept, 0: transformed), broadcastable to x; h: (B, 2C, ...)
    affine or (B, C, ...) additive; kind: 'affine' or 'additive' -> (y: (B, C, ...), log_det: (B,)).
    """
    keep, change = mask, 1 - mask
    if kind == "additive":
        return keep * x + change * (x + h), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    if kind != "affine":
        raise ValueError(f"coupling kind must be 'affine' or 'additive', got {kind!r}")
    h_s, t = h.chunk(2, dim=1)
    s = torch.tanh(h_s) * change
    return keep * x + change * (x * torch.exp(s) + t), _sum_per_example(s)


def coupling_transform_inverse(y, mask, h, kind: str = "affine"):
    """x = b y + (1 - b) (y - t) exp(-s) (RealNVP eq. 8-9), h = NN(b * y) = NN(b * x). -> x, -log_det (B,)."""
    keep, change = mask, 1 - mask
    if kind == "additive":
        return keep * y + change * (y - h), torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
    if kind != "affine":
        raise ValueError(f"coupling kind must be 'affine' or 'additive', got {kind!r}")
    h_s, t = h.chunk(2, dim=1)
    s = torch.tanh(h_s) * change
    return keep * y + change * (y - t) * torch.exp(-s), -_sum_per_example(s)


def conditioner(x, weight, bias):
    """The spec's one-layer conditioner: a 3x3 convolution with zero padding 1 for images (B, C, H, W), weight
    (C_out, C, 3, 3); a dense layer x weight^T + bias for vectors (B, D), weight (D_out, D). bias: (C_out,)."""
    return F.conv2d(x, weight, bias, padding=1) if x.dim() == 4 else x @ weight.T + bias


def coupling_forward(x, mask, weight, bias, kind: str = "affine"):
    """A coupling layer with the one-layer conditioner: h = conditioner(b * x). -> y, log_det (B,)."""
    return coupling_transform(x, mask, conditioner(mask * x, weight, bias), kind)


def coupling_inverse(y, mask, weight, bias, kind: str = "affine"):
    """The inverse of ``coupling_forward``: b * y = b * x, so h is recomputed from y. -> x, -log_det (B,)."""
    return coupling_transform_inverse(y, mask, conditioner(mask * y, weight, bias), kind)


def additive_coupling_forward(x, mask, weight, bias):
    """NICE's coupling alone (eq. 5 of the paper): y = b x + (1 - b)(x + t(b x)), t the one-layer conditioner.
    Volume-preserving, so there is no log-det to return. -> y."""
    return coupling_forward(x, mask, weight, bias, "additive")[0]


def additive_coupling_inverse(y, mask, weight, bias):
    """x = b y + (1 - b)(y - t(b y)). -> x."""
    return coupling_inverse(y, mask, weight, bias, "additive")[0]


# 3. Actnorm and the invertible 1x1 convolution (Glow, Table 1) ------------------------------------------------
def actnorm_forward(x, log_scale, bias):
    """y = x exp(log_scale) + bias per channel; log_det = H W sum log_scale. log_scale, bias: (C,) -> y, (B,)."""
    y = x * torch.exp(_per_channel(log_scale, x)) + _per_channel(bias, x)
    return y, (_pixels(x) * log_scale.sum()).expand(x.shape[0])


def actnorm_inverse(y, log_scale, bias):
    """x = (y - bias) exp(-log_scale). -> x, -H W sum log_scale (B,)."""
    x = (y - _per_channel(bias, y)) * torch.exp(-_per_channel(log_scale, y))
    return x, (-_pixels(y) * log_scale.sum()).expand(y.shape[0])


def _mix_channels(x, weight):
    """y[:, i] = sum_j W[i, j] x[:, j] at every pixel (a 1x1 convolution). x: (B, C, ...), weight: (C, C)."""
    return torch.einsum("ij,bj...->bi...", weight, x)


def invconv_forward(x, weight):
    """y = W x at every pixel; log_det = H W log |det W| (Glow Table 1). weight: (C, C) -> y, (B,)."""
    return _mix_channels(x, weight), (_pixels(x) * torch.linalg.slogdet(weight)[1]).expand(x.shape[0])


def invconv_inverse(y, weight):
    """x = W^{-1} y at every pixel. -> x, -H W log |det W| (B,)."""
    return _mix_channels(y, torch.linalg.inv(weight)), (-_pixels(y) * torch.linalg.slogdet(weight)[1]).expand(y.shape[0])


def invconv_lu_weight(permutation, lower, upper, log_diag, sign):
    """Glow's LU parameterisation (section 3.2): W = P (L + I) (U + diag(sign exp(log_diag))), L strictly lower, U
    strictly upper, so log |det W| = sum log_diag in O(C). permutation: (C, C) fixed; lower, upper: (C, C);
    log_diag, sign: (C,) -> W (C, C), log |det W| ()."""
    eye = torch.eye(lower.shape[0], dtype=lower.dtype, device=lower.device)
    low = torch.tril(lower, -1) + eye
    up = torch.triu(upper, 1) + torch.diag(sign * torch.exp(log_diag))
    return permutation @ low @ up, log_diag.sum()


# 4. Squeeze (RealNVP section 3.6): a permutation, log-det 0 ---------------------------------------------------
def squeeze(x):
    """Each 2x2 block of every channel becomes 4 channels: (B, C, H, W) -> (B, 4C, H/2, W/2), channel c * 4 + 2 di + dj
    holding x[:, c, 2i + di, 2j + dj]."""
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"squeeze needs even height and width, got {h}x{w}")
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unsqueeze(y):
    """The inverse of ``squeeze``: (B, 4C, H, W) -> (B, C, 2H, 2W)."""
    b, c4, h, w = y.shape
    y = y.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(b, c4 // 4, h * 2, w * 2)


# 5. Dequantised data and the logit transform (RealNVP section 4.1) ------------------------------------------
def logit_transform(x, alpha: float = 0.05):
    """y = logit(p), p = alpha + (1 - 2 alpha) x, from [0, 1] to R (eq. 10); log_det = sum log(1 - 2 alpha) -
    log p - log(1 - p) (eq. 11). x: (B, ...) -> y (B, ...), log_det (B,)."""
    p = alpha + (1 - 2 * alpha) * x
    log_p, log_1mp = torch.log(p), torch.log1p(-p)
    return log_p - log_1mp, _sum_per_example(math.log(1 - 2 * alpha) - log_p - log_1mp)


def logit_inverse(y, alpha: float = 0.05):
    """x = (sigmoid(y) - alpha) / (1 - 2 alpha). -> x, the inverse's log-det (B,)."""
    log_p, log_1mp = F.logsigmoid(y), F.logsigmoid(-y)
    x = (torch.sigmoid(y) - alpha) / (1 - 2 * alpha)
    return x, _sum_per_example(log_p + log_1mp - math.log(1 - 2 * alpha))


def standard_normal_log_prob(z):
    """log N(z; 0, I) summed over every axis but the first. (B, ...) -> (B,)."""
    return _sum_per_example(-0.5 * (z**2 + math.log(2 * math.pi)))


def bits_per_dim_from_log_prob(log_prob, num_dims: int, levels: int = 256):
    """bits/dim of 8-bit data from log p(y) of the dequantised y = (x + u) / levels on [0, 1]^D (eq. 13):
    -log p on the level scale [0, levels)^D is -log p(y) + D log levels, then / (D ln 2). (B,) -> (B,)."""
    return bits_per_dim(nll_on_level_scale(-log_prob, num_dims, levels), num_dims)
