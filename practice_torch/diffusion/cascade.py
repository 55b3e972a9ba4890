"""Cascaded diffusion's pieces (Ho et al. 2021, "Cascaded diffusion models for high fidelity image generation"):
the low-resolution image a base stage models, its nearest upsampling, the super-resolution stage's condition, and
Gaussian conditioning augmentation, the forward process applied to that condition so that the stage learns to
trust it only as far as a base model's samples deserve. JAX twins: ``theory_jax/diffusion.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from practice_torch.broadcasting import per_example

__all__ = ["augment_condition", "downsample", "upsample"]


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """The low-resolution image: x (B, C, H, W) averaged over factor x factor blocks -> (B, C, H / factor, W /
    factor). H and W must be multiples of ``factor``."""
    return F.avg_pool2d(x, factor)


def upsample(z: torch.Tensor, factor: int) -> torch.Tensor:
    """Each pixel of z (B, C, h, w) repeated over a factor x factor block (nearest) -> (B, C, h factor, w factor):
    the super-resolution stage's condition at the output's size; ``low_pass`` = upsample(downsample(x))."""
    return z.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def augment_condition(z: torch.Tensor, alpha_bar_s: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Gaussian conditioning augmentation (Ho et al. 2021, section 4.1): the condition corrupted by the forward
    process at level s, z_s = sqrt(alpha_bar_s) z + sqrt(1 - alpha_bar_s) eps; a random s in training, a chosen one
    at sampling, and the stage is told s. z: (B, ...) the low-resolution condition; alpha_bar_s: (B,) or () the
    signal's share at each example's level; eps: (B, ...) the noise ~ N(0, I) -> z_s: (B, ...)."""
    a = per_example(torch.as_tensor(alpha_bar_s, dtype=z.dtype, device=z.device), z)
    return a.sqrt() * z + (1 - a).sqrt() * eps
