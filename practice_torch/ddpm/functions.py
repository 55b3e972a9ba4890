"""The DDPM objective and its variational bound (Ho et al. 2020, eqs. 5, 12-14).

-log p(x_0) <= L_T + sum_{t>=1} L_{t-1} + L_0 (eq. 5, the paper's indices; ours run 0..T-1):

* ``prior_kl``: L_T = KL(q(x_T|x_0) || N(0, I)), no parameters.
* ``vlb_term``: L_{t-1} = KL(q(x_{t-1}|x_t, x_0) || p_theta(x_{t-1}|x_t)) with the same variance beta-tilde on both
  sides, which equals ``vlb_weight`` * ||eps - eps_theta||^2 (eq. 12); ``eps_loss`` drops the weight (L_simple, eq. 14).
* ``decoder_nll``: L_0 = -log p_theta(x_0|x_1) under the discretised Gaussian decoder of eq. 13 (8-bit data on [-1, 1]).
Each returns one number per example, summed over the example's dimensions (nats). The derivation
``python -m theory_jax ddpm`` proves the split and the reduction on a Gaussian data set where each term is closed form.
"""

from __future__ import annotations

import math

import torch

from practice_torch.broadcasting import per_example
from practice_torch.diffusion.schedule import posterior_mean_variance, predict_x0

__all__ = ["decoder_nll", "discretized_gaussian_log_likelihood", "eps_loss", "prior_kl", "vlb_term", "vlb_weight"]


def _sum_trailing(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(len(v), -1).sum(dim=1)


def eps_loss(eps: torch.Tensor, eps_pred: torch.Tensor) -> torch.Tensor:
    """L_simple per example: the mean over dimensions of (eps - eps_theta(x_t, t))^2 (Ho et al. 2020, eq. 14).
    eps: (B, ...) the noise that made x_t; eps_pred: (B, ...) the network's prediction eps_theta(x_t, t) -> (B,)."""
    return (eps - eps_pred).pow(2).reshape(len(eps), -1).mean(dim=1)


def vlb_weight(alpha_bar_t, alpha_bar_prev):
    """The weight of eq. 12 with sigma_t^2 = beta-tilde_t: beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)),
    beta_t = 1 - alpha_bar_t / alpha_bar_prev. Equals beta_t / (2 alpha_t (1 - alpha_bar_prev)); undefined at t = 0.
    (B,) or () -> same shape."""
    alpha_bar_t, alpha_bar_prev = torch.as_tensor(alpha_bar_t), torch.as_tensor(alpha_bar_prev)
    beta = 1 - alpha_bar_t / alpha_bar_prev
    var = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta
    return beta**2 / (2 * var * (1 - beta) * (1 - alpha_bar_t))


def vlb_term(x0: torch.Tensor, x_t: torch.Tensor, eps_pred: torch.Tensor, alpha_bar_t, alpha_bar_prev) -> torch.Tensor:
    """L_{t-1} = KL(N(mu_tilde(x_t, x_0), beta-tilde I) || N(mu_theta(x_t), beta-tilde I)) = ||mu_tilde - mu_theta||^2 /
    (2 beta-tilde), summed over dimensions; mu_theta = mu_tilde(x_t, x0_hat(eps_pred)) (eqs. 7, 11). t >= 1 only.
    x0, x_t, eps_pred: (B, ...); alpha_bar_t, alpha_bar_prev: (B,) -> (B,)."""
    mean, var = posterior_mean_variance(x0, x_t, alpha_bar_t, alpha_bar_prev)
    mean_pred, _ = posterior_mean_variance(predict_x0(x_t, alpha_bar_t, eps_pred), x_t, alpha_bar_t, alpha_bar_prev)
    return _sum_trailing((mean - mean_pred).pow(2) / (2 * per_example(var, x_t)))


def prior_kl(x0: torch.Tensor, alpha_bar_T) -> torch.Tensor:
    """L_T = KL(N(sqrt(a) x_0, (1 - a) I) || N(0, I)) = 1/2 sum(a x_0^2 + (1 - a) - 1 - ln(1 - a)), a = alpha_bar_T.
    x0: (B, ...); alpha_bar_T: (B,) or () -> (B,)."""
    a = per_example(alpha_bar_T, x0)
    return _sum_trailing(0.5 * (a * x0**2 - a - torch.log1p(-a)))


def _std_normal_cdf(v: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(v / math.sqrt(2)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                                        bins: int = 256) -> torch.Tensor:
    """log of the mass N(mean, e^{2 log_scale}) puts on x's bin of width 2/(bins-1) (Ho et al. eq. 13): x on the grid
    {-1, ..., 1} of ``bins`` values; the first bin extends to -inf, the last to +inf. (B, ...) -> (B, ...)."""
    half = 1.0 / (bins - 1)
    inv_s = torch.exp(-log_scale)
    cdf_plus = _std_normal_cdf(inv_s * (x - mean + half))
    cdf_minus = _std_normal_cdf(inv_s * (x - mean - half))
    log_cdf_plus = torch.log(cdf_plus.clamp_min(1e-12))
    log_one_minus_cdf_minus = torch.log((1 - cdf_minus).clamp_min(1e-12))
    log_mass = torch.log((cdf_plus - cdf_minus).clamp_min(1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_mass))


def decoder_nll(x0: torch.Tensor, x_1: torch.Tensor, eps_pred: torch.Tensor, alpha_bar_0, var, bins: int = 256
                ) -> torch.Tensor:
    """L_0 = -log p_theta(x_0|x_1) with the discretised Gaussian of mean x0_hat(x_1, eps_pred) (the posterior mean at
    the first step) and variance ``var`` (eq. 13), summed over dimensions. x0: (B, ...) on the 8-bit grid in [-1, 1];
    x_1, eps_pred: (B, ...); alpha_bar_0, var: (B,) or () -> (B,)."""
    mean = predict_x0(x_1, alpha_bar_0, eps_pred)
    log_scale = 0.5 * torch.log(per_example(torch.as_tensor(var, dtype=x0.dtype), x0))
    return -_sum_trailing(discretized_gaussian_log_likelihood(x0, mean, log_scale.expand_as(x0), bins))
