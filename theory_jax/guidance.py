"""Guided diffusion: classifier guidance and classifier-free guidance, derived and checked on Gaussian mixtures.

Lectures: guided diffusion; classifier guidance; classifier-free guidance; implementation of guided DDPM
(Dhariwal & Nichol 2021, sec. 4 and Algorithms 1-2; Ho & Salimans 2022, eq. 6 and sec. 3.2).

Setting: class-conditional data p_0(x | y = k) = N(mu_k, diag v_k) with class prior pi_k, so p_0(x) is a Gaussian
mixture. Noising q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) keeps every class Gaussian,
p_t(x | y = k) = N(sqrt(abar_t) mu_k, abar_t v_k + 1 - abar_t), so the noised marginal, its score, the noisy
classifier p_t(y | x_t) and the optimal noise predictions eps*(x_t) = E[eps | x_t] (with and without y) are all
closed form: every identity of guidance can be checked to float64 precision.

Timestep convention of the project: integer index t in 0..T-1, alpha_bar[t] = prod_{s<=t} (1 - beta_s).
Twin: ``practice_torch/guidance/`` (same names, same arguments); cases: ``shared_specs/guidance.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from theory_jax.diffusion import (
    cfg_eps,
    classifier_guided_eps,
    implicit_classifier_grad,
    null_labels,
)

__all__ = ["cfg_eps", "class_log_prob", "classifier_guided_eps", "implicit_classifier_grad",
           "mixture_log_joint", "mixture_log_prob", "mixture_noised", "noisy_classifier_loss", "null_labels",
           "optimal_eps"]
LOG_2PI = float(np.log(2 * np.pi))


# 1. Label dropout and the two guidance combinations (null_labels, cfg_eps, classifier_guided_eps,
# implicit_classifier_grad) are the diffusion core's (theory_jax/diffusion.py), imported above; the classifier's terms:
def class_log_prob(logits, y):
    """log p(y | x) = log softmax(logits)_y: the term whose x-gradient classifier guidance follows.
    logits: (B, K); y: (B,) integer labels -> (B,)."""
    return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), y[:, None], axis=-1)[:, 0]


def noisy_classifier_loss(logits, y):
    """The noise-aware classifier's loss: cross-entropy -mean log p_phi(y | x_t) on noised inputs x_t = q_sample(x_0,
    t, eps) at random t (Dhariwal & Nichol, sec. 4.1). logits: (B, K) of the classifier at (x_t, t); y: (B,) -> ()."""
    return -jnp.mean(class_log_prob(logits, y))


# 2. Class-conditional Gaussian data and its noised versions, in closed form -------------------------------
def mixture_noised(means, variances, alpha_bar_t):
    """p_t(x | y = k) = N(sqrt(abar) mu_k, abar v_k + 1 - abar): the class Gaussians after q(x_t|x_0).
    means, variances: (K, D) -> the same two arrays at level alpha_bar_t."""
    return jnp.sqrt(alpha_bar_t) * means, alpha_bar_t * variances + 1 - alpha_bar_t


def mixture_log_joint(x, log_weights, means, variances):
    """log pi_k + log N(x; mu_k, diag v_k) for every class: (..., D) -> (..., K). These are the logits of the
    Bayes classifier: log p(y | x) = class_log_prob(mixture_log_joint(x), y)."""
    diff = x[..., None, :] - means
    return log_weights - 0.5 * jnp.sum(LOG_2PI + jnp.log(variances) + diff**2 / variances, axis=-1)


def mixture_log_prob(x, log_weights, means, variances):
    """log p(x) = logsumexp_k (log pi_k + log N(x; mu_k, v_k)). (..., D) -> (...)."""
    return logsumexp(mixture_log_joint(x, log_weights, means, variances), axis=-1)


def optimal_eps(x_t, log_weights, means, variances, alpha_bar_t, y=None):
    """eps*(x_t[, y]) = E[eps | x_t[, y]] = (x_t - sqrt(abar) E[x_0 | x_t[, y]]) / sqrt(1 - abar), the minimiser of
    the epsilon-MSE, computed from the Gaussian posterior of x_0 in each class (not from the score):
    E[x_0 | x_t, k] = mu_k + v_k sqrt(abar) (x_t - sqrt(abar) mu_k) / (abar v_k + 1 - abar).
    x_t: (B, D); y: None (the unconditional model, classes weighted by p_t(k | x_t)) or (B,) -> (B, D)."""
    m_t, v_t = mixture_noised(means, variances, alpha_bar_t)
    post = means + variances * jnp.sqrt(alpha_bar_t) * (x_t[:, None, :] - m_t) / v_t  # (B, K, D)
    if y is None:
        r = jax.nn.softmax(mixture_log_joint(x_t, log_weights, m_t, v_t), axis=-1)
        x0 = jnp.sum(r[..., None] * post, axis=1)
    else:
        x0 = jnp.take_along_axis(post, y[:, None, None], axis=1)[:, 0]
    return (x_t - jnp.sqrt(alpha_bar_t) * x0) / jnp.sqrt(1 - alpha_bar_t)
