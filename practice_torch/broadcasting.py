"""Per-example coefficients: the one broadcasting rule of the twin formulas (JAX twin: ``theory_jax.broadcasting``).

A coefficient of a batch (a noise level alpha_bar_t, a time t, a guidance scale w, a Langevin step size) is a number,
a () tensor, or a (B,) tensor with one value per example. ``per_example`` shapes it to broadcast over the trailing
dimensions of the batch x: (B, ...), so one formula serves images (B, C, H, W), sequences (B, L) and points (B, D).
"""

from __future__ import annotations

import torch

__all__ = ["per_example"]


def per_example(c, x: torch.Tensor) -> torch.Tensor:
    """c: a number, () or (B,) -> a tensor of x's dtype and device: () stays (), (B,) becomes (B, 1, ..., 1) against
    x: (B, ...). Raises ValueError, with the shapes, for anything else."""
    c = torch.as_tensor(c, dtype=x.dtype, device=x.device)
    if c.dim() == 0:
        return c
    if c.dim() != 1 or c.shape[0] != x.shape[0]:
        raise ValueError(f"per-example coefficient must be a scalar or ({x.shape[0]},), got {tuple(c.shape)}")
    return c.reshape(-1, *([1] * (x.dim() - 1)))
