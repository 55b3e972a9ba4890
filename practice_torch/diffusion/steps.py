"""The per-step update rules of the reverse process: DDPM's ancestral step and DDIM's family, with its inversion.

Timestep convention of the project: integer index t in 0..T-1 (the paper's t+1), a_t = alpha_bar[t], a_prev =
alpha_bar[t-1] with alpha_bar_prev[0] = 1. Per-example coefficients are () or (B,) (``per_example``). Every rule
takes its noise z as an argument. JAX twins: ``theory_jax/diffusion.py``; derivations: ``python -m theory_jax ddpm``
(the ancestral step) and ``python -m theory_jax ddim`` (the DDIM family).
"""

from __future__ import annotations

import torch

from practice_torch.broadcasting import per_example
from practice_torch.diffusion.schedule import posterior_mean_variance, predict_x0

__all__ = ["clipped_eps", "ddim_reverse_step", "ddim_sigma", "ddim_step", "ddpm_step"]


# 1. DDPM's ancestral step (Ho et al. 2020, Algorithm 2) ------------------------------------------------------
def ddpm_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t, alpha_bar_prev, z: torch.Tensor) -> torch.Tensor:
    """One ancestral step x_t -> x_{t-1} ~ N(mu_tilde(x_t, x0_hat), beta_tilde I) (Ho et al. 2020, Algorithm 2):
    1. x0_hat from the predicted noise eps (eq. 15); 2. the posterior mean and variance at x0_hat (eq. 7);
    3. x_{t-1} = mean + sqrt(beta_tilde) z. beta_tilde = 0 at t = 0 (alpha_bar_prev = 1), so the last step is the mean.
    x_t: (B, ...) the current sample; eps: (B, ...) the predicted noise eps_theta(x_t, t); alpha_bar_t, alpha_bar_prev:
    (B,) or () the cumulative products of the alphas at t and t - 1; z: (B, ...) fresh noise ~ N(0, I)
    -> x_{t-1}: (B, ...)."""
    x0_hat = predict_x0(x_t, alpha_bar_t, eps)
    mean, var = posterior_mean_variance(x0_hat, x_t, alpha_bar_t, alpha_bar_prev)
    return mean + torch.sqrt(per_example(var, x_t)) * z


# 2. DDIM's family (Song, Meng & Ermon 2021, eqs. 12 and 16) and its inversion -----------------------------------
def ddim_sigma(alpha_bar_t, alpha_bar_prev, eta):
    """sigma_t(eta) = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev) (Song et al. 2021, eq. 16).

    alpha_bar_t, alpha_bar_prev: (B,) or scalars; eta: float or (B,). Returns the same shape.
    """
    alpha_bar_t = torch.as_tensor(alpha_bar_t)
    return eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * torch.sqrt(1 - alpha_bar_t / alpha_bar_prev)


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t, alpha_bar_prev, eta, z: torch.Tensor) -> torch.Tensor:
    """One DDIM reverse step x_t -> x_{t-1} (Song et al. 2021, eq. 12).

    x_t, eps, z: (B, ...); alpha_bar_t, alpha_bar_prev: (B,) or scalars (alpha_bar_prev = 1 at t = 0); eta: float.
    x_{t-1} = sqrt(a_prev) * x0_hat + sqrt(1 - a_prev - sigma^2) * eps + sigma * z.
    """
    a_t, a_prev = per_example(alpha_bar_t, x_t), per_example(alpha_bar_prev, x_t)
    sigma = ddim_sigma(a_t, a_prev, per_example(eta, x_t))
    x0_hat = (x_t - torch.sqrt(1 - a_t) * eps) / torch.sqrt(a_t)          # "predicted x_0", eq. 12 first term
    direction = torch.sqrt((1 - a_prev - sigma**2).clamp_min(0)) * eps  # "direction pointing to x_t"
    return torch.sqrt(a_prev) * x0_hat + direction + sigma * z              # + random noise


def ddim_reverse_step(x_prev: torch.Tensor, eps: torch.Tensor, alpha_bar_t, alpha_bar_prev) -> torch.Tensor:
    """One step of DDIM inversion x_{t-1} -> x_t: ``ddim_step`` at eta = 0 solved for x_t with eps held fixed.

    x_prev, eps: (B, ...); alpha_bar_t, alpha_bar_prev: (B,) or scalars. With eps from the same network at the new
    level this is the Euler step of the probability-flow ODE (Song et al. 2021, eq. 13) run forwards in time:
    x_t = sqrt(a_t) * x0_hat + sqrt(1 - a_t) * eps,  x0_hat = (x_{t-1} - sqrt(1 - a_prev) * eps) / sqrt(a_prev).
    """
    a_t, a_prev = per_example(alpha_bar_t, x_prev), per_example(alpha_bar_prev, x_prev)
    x0_hat = (x_prev - torch.sqrt(1 - a_prev) * eps) / torch.sqrt(a_prev)
    return torch.sqrt(a_t) * x0_hat + torch.sqrt(1 - a_t) * eps


# 3. Clipping the predicted x_0 (Ho et al.'s clip_denoised) ----------------------------------------------------------
def clipped_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t, clip: float) -> torch.Tensor:
    """The eps for which predict_x0 returns x0_hat clipped to [-clip, clip] (Ho et al.'s clip_denoised):
    eps' = (x_t - sqrt(alpha_bar_t) clip(x0_hat)) / sqrt(1 - alpha_bar_t). x_t, eps: (B, ...), alpha_bar_t: (B,)."""
    a = per_example(alpha_bar_t, x_t)
    x0 = predict_x0(x_t, alpha_bar_t, eps).clamp(-clip, clip)
    return (x_t - torch.sqrt(a) * x0) / torch.sqrt(1 - a)
