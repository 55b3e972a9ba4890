"""Progressive growing of GANs (Karras et al. 2018), the GAN's ``model.progressive=true``: both players start at a
quarter of the image's side and double it twice (7 -> 14 -> 28 on Fashion-MNIST), each new resolution faded in.

* ``EqualizedLinear`` and ``EqualizedConv2d`` (sec. 4.1, the equalised learning rate): weights drawn from N(0, 1)
  and scaled at every use by He's constant sqrt(2 / fan_in), so that Adam, whose steps do not depend on a weight's
  scale, moves every layer's effective weights at the same relative speed.
* ``pixel_norm`` after each of the generator's convolutions (sec. 4.2).
* ``ProgressiveGenerator`` and ``ProgressiveDiscriminator``: a block per resolution, a 1x1 ``to_rgb`` / ``from_rgb``
  per resolution, and at ``stage`` s with ``alpha`` < 1 the new block's path blended with the old resolution's
  (``fade_in``), so that at alpha = 0 each player computes exactly what it did at the stage before (the derivation
  checks it); the discriminator's last block reads the minibatch standard deviation (sec. 3).
* ``ProgressiveAdversarial`` holds both (weights only) and ``at(stage, alpha)`` is the pair as the step sees it;
  the stage and alpha come from the step (``functions.growth``), never from the network.

Class and attribute names match the flax twin (``theory_jax/gan.py``), so ``shared_specs.interop`` maps the weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from practice_torch.gan.functions import fade_in, minibatch_std, pixel_norm


class EqualizedLinear(nn.Module):
    """y = x (c W)^T + b with W ~ N(0, 1) stored and c = sqrt(gain / fan_in) applied at run time (Karras et al.
    2018, sec. 4.1). x: (..., in) -> (..., out)."""

    def __init__(self, in_features: int, out_features: int, gain: float = 2.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = math.sqrt(gain / in_features)

    def reset_parameters(self) -> None:
        """Fresh weights as at construction, W ~ N(0, 1) and b = 0 (what ``quality.untrained_copy`` calls)."""
        with torch.no_grad():
            self.weight.normal_()
            self.bias.zero_()

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


class EqualizedConv2d(nn.Module):
    """A k x k convolution (stride 1, 'same' padding) with the equalised learning rate: W ~ N(0, 1) stored, scaled by
    sqrt(gain / (in k^2)) at run time. x: (B, in, H, W) -> (B, out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, gain: float = 2.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale, self.padding = math.sqrt(gain / (in_channels * kernel * kernel)), kernel // 2

    reset_parameters = EqualizedLinear.reset_parameters

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


def upsample(x):
    """Nearest-neighbour doubling of an image's side. (B, C, H, W) -> (B, C, 2H, 2W)."""
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def downsample(x):
    """2 x 2 average pooling, halving an image's side. (B, C, H, W) -> (B, C, H/2, W/2)."""
    return F.avg_pool2d(x, 2)


class ProgressiveGenerator(nn.Module):
    """z (B, d) -> images (B, C, s, s) at ``stage`` (side s = base 2^stage), sigmoid outputs in [0, 1] when
    ``unit_interval``. The base block: pixel-normed z, an equalised linear layer to a (channels, base, base) map and
    a 3x3 conv; each later block doubles the side (nearest) and applies two 3x3 convs; leaky ReLU 0.2 and pixel norm
    after each; a 1x1 ``to_rgb`` per resolution. At alpha < 1 the last block's picture is blended with the previous
    resolution's, doubled, in pixels (after the sigmoid), as ``ProgressiveAdversarial.real_at`` blends the reals."""

    def __init__(self, latent_dim: int, image_shape: Sequence[int], channels: int = 32, stages: int = 3,
                 unit_interval: bool = True):
        super().__init__()
        c, side = image_shape[0], image_shape[1]
        self.base, self.channels, self.unit_interval = side // 2 ** (stages - 1), channels, unit_interval
        self.project = EqualizedLinear(latent_dim, channels * self.base**2)
        self.convs = nn.ModuleList([EqualizedConv2d(channels, channels, 3)] +
                                   [EqualizedConv2d(channels, channels, 3) for _ in range(2 * (stages - 1))])
        self.to_rgb = nn.ModuleList(EqualizedConv2d(channels, c, 1, gain=1.0) for _ in range(stages))

    def block(self, h, s: int):
        """Block ``s`` (0: the base's conv; s > 0: double the side, two convs), each conv then leaky ReLU, pixel norm."""
        convs = self.convs[:1] if s == 0 else self.convs[2 * s - 1:2 * s + 1]
        if s > 0:
            h = upsample(h)
        for conv in convs:
            h = pixel_norm(F.leaky_relu(conv(h), 0.2))
        return h

    def forward(self, z, stage: int, alpha: float = 1.0):
        h = pixel_norm(F.leaky_relu(self.project(pixel_norm(z)), 0.2).view(-1, self.channels, self.base, self.base))
        h = self.block(h, 0)
        for s in range(1, stage + 1):
            previous, h = h, self.block(h, s)
        out = self.picture(self.to_rgb[stage](h))
        if stage > 0 and alpha < 1:  # in pixels: the discriminator sees fakes faded as the reals are (real_at)
            out = fade_in(alpha, upsample(self.picture(self.to_rgb[stage - 1](previous))), out)
        return out

    def picture(self, rgb):
        """A ``to_rgb`` output as pixels: the sigmoid's [0, 1] when ``unit_interval``, else as it is."""
        return torch.sigmoid(rgb) if self.unit_interval else rgb


class ProgressiveDiscriminator(nn.Module):
    """x (B, C, s, s) at ``stage`` -> logits (B,): a 1x1 ``from_rgb`` per resolution; each block above the base two
    3x3 convs and a 2x2 average pool; the base block the minibatch standard deviation of its flattened features
    (``minibatch_std``) and two equalised linear layers. At alpha < 1 the new block's features are blended with the
    previous resolution's ``from_rgb`` of the halved image."""

    def __init__(self, image_shape: Sequence[int], channels: int = 32, stages: int = 3):
        super().__init__()
        c, side = image_shape[0], image_shape[1]
        self.base = side // 2 ** (stages - 1)
        self.from_rgb = nn.ModuleList(EqualizedConv2d(c, channels, 1) for _ in range(stages))
        self.convs = nn.ModuleList([EqualizedConv2d(channels, channels, 3)] +
                                   [EqualizedConv2d(channels, channels, 3) for _ in range(2 * (stages - 1))])
        self.dense = EqualizedLinear(channels * self.base**2 + 1, channels)
        self.out = EqualizedLinear(channels, 1, gain=1.0)

    def block(self, h, s: int):
        """Block ``s`` > 0: two convs with leaky ReLU 0.2, then halve the side; block 0: the base's conv."""
        convs = self.convs[:1] if s == 0 else self.convs[2 * s - 1:2 * s + 1]
        for conv in convs:
            h = F.leaky_relu(conv(h), 0.2)
        return downsample(h) if s > 0 else h

    def forward(self, x, stage: int, alpha: float = 1.0):
        h = self.block(F.leaky_relu(self.from_rgb[stage](x), 0.2), stage)
        if stage > 0 and alpha < 1:
            h = fade_in(alpha, F.leaky_relu(self.from_rgb[stage - 1](downsample(x)), 0.2), h)
        for s in range(stage - 1, -1, -1):
            h = self.block(h, s)
        h = F.leaky_relu(self.dense(minibatch_std(torch.flatten(h, 1))), 0.2)
        return self.out(h).squeeze(-1)


class ProgressiveAdversarial(nn.Module):
    """The progressive GAN's two players (weights only). ``forward(z)`` and ``logit(x)`` are the grown network's (the
    last stage, alpha 1: what ``sample`` and ``eval`` see); ``at(stage, alpha)`` is the pair at a step of the growth.
    shape: one example (C, H, W), H = W divisible by 2^(stages - 1)."""

    def __init__(self, shape: Sequence[int], latent_dim: int = 64, channels: int = 32, stages: int = 3,
                 unit_interval: bool = True):
        super().__init__()
        if len(shape) != 3 or shape[1] != shape[2] or shape[1] % 2 ** (stages - 1):
            raise ValueError(f"progressive growing doubles a square image's side {stages - 1} times: its side must be "
                             f"divisible by {2 ** (stages - 1)}, got shape {tuple(shape)}")
        self.shape, self.latent_dim, self.num_classes, self.stages = tuple(shape), latent_dim, 0, stages
        self.generator = ProgressiveGenerator(latent_dim, shape, channels, stages, unit_interval)
        self.discriminator = ProgressiveDiscriminator(shape, channels, stages)

    def forward(self, z, y=None):
        return self.generator(z, self.stages - 1)

    def logit(self, x, y=None):
        return self.discriminator(x, self.stages - 1)

    def at(self, stage: int, alpha: float) -> Growth:
        return Growth(self, stage, alpha)

    def real_at(self, x, stage: int, alpha: float):
        """Real images as the players see them at (stage, alpha): average-pooled to the stage's side and, while it
        fades in, blended in pixels with the previous side's doubled, as the generator's pictures are (Karras et al.
        2018, appendix A.1). x: (B, C, H, W) -> (B, C, s, s)."""
        for _ in range(self.stages - 1 - stage):
            x = downsample(x)
        return fade_in(alpha, upsample(downsample(x)), x) if stage > 0 and alpha < 1 else x

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def generator_parameters(self) -> list[nn.Parameter]:
        return list(self.generator.parameters())


class Growth:
    """The players at one (stage, alpha) of the growth, as the GAN's objectives call them: ``self(z, y)`` and
    ``logit(x, y)``. A view for one step: the weights stay the network's."""

    def __init__(self, net: ProgressiveAdversarial, stage: int, alpha: float):
        self.net, self.stage, self.alpha = net, stage, alpha

    def __call__(self, z, y=None):
        return self.net.generator(z, self.stage, self.alpha)

    def logit(self, x, y=None):
        return self.net.discriminator(x, self.stage, self.alpha)
