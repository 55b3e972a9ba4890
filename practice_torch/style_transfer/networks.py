"""CycleGAN's players (Zhu et al. 2017): two translators G: A -> B and F: B -> A, and a discriminator per domain.

A translator is a small convolutional encoder-decoder in the shape of CycleGAN's ResNet generator (their
appendix 7.2: c7s1-k, d2k, R2k x n, u k, c7s1-3), shrunk to 28 x 28 grey images: a 3x3 conv to ``width``
channels, one stride-2 conv to 2 ``width`` (H/2), ``blocks`` residual blocks, a stride-2 transposed conv back to
``width`` (H) and a 3x3 conv to the image's channels, with a sigmoid for [0, 1] images. Instance normalisation
(GroupNorm with one group per channel) after each inner conv, as in CycleGAN; never batch normalisation, so a
translation does not depend on the rest of the batch.

The discriminators D_A, D_B are the f-GAN's ``ConvCritic`` (a global real/fake score, not CycleGAN's 70 x 70
PatchGAN: the images are 28 x 28). ``CycleGAN`` holds the four networks: weights only. The two players, both
discriminators and both translators, each have their own optimizer; who updates when is the adapter's
``train_step`` (``practice_torch.style_transfer.training``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from practice_torch.f_divergence.networks import ConvCritic


def instance_norm(channels: int) -> nn.GroupNorm:
    """Instance normalisation (Ulyanov et al. 2016) as GroupNorm with one group per channel, learnt scale and shift."""
    return nn.GroupNorm(channels, channels)


class ResidualBlock(nn.Module):
    """x + conv(relu(norm(conv(x)))) followed by a norm: CycleGAN's R_k block, 3x3 convs. x: (B, C, H, W) -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = instance_norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = instance_norm(channels)

    def forward(self, x):
        h = F.relu(self.norm1(self.conv1(x)))
        return x + self.norm2(self.conv2(h))


class Translator(nn.Module):
    """An image-to-image network x (B, C, H, W) -> (B, C, H, W), in [0, 1] with ``unit_interval`` (a sigmoid).
    H and W must be even (one stride-2 level). The convs before an instance norm have no bias: the norm removes it,
    so its gradient is rounding noise, which Adam would scale up to full-size steps (a random walk that made two
    processes and one drift apart)."""

    def __init__(self, shape: Sequence[int], width: int = 32, blocks: int = 2, unit_interval: bool = True):
        super().__init__()
        c = shape[0]
        self.unit_interval = unit_interval
        self.stem = nn.Conv2d(c, width, 3, padding=1, bias=False)  # c7s1-k (3x3 here)
        self.norm0 = instance_norm(width)
        self.down = nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False)  # d2k: H -> H/2
        self.norm1 = instance_norm(2 * width)
        self.blocks = nn.ModuleList(ResidualBlock(2 * width) for _ in range(blocks))
        self.up = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False)  # u k: H/2 -> H
        self.norm2 = instance_norm(width)
        self.out = nn.Conv2d(width, c, 3, padding=1)

    def forward(self, x):
        h = F.relu(self.norm0(self.stem(x)))
        h = F.relu(self.norm1(self.down(h)))
        for block in self.blocks:
            h = block(h)
        h = F.relu(self.norm2(self.up(h)))
        y = self.out(h)
        return torch.sigmoid(y) if self.unit_interval else y


class CycleGAN(nn.Module):
    """G: A -> B (``g_ab``), F: B -> A (``f_ba``), D_A and D_B (``discriminator_a``, ``discriminator_b``:
    x (B, C, H, W) -> (B,) scores).

    shape: one image (C, H, W), H and W divisible by 4 (the discriminators' two stride-2 convs).
    """

    def __init__(self, shape: Sequence[int], width: int = 32, blocks: int = 2, channels: Sequence[int] = (32, 64),
                 fc: int = 256, unit_interval: bool = True):
        super().__init__()
        if len(shape) != 3 or shape[1] % 4 or shape[2] % 4 or len(channels) != 2:
            raise ValueError(f"CycleGAN needs (C, H, W) images with H and W divisible by 4 and two model.channels, "
                             f"got shape {tuple(shape)} and channels {tuple(channels)}")
        if width < 1 or blocks < 0:
            raise ValueError(f"model.width must be >= 1 and model.blocks >= 0, got {width} and {blocks}")
        self.shape = tuple(shape)
        self.g_ab = Translator(shape, width, blocks, unit_interval)
        self.f_ba = Translator(shape, width, blocks, unit_interval)
        self.discriminator_a = ConvCritic(shape, channels, fc)
        self.discriminator_b = ConvCritic(shape, channels, fc)

    def forward(self, a):
        """G(a): a (B, C, H, W) from domain A -> (B, C, H, W) in domain B."""
        return self.g_ab(a)

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """Both discriminators' weights: one player."""
        return [*self.discriminator_a.parameters(), *self.discriminator_b.parameters()]

    def translator_parameters(self) -> list[nn.Parameter]:
        """Both translators' weights: the other player."""
        return [*self.g_ab.parameters(), *self.f_ba.parameters()]
