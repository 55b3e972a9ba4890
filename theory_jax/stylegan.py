"""StyleGAN2: a mapping network to an intermediate latent space W, convolutions whose kernels the styles modulate and
demodulate, noise inputs, style mixing, truncation in W, and the path-length and lazy R1 regularisers.

Lectures: StyleGAN (Karras et al. 2019, "A style-based generator architecture for generative adversarial networks":
the mapping network, sec. 2; style mixing, sec. 3.1; noise, sec. 3.2; perceptual path length, sec. 4.2; truncation,
app. B) and StyleGAN2 (Karras et al. 2020, "Analyzing and improving the image quality of StyleGAN": modulation and
demodulation, eq. 1-3; the path-length penalty, eq. 4; lazy regularisation, sec. 3.1).

A style s (B, I), an affine map of w, scales the kernel's input channels and each output channel is then rescaled
to unit norm:

    w'_{ijk} = s_i w_{ijk}                                                                        (eq. 1)
    w''_{ijk} = w'_{ijk} / sqrt(sum_{i,k} w'_{ijk}^2 + eps)                                         (eq. 3)

so that inputs of unit variance give outputs of unit variance whatever the style (eq. 2): demodulation does
statistically what AdaIN's instance normalisation did to the activations, without the droplet artefacts. The batch
folds into the channels and one grouped convolution applies every example's kernels at once. The path-length
penalty E_{w, y} (||J_w^T y||_2 - a)^2 (eq. 4), y ~ N(0, I) an image of noise and a the running mean of the lengths,
asks the generator's Jacobian to be a scaled isometry; R1 (Mescheder et al. 2018) penalises the discriminator's
gradient at the real data; both are evaluated every few minibatches only, scaled by the interval (lazy
regularisation), with Adam's settings adjusted (``lazy_adam``).

Every array is NCHW and every kernel OIHW (the exchange layout), in the functions and in the flax networks below,
which hold their parameters in the torch layout under torch's names, so the converter crosses them unchanged.
Twin: ``practice_torch/stylegan`` (same names, same arguments); cases: ``shared_specs/stylegan.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.linen.dtypes import promote_dtype

from theory_jax.subgradients import leaky_relu


def softplus(x):
    """log(1 + e^x) = logaddexp(x, 0), exact for every x. (...) -> (...)."""
    return jnp.logaddexp(x, 0.0)


def _conv2d(x, kernels, padding: int, groups: int = 1):
    """torch's ``F.conv2d`` (cross-correlation), NCHW input and OIHW kernels, stride 1, symmetric ``padding``.
    x: (B, G I, H, W), kernels: (G O, I, k, k) -> (B, G O, H', W')."""
    x, kernels = promote_dtype(x, kernels)  # float32 weights on float64 inputs compute in float64, as flax's layers
    return jax.lax.conv_general_dilated(x, kernels, (1, 1), [(padding, padding)] * 2,
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=groups)


# 1. The mapping network's input and the style modulation -----------------------------------------------------------
def pixel_norm(z, eps: float = 1e-8):
    """z / sqrt(mean(z^2) + eps) over the features: each latent scaled to unit root mean square before the mapping
    network (Karras et al. 2019, app. C; the reference's ``normalize_2nd_moment``). z: (B, D) -> (B, D)."""
    return z * jax.lax.rsqrt(jnp.mean(z**2, axis=-1, keepdims=True) + eps)


def modulate(weight, styles):
    """w'_{ijk} = s_i w_{ijk} (StyleGAN2, eq. 1): each example's styles scale the kernel's input channels.
    weight: (O, I, k, k), styles: (B, I) -> (B, O, I, k, k)."""
    return weight[None] * styles[:, None, :, None, None]


def demodulate(weight, eps: float = 1e-8):
    """w''_{ijk} = w'_{ijk} / sqrt(sum_{i,k} w'_{ijk}^2 + eps) (StyleGAN2, eq. 3): each output channel of each
    example's kernel scaled to unit norm, so that unit-variance inputs give unit-variance outputs (eq. 2).
    weight: (B, O, I, k, k), eps: the epsilon under the square root -> (B, O, I, k, k)."""
    return weight * jax.lax.rsqrt(jnp.sum(weight**2, axis=(2, 3, 4), keepdims=True) + eps)


_demodulate = demodulate  # the function, under a name the flag ``demodulate`` of the convolutions does not shadow


def modulated_conv2d(x, weight, styles, demodulate: bool = True, eps: float = 1e-8):
    """The modulated (and demodulated) k x k convolution, stride 1, 'same' padding k // 2, computed as StyleGAN2's
    grouped convolution (sec. 2.2): the batch folded into the channels, x as (1, B I, H, W), the B kernels as
    (B O, I, k, k), groups = B. x: (B, I, H, W), weight: (O, I, k, k), styles: (B, I), demodulate: whether to
    apply eq. 3 (the ToRGB layers do not), eps: eq. 3's epsilon -> (B, O, H, W)."""
    b, i, h, w = x.shape
    o, _, k, _ = weight.shape
    kernels = modulate(weight, styles)  # eq. 1
    if demodulate:
        kernels = _demodulate(kernels, eps)  # eq. 3
    out = _conv2d(x.reshape(1, b * i, h, w), kernels.reshape(b * o, i, k, k), k // 2, groups=b)
    return out.reshape(b, o, h, w)


def modulated_conv2d_per_example(x, weight, styles, demodulate: bool = True, eps: float = 1e-8):
    """``modulated_conv2d`` as the definition reads: for each example b an ordinary convolution of x_b with its own
    modulated (and demodulated) kernel (``jax.vmap`` over the examples); the reference the grouped form is checked
    against. x: (B, I, H, W), weight: (O, I, k, k), styles: (B, I) -> (B, O, H, W)."""
    kernels = modulate(weight, styles)
    if demodulate:
        kernels = _demodulate(kernels, eps)
    pad = weight.shape[-1] // 2
    return jax.vmap(lambda xb, kb: _conv2d(xb[None], kb, pad)[0])(x, kernels)


# 2. The synthesis network's other operations ---------------------------------------------------------------------
def upsample2x(x):
    """Nearest-neighbour doubling of H and W. The paper upsamples with a [1, 3, 3, 1] FIR low-pass filter (Zhang
    2019, as in the reference's ``upfirdn2d``); it is left out here. x: (B, C, H, W) -> (B, C, 2H, 2W)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)


def add_noise(x, noise, strength):
    """x + strength * noise, one noise image per example broadcast over the channels, scaled by the layer's learned
    strength (Karras et al. 2019, sec. 3.2, the "B" inputs of Figure 1). x: (B, C, H, W), noise: (B, 1, H, W),
    strength: () -> (B, C, H, W)."""
    return x + strength * noise


def minibatch_stddev(x, group_size: int = 4, eps: float = 1e-8):
    """x with one feature map appended: the standard deviation of each feature and pixel over a group of examples,
    sqrt(Var_group + eps) (biased), averaged over the features and pixels (Karras et al. 2018, sec. 3; StyleGAN2's
    discriminator, the reference's ``MinibatchStdLayer`` with one feature). Groups of G = min(group_size, B)
    examples, example n in group n mod (B / G), as the reference reshapes (G, B / G, ...).
    x: (B, C, H, W), B a multiple of G -> (B, C + 1, H, W)."""
    b, c, h, w = x.shape
    g = min(group_size, b)
    if b % g:
        raise ValueError(f"the minibatch standard deviation groups {g} examples; a batch of {b} is not a multiple")
    y = x.reshape(g, b // g, c, h, w)
    std = jnp.sqrt(jnp.mean((y - y.mean(axis=0)) ** 2, axis=0) + eps)  # (B / G, C, H, W)
    stat = jnp.broadcast_to(std.mean(axis=(1, 2, 3)).reshape(1, b // g, 1, 1, 1), (g, b // g, 1, h, w))
    return jnp.concatenate([x, stat.reshape(b, 1, h, w)], axis=1)


# 3. Styles in W: mixing and truncation ----------------------------------------------------------------------------
def mixing_ws(w1, w2, cutoff, num_ws: int):
    """Style mixing regularisation (Karras et al. 2019, sec. 3.1): layer l takes w1 where l < cutoff and w2 from the
    cut-off on (cutoff = num_ws: no mixing). w1, w2: (B, D), cutoff: (B,) integers in [1, num_ws] -> (B, num_ws, D)."""
    first = (jnp.arange(num_ws)[None, :] < cutoff[:, None])[..., None]  # (B, num_ws, 1)
    return jnp.where(first, w1[:, None, :], w2[:, None, :])


def truncate(w, w_avg, psi):
    """The truncation trick in W, w' = w_avg + psi (w - w_avg) (Karras et al. 2019, app. B): a shrink toward the
    mean style, psi = 1 leaving w as it is. w: (..., D), w_avg: (D,) -> (..., D)."""
    return w_avg + psi * (w - w_avg)


def update_w_avg(w_avg, w, beta: float = 0.995):
    """The tracked mean style the truncation shrinks toward, w_avg <- mean_b(w) + beta (w_avg - mean_b(w)) (the
    reference's lerp, an exponential moving average of the batch means). w_avg: (D,), w: (B, D) -> (D,)."""
    mean = jnp.mean(w, axis=0)
    return mean + beta * (w_avg - mean)


# 4. The regularisers: path length (eq. 4), R1, lazy regularisation (sec. 3.1) ---------------------------------------
def path_lengths(grads):
    """||J_w^T y||_2 per example, averaged in square over the ws: sqrt(mean_l sum_d g_{l d}^2) (StyleGAN2, eq. 4;
    the reference's ``pl_lengths``). grads: (B, num_ws, D) = J_w^T y -> (B,)."""
    return jnp.sqrt(jnp.mean(jnp.sum(grads**2, axis=2), axis=1))


def path_length_penalty(lengths, pl_mean, decay: float = 0.01):
    """(penalty, new_pl_mean): a = pl_mean + decay (mean(lengths) - pl_mean), the running mean of the lengths
    (constant to the gradient), and E (||J_w^T y|| - a)^2 (StyleGAN2, eq. 4).
    lengths: (B,), pl_mean: (), decay: the running mean's rate -> ((), ()).
    The reference differentiates the penalty through a's dependence on this batch's mean (a factor decay); here, as
    in the torch twin, a is held constant."""
    new_pl_mean = jax.lax.stop_gradient(pl_mean + decay * (jnp.mean(lengths) - pl_mean))
    return jnp.mean((lengths - new_pl_mean) ** 2), new_pl_mean


def r1_penalty(grads):
    """R1 without its weight: E_x ||grad_x D(x)||^2 at the real images (Mescheder et al. 2018, eq. 9; the caller
    multiplies by gamma / 2 and, when lazy, by the interval). grads: (B, C, H, W) of the real logits' sum with
    respect to the real images -> ()."""
    return jnp.mean(jnp.sum(jnp.reshape(grads, (grads.shape[0], -1)) ** 2, axis=1))


def lazy_adam(lr: float, betas, interval: int):
    """(lr, betas) of a player regularised every ``interval`` minibatches (StyleGAN2, sec. 3.1; the reference's
    ``mb_ratio``): c = interval / (interval + 1), lr c and betas ** c, so that the regularised player's Adam keeps
    its step size and its moments' time constant per minibatch though it steps interval + 1 times in interval
    minibatches. interval 0 or 1 (no lazy regularisation): (lr, betas) as they are."""
    if interval <= 1:
        return lr, tuple(betas)
    c = interval / (interval + 1)
    return lr * c, tuple(b**c for b in betas)


# 5. The non-saturating logistic loss -------------------------------------------------------------------------------
def logistic_d_loss(real_logits, fake_logits):
    """The discriminator's logistic loss, mean softplus(-D(x)) + mean softplus(D(G(z))) (Goodfellow et al. 2014,
    eq. 1 negated; StyleGAN2's ``loss_Dgen`` + ``loss_Dreal``). real_logits: (B,), fake_logits: (B',) -> ()."""
    return jnp.mean(softplus(-real_logits)) + jnp.mean(softplus(fake_logits))


def logistic_g_loss(fake_logits):
    """The generator's non-saturating loss, mean softplus(-D(G(z))) = -mean log sigmoid(D(G(z))) (Goodfellow et
    al. 2014, sec. 3). fake_logits: (B,) -> ()."""
    return jnp.mean(softplus(-fake_logits))


# 6. The networks (flax twins of ``practice_torch.stylegan.networks``) --------------------------------------------
# NCHW throughout, parameters ``weight`` and ``bias`` in the torch layout, submodules under torch's names (a
# ModuleList's ``layers.0`` is ``layers_0`` here), so ``shared_specs.interop`` crosses every tensor unchanged.
LRELU_GAIN = math.sqrt(2.0)  # the reference's ``def_gain`` of lrelu: keeps the activations' scale


def leaky_relu_gain(x):
    """leaky_relu(x, 0.2) * sqrt(2), torch's slope at 0 (the reference's ``bias_act`` with act='lrelu')."""
    return leaky_relu(x, 0.2) * LRELU_GAIN


def activate(x, activation: str):
    """x as it is ("linear") or through ``leaky_relu_gain`` ("lrelu")."""
    return leaky_relu_gain(x) if activation == "lrelu" else x


def _avg_pool2x(x):
    """2 x 2 average pooling (torch's ``F.avg_pool2d(x, 2)``). x: (B, C, H, W) -> (B, C, H/2, W/2)."""
    b, c, h, w = x.shape
    return x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(b, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def _normal(scale: float = 1.0):
    """N(0, scale^2) parameters in float32, flax's parameter dtype (only ``init`` draws them: cases and checkpoints
    bring their own weights)."""
    return nn.initializers.normal(scale, jnp.float32)


def _zeros(key, shape, dtype=jnp.float32):
    """Zeros in float32, flax's parameter dtype."""
    return jnp.zeros(shape, dtype)


class EqualizedLinear(nn.Module):
    """y = act(x (c W)^T + lr_mul b) with W (out, in) stored ~ N(0, 1 / lr_mul^2) and c = lr_mul / sqrt(in) (the
    reference's ``FullyConnectedLayer``). x: (..., in) -> (..., out)."""

    in_features: int
    out_features: int
    bias_init: float = 0.0
    lr_mul: float = 1.0
    activation: str = "linear"

    @nn.compact
    def __call__(self, x):
        weight = self.param("weight", _normal(1 / self.lr_mul), (self.out_features, self.in_features))
        bias = self.param("bias", nn.initializers.constant(self.bias_init, jnp.float32), (self.out_features,))
        y = x @ (weight * (self.lr_mul / math.sqrt(self.in_features))).T + bias * self.lr_mul
        return activate(y, self.activation)


class EqualizedConv2d(nn.Module):
    """A k x k convolution, stride 1, 'same' padding k // 2, W (out, in, k, k) ~ N(0, 1) scaled by 1 / sqrt(in k^2)
    at run time, optionally without a bias. x: (B, in, H, W) -> (B, out, H, W)."""

    in_channels: int
    out_channels: int
    kernel: int
    bias: bool = True
    activation: str = "linear"

    @nn.compact
    def __call__(self, x):
        k = self.kernel
        weight = self.param("weight", _normal(), (self.out_channels, self.in_channels, k, k))
        y = _conv2d(x, weight * (1 / math.sqrt(self.in_channels * k * k)), k // 2)
        if self.bias:
            y = y + self.param("bias", _zeros, (self.out_channels,))[None, :, None, None]
        return activate(y, self.activation)


class MappingNetwork(nn.Module):
    """w = f(z): ``pixel_norm``(z), then ``layers`` equalised lrelu layers at lr_mul (Karras et al. 2019, sec. 2).
    ``w_avg`` (w_dim,), the tracked mean of w, is a running statistic in the ``batch_stats`` collection (as the
    BatchNorm twins keep theirs), torch's buffer of the same name. z: (B, z_dim) -> (B, w_dim)."""

    z_dim: int
    w_dim: int
    layers: int
    lr_mul: float = 0.01

    @nn.compact
    def __call__(self, z):
        self.variable("batch_stats", "w_avg", jnp.zeros, (self.w_dim,), jnp.float32)
        x = pixel_norm(z)
        for i in range(self.layers):
            x = EqualizedLinear(self.z_dim if i == 0 else self.w_dim, self.w_dim, lr_mul=self.lr_mul,
                                activation="lrelu", name=f"layers_{i}")(x)
        return x


class SynthesisLayer(nn.Module):
    """One style-modulated 3x3 convolution (StyleGAN2, Figure 2c): style s = ``affine``(w) (bias 1), the modulated and
    demodulated convolution of the (upsampled) input, noise scaled by ``noise_strength``, the bias, lrelu; the
    kernel carries no equalising gain (demodulation cancels it). x: (B, in, r, r) (r/2 when ``up``), w: (B, w_dim),
    noise: (B, 1, r, r) -> (B, out, r, r)."""

    in_channels: int
    out_channels: int
    w_dim: int
    up: bool = False

    @nn.compact
    def __call__(self, x, w, noise):
        styles = EqualizedLinear(self.w_dim, self.in_channels, bias_init=1.0, name="affine")(w)
        weight = self.param("weight", _normal(), (self.out_channels, self.in_channels, 3, 3))
        strength = self.param("noise_strength", _zeros, ())
        bias = self.param("bias", _zeros, (self.out_channels,))
        if self.up:
            x = upsample2x(x)
        x = add_noise(modulated_conv2d(x, weight, styles), noise, strength)  # eqs. 1 and 3, then the noise
        return leaky_relu_gain(x + bias[None, :, None, None])


class ToRGB(nn.Module):
    """The 1x1 modulated convolution without demodulation, plus a bias; the equalising gain 1 / sqrt(in) on the
    styles (the reference's ``ToRGBLayer``). x: (B, in, r, r), w: (B, w_dim) -> (B, img_channels, r, r)."""

    in_channels: int
    img_channels: int
    w_dim: int

    @nn.compact
    def __call__(self, x, w):
        styles = EqualizedLinear(self.w_dim, self.in_channels, bias_init=1.0, name="affine")(w)
        weight = self.param("weight", _normal(), (self.img_channels, self.in_channels, 1, 1))
        bias = self.param("bias", _zeros, (self.img_channels,))
        y = modulated_conv2d(x, weight, styles * (1 / math.sqrt(self.in_channels)), demodulate=False)
        return y + bias[None, :, None, None]


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) and noises -> images (B, C, H, W), linear (StyleGAN2's "skip" generator): the learned
    ``const``; block 0 ``layers_0`` then ``to_rgb_0``; block i >= 1 ``layers_{2i-1}`` (up), ``layers_{2i}``,
    ``to_rgb_i``, the image so far upsampled and added to. Block 0 reads ws[:, 0] and its ToRGB ws[:, 1]; block
    i >= 1 ws[:, 2i - 1], ws[:, 2i] and its ToRGB ws[:, 2i + 1] (num_ws = 2 len(channels))."""

    w_dim: int
    img_shape: Sequence[int]
    channels: Sequence[int]
    base: int

    def noise_shapes(self, batch: int) -> list[tuple[int, int, int, int]]:
        """The shape (batch, 1, r, r) of each layer's noise input, in the order of the layers."""
        sides = [self.base] + [self.base * 2**i for i in range(1, len(self.channels)) for _ in range(2)]
        return [(batch, 1, r, r) for r in sides]

    @nn.compact
    def __call__(self, ws, noises):
        ch, w_dim = self.channels, self.w_dim
        const = self.param("const", _normal(), (ch[0], self.base, self.base))
        x = jnp.broadcast_to(const[None], (ws.shape[0], *const.shape))
        x = SynthesisLayer(ch[0], ch[0], w_dim, name="layers_0")(x, ws[:, 0], noises[0])
        img = ToRGB(ch[0], self.img_shape[0], w_dim, name="to_rgb_0")(x, ws[:, 1])
        for i in range(1, len(ch)):
            x = SynthesisLayer(ch[i - 1], ch[i], w_dim, up=True, name=f"layers_{2 * i - 1}")(
                x, ws[:, 2 * i - 1], noises[2 * i - 1])
            x = SynthesisLayer(ch[i], ch[i], w_dim, name=f"layers_{2 * i}")(x, ws[:, 2 * i], noises[2 * i])
            img = upsample2x(img) + ToRGB(ch[i], self.img_shape[0], w_dim, name=f"to_rgb_{i}")(x, ws[:, 2 * i + 1])
        return img


class Generator(nn.Module):
    """G(z) = synthesis(ws(z)): the ``mapping`` network, then the ``synthesis`` network under one w per layer."""

    z_dim: int
    w_dim: int
    mapping_layers: int
    img_shape: Sequence[int]
    channels: Sequence[int]
    base: int

    def setup(self):
        self.mapping = MappingNetwork(self.z_dim, self.w_dim, self.mapping_layers)
        self.synthesis = SynthesisNetwork(self.w_dim, self.img_shape, self.channels, self.base)

    @property
    def num_ws(self) -> int:
        return 2 * len(self.channels)

    def ws(self, z, z2=None, cutoff=None, psi: float = 1.0):
        """The styles (B, num_ws, w_dim): w = mapping(z) at every layer, or, with z2 (B, z_dim) and cutoff (B,),
        ``mixing_ws`` of w and mapping(z2); ``truncate``d toward the mapping's ``w_avg`` when psi != 1."""
        w = self.mapping(z)
        if z2 is None:
            ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], self.num_ws, w.shape[1]))
        else:
            ws = mixing_ws(w, self.mapping(z2), cutoff, self.num_ws)
        return ws if psi == 1 else truncate(ws, self.mapping.variables["batch_stats"]["w_avg"], psi)

    def __call__(self, z, noises, z2=None, cutoff=None, psi: float = 1.0):
        """Images (B, C, H, W) from z (B, z_dim) and one noise input per synthesis layer (``noise_shapes``)."""
        return self.synthesis(self.ws(z, z2, cutoff, psi), noises)


class DiscriminatorBlock(nn.Module):
    """StyleGAN2's residual block: ``conv0`` 3x3 lrelu (in -> in), ``conv1`` 3x3 lrelu (in -> out), 2 x 2 average
    pooling; ``skip`` a 1x1 convolution without bias of the pooled input; (main + skip) / sqrt(2).
    x: (B, in, r, r) -> (B, out, r/2, r/2)."""

    in_channels: int
    out_channels: int

    @nn.compact
    def __call__(self, x):
        skip = EqualizedConv2d(self.in_channels, self.out_channels, 1, bias=False, name="skip")(_avg_pool2x(x))
        main = EqualizedConv2d(self.in_channels, self.in_channels, 3, activation="lrelu", name="conv0")(x)
        main = EqualizedConv2d(self.in_channels, self.out_channels, 3, activation="lrelu", name="conv1")(main)
        return (_avg_pool2x(main) + skip) / math.sqrt(2.0)


class Discriminator(nn.Module):
    """D(x) -> a logit (B,): ``from_rgb`` (1x1 lrelu), ``blocks_i`` halving the side down to base (channels
    reversed), ``minibatch_stddev``, ``conv`` 3x3 lrelu, ``fc`` dense lrelu on the (C, H, W)-ordered features,
    ``out`` to one logit. x: (B, C, H, W) -> (B,)."""

    img_shape: Sequence[int]
    channels: Sequence[int]
    base: int

    @nn.compact
    def __call__(self, x):
        ch = self.channels
        x = EqualizedConv2d(self.img_shape[0], ch[-1], 1, activation="lrelu", name="from_rgb")(x)
        for j, i in enumerate(range(len(ch) - 1, 0, -1)):
            x = DiscriminatorBlock(ch[i], ch[i - 1], name=f"blocks_{j}")(x)
        x = EqualizedConv2d(ch[0] + 1, ch[0], 3, activation="lrelu", name="conv")(minibatch_stddev(x))
        x = EqualizedLinear(ch[0] * self.base * self.base, ch[0], activation="lrelu", name="fc")(
            x.reshape(x.shape[0], -1))
        return EqualizedLinear(ch[0], 1, name="out")(x)[..., 0]


class StyleGAN(nn.Module):
    """The ``generator`` and the ``discriminator``, and ``pl_mean`` (), the running mean of the path lengths, in the
    ``batch_stats`` collection (torch's buffer). The players work on images in [-1, 1]: with ``unit_interval`` the
    data x is shown to the discriminator as 2x - 1 and a generated image y read as (y + 1) / 2."""

    img_shape: Sequence[int]
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 2
    channels: Sequence[int] = (64, 64, 32)
    base: int = 7
    unit_interval: bool = True

    def setup(self):
        self.generator = Generator(self.z_dim, self.w_dim, self.mapping_layers, self.img_shape, self.channels,
                                   self.base)
        self.discriminator = Discriminator(self.img_shape, self.channels, self.base)
        self.pl_mean = self.variable("batch_stats", "pl_mean", jnp.zeros, (), jnp.float32)

    def to_model(self, x):
        """Data images as the players see them: 2x - 1 for images in [0, 1], else x. (B, C, H, W) -> the same."""
        return 2 * x - 1 if self.unit_interval else x

    def to_data(self, y):
        """The generator's images in the data's range: (y + 1) / 2 for images in [0, 1], else y."""
        return (y + 1) / 2 if self.unit_interval else y

    def __call__(self, z, noises, z2=None, cutoff=None, psi: float = 1.0):
        """Images G(z) (B, C, H, W) in the data's range."""
        return self.to_data(self.generator(z, noises, z2, cutoff, psi))

    def logit(self, x):
        """The discriminator's logit D(x) of images in the data's range: (B, C, H, W) -> (B,)."""
        return self.discriminator(self.to_model(x))
