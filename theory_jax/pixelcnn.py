"""PixelCNN: masked convolutions, causal receptive fields and the chain-rule likelihood of an image.

Lectures: autoregressive image models; PixelCNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", sec. 3.5)
and the gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders", sec. 2).

An image x of H x W pixels, each one of K categories (K = 2: binarised, K = 256: 8-bit), in raster order
i = r W + c, has the density p(x) = prod_i p(x_i | x_<i) (eq. 1, the chain rule). A PixelCNN computes all H W
conditionals in one pass: its convolutions are masked so that output i sees inputs j < i only. Mask 'A' (first
layer) removes the centre tap and everything after it, mask 'B' (later layers) keeps the centre: a stack of one A
and any number of B layers is causal. The plain stack has a blind spot (pixels above and to the right are never
reached); the gated PixelCNN fixes it with two stacks: a vertical stack that sees every row above, and a horizontal
stack that sees the row to the left and reads the vertical stack (eq. 2: y = tanh(W_f * x) . sigmoid(W_g * x)).

Layouts: images NCHW (the exchange layout), kernels OIHW as in torch; a convolution is a cross-correlation with
zero padding (kh // 2, kw // 2). Twin: ``practice_torch/pixelcnn`` (same names, same arguments); cases:
``shared_specs/pixelcnn.py``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["GatedLayer", "GatedPixelCNN", "MaskedConv2d", "PlainPixelCNN", "bernoulli_log_likelihood", "bits_per_dim",
           "categorical_log_likelihood", "causal_mask", "gated_activation", "gated_pixelcnn", "masked_conv2d",
           "plain_pixelcnn", "sample_pixel", "stack_mask"]


# 1. Masks ----------------------------------------------------------------------------------------------------------
def causal_mask(kernel_size: int, mask_type: str):
    """The (k, k) PixelCNN mask: 1 on the rows above the centre and left of it in the centre row; the centre itself
    only for type 'B'. k odd."""
    return jnp.asarray(_causal_keep(kernel_size, mask_type), dtype=jnp.float64)


def stack_mask(kernel_size: int, stack: str, mask_type: str):
    """The gated PixelCNN's masks. 'vertical': (k, k), every row above the centre; type 'B' also the centre row
    (its output at row r then depends on input rows < r only, the first layer being 'A'). 'horizontal': (1, k), the
    taps left of the centre; type 'B' also the centre."""
    return jnp.asarray(_stack_keep(kernel_size, stack, mask_type), dtype=jnp.float64)


def _causal_keep(k: int, mask_type: str) -> np.ndarray:
    """``causal_mask`` as a NumPy bool array (a constant, also while JAX traces a module)."""
    c = k // 2
    rows, cols = np.mgrid[0:k, 0:k]
    return (rows < c) | ((rows == c) & ((cols < c) if mask_type == "A" else (cols <= c)))


def _stack_keep(k: int, stack: str, mask_type: str) -> np.ndarray:
    """``stack_mask`` as a NumPy bool array."""
    c = k // 2
    if stack == "vertical":
        rows = np.arange(k)[:, None] * np.ones((1, k))
        return rows < c if mask_type == "A" else rows <= c
    cols = np.arange(k)[None, :]
    return cols < c if mask_type == "A" else cols <= c


# 2. Masked convolution ---------------------------------------------------------------------------------------------
def masked_conv2d(x, weight, bias, mask):
    """Cross-correlation with the masked kernel (W . M) * x + b, zero padding (kh // 2, kw // 2).
    x: (B, I, H, W), weight: (O, I, kh, kw), bias: (O,), mask: (kh, kw) -> (B, O, H, W)."""
    kh, kw = weight.shape[-2:]
    out = jax.lax.conv_general_dilated(x, weight * mask, (1, 1), ((kh // 2, kh // 2), (kw // 2, kw // 2)),
                                       dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                       precision=jax.lax.Precision.HIGHEST)
    return out + bias[None, :, None, None]


def gated_activation(a):
    """Eq. 2: tanh(a_f) . sigmoid(a_g), the channels split in two halves. a: (B, 2C, H, W) -> (B, C, H, W)."""
    f, g = jnp.split(a, 2, axis=1)
    return jnp.tanh(f) * jax.nn.sigmoid(g)


# 3. Networks on parameter dicts (the twin of practice_torch's modules, state_dict names) ----------------------------
def plain_pixelcnn(params, x, layers: int):
    """The PixelCNN of eq. 1: a type-A k x k masked conv, then ``layers - 1`` type-B ones, ReLU between, a 1 x 1 head.
    params: {'convs.{l}.weight', 'convs.{l}.bias', 'out.weight', 'out.bias'}; x: (B, 1, H, W) -> (B, K, H, W)."""
    h = x
    for layer in range(layers):
        w = params[f"convs.{layer}.weight"]
        h = masked_conv2d(h, w, params[f"convs.{layer}.bias"], causal_mask(w.shape[-1], "A" if layer == 0 else "B"))
        h = jax.nn.relu(h)
    return masked_conv2d(h, params["out.weight"], params["out.bias"], jnp.ones((1, 1)))


def gated_pixelcnn(params, x, layers: int):
    """The gated PixelCNN: per layer l (type A at l = 0, B after),
    v' = gate(V_l * v),  h' = gate(H_l * h + Vh_l v-preactivation) (eq. 2; vertical -> horizontal by a 1 x 1 conv),
    h <- h + R_l h' for l > 0 (residual), and a 1 x 1 head on ReLU(h). x: (B, 1, H, W) -> (B, K, H, W)."""
    one = jnp.ones((1, 1))
    v = h = x
    for layer in range(layers):
        kind = "A" if layer == 0 else "B"
        wv, wh = params[f"layers.{layer}.vertical.weight"], params[f"layers.{layer}.horizontal.weight"]
        v_pre = masked_conv2d(v, wv, params[f"layers.{layer}.vertical.bias"], stack_mask(wv.shape[-1], "vertical", kind))
        h_pre = masked_conv2d(h, wh, params[f"layers.{layer}.horizontal.bias"],
                              stack_mask(wh.shape[-1], "horizontal", kind))
        h_pre = h_pre + masked_conv2d(v_pre, params[f"layers.{layer}.v_to_h.weight"],
                                      params[f"layers.{layer}.v_to_h.bias"], one)
        v = gated_activation(v_pre)
        h_new = masked_conv2d(gated_activation(h_pre), params[f"layers.{layer}.residual.weight"],
                              params[f"layers.{layer}.residual.bias"], one)
        h = h_new if layer == 0 else h + h_new
    return masked_conv2d(jax.nn.relu(h), params["out.weight"], params["out.bias"], one)


# 3b. The networks as flax modules: the twins of practice_torch.pixelcnn.networks, checked under the weight converter --
# Channels-last (NHWC, HWIO kernels) with torch's submodule names (``convs_i``/``layers_i`` for ``convs.i``/``layers.i``)
# and, unlike the parameter-dict functions above, class conditioning (an embedding added before each gate).
def _frozen(mask) -> tuple[tuple[float, ...], ...]:
    """A NumPy mask as nested tuples of 0.0/1.0: a hashable module field."""
    return tuple(map(tuple, np.asarray(mask, dtype=float).tolist()))


def _conv1x1(features: int, name: str) -> nn.Conv:
    return nn.Conv(features, (1, 1), precision=jax.lax.Precision.HIGHEST, name=name)


class MaskedConv2d(nn.Module):
    """(W . M) * x + b with zero padding (kh // 2, kw // 2). x: (B, H, W, I) -> (B, H, W, features); kernel HWIO."""

    features: int
    mask: tuple[tuple[float, ...], ...]

    @nn.compact
    def __call__(self, x):
        m = jnp.asarray(self.mask, x.dtype)
        kh, kw = m.shape
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (kh, kw, x.shape[-1], self.features), x.dtype)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), x.dtype)
        y = jax.lax.conv_general_dilated(x, kernel * m[:, :, None, None], (1, 1), ((kh // 2, kh // 2), (kw // 2, kw // 2)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         precision=jax.lax.Precision.HIGHEST)
        return y + bias


def _gate(a):
    """Eq. 2 on channels-last activations: tanh of the first half of the channels times sigmoid of the second."""
    f, g = jnp.split(a, 2, axis=-1)
    return jnp.tanh(f) * jax.nn.sigmoid(g)


class _PixelCNNConfig(nn.Module):
    """The hyperparameters both PixelCNNs take, named as torch's constructor arguments."""

    channels: int
    layers: int
    kernel: int
    out_channels: int
    num_classes: int = 0
    first_kernel: int | None = None


class PlainPixelCNN(_PixelCNNConfig):
    """x: (B, H, W, 1), y: (B,) or None -> logits (B, H, W, out_channels): a type-A masked conv, type-B ones after,
    the label's embedding added before each ReLU, a 1 x 1 head."""

    @nn.compact
    def __call__(self, x, y=None):
        embed = nn.Embed(self.num_classes, self.channels, name="condition") if self.num_classes else None
        h = x
        for i in range(self.layers):
            mask = _causal_keep(self.first_kernel or self.kernel, "A") if i == 0 else _causal_keep(self.kernel, "B")
            h = MaskedConv2d(self.channels, _frozen(mask), name=f"convs_{i}")(h)
            if embed is not None and y is not None:
                h = h + embed(y)[:, None, None, :]
            h = jax.nn.relu(h)
        return _conv1x1(self.out_channels, "out")(h)


class GatedLayer(nn.Module):
    """v, h: (B, H, W, c_in), y: (B,) or None -> (v', h') (B, H, W, channels) each: v' = gate(V * v + c_v(y)),
    h' = h + R gate(H * h + Vh (V * v) + c_h(y)), without the residual in the first (type A) layer."""

    c_in: int
    channels: int
    kernel: int
    mask_type: str
    num_classes: int = 0

    @nn.compact
    def __call__(self, v, h, y=None):
        c2 = 2 * self.channels
        v_pre = MaskedConv2d(c2, _frozen(_stack_keep(self.kernel, "vertical", self.mask_type)), name="vertical")(v)
        h_pre = MaskedConv2d(c2, _frozen(_stack_keep(self.kernel, "horizontal", self.mask_type)), name="horizontal")(h)
        h_pre = h_pre + _conv1x1(c2, "v_to_h")(v_pre)
        if self.num_classes and y is not None:
            c_v, c_h = jnp.split(nn.Embed(self.num_classes, 2 * c2, name="condition")(y)[:, None, None, :], 2, axis=-1)
            v_pre, h_pre = v_pre + c_v, h_pre + c_h
        h_new = _conv1x1(self.channels, "residual")(_gate(h_pre))
        return _gate(v_pre), (h_new if self.mask_type == "A" else h + h_new)


class GatedPixelCNN(_PixelCNNConfig):
    """x: (B, H, W, 1), y: (B,) or None -> logits (B, H, W, out_channels): gated layers (type A first, of kernel
    ``first_kernel``) and a 1 x 1 head on ReLU(h)."""

    @nn.compact
    def __call__(self, x, y=None):
        v = h = x
        for i in range(self.layers):
            first = i == 0
            layer = GatedLayer(1 if first else self.channels, self.channels,
                               (self.first_kernel or self.kernel) if first else self.kernel, "A" if first else "B",
                               self.num_classes, name=f"layers_{i}")
            v, h = layer(v, h, y)
        return _conv1x1(self.out_channels, "out")(jax.nn.relu(h))


# 4. The chain-rule likelihood and one sampling step ----------------------------------------------------------------
def categorical_log_likelihood(logits, x):
    """log p(x) = sum_i log softmax(l_i)[x_i] (eq. 1) per image. logits: (B, K, H, W), x: (B, H, W) int -> (B,)."""
    logp = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
    return jnp.sum(jnp.take_along_axis(logp, x[:, None], axis=1), axis=(1, 2, 3))


def bernoulli_log_likelihood(logits, x):
    """log p(x) = sum_i [x_i l_i - softplus(l_i)] per image (a binarised image, one logit per pixel; equal to the
    2-way softmax of logits (0, l)). logits: (B, H, W), x: (B, H, W) in {0, 1} -> (B,)."""
    return jnp.sum(x * logits - jax.nn.softplus(logits), axis=(1, 2))


def bits_per_dim(nll, num_dims: int):
    """Nats per image -> bits per dimension: nll / (D ln 2). nll: (...) -> (...)."""
    return nll / (num_dims * math.log(2))


def sample_pixel(logits, u):
    """An inverse-CDF draw of one pixel per image: min{k : u < cdf_k}, the uniform u passed in. logits: (B, K),
    u: (B,) -> (B,) int."""
    cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)
    return jnp.minimum(jnp.sum(cdf <= u[:, None] * cdf[:, -1:], axis=-1), logits.shape[-1] - 1)


def plain_shapes(layers, channels, kernel, categories):
    shapes = {}
    for layer in range(layers):
        shapes[f"convs.{layer}.weight"] = (channels, 1 if layer == 0 else channels, kernel, kernel)
        shapes[f"convs.{layer}.bias"] = (channels,)
    return {**shapes, "out.weight": (categories, channels, 1, 1), "out.bias": (categories,)}


def gated_shapes(layers, channels, kernel, categories):
    shapes = {}
    for layer in range(layers):
        c_in = 1 if layer == 0 else channels
        p = f"layers.{layer}."
        shapes |= {p + "vertical.weight": (2 * channels, c_in, kernel, kernel), p + "vertical.bias": (2 * channels,),
                   p + "horizontal.weight": (2 * channels, c_in, 1, kernel), p + "horizontal.bias": (2 * channels,),
                   p + "v_to_h.weight": (2 * channels, 2 * channels, 1, 1), p + "v_to_h.bias": (2 * channels,),
                   p + "residual.weight": (channels, channels, 1, 1), p + "residual.bias": (channels,)}
    return {**shapes, "out.weight": (categories, channels, 1, 1), "out.bias": (categories,)}


def dependency(net, params, size):
    """|d out_i / d x_j| summed over the output channels, for a (size x size) image: (size^2, size^2), raster order."""
    x0 = jnp.asarray(np.random.default_rng(1).uniform(size=(1, 1, size, size)))
    jac = jax.jacrev(lambda x: net(params, x))(x0)  # (1, K, H, W, 1, 1, H, W)
    return jnp.sum(jnp.abs(jac), axis=(0, 1, 4, 5)).reshape(size * size, size * size)


def gated_region(size, layers, row, col):
    """The gated stack's receptive field at (row, col): rows row - L .. row - 1 at columns col - L .. col + L, and the
    row itself at columns col - L .. col - 1. (size, size) bool."""
    r, c = np.mgrid[0:size, 0:size]
    above = (r >= row - layers) & (r < row) & (np.abs(c - col) <= layers)
    return above | ((r == row) & (c < col) & (c >= col - layers))
