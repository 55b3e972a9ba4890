"""The evidence lower bound (ELBO), derived and checked on a linear-Gaussian model.

Lectures: evidence lower bound (course "Advanced Generative Modeling", module 3; Kingma & Welling
2014, sec. 2.2; Burda, Grosse & Salakhutdinov 2016 for the importance-weighted bound).

Model: z ~ N(0, I_d), x | z ~ N(W z + b, sigma^2 I_D). Everything is Gaussian, so log p(x), the
posterior p(z|x), the ELBO of any Gaussian q and KL(q || p(z|x)) all have closed forms, and the
identity log p(x) = ELBO(q) + KL(q || p(z|x)) can be checked to float64 precision.
Twin: ``practice_torch/elbo.py`` (same names, same arguments); cases: ``shared_specs/elbo.py``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp

LOG_2PI = math.log(2 * math.pi)


# 1. Gaussian densities and divergences ---------------------------------------------------------
def gaussian_log_prob(x, mean, logvar):
    """log N(x; mean, diag(exp(logvar))), summed over the last axis. x, mean, logvar: (..., d) -> (...)."""
    return -0.5 * jnp.sum(LOG_2PI + logvar + (x - mean) ** 2 * jnp.exp(-logvar), axis=-1)


def mvn_log_prob(x, mean, scale_tril):
    """log N(x; mean, L L^T) with L = scale_tril lower-triangular. x, mean: (..., d); L: (d, d) -> (...)."""
    d = x.shape[-1]
    diff = jnp.broadcast_to(x - mean, jnp.broadcast_shapes(x.shape, mean.shape))
    white = solve_triangular(scale_tril, diff.reshape(-1, d).T, lower=True).T.reshape(diff.shape)
    return -0.5 * (d * LOG_2PI + jnp.sum(white**2, axis=-1)) - jnp.sum(jnp.log(jnp.abs(jnp.diag(scale_tril))))


def gaussian_kl(mean_q, logvar_q, mean_p, logvar_p):
    """KL(N(mean_q, diag e^logvar_q) || N(mean_p, diag e^logvar_p)), summed over the last axis. mean_q, logvar_q:
    (..., d) q's means and log-variances; mean_p, logvar_p: (..., d) p's (broadcastable) -> (...).

    Per coordinate: log(s_p/s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2 (claim 1 proves it).
    """
    return 0.5 * jnp.sum(logvar_p - logvar_q + (jnp.exp(logvar_q) + (mean_q - mean_p) ** 2) * jnp.exp(-logvar_p) - 1.0,
                         axis=-1)


def standard_normal_kl(mean, logvar):
    """KL(N(mean, diag e^logvar) || N(0, I)) = -1/2 sum(1 + logvar - mean^2 - e^logvar) (Kingma & Welling, app. B)."""
    return -0.5 * jnp.sum(1.0 + logvar - mean**2 - jnp.exp(logvar), axis=-1)


def mvn_kl(mean_q, tril_q, mean_p, tril_p):
    """KL(N(m_q, L_q L_q^T) || N(m_p, L_p L_p^T)) = 1/2 [tr(S_p^-1 S_q) + |L_p^-1 (m_p - m_q)|^2 - d + log|S_p|/|S_q|]."""
    d = mean_q.shape[-1]
    a = solve_triangular(tril_p, tril_q, lower=True)
    diff = jnp.broadcast_to(mean_p - mean_q, jnp.broadcast_shapes(mean_p.shape, mean_q.shape))
    white = solve_triangular(tril_p, diff.reshape(-1, d).T, lower=True).T.reshape(diff.shape)
    logdet = 2.0 * (jnp.sum(jnp.log(jnp.abs(jnp.diag(tril_p)))) - jnp.sum(jnp.log(jnp.abs(jnp.diag(tril_q)))))
    return 0.5 * (jnp.sum(a**2) + jnp.sum(white**2, axis=-1) - d + logdet)


# 2. The linear-Gaussian model: every term in closed form ---------------------------------------
def linear_gaussian_log_joint(x, z, weight, bias, sigma):
    """log p(x, z) = log N(x; W z + b, sigma^2 I) + log N(z; 0, I). x: (..., D), z: (..., d), W: (D, d) -> (...)."""
    logvar = jnp.broadcast_to(2.0 * jnp.log(sigma), x.shape)
    return gaussian_log_prob(x, z @ weight.T + bias, logvar) + gaussian_log_prob(z, 0.0 * z, 0.0 * z)


def linear_gaussian_evidence(x, weight, bias, sigma):
    """log p(x) = log N(x; b, W W^T + sigma^2 I) (marginalising z). x: (..., D) -> (...)."""
    cov = weight @ weight.T + sigma**2 * jnp.eye(weight.shape[0], dtype=weight.dtype)
    return mvn_log_prob(x, bias, jnp.linalg.cholesky(cov))


def linear_gaussian_posterior(x, weight, bias, sigma):
    """p(z|x) = N(mean, L L^T): S = (I + W^T W / sigma^2)^-1, mean = S W^T (x - b) / sigma^2.

    x: (..., D) -> mean (..., d), scale_tril (d, d) (the posterior covariance does not depend on x).
    """
    d = weight.shape[1]
    precision = jnp.eye(d, dtype=weight.dtype) + weight.T @ weight / sigma**2
    cov = jnp.linalg.inv(precision)
    mean = (x - bias) @ weight @ cov.T / sigma**2
    return mean, jnp.linalg.cholesky(0.5 * (cov + cov.T))


def linear_gaussian_elbo(x, weight, bias, sigma, mean, scale_tril):
    """ELBO(q) = E_q[log p(x|z)] + E_q[log p(z)] + H[q] for q = N(mean, L L^T), in closed form.

    E_q |x - W z - b|^2 = |x - W m - b|^2 + tr(W S W^T);  E_q |z|^2 = |m|^2 + tr S;
    H[q] = d/2 log(2 pi e) + log|det L|.  x: (..., D), mean: (..., d), L: (d, d) -> (...).
    """
    big_d, d = weight.shape
    resid = x - mean @ weight.T - bias
    recon = -0.5 * big_d * (LOG_2PI + 2 * jnp.log(sigma)) - 0.5 * (
        jnp.sum(resid**2, axis=-1) + jnp.sum((weight @ scale_tril) ** 2)) / sigma**2
    prior = -0.5 * d * LOG_2PI - 0.5 * (jnp.sum(mean**2, axis=-1) + jnp.sum(scale_tril**2))
    entropy = 0.5 * d * (LOG_2PI + 1.0) + jnp.sum(jnp.log(jnp.abs(jnp.diag(scale_tril))))
    return recon + prior + entropy


# 3. Monte Carlo bounds ---------------------------------------------------------------------------
def log_mean_exp(a, axis=-1):
    """log (1/K) sum_k exp(a_k) along ``axis``, stably."""
    return logsumexp(a, axis=axis) - jnp.log(a.shape[axis])


def iwae_bound(log_weights):
    """One sample of the K-sample bound L_K = E[log (1/K) sum_k w_k] (Burda et al. 2016, eq. 8).

    log_weights: (..., K), log w_k = log p(x, z_k) - log q(z_k), z_k ~ q -> (...). K = 1 is the ELBO.
    """
    return log_mean_exp(log_weights, axis=-1)


def sample_gaussian(mean, scale_tril, eps):
    """z = mean + L eps: a draw from N(mean, L L^T) with the noise ``eps`` (..., d) passed in."""
    return mean + eps @ scale_tril.T
