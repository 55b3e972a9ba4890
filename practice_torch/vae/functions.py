"""The pieces of the VAE's ELBO in PyTorch: twins of ``theory_jax/vae.py`` (same names and arguments).

Noise is an argument (``eps``); ``draw_eps`` is the convenience wrapper that draws it.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


# 1. The pieces of the ELBO -----------------------------------------------------------------------
def reparameterize(mean, logvar, eps):
    """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) passed in (Kingma & Welling, eq. 10). (..., d)."""
    return mean + torch.exp(0.5 * logvar) * eps


def bernoulli_log_prob(x, logits):
    """log Bernoulli(x; sigmoid(logits)) = x l - softplus(l), summed over the last axis. (..., D) -> (...)."""
    return torch.sum(x * logits - F.softplus(logits), dim=-1)


def with_condition(h, y, num_classes: int):
    """Concatenate one-hot labels to features for the conditional VAE. h: (B, F), y: (B,) int -> (B, F + n)."""
    if num_classes == 0:
        return h
    if y is None:
        raise ValueError(f"this VAE is conditional on {num_classes} classes: pass labels y")
    return torch.cat([h, F.one_hot(y.long(), num_classes).to(h.dtype)], dim=-1)


def draw_eps(shape, generator: torch.Generator | None = None, device=None, dtype=None):
    """Standard normal noise for ``elbo``/``loss`` (B, d) or ``importance_nll`` (B, K, d)."""
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)
