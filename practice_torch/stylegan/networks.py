"""StyleGAN2's networks (Karras et al. 2020, Figure 2d and 7): a mapping network z -> w, a synthesis network that
draws an image from a learned constant under one style w per layer (modulated and demodulated convolutions, noise
inputs, skip connections through ToRGB), and a residual discriminator with the minibatch standard deviation.

* The equalised learning rate everywhere (Karras et al. 2018, sec. 4.1): weights stored ~ N(0, 1) and scaled at
  run time by gain / sqrt(fan_in) (the mapping network's by lr_mul too, its layers learning 100 times slower).
* Parameters are bare ``weight`` and ``bias`` in the torch layout, (O, I) dense and (O, I, k, k) conv, in both
  backends (the flax twins in ``theory_jax/stylegan.py`` hold them the same way), so ``shared_specs.interop`` crosses
  them by name; ``layers.0`` here is ``layers_0`` there.
* Left out of the reference (NVlabs stylegan2-ada-pytorch ``training/networks.py``): the FIR resampling filters
  (nearest-neighbour up, 2 x 2 average-pool down), mixed precision and its clamps, conditioning labels.

Who draws the noise, mixes the styles and updates ``w_avg`` and ``pl_mean`` is the adapter's business
(``practice_torch.stylegan.training``): the networks hold weights and those two buffers only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from practice_torch.stylegan.functions import (
    add_noise,
    minibatch_stddev,
    mixing_ws,
    modulated_conv2d,
    pixel_norm,
    truncate,
    upsample2x,
)

LRELU_GAIN = math.sqrt(2.0)  # the reference's ``def_gain`` of lrelu: keeps the activations' scale


def leaky_relu_gain(x):
    """leaky_relu(x, 0.2) * sqrt(2) (the reference's ``bias_act`` with act='lrelu'). (...) -> (...)."""
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


def activate(x, activation: str):
    """x as it is ("linear") or through ``leaky_relu_gain`` ("lrelu")."""
    return leaky_relu_gain(x) if activation == "lrelu" else x


def _check_activation(activation: str) -> str:
    if activation not in ("linear", "lrelu"):
        raise ValueError(f"activation must be 'linear' or 'lrelu', got {activation!r}")
    return activation


# 1. Equalised layers -------------------------------------------------------------------------------------------------
class EqualizedLinear(nn.Module):
    """y = act(x (c W)^T + lr_mul b) with W stored ~ N(0, 1 / lr_mul^2) and c = lr_mul / sqrt(in) (the reference's
    ``FullyConnectedLayer``): at lr_mul < 1 the same Adam steps move the effective weights lr_mul times as far.
    x: (..., in) -> (..., out)."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: str = "linear"):
        super().__init__()
        self.activation = _check_activation(activation)
        self.lr_mul, self.bias_init = lr_mul, bias_init
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """W ~ N(0, 1) / lr_mul, b = bias_init (what ``gan.quality.untrained_copy`` calls)."""
        with torch.no_grad():
            self.weight.normal_().div_(self.lr_mul)
            self.bias.fill_(self.bias_init)

    def forward(self, x):
        return activate(F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul), self.activation)


class EqualizedConv2d(nn.Module):
    """A k x k convolution, stride 1, 'same' padding k // 2, W ~ N(0, 1) stored and scaled by 1 / sqrt(in k^2) at run
    time, optionally without a bias. x: (B, in, H, W) -> (B, out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True,
                 activation: str = "linear"):
        super().__init__()
        self.activation = _check_activation(activation)
        self.weight_gain, self.padding = 1 / math.sqrt(in_channels * kernel * kernel), kernel // 2
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.normal_()
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x):
        return activate(F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding), self.activation)


# 2. The mapping network ----------------------------------------------------------------------------------------------
class MappingNetwork(nn.Module):
    """w = f(z): ``pixel_norm``(z), then ``layers`` equalised lrelu layers at lr_mul (Karras et al. 2019, sec. 2).
    The buffer ``w_avg`` (w_dim,) is the tracked mean of w the truncation shrinks toward (``functions.update_w_avg``,
    called by the training step). z: (B, z_dim) -> (B, w_dim)."""

    def __init__(self, z_dim: int, w_dim: int, layers: int, lr_mul: float = 0.01):
        super().__init__()
        self.layers = nn.ModuleList(EqualizedLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mul,
                                                    activation="lrelu") for i in range(layers))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def reset_parameters(self) -> None:
        self.w_avg.zero_()

    def forward(self, z):
        x = pixel_norm(z)
        for layer in self.layers:
            x = layer(x)
        return x


# 3. The synthesis network --------------------------------------------------------------------------------------------
class SynthesisLayer(nn.Module):
    """One style-modulated 3x3 convolution (StyleGAN2, Figure 2c): the style s = A(w) (``affine``, bias 1 so that
    styles start near 1), the modulated and demodulated convolution of the (upsampled) input, the noise scaled by
    the learned ``noise_strength``, the bias, lrelu. The kernel's scale cancels in the demodulation, so it carries
    no equalising gain (as the reference's). x: (B, in, r, r) (r/2 when ``up``), w: (B, w_dim), noise: (B, 1, r, r)
    -> (B, out, r, r)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, up: bool = False):
        super().__init__()
        self.up = up
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.noise_strength = nn.Parameter(torch.empty(()))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.normal_()
            self.noise_strength.zero_()
            self.bias.zero_()

    def forward(self, x, w, noise):
        if self.up:
            x = upsample2x(x)
        x = modulated_conv2d(x, self.weight, self.affine(w))  # eqs. 1 and 3
        x = add_noise(x, noise, self.noise_strength)
        return leaky_relu_gain(x + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """The 1x1 modulated convolution (no demodulation) from features to an image, plus a bias, no activation; the
    equalising gain 1 / sqrt(in) is applied to the styles (as the reference's ``ToRGBLayer``).
    x: (B, in, r, r), w: (B, w_dim) -> (B, img_channels, r, r)."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int):
        super().__init__()
        self.weight_gain = 1 / math.sqrt(in_channels)
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.empty(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.empty(img_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.normal_()
            self.bias.zero_()

    def forward(self, x, w):
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, demodulate=False) + self.bias[None, :, None, None]


def image_side(img_shape: Sequence[int], channels: Sequence[int], base: int) -> int:
    """The side base * 2^(len(channels) - 1) the networks reach, checked against the images' (C, H, W): one-line
    ValueError when they differ (Fashion-MNIST's 28 = 7 * 4: base 7 and three channels)."""
    side = base * 2 ** (len(channels) - 1)
    if len(img_shape) != 3 or img_shape[1] != img_shape[2] or img_shape[1] != side:
        raise ValueError(f"StyleGAN draws square images of side base * 2^(len(channels) - 1) = {base} * "
                         f"2^{len(channels) - 1} = {side}; the images are {tuple(img_shape)}: choose model.base and "
                         f"model.channels so that they meet")
    return side


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) and noises -> images (B, C, H, W), linear outputs (StyleGAN2's "skip" generator,
    Figure 7). A learned ``const`` (channels[0], base, base); block 0: one ``SynthesisLayer`` then ``ToRGB``; block
    i >= 1 at side base 2^i: an upsampling layer, a layer, a ``ToRGB``, the image so far upsampled and added to.
    ``layers`` holds the 2 len(channels) - 1 layers in order, ``to_rgb`` one per block. num_ws = 2 len(channels): a
    ToRGB shares its w with the next block's first layer (the reference's indexing): block 0 reads ws[:, 0] and its
    ToRGB ws[:, 1]; block i >= 1 reads ws[:, 2i - 1], ws[:, 2i] and its ToRGB ws[:, 2i + 1]."""

    def __init__(self, w_dim: int, img_shape: Sequence[int], channels: Sequence[int], base: int):
        super().__init__()
        image_side(img_shape, channels, base)
        self.base, self.num_ws = base, 2 * len(channels)
        self.const = nn.Parameter(torch.empty(channels[0], base, base))
        layers = [SynthesisLayer(channels[0], channels[0], w_dim)]
        for i in range(1, len(channels)):
            layers += [SynthesisLayer(channels[i - 1], channels[i], w_dim, up=True),
                       SynthesisLayer(channels[i], channels[i], w_dim)]
        self.layers = nn.ModuleList(layers)
        self.to_rgb = nn.ModuleList(ToRGB(c, img_shape[0], w_dim) for c in channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.const.normal_()

    def noise_shapes(self, batch: int) -> list[tuple[int, int, int, int]]:
        """The shape (batch, 1, r, r) of each layer's noise input, in the order of ``layers``."""
        sides = [self.base] + [self.base * 2**i for i in range(1, len(self.to_rgb)) for _ in range(2)]
        return [(batch, 1, r, r) for r in sides]

    def forward(self, ws, noises):
        x = self.const[None].expand(ws.shape[0], *self.const.shape)
        x = self.layers[0](x, ws[:, 0], noises[0])
        img = self.to_rgb[0](x, ws[:, 1])
        for i in range(1, len(self.to_rgb)):
            x = self.layers[2 * i - 1](x, ws[:, 2 * i - 1], noises[2 * i - 1])
            x = self.layers[2 * i](x, ws[:, 2 * i], noises[2 * i])
            img = upsample2x(img) + self.to_rgb[i](x, ws[:, 2 * i + 1])
        return img


class Generator(nn.Module):
    """G(z) = synthesis(ws(z)): the ``mapping`` network, then the ``synthesis`` network under one w per layer."""

    def __init__(self, z_dim: int, w_dim: int, mapping_layers: int, img_shape: Sequence[int],
                 channels: Sequence[int], base: int):
        super().__init__()
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers)
        self.synthesis = SynthesisNetwork(w_dim, img_shape, channels, base)
        self.num_ws = self.synthesis.num_ws

    def ws(self, z, z2=None, cutoff=None, psi: float = 1.0):
        """The styles (B, num_ws, w_dim): w = mapping(z) at every layer, or, with z2 (B, z_dim) and cutoff (B,),
        ``mixing_ws`` of w and mapping(z2); ``truncate``d toward ``mapping.w_avg`` when psi != 1."""
        w = self.mapping(z)
        if z2 is None:
            ws = w[:, None, :].expand(-1, self.num_ws, -1)
        else:
            ws = mixing_ws(w, self.mapping(z2), cutoff, self.num_ws)
        return ws if psi == 1 else truncate(ws, self.mapping.w_avg, psi)

    def forward(self, z, noises, z2=None, cutoff=None, psi: float = 1.0):
        """Images (B, C, H, W) from z (B, z_dim) and one noise input per synthesis layer (``noise_shapes``)."""
        return self.synthesis(self.ws(z, z2, cutoff, psi), noises)


# 4. The discriminator ----------------------------------------------------------------------------------------------
class DiscriminatorBlock(nn.Module):
    """StyleGAN2's residual discriminator block (Figure 7c): conv3x3 lrelu (in -> in), conv3x3 lrelu (in -> out),
    2 x 2 average pooling; the skip a 1x1 convolution without bias of the pooled input; (main + skip) / sqrt(2).
    x: (B, in, r, r) -> (B, out, r/2, r/2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, activation="lrelu")
        self.skip = EqualizedConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        skip = self.skip(F.avg_pool2d(x, 2))
        main = F.avg_pool2d(self.conv1(self.conv0(x)), 2)
        return (main + skip) / math.sqrt(2.0)


class Discriminator(nn.Module):
    """D(x) -> a logit (B,): ``from_rgb`` (1x1 lrelu) at the image's side, ``blocks`` halving it down to base
    (channels reversed), then the epilogue at base: ``minibatch_stddev`` (groups of up to 4, one feature), ``conv``
    3x3 lrelu, ``fc`` dense lrelu to channels[0], ``out`` dense to one logit. x: (B, C, H, W) -> (B,)."""

    def __init__(self, img_shape: Sequence[int], channels: Sequence[int], base: int):
        super().__init__()
        image_side(img_shape, channels, base)
        self.from_rgb = EqualizedConv2d(img_shape[0], channels[-1], 1, activation="lrelu")
        self.blocks = nn.ModuleList(DiscriminatorBlock(channels[i], channels[i - 1])
                                    for i in range(len(channels) - 1, 0, -1))
        self.conv = EqualizedConv2d(channels[0] + 1, channels[0], 3, activation="lrelu")
        self.fc = EqualizedLinear(channels[0] * base * base, channels[0], activation="lrelu")
        self.out = EqualizedLinear(channels[0], 1)

    def forward(self, x):
        x = self.from_rgb(x)
        for block in self.blocks:
            x = block(x)
        x = self.conv(minibatch_stddev(x))
        return self.out(self.fc(x.flatten(1))).squeeze(-1)


# 5. Both players -----------------------------------------------------------------------------------------------------
class StyleGAN(nn.Module):
    """The ``generator`` and the ``discriminator`` of StyleGAN2, and the buffer ``pl_mean`` (): the running mean of
    the path lengths the penalty pulls toward (updated by the training step). Weights and those buffers only.

    The players work on images in [-1, 1], as the reference's: with ``unit_interval`` (8-bit images in [0, 1]) the
    data x is shown to the discriminator as 2x - 1 (``to_model``) and a generated image y is read as (y + 1) / 2
    (``to_data``); real-valued images (the galaxies) pass as they are."""

    def __init__(self, img_shape: Sequence[int], z_dim: int = 64, w_dim: int = 64, mapping_layers: int = 2,
                 channels: Sequence[int] = (64, 64, 32), base: int = 7, unit_interval: bool = True):
        super().__init__()
        self.shape, self.latent_dim, self.unit_interval = tuple(img_shape), z_dim, unit_interval
        self.generator = Generator(z_dim, w_dim, mapping_layers, img_shape, channels, base)
        self.discriminator = Discriminator(img_shape, channels, base)
        self.register_buffer("pl_mean", torch.zeros(()))

    def reset_parameters(self) -> None:
        self.pl_mean.zero_()

    def to_model(self, x):
        """Data images as the players see them: 2x - 1 for images in [0, 1], else x. (B, C, H, W) -> the same."""
        return 2 * x - 1 if self.unit_interval else x

    def to_data(self, y):
        """The generator's images in the data's range: (y + 1) / 2 for images in [0, 1], else y."""
        return (y + 1) / 2 if self.unit_interval else y

    def forward(self, z, noises, z2=None, cutoff=None, psi: float = 1.0):
        """Images G(z) (B, C, H, W) in the data's range: ``Generator.forward``, then ``to_data``."""
        return self.to_data(self.generator(z, noises, z2, cutoff, psi))

    def logit(self, x):
        """The discriminator's logit D(x) of images in the data's range: (B, C, H, W) -> (B,)."""
        return self.discriminator(self.to_model(x))

    def generator_parameters(self) -> list[nn.Parameter]:
        return list(self.generator.parameters())

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())
