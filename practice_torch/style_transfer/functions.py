"""The style and content losses (Gatys et al. 2016, eq. 1-7) and CycleGAN's cycle-consistency and identity losses
(Zhu et al. 2017, eq. 2 and sec. 5.2). Twins of ``theory_jax/style_transfer.py``, same names and arguments.

This project's Gram matrix is normalised by the layer's size, G = F F^T / (C H W); Gatys et al.'s E_l is the
style loss below times C^2 / 4.
"""

from __future__ import annotations

import torch


def gram_matrix(features):
    """G = F F^T / (C H W) per example, F the features flattened to (C, H W). features: (B, C, H, W) -> (B, C, C)."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def style_loss(features, style_features):
    """mean over examples and channel pairs of (G(F) - G(S))^2. features, style_features: (B, C, H, W) -> ()."""
    return torch.mean((gram_matrix(features) - gram_matrix(style_features)) ** 2)


def content_loss(features, content_features):
    """mean (F - P)^2 over all values. (B, C, H, W) x 2 -> ()."""
    return torch.mean((features - content_features) ** 2)


def cycle_loss(x, x_cycled, y, y_cycled):
    """L_cyc = mean |F(G(x)) - x| + mean |G(F(y)) - y|. x, x_cycled: (B, ...), y, y_cycled: (B', ...) -> ()."""
    return torch.mean(torch.abs(x_cycled - x)) + torch.mean(torch.abs(y_cycled - y))


def identity_loss(x, f_of_x, y, g_of_y):
    """L_id = mean |G(y) - y| + mean |F(x) - x|. x, f_of_x: (B, ...), y, g_of_y: (B', ...) -> ()."""
    return torch.mean(torch.abs(g_of_y - y)) + torch.mean(torch.abs(f_of_x - x))
