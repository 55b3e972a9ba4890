"""Conditioning the noise prediction on a label: label dropout and the two guidance combinations.

Shared by every diffusion topic that conditions (``ddpm``'s class-conditional sampler, ``guidance``,
``latent_diffusion``); the derivation ``python -m theory_jax guidance`` proves them, ``theory_jax/diffusion.py`` has
the JAX twins. Per-example coefficients (alpha_bar_t, w) are (B,) tensors or scalars (``per_example``), so one call
serves images (B, C, H, W) and 2-D points (B, D).
"""

from __future__ import annotations

import torch
from torch import Tensor

from practice_torch.broadcasting import per_example

__all__ = ["cfg_eps", "classifier_guided_eps", "implicit_classifier_grad", "null_labels"]


def null_labels(y: Tensor, drop: Tensor, num_classes: int) -> Tensor:
    """Label dropout for classifier-free guidance (Ho & Salimans 2022, Algorithm 1): the dropped labels become the
    null token K = num_classes, so one network learns eps(x_t, y) and eps(x_t). y: (B,) long, drop: (B,) bool -> (B,)."""
    return torch.where(drop, torch.full_like(y, num_classes), y)


def cfg_eps(eps_cond: Tensor, eps_uncond: Tensor, w: Tensor | float) -> Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6): eps~ = (1 + w) eps(x_t, y) - w eps(x_t, null).
    eps_cond: (B, ...) the prediction given the condition y; eps_uncond: (B, ...) the unconditional one; w: a float,
    () or (B,), the guidance weight (w = 0 is the conditional model, w = -1 the unconditional one) -> (B, ...)."""
    w = per_example(w, eps_cond)
    return (1 + w) * eps_cond - w * eps_uncond


def classifier_guided_eps(eps: Tensor, grad_log_p_y: Tensor, alpha_bar_t: Tensor | float, w: Tensor | float) -> Tensor:
    """Classifier guidance in epsilon form (Dhariwal & Nichol 2021, Algorithm 2):
    eps^ = eps - w sqrt(1 - alpha_bar_t) grad_x log p_phi(y | x_t).

    It is the score of p(x_t) p(y|x_t)^w through s = -eps / sqrt(1 - alpha_bar_t).
    eps, grad_log_p_y: (B, ...); alpha_bar_t: scalar or (B,); w: scalar or (B,).
    """
    alpha_bar_t = per_example(alpha_bar_t, eps)
    w = per_example(w, eps)
    return eps - w * torch.sqrt(1 - alpha_bar_t) * grad_log_p_y


def implicit_classifier_grad(eps_cond: Tensor, eps_uncond: Tensor, alpha_bar_t: Tensor | float) -> Tensor:
    """grad_x log p_i(y | x_t) of the implicit classifier p_i(y|x) = p(x|y) p(y) / p(x) (Ho & Salimans 2022, sec. 3.2):
    score(x_t|y) - score(x_t) = -(eps(x_t, y) - eps(x_t)) / sqrt(1 - alpha_bar_t), by s = -eps / sqrt(1 - alpha_bar_t).
    Guiding eps_cond by it with scale w is ``cfg_eps(eps_cond, eps_uncond, w)``.
    eps_cond, eps_uncond: (B, ...); alpha_bar_t: scalar or (B,) -> (B, ...)."""
    alpha_bar_t = per_example(alpha_bar_t, eps_cond)
    return -(eps_cond - eps_uncond) / torch.sqrt(1 - alpha_bar_t)
