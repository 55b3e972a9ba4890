"""Denoising diffusion probabilistic models: the forward process, its posterior, the ELBO and the noise schedules.

Lectures: DDPM: forward and reverse processes; ELBO for DDPM; optimising the loss; ELBO equivalence; training; U-Net;
inference; noise estimation (Ho, Jain & Abbeel 2020; Nichol & Dhariwal 2021 for the cosine schedule and respacing).
Builds on ``theory_jax/elbo.py`` (Gaussian KL and log densities).

Timestep convention of the project: integer index t in 0..T-1 (the paper's t+1); alpha_bar[t] = prod_{s<=t} (1 -
beta_s) and alpha_bar_prev[0] = 1. Per-example coefficients are () or (B,) arrays broadcast over the trailing axes of
x. The derivation (``theory_jax/derivations/ddpm.py``) proves, in order: q(x_t|x_0) by composing one-step Gaussians
(SymPy for two steps and the induction step, numerically for T steps, by Monte Carlo on the simulated chain); the
posterior q(x_{t-1}|x_t, x_0) by completing the square; the ELBO split L_T + sum L_{t-1} + L_0 on 1-D Gaussian data
where every term is closed form (against an independent joint-Gaussian computation of the ELBO, and below log p(x_0));
the reduction of L_{t-1} to the weighted epsilon-MSE; the linear and cosine schedules; restoration by replacement
(RePaint, ILVR) on a 2-D Gaussian whose conditional is exact: right where the known and unknown parts are independent,
biased where they are correlated, harmonised by resampling. Twin: ``practice_torch/ddpm`` (same names, same
arguments); cases: ``shared_specs/ddpm.py``. The U-Net is ``theory_jax.nets.unet.UNet`` (re-exported here).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.special import erf

from theory_jax.broadcasting import per_example
from theory_jax.diffusion import (
    alpha_bars,
    augment_condition,
    cosine_betas,
    ddpm_step,
    downsample,
    linear_betas,
    low_pass,
    posterior_mean_variance,
    predict_x0,
    q_sample,
    renoise,
    repaint_levels,
    replace_known,
    replace_low_pass,
    upsample,
)
from theory_jax.nets.unet import UNet
from theory_jax.subgradients import clamp

__all__ = ["UNet", "alpha_bars", "augment_condition", "cosine_betas", "ddpm_step", "decoder_nll", "downsample",
           "discretized_gaussian_log_likelihood", "eps_loss", "linear_betas", "low_pass", "posterior_mean_variance",
           "predict_x0", "prior_kl", "q_sample", "renoise", "repaint_levels", "replace_known", "replace_low_pass",
           "upsample", "vlb_term", "vlb_weight"]


def _sum_trailing(v):
    return v.reshape(v.shape[0], -1).sum(axis=1)


# 1-2. Noise schedules, q(x_t|x_0), its inverse, the posterior and the ancestral step: the diffusion core
# (theory_jax/diffusion.py), imported above and proved in the derivation (theory_jax/derivations/ddpm.py).


# 3. The terms of the variational bound --------------------------------------------------------------------------
def eps_loss(eps, eps_pred):
    """L_simple per example: the mean over dimensions of (eps - eps_theta(x_t, t))^2 (Ho et al. 2020, eq. 14).
    eps: (B, ...) the noise that made x_t; eps_pred: (B, ...) the network's prediction eps_theta(x_t, t) -> (B,)."""
    return ((eps - eps_pred) ** 2).reshape(eps.shape[0], -1).mean(axis=1)


def vlb_weight(alpha_bar_t, alpha_bar_prev):
    """beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)) with sigma_t^2 = beta_tilde_t (eq. 12)."""
    alpha_bar_t, alpha_bar_prev = jnp.asarray(alpha_bar_t), jnp.asarray(alpha_bar_prev)
    beta = 1 - alpha_bar_t / alpha_bar_prev
    var = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta
    return beta**2 / (2 * var * (1 - beta) * (1 - alpha_bar_t))


def vlb_term(x0, x_t, eps_pred, alpha_bar_t, alpha_bar_prev):
    """L_{t-1} = ||mu_tilde(x_t, x_0) - mu_theta(x_t)||^2 / (2 beta_tilde), summed over dimensions; t >= 1. -> (B,)."""
    mean, var = posterior_mean_variance(x0, x_t, alpha_bar_t, alpha_bar_prev)
    mean_pred, _ = posterior_mean_variance(predict_x0(x_t, alpha_bar_t, eps_pred), x_t, alpha_bar_t, alpha_bar_prev)
    return _sum_trailing((mean - mean_pred) ** 2 / (2 * per_example(var, x_t)))


def prior_kl(x0, alpha_bar_T):
    """L_T = KL(N(sqrt(a) x_0, (1 - a) I) || N(0, I)), a = alpha_bar_T, summed over dimensions. -> (B,)."""
    a = per_example(alpha_bar_T, x0)
    return _sum_trailing(0.5 * (a * x0**2 - a - jnp.log1p(-a)))


def _std_normal_cdf(v):
    return 0.5 * (1 + erf(v / math.sqrt(2)))


def discretized_gaussian_log_likelihood(x, mean, log_scale, bins: int = 256):
    """log of the mass of N(mean, e^{2 log_scale}) on x's bin of width 2/(bins-1) on [-1, 1]; the edge bins extend
    to -inf / +inf (eq. 13). (B, ...) -> (B, ...)."""
    half = 1.0 / (bins - 1)
    inv_s = jnp.exp(-log_scale)
    cdf_plus = _std_normal_cdf(inv_s * (x - mean + half))
    cdf_minus = _std_normal_cdf(inv_s * (x - mean - half))
    log_cdf_plus = jnp.log(clamp(cdf_plus, 1e-12))
    log_one_minus_cdf_minus = jnp.log(clamp(1 - cdf_minus, 1e-12))
    log_mass = jnp.log(clamp(cdf_plus - cdf_minus, 1e-12))
    return jnp.where(x < -0.999, log_cdf_plus, jnp.where(x > 0.999, log_one_minus_cdf_minus, log_mass))


def decoder_nll(x0, x_1, eps_pred, alpha_bar_0, var, bins: int = 256):
    """L_0 = -log p(x_0|x_1), discretised Gaussian of mean x0_hat(x_1, eps_pred), variance ``var`` (eq. 13). -> (B,)."""
    mean = predict_x0(x_1, alpha_bar_0, eps_pred)
    log_scale = 0.5 * jnp.log(per_example(jnp.asarray(var, dtype=x0.dtype), x0))
    return -_sum_trailing(discretized_gaussian_log_likelihood(x0, mean, jnp.broadcast_to(log_scale, x0.shape), bins))
