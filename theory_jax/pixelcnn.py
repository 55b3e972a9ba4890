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

import itertools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from theory_jax.derivation import Derivation, full_precision, new_figure

__all__ = ["GatedLayer", "GatedPixelCNN", "MaskedConv2d", "PlainPixelCNN", "bernoulli_log_likelihood", "bits_per_dim",
           "categorical_log_likelihood", "causal_mask", "derive", "gated_activation", "gated_pixelcnn", "masked_conv2d",
           "plain_pixelcnn", "sample_pixel", "stack_mask"]

TITLE = "PixelCNN: masked convolutions, causality and the chain-rule likelihood"
LECTURES = "autoregressive image models; PixelCNN; gated PixelCNN"


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


# Helpers of the derivation -----------------------------------------------------------------------------------------
def _weights(rng, shapes):
    return {name: jnp.asarray(rng.normal(0, 1 / math.sqrt(max(np.prod(s[1:]), 1)), s) if len(s) > 1
                              else rng.normal(0, 0.1, s)) for name, s in shapes.items()}


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


def _section_masks(d: Derivation) -> None:
    """Mask A and mask B: the taps before the centre in raster order, B also the centre."""
    d.say("A PixelCNN orders the pixels in raster order and masks its convolutions so that output $i$ only sees "
          "inputs $j < i$. Mask A (first layer) excludes the centre tap, mask B (later layers) includes it.")
    a, b = np.asarray(causal_mask(5, "A")), np.asarray(causal_mask(5, "B"))
    d.numeric("The 5 x 5 masks keep the taps before the centre in raster order: A has $(k^2 - 1)/2 = 12$ ones, B one "
              "more, and they differ only at the centre", [a.sum(), b.sum(), np.abs(b - a).sum(), (b - a)[2, 2]],
              [12, 13, 1, 1])
    fig, axes = new_figure(columns=2, width=3.0, height=3.0)
    for ax, mask, name in ((axes[0], a, "mask A (first layer)"), (axes[1], b, "mask B (later layers)")):
        ax.imshow(mask, cmap="Greys", vmin=0, vmax=1.6)
        ax.plot([2], [2], "r+", ms=14, mew=2)
        ax.set(title=name, xticks=range(5), yticks=range(5), xlabel="kernel column", ylabel="kernel row")
    d.figure(fig, "Kept taps (grey) of the 5 x 5 masks: every row above the centre (red cross) and the taps left of "
                  "it; only mask B keeps the centre itself.")


def _section_causality(d: Derivation, rng: np.random.Generator, size: int, layers: int, channels: int, kernel: int,
                       cats: int):
    """Causality by autodiff: d out_i / d x_j = 0 for j >= i through plain and gated stacks; type B alone leaks x_i."""
    p_plain = _weights(rng, plain_shapes(layers, channels, kernel, cats))
    p_gated = _weights(rng, gated_shapes(layers, channels, kernel, cats))
    jac = jax.jit(dependency, static_argnums=(0, 2))  # one compiled Jacobian per network
    j_plain = jac(lambda p, x: plain_pixelcnn(p, x, layers), p_plain, size)
    j_gated = jac(lambda p, x: gated_pixelcnn(p, x, layers), p_gated, size)
    future_or_self = np.triu(np.ones((size * size, size * size), bool))  # j >= i
    future = np.triu(np.ones((size * size, size * size), bool), 1)  # j > i
    d.say(f"Causality, by autodiff: the Jacobian of all {size * size} x {cats} logits of a {size} x {size} image "
          f"w.r.t. its {size * size} pixels, through {layers} layers of {channels} channels (random weights).")
    d.numeric("Plain PixelCNN (A then B layers): $\\partial\\,\\mathrm{out}_i / \\partial x_j = 0$ exactly for every "
              "$j \\ge i$ (the masks multiply the kernel: no leak)", np.max(np.asarray(j_plain)[future_or_self]), 0.0,
              rtol=0, atol=1e-300)
    d.numeric("Gated PixelCNN (vertical + horizontal stacks): the same, exactly zero for every $j \\ge i$",
              np.max(np.asarray(j_gated)[future_or_self]), 0.0, rtol=0, atol=1e-300)
    p_b = _weights(np.random.default_rng(3), plain_shapes(layers, channels, kernel, cats))
    j_b = jac(lambda p, x: _all_b_stack(p, x, layers), p_b, size)
    d.numeric("A stack of type-B layers only: zero for every $j > i$ ...", np.max(np.asarray(j_b)[future]), 0.0,
              rtol=0, atol=1e-300)
    diag = np.diag(np.asarray(j_b))
    d.inequality("... but output $i$ sees its own pixel $x_i$ (every diagonal entry > 0): B alone is not a valid "
                 "autoregressive model, hence mask A first", np.full(size * size, 1e-12), diag)
    fig, axes = new_figure(columns=2, width=3.4, height=3.4)
    for ax, jacobian, name in ((axes[0], j_gated, "gated PixelCNN (A, then B)"), (axes[1], j_b, "type B only")):
        shade = np.where(future_or_self[..., None], [1.0, 0.8, 0.8], [1.0, 1.0, 1.0])  # pink: j >= i, forbidden
        ax.imshow(np.where((np.asarray(jacobian) > 0)[..., None], [0.35, 0.35, 0.35], shade))
        ax.set(title=name, xlabel="input pixel $j$ (raster order)", ylabel="output $i$")
    d.figure(fig, "Which inputs each output depends on (grey: $\\partial\\,\\mathrm{out}_i / \\partial x_j \\ne 0$): with "
                  "mask A first nothing reaches the forbidden $j \\ge i$ (pink); with type B only the diagonal is hit.")
    return j_plain, j_gated


def _section_receptive_field(d: Derivation, j_plain, j_gated, size: int, layers: int) -> None:
    """Receptive fields at one pixel: the gated stack covers the causal region, the plain stack has a blind spot."""
    row, col = 5, 3
    i = row * size + col
    reach_plain = np.asarray(j_plain)[i].reshape(size, size) > 0
    reach_gated = np.asarray(j_gated)[i].reshape(size, size) > 0
    region = gated_region(size, layers, row, col)
    d.numeric(f"The gated PixelCNN's receptive field at pixel ({row}, {col}) is exactly the full causal region: rows "
              f"{row - layers}..{row - 1} at columns {col - layers}..{col + layers} (clipped to the image) and the "
              f"{layers} pixels left of it in its row (mismatched pixels)", np.sum(reach_gated != region), 0)
    blind = region & ~reach_plain
    d.inequality(f"The plain PixelCNN has a blind spot: {int(blind.sum())} pixels of that region (above and to the "
                 "right) never reach its output, with no pixel outside it reached either",
                 [1, np.sum(reach_plain & ~region)], [blind.sum(), 0])
    fig, axes = new_figure(columns=2, width=3.0, height=3.2)
    for ax, reach, name in ((axes[0], reach_plain, "plain PixelCNN"), (axes[1], reach_gated, "gated PixelCNN")):
        ax.imshow(reach, cmap="Greys", vmin=0, vmax=1.6)
        ax.plot([col], [row], "b*", ms=12, label="pixel $i$")
        rows, cols = np.nonzero(region & ~reach)
        ax.plot(cols, rows, "rx", ms=9, mew=2, label="blind spot")
        ax.set(title=name, xticks=range(size), yticks=range(size), xlabel="column", ylabel="row")
    axes[0].legend(fontsize=7, loc="lower right")
    d.figure(fig, f"Receptive field (grey) of pixel ({row}, {col}) after {layers} layers: the plain stack misses "
                  "the pixels above and to the right (red crosses), the gated stack's two stacks reach the whole region.")


def _section_chain_rule(d: Derivation):
    """The chain rule on a 3 x 3 binary image: a normalised model whose softmax outputs are its own conditionals."""
    d.say("The chain rule: $\\log p(x) = \\sum_i \\log p(x_i\\mid x_{<i})$. A causal network on a 3 x 3 binary image "
          "defines a distribution over all $2^9 = 512$ images, which we can enumerate.")
    gated = jax.jit(gated_pixelcnn, static_argnums=2)
    small = jnp.asarray(list(itertools.product((0, 1), repeat=9)), dtype=jnp.float64).reshape(512, 1, 3, 3)
    p_small = _weights(np.random.default_rng(2), gated_shapes(3, 4, 3, 2))
    logits = gated(p_small, small, 3)  # (512, 2, 3, 3)
    images = small[:, 0].astype(jnp.int32)
    logp = categorical_log_likelihood(logits, images)
    d.numeric("$\\sum_x \\exp \\sum_i \\log p(x_i\\mid x_{<i}) = 1$ over the 512 images (a normalised model, "
              "whatever the weights)", jnp.sum(jnp.exp(logp)), 1.0)
    joint = np.exp(np.asarray(logp)).reshape((2,) * 9)
    cond_net, cond_joint = [], []
    flat = np.asarray(images).reshape(512, 9)
    probs = np.asarray(jax.nn.softmax(logits, axis=1)).reshape(512, 2, 9)
    for pixel in range(9):
        marg = joint.sum(axis=tuple(range(pixel + 1, 9)))  # p(x_<=i)
        prev = marg.sum(axis=-1)  # p(x_<i)
        for n in range(0, 512, 37):
            key = tuple(flat[n, : pixel + 1])
            cond_joint.append(marg[key] / prev[key[:-1]])
            cond_net.append(probs[n, flat[n, pixel], pixel])
    d.numeric("Each softmax output is the conditional of the joint it defines: $p(x_i\\mid x_{<i}) = "
              "\\sum_{x_{>i}} p(x) / \\sum_{x_{\\ge i}} p(x)$ (every pixel, 14 images)", cond_net, cond_joint)
    bern = bernoulli_log_likelihood(logits[:, 1] - logits[:, 0], images)
    d.numeric("Bernoulli with logit $l_1 - l_0$ is the 2-way softmax: the same $\\log p(x)$ for all 512 images",
              bern, logp)
    g = jax.grad(lambda lg: jnp.sum(categorical_log_likelihood(lg, images[:8])))(logits[:8])
    d.gradient("$\\partial \\log p(x) / \\partial l_{i,k} = \\mathbf 1[x_i = k] - \\mathrm{softmax}(l_i)_k$ "
               "(jax.grad vs the closed form)", g,
               jax.nn.one_hot(images[:8], 2, axis=1) - jax.nn.softmax(logits[:8], axis=1))
    return logits, probs


def _section_bits_and_sampling(d: Derivation, rng: np.random.Generator, logits, probs) -> None:
    """Nats to bits per dimension, and one inverse-CDF sampling step drawing from the softmax."""
    d.numeric("nats <-> bits/dim: a uniform 256-way model costs exactly 8 bits/dim on a 28 x 28 image "
              "($784 \\ln 256$ nats)", bits_per_dim(-categorical_log_likelihood(jnp.zeros((1, 256, 28, 28)),
                                                                               jnp.zeros((1, 28, 28), int)), 784), 8.0)
    u = jnp.asarray(rng.uniform(size=20000))
    draws = sample_pixel(jnp.broadcast_to(logits[5, :, 1, 1], (20000, 2)), u)
    d.monte_carlo("sample_pixel with uniform $u$ draws from the softmax: the frequency of category 1 matches "
                  "$p(x_4 = 1\\mid x_{<4})$", np.asarray(draws == 1, float), float(probs[5, 1, 4]))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("pixelcnn", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    size, layers, channels, kernel, cats = 7, 4, 3, 3, 2

    _section_masks(d)
    j_plain, j_gated = _section_causality(d, rng, size, layers, channels, kernel, cats)
    _section_receptive_field(d, j_plain, j_gated, size, layers)
    logits, probs = _section_chain_rule(d)
    _section_bits_and_sampling(d, rng, logits, probs)
    return d


def _all_b_stack(params, x, layers):
    """The plain PixelCNN with every mask type B (no type A) and tanh (no dead units): the control of the causality
    claim."""
    h = x
    for layer in range(layers):
        w = params[f"convs.{layer}.weight"]
        h = jnp.tanh(masked_conv2d(h, w, params[f"convs.{layer}.bias"], causal_mask(w.shape[-1], "B")))
    return masked_conv2d(h, params["out.weight"], params["out.bias"], jnp.ones((1, 1)))
