"""The pure functions of latent diffusion: twins of ``theory_jax/latent_diffusion.py`` (same names, arguments).

Latent scaling (Rombach et al. 2022, appendix G ``scale_by_std``), the effective schedule and SNR it implies,
the prior term L_T, the class-conditional latent epsilon loss with label dropout (noise, timesteps and the
dropout mask are arguments), and the DDPM bound of a linear-Gaussian reverse chain in closed form.
Timesteps are indices t = 0..T-1 (the paper's t + 1). ``python -m theory_jax latent_diffusion`` proves them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from practice_torch.diffusion import null_labels

LOG_2PI = math.log(2 * math.pi)


# 1. Latent scaling ----------------------------------------------------------------------------------------
def latent_scale(z: torch.Tensor) -> torch.Tensor:
    """s = 1 / std of all entries of z (one scalar, unbiased variance: LDM's ``1 / z.flatten().std()``).
    z: (B, ...) -> ()."""
    return 1.0 / torch.std(z.flatten(), correction=1)


def scale_latents(z: torch.Tensor, scale) -> torch.Tensor:
    """u = s z: the latents the DDPM sees. z: (B, ...), scale: () -> (B, ...)."""
    return z * scale


def unscale_latents(u: torch.Tensor, scale) -> torch.Tensor:
    """z = u / s: what the decoder must get back. u: (B, ...), scale: () -> (B, ...)."""
    return u / scale


def effective_alpha_bar(alpha_bar, scale):
    """alpha_bar' = s^2 alpha_bar / (1 + (s^2 - 1) alpha_bar): the schedule on z that diffusing s z amounts to."""
    s2 = scale**2
    return s2 * alpha_bar / (1 + (s2 - 1) * alpha_bar)


def latent_snr(alpha_bar, scale, latent_var):
    """SNR_t = s^2 v alpha_bar_t / (1 - alpha_bar_t) of latents with per-entry variance v scaled by s."""
    return scale**2 * latent_var * alpha_bar / (1 - alpha_bar)


def prior_kl(u0: torch.Tensor, alpha_bar_T) -> torch.Tensor:
    """L_T = KL(q(u_T|u_0) || N(0, I)) = 1/2 sum_j [a u0_j^2 - a - log(1 - a)], a = alpha_bar_T. (B, d) -> (B,)."""
    a = torch.as_tensor(alpha_bar_T, dtype=u0.dtype, device=u0.device)
    return 0.5 * torch.sum(a * u0**2 - a - torch.log1p(-a), dim=-1)


# 2. The latent epsilon loss (Ho et al. 2020, eq. 14, on u = s z) ------------------------------------------
def noisy_latents(z: torch.Tensor, scale, alpha_bar_t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """u_t = sqrt(a_t) s z + sqrt(1 - a_t) eps, a draw of q(u_t|u_0 = s z). z, eps: (B, d); alpha_bar_t: (B,)."""
    a = alpha_bar_t.to(z.dtype)[:, None]
    return torch.sqrt(a) * scale_latents(z, scale) + torch.sqrt(1 - a) * eps


def latent_eps_loss(eps_fn: Callable, z: torch.Tensor, y: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
                    drop: torch.Tensor, alpha_bars: torch.Tensor, scale, num_classes: int) -> torch.Tensor:
    """Per-example |eps - eps_fn(u_t, t, y')|^2 / d, u_t = noisy_latents(z, s, alpha_bars[t], eps), y' the labels
    with the dropped ones nulled. z, eps: (B, d); y, t: (B,) long; drop: (B,) bool; alpha_bars: (T,) -> (B,)."""
    u_t = noisy_latents(z, scale, alpha_bars.to(z.device)[t], eps)
    return torch.mean((eps - eps_fn(u_t, t, null_labels(y, drop, num_classes))) ** 2, dim=-1)


# 3. The DDPM bound in closed form for a linear-Gaussian reverse chain ---------------------------------------
def latent_ddpm_bound(u_mean, u_var, alpha_bars, rev_a, rev_b, rev_var, prior_mean, prior_var) -> torch.Tensor:
    """E_{u0 ~ N(u_mean, u_var)} of the DDPM bound L_T + sum_{t>=1} L_t + L_0 >= -log p(u0) (Ho et al. eq. 5) for
    p(x_T) = N(prior_mean, prior_var), p(x_{t-1}|x_t) = N(a_t x_t + b_t, g_t) (x_{-1} = u0).
    u_mean, u_var: (B, d); alpha_bars: (T,); rev_*: (T, d); prior_*: (d,) -> (B,)."""
    def sq(k, c, noise_var):  # E (k u0 + c + noise)^2
        return (k * u_mean + c) ** 2 + k**2 * u_var + noise_var

    a_last = alpha_bars[-1]
    total = 0.5 * (torch.log(prior_var / (1 - a_last))
                   + (1 - a_last + sq(torch.sqrt(a_last), -prior_mean, 0.0)) / prior_var - 1)  # L_T
    for t in range(1, alpha_bars.shape[0]):  # L_t = KL(q(x_{t-1}|x_t, u0) || p(x_{t-1}|x_t)), Ho et al. eqs. 6-7
        a_t, a_p = alpha_bars[t], alpha_bars[t - 1]
        beta = 1 - a_t / a_p
        c1, c2 = torch.sqrt(a_p) * beta / (1 - a_t), torch.sqrt(1 - beta) * (1 - a_p) / (1 - a_t)
        tilde_var, k = (1 - a_p) * beta / (1 - a_t), c2 - rev_a[t]
        diff2 = sq(c1 + k * torch.sqrt(a_t), -rev_b[t], k**2 * (1 - a_t))
        total = total + 0.5 * (torch.log(rev_var[t] / tilde_var) + (tilde_var + diff2) / rev_var[t] - 1)
    k = 1 - rev_a[0] * torch.sqrt(alpha_bars[0])  # L_0 = -E log p(u0|x_0)
    total = total + 0.5 * (LOG_2PI + torch.log(rev_var[0])
                           + sq(k, -rev_b[0], rev_a[0] ** 2 * (1 - alpha_bars[0])) / rev_var[0])
    return torch.sum(total, dim=-1)
