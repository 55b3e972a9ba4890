"""The noise-aware classifier p_phi(y | x_t, t) of classifier guidance (Dhariwal & Nichol 2021, sec. 4.1).

A classifier of clean images is useless at large t (``python -m theory_jax guidance`` measures its cross-entropy
gap on a mixture), so the guide is trained on noised images x_t = q_sample(x_0, alpha_bar_t, eps) at random t with
the cross-entropy ``noisy_classifier_loss`` (``guidance.functions``). Its network is the encoder half of the project's U-Net
(``practice_torch.nets``: the same ResBlock, Downsample, attention and time embedding), ending in a global
average pool and a linear head instead of the decoder, as in Dhariwal & Nichol's guide.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from practice_torch.guidance.functions import class_log_prob
from practice_torch.nets import Downsample, ResBlock, TimeEmbedding
from practice_torch.nets.unet import GROUPNORM_EPS


# The network: the U-Net's encoder half and a linear head ------------------------------------------------------
class NoisyClassifier(nn.Module):
    """logits_phi(x_t, t): x_t (B, C, H, W) in model space ([-1, 1] for images), t (B,) original timestep indices
    -> (B, num_classes). Levels as in ``UNetConfig``: widths channels * mult, halving the resolution between
    levels, ``num_res_blocks`` ResBlocks per level, self-attention at ``attention_levels``."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, channels: int = 32,
                 channel_mults: tuple[int, ...] = (1, 2, 2), num_res_blocks: int = 1,
                 attention_levels: tuple[int, ...] = (2,), heads: int = 1, groups: int = 8, dropout: float = 0.0):
        super().__init__()
        c, h, w = image_shape
        factor = 2 ** (len(channel_mults) - 1)
        if h % factor or w % factor:
            raise ValueError(f"{h}x{w} images do not halve {len(channel_mults) - 1} times; "
                             f"use fewer channel_mults (model.channel_mults)")
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        self.time = TimeEmbedding(channels)
        emb = 4 * channels
        self.stem = nn.Conv2d(c, channels, 3, padding=1)
        blocks: list[nn.Module] = []
        width = channels
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(width, channels * mult, emb, groups, dropout, level in attention_levels, heads))
                width = channels * mult
            if level < len(channel_mults) - 1:
                blocks.append(Downsample(width))
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.GroupNorm(groups, width, eps=GROUPNORM_EPS)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        emb = self.time(t)
        h = self.stem(x_t)
        for block in self.blocks:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
        return self.head(F.silu(self.norm(h)).mean(dim=(2, 3)))


def classifier_grad(classifier: nn.Module, x_t: Tensor, t: Tensor, y: Tensor) -> Tensor:
    """grad_x log p_phi(y | x_t, t) by autograd (B, ...), whatever the surrounding grad mode (samplers run under
    torch.no_grad()). x_t: (B, C, H, W); t: (B,) original indices; y: (B,) labels."""
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(class_log_prob(classifier(x, t), y).sum(), x)
    return grad

