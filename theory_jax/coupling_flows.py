"""Coupling flows: NICE, RealNVP and Glow, uniform dequantisation and the logit transform.

Lectures: normalizing flows; NICE (Dinh, Krueger & Bengio 2015); RealNVP (Dinh, Sohl-Dickstein & Bengio 2017);
Glow (Kingma & Dhariwal 2018); dequantisation (Theis, van den Oord & Bethge 2016; Ho et al. 2019, "Flow++").

A coupling layer keeps the coordinates of a binary mask b and transforms the others given only the kept ones:

    additive (NICE eq. 5):    y = b x + (1 - b) (x + t(b x))                                          (eq. 1)
    affine (RealNVP eq. 9):   y = b x + (1 - b) (x exp(s(b x)) + t(b x)),  s = tanh(h_s)              (eq. 2)

With the kept coordinates first the Jacobian is block triangular, [[I, 0], [*, diag(exp s)]], so
log |det dy/dx| = sum (1 - b) s (0 for NICE: volume-preserving) (eq. 3), whatever the networks s and t; and
x = b y + (1 - b)(y - t(b y)) exp(-s(b y)) inverts it, since b y = b x (eq. 4). Masks: a checkerboard over
pixels or a split of the channels (RealNVP section 3.4). Squeeze turns each 2x2 block into 4 channels: a permutation
of the coordinates, log-det 0 (eq. 5). Glow's actnorm y = x exp(l) + c per channel has log-det H W sum l (eq. 6);
its invertible 1x1 convolution y = W x per pixel has log-det H W log |det W| (eq. 7), which the LU form
W = P (L + I)(U + diag(sign exp(l))) makes sum l (eq. 8). A multi-scale flow composes these and factors out half
the channels after each squeeze; its log-det is the sum of the layers' (eq. 9) and
log p(x) = sum_scales log N(z_s; 0, I) + log |det dz/dx| (eq. 12).
Images: the logit transform y = logit(p), p = alpha + (1 - 2 alpha) x (eq. 10), has
log |dy/dx| = log(1 - 2 alpha) - log p - log(1 - p) per dimension (eq. 11). Uniform dequantisation y = (k + u) / L,
u ~ U[0, 1)^D (eq. 13), bounds the discrete model P(k) = int_{[0,1)^D} p(k + u) du (on the level scale) by Jensen:
E_u log p(k + u) <= log P(k) (eq. 14); bits/dim = (-log p_[0,1](y) + D log L) / (D ln 2) (eq. 15).
Twin: ``practice_torch/coupling_flows/`` (same names, same arguments); cases: ``shared_specs/coupling_flows.py``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from theory_jax.evaluation import bits_per_dim, nll_on_level_scale

LOG_2PI = math.log(2 * math.pi)


def _sum_per_example(a):
    """Sum over every axis but the first. (B, ...) -> (B,)."""
    return a.reshape(a.shape[0], -1).sum(axis=1)


def _pixels(x) -> int:
    return math.prod(x.shape[2:])


def _per_channel(v, x):
    return v.reshape(1, -1, *([1] * (x.ndim - 2))) if x.ndim > 2 else v


# 1. Masks ----------------------------------------------------------------------------------------------------
def checkerboard_mask(x, parity: int = 0):
    """b[i, j] = 1 where (i + j + parity) is even, for images like x (B, C, H, W) -> (1, 1, H, W) in x's dtype."""
    i, j = jnp.arange(x.shape[-2])[:, None], jnp.arange(x.shape[-1])[None, :]
    return ((i + j + parity) % 2 == 0).astype(x.dtype)[None, None]


def channel_mask(x, parity: int = 0):
    """b = 1 on the first half of the channels (parity 0) or the second (parity 1). x: (B, C, ...) ->
    (1, C, 1, 1) for images, (1, D) for vectors."""
    c = x.shape[1]
    first = jnp.arange(c) < c // 2
    keep = first if parity == 0 else ~first
    return keep.astype(x.dtype).reshape(1, c, *([1] * (x.ndim - 2)))


# 2. Coupling (eqs. 1-4) ------------------------------------------------------------------------------------------
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
        return keep * x + change * (x + h), jnp.zeros(x.shape[0], x.dtype)
    if kind != "affine":
        raise ValueError(f"coupling kind must be 'affine' or 'additive', got {kind!r}")
    h_s, t = jnp.split(h, 2, axis=1)
    s = jnp.tanh(h_s) * change
    return keep * x + change * (x * jnp.exp(s) + t), _sum_per_example(s)


def coupling_transform_inverse(y, mask, h, kind: str = "affine"):
    """Eq. 4 given h = NN(b * y) = NN(b * x). -> x, -log_det (B,)."""
    keep, change = mask, 1 - mask
    if kind == "additive":
        return keep * y + change * (y - h), jnp.zeros(y.shape[0], y.dtype)
    if kind != "affine":
        raise ValueError(f"coupling kind must be 'affine' or 'additive', got {kind!r}")
    h_s, t = jnp.split(h, 2, axis=1)
    s = jnp.tanh(h_s) * change
    return keep * y + change * (y - t) * jnp.exp(-s), -_sum_per_example(s)


def conditioner(x, weight, bias):
    """The spec's one-layer conditioner: a 3x3 convolution (zero padding 1, cross-correlation as in torch) for
    images (B, C, H, W), weight (C_out, C, 3, 3) OIHW; x weight^T + bias for vectors (B, D). bias: (C_out,)."""
    if x.ndim == 2:
        return x @ weight.T + bias
    out = jax.lax.conv_general_dilated(x, weight, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return out + bias[None, :, None, None]


def coupling_forward(x, mask, weight, bias, kind: str = "affine"):
    """A coupling layer with the one-layer conditioner: h = conditioner(b * x). -> y, log_det (B,)."""
    return coupling_transform(x, mask, conditioner(mask * x, weight, bias), kind)


def coupling_inverse(y, mask, weight, bias, kind: str = "affine"):
    return coupling_transform_inverse(y, mask, conditioner(mask * y, weight, bias), kind)


def additive_coupling_forward(x, mask, weight, bias):
    """NICE's coupling alone (eq. 5 of the paper): y = b x + (1 - b)(x + t(b x)), t the one-layer conditioner.
    Volume-preserving, so there is no log-det to return. -> y."""
    return coupling_forward(x, mask, weight, bias, "additive")[0]


def additive_coupling_inverse(y, mask, weight, bias):
    """x = b y + (1 - b)(y - t(b y)). -> x."""
    return coupling_inverse(y, mask, weight, bias, "additive")[0]


# 3. Actnorm and the invertible 1x1 convolution (eqs. 6-8) ---------------------------------------------------
def actnorm_forward(x, log_scale, bias):
    """y = x exp(log_scale) + bias per channel; log_det = H W sum log_scale (eq. 6). -> y, (B,)."""
    y = x * jnp.exp(_per_channel(log_scale, x)) + _per_channel(bias, x)
    return y, jnp.broadcast_to(_pixels(x) * jnp.sum(log_scale), (x.shape[0],))


def actnorm_inverse(y, log_scale, bias):
    x = (y - _per_channel(bias, y)) * jnp.exp(-_per_channel(log_scale, y))
    return x, jnp.broadcast_to(-_pixels(y) * jnp.sum(log_scale), (y.shape[0],))


def _mix_channels(x, weight):
    return jnp.einsum("ij,bj...->bi...", weight, x)


def invconv_forward(x, weight):
    """y = W x at every pixel; log_det = H W log |det W| (eq. 7). weight: (C, C) -> y, (B,)."""
    return _mix_channels(x, weight), jnp.broadcast_to(_pixels(x) * jnp.linalg.slogdet(weight)[1], (x.shape[0],))


def invconv_inverse(y, weight):
    return (_mix_channels(y, jnp.linalg.inv(weight)),
            jnp.broadcast_to(-_pixels(y) * jnp.linalg.slogdet(weight)[1], (y.shape[0],)))


def invconv_lu_weight(permutation, lower, upper, log_diag, sign):
    """W = P (L + I)(U + diag(sign exp(log_diag))) and log |det W| = sum log_diag (eq. 8). -> W (C, C), ()."""
    eye = jnp.eye(lower.shape[0], dtype=lower.dtype)
    low = jnp.tril(lower, -1) + eye
    up = jnp.triu(upper, 1) + jnp.diag(sign * jnp.exp(log_diag))
    return permutation @ low @ up, jnp.sum(log_diag)


# 4. Squeeze (eq. 5) --------------------------------------------------------------------------------------------
def squeeze(x):
    """(B, C, H, W) -> (B, 4C, H/2, W/2); channel c * 4 + 2 di + dj holds x[:, c, 2i + di, 2j + dj]."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unsqueeze(y):
    b, c4, h, w = y.shape
    return y.reshape(b, c4 // 4, 2, 2, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(b, c4 // 4, h * 2, w * 2)


# 5. The logit transform and bits/dim (eqs. 10-15) -------------------------------------------------------------------
def logit_transform(x, alpha: float = 0.05):
    """y = logit(alpha + (1 - 2 alpha) x) (eq. 10), log_det = sum log(1 - 2 alpha) - log p - log(1 - p) (eq. 11)."""
    p = alpha + (1 - 2 * alpha) * x
    log_p, log_1mp = jnp.log(p), jnp.log1p(-p)
    return log_p - log_1mp, _sum_per_example(math.log(1 - 2 * alpha) - log_p - log_1mp)


def logit_inverse(y, alpha: float = 0.05):
    """x = (sigmoid(y) - alpha) / (1 - 2 alpha). -> x, the inverse's log-det (B,)."""
    log_p, log_1mp = jax.nn.log_sigmoid(y), jax.nn.log_sigmoid(-y)
    return (jax.nn.sigmoid(y) - alpha) / (1 - 2 * alpha), _sum_per_example(log_p + log_1mp - math.log(1 - 2 * alpha))


def standard_normal_log_prob(z):
    """log N(z; 0, I) summed over every axis but the first. (B, ...) -> (B,)."""
    return _sum_per_example(-0.5 * (z**2 + LOG_2PI))


def bits_per_dim_from_log_prob(log_prob, num_dims: int, levels: int = 256):
    """Eq. 15: (-log p(y) + D log L) / (D ln 2) for the dequantised y = (k + u) / L on [0, 1]^D. (B,) -> (B,)."""
    return bits_per_dim(nll_on_level_scale(-log_prob, num_dims, levels), num_dims)


# 6. The image conditioner as a flax module (twin of practice_torch.coupling_flows.ConvNet, NHWC) ---------------------
class ResBlock(nn.Module):
    hidden: int

    def setup(self):
        self.conv = nn.Conv(self.hidden, (3, 3), padding=1)
        self.mix = nn.Conv(self.hidden, (1, 1))

    def __call__(self, h):
        return h + self.mix(jax.nn.relu(self.conv(jax.nn.relu(h))))


class ConvNet(nn.Module):
    """NN(b * x) with the mask as an extra channel: 3x3 conv, ReLU, 1x1 conv, ``blocks`` residual blocks, ReLU, 3x3
    conv. x: (B, H, W, C), mask broadcastable to x (NHWC) -> (B, H, W, out)."""

    channels: int
    out: int
    hidden: int
    blocks: int = 0

    def setup(self):
        self.first = nn.Conv(self.hidden, (3, 3), padding=1)
        self.middle = nn.Conv(self.hidden, (1, 1))
        self.blocks_ = [ResBlock(self.hidden, name=f"blocks_{i}") for i in range(self.blocks)]
        self.last = nn.Conv(self.out, (3, 3), padding=1)

    def __call__(self, x, mask):
        mark = jnp.broadcast_to(mask[..., :1], (*x.shape[:-1], 1))
        h = self.middle(jax.nn.relu(self.first(jnp.concatenate([x * mask, mark], axis=-1))))
        for block in self.blocks_:
            h = block(h)
        return self.last(jax.nn.relu(h))
