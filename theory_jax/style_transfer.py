"""Style transfer and domain translation: the Gram-matrix style loss, the content loss, and CycleGAN's
cycle-consistency and identity losses.

Lectures: style transfer; domain translation (Gatys, Ecker & Bethge 2016, "Image style transfer using
convolutional neural networks", eq. 1-7; Zhu et al. 2017, "Unpaired image-to-image translation using
cycle-consistent adversarial networks" (CycleGAN), eq. 2-3 and sec. 5.2's identity loss; Taigman et al. 2017).

Style is the correlation of feature channels, ignoring where in the image they fire. For features F: (C, H, W) of
one layer, flattened to (C, N) with N = H W, this project's Gram matrix and losses are

    G(F) = F F^T / (C N)                        (normalised by the layer's size, so layers of any size weigh alike)
    L_style(F, S) = mean_ij (G(F)_ij - G(S)_ij)^2    L_content(F, P) = mean (F - P)^2

Gatys et al.'s E_l = 1/(4 C^2 N^2) sum (F F^T - S S^T)^2 (eq. 4) is the same loss times C^2 / 4: the optimum is the
same, the weight between style and content is not. CycleGAN translates between two domains X and Y with
G: X -> Y and F: Y -> X, and asks that a round trip returns the input:

    L_cyc = E_x ||F(G(x)) - x||_1 + E_y ||G(F(y)) - y||_1         L_id = E_y ||G(y) - y||_1 + E_x ||F(x) - x||_1

Twin: ``practice_torch/style_transfer`` (same names, same arguments); cases: ``shared_specs/style_transfer.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import linen as nn

from theory_jax.nets.conv import ConvTranspose
from theory_jax.subgradients import absolute
from theory_jax.vae import GROUPNORM_EPS, conv_transpose_padding

PAD_1 = ((1, 1), (1, 1))  # torch's padding=1, explicit (flax's 'SAME' pads strided convs asymmetrically)


# 1. The pure functions (twins in practice_torch.style_transfer) -------------------------------------------------
def gram_matrix(features):
    """G = F F^T / (C H W) per example, F the features flattened to (C, H W). features: (B, C, H, W) -> (B, C, C)."""
    b, c, h, w = features.shape
    flat = jnp.reshape(features, (b, c, h * w))
    return flat @ jnp.swapaxes(flat, 1, 2) / (c * h * w)


def style_loss(features, style_features):
    """mean over examples and channel pairs of (G(F) - G(S))^2 (Gatys et al. eq. 4 up to C^2/4).
    features, style_features: (B, C, H, W) -> ()."""
    return jnp.mean((gram_matrix(features) - gram_matrix(style_features)) ** 2)


def content_loss(features, content_features):
    """mean (F - P)^2 over all values (Gatys et al. eq. 1 up to a factor 2/size). (B, C, H, W) x 2 -> ()."""
    return jnp.mean((features - content_features) ** 2)


def cycle_loss(x, x_cycled, y, y_cycled):
    """L_cyc = mean |F(G(x)) - x| + mean |G(F(y)) - y| (CycleGAN eq. 2, L1 averaged over values).
    x, x_cycled: (B, ...), y, y_cycled: (B', ...) -> ()."""
    return jnp.mean(absolute(x_cycled - x)) + jnp.mean(absolute(y_cycled - y))


def identity_loss(x, f_of_x, y, g_of_y):
    """L_id = mean |G(y) - y| + mean |F(x) - x|: a translator fed its own target domain should change nothing
    (CycleGAN sec. 5.2). x, f_of_x: (B, ...), y, g_of_y: (B', ...) -> ()."""
    return jnp.mean(absolute(g_of_y - y)) + jnp.mean(absolute(f_of_x - x))


# 2. CycleGAN's translator (twin: practice_torch.style_transfer.networks) -----------------------------------------
class ResidualBlock(nn.Module):
    """x + norm(conv(relu(norm(conv(x))))): CycleGAN's R_k block, 3x3 convs (explicit padding 1), instance norm.
    x: (B, H, W, C) -> same."""

    channels: int

    def setup(self):
        self.conv1 = nn.Conv(self.channels, (3, 3), padding=PAD_1, use_bias=False)
        self.norm1 = instance_norm(self.channels)
        self.conv2 = nn.Conv(self.channels, (3, 3), padding=PAD_1, use_bias=False)
        self.norm2 = instance_norm(self.channels)

    def __call__(self, x):
        h = nn.relu(self.norm1(self.conv1(x)))
        return x + self.norm2(self.conv2(h))


class Translator(nn.Module):
    """CycleGAN's ResNet generator (Zhu et al. appendix 7.2), shrunk: 3x3 conv to ``width``, 4x4 stride-2 conv to
    2 width, ``blocks`` residual blocks, 4x4 stride-2 transposed conv back to ``width`` (torch's padding 1:
    ``conv_transpose_padding``), 3x3 conv to C; instance norm and ReLU after each inner conv (which has no bias,
    as the norm removes it); a sigmoid for [0, 1]
    images. Compact, so that the residual blocks can carry torch's names ``blocks_i`` beside the field ``blocks``.
    x: (B, H, W, C), H and W even -> (B, H, W, C)."""

    shape: Sequence[int]
    width: int = 32
    blocks: int = 2
    unit_interval: bool = True

    @nn.compact
    def __call__(self, x):
        c, w = self.shape[0], self.width
        pad = conv_transpose_padding(4, 1, 0)
        h = nn.relu(instance_norm(w, "norm0")(nn.Conv(w, (3, 3), padding=PAD_1, use_bias=False, name="stem")(x)))
        h = nn.Conv(2 * w, (4, 4), strides=(2, 2), padding=PAD_1, use_bias=False, name="down")(h)
        h = nn.relu(instance_norm(2 * w, "norm1")(h))
        for i in range(self.blocks):
            h = ResidualBlock(2 * w, name=f"blocks_{i}")(h)
        h = ConvTranspose(w, (4, 4), strides=(2, 2), padding=(pad, pad), use_bias=False, name="up")(h)
        h = nn.relu(instance_norm(w, "norm2")(h))
        y = nn.Conv(c, (3, 3), padding=PAD_1, name="out")(h)
        return nn.sigmoid(y) if self.unit_interval else y


def instance_norm(channels: int, name: str | None = None) -> nn.GroupNorm:
    """Instance normalisation as GroupNorm with one group per channel; torch's epsilon and two-pass variance."""
    return nn.GroupNorm(num_groups=channels, epsilon=GROUPNORM_EPS, use_fast_variance=False, name=name)
