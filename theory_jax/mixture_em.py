"""Gaussian mixtures and expectation-maximisation (EM), derived and checked.

Lectures: latent variable models; Gaussian mixture models fitted by EM (Dempster, Laird & Rubin 1977;
Bishop, *Pattern Recognition and Machine Learning*, secs. 9.2-9.4; Neal & Hinton 1998 for EM as
coordinate ascent on the free energy). Builds on ``theory_jax/elbo.py`` (the ELBO decomposition).

Model: z ~ Categorical(pi), x | z = k ~ N(mu_k, Sigma_k), Sigma_k full (K, D, D) or diagonal (K, D).
For any distribution q(z) over the K components the free energy (ELBO)
    F(q, theta) = E_q[log p(x, z)] + H(q)                                                     (eq. 1)
satisfies log p(x) = F(q, theta) + KL(q || p(z|x))                                            (eq. 2)
so EM is coordinate ascent on F: the E-step sets q = p(z|x) (the bound becomes tight, eq. 2) and the
M-step maximises F over theta in closed form (eqs. 4-6); log p(x) can therefore never decrease.
Twin: ``practice_torch/mixture_em/`` (same names, same arguments); cases: ``shared_specs/mixture_em.py``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp, xlogy

LOG_2PI = math.log(2 * math.pi)


# 1. The mixture density ---------------------------------------------------------------------------
def component_log_prob(x, means, covariances):
    """log N(x_n; mu_k, Sigma_k) for every example and component. x: (N, D), means: (K, D),
    covariances: (K, D, D) full or (K, D) diagonal -> (N, K). A full Sigma is symmetrised, then
    Cholesky-factored: log N = -1/2 (D log 2pi + |L^-1 (x - mu)|^2) - sum log diag L."""
    diff = x[:, None, :] - means[None]  # (N, K, D)
    if covariances.ndim == 2:
        return -0.5 * jnp.sum(LOG_2PI + jnp.log(covariances) + diff**2 / covariances, axis=-1)
    d = x.shape[-1]
    tril = jnp.linalg.cholesky(0.5 * (covariances + jnp.swapaxes(covariances, -1, -2)))
    white = solve_triangular(tril, jnp.transpose(diff, (1, 2, 0)), lower=True)  # (K, D, N)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(tril, axis1=-2, axis2=-1)), axis=-1)  # (K,)
    return (-0.5 * (d * LOG_2PI + jnp.sum(white**2, axis=1) + log_det[:, None])).T


def log_joint(x, weights, means, covariances):
    """log p(x_n, z = k) = log pi_k + log N(x_n; mu_k, Sigma_k). weights: (K,) on the simplex -> (N, K)."""
    return jnp.log(weights) + component_log_prob(x, means, covariances)


def log_likelihood(x, weights, means, covariances):
    """log p(x_n) = logsumexp_k [log pi_k + log N(x_n; mu_k, Sigma_k)] per example (N,): stable far from
    every component, where sum_k pi_k N_k underflows to 0."""
    return logsumexp(log_joint(x, weights, means, covariances), axis=-1)


# 2. EM ------------------------------------------------------------------------------------------
def e_step(x, weights, means, covariances):
    """Responsibilities r_nk = p(z = k | x_n) = pi_k N_k(x_n) / sum_j pi_j N_j(x_n) (Bayes' rule, eq. 3),
    as exp(log p(x, k) - log p(x)). -> (responsibilities (N, K), log p(x_n) (N,))."""
    joint = log_joint(x, weights, means, covariances)
    log_px = logsumexp(joint, axis=-1)
    return jnp.exp(joint - log_px[:, None]), log_px


def m_step(x, responsibilities, covariance_type="full", reg_covar=1e-6):
    """The closed-form maximiser of F(q, theta) over theta for q = responsibilities (N, K):
        N_k = sum_n r_nk,  pi_k = N_k / N,  mu_k = sum_n r_nk x_n / N_k                        (eqs. 4, 5)
        Sigma_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T / N_k + reg_covar I                    (eq. 6)
    (diagonal: the diagonal of eq. 6). N_k gets 10 machine epsilons, as in scikit-learn, so that an
    empty component yields finite parameters. -> (weights (K,), means (K, D), covariances)."""
    nk = jnp.sum(responsibilities, axis=0) + 10 * jnp.finfo(responsibilities.dtype).eps
    means = responsibilities.T @ x / nk[:, None]
    diff = x[:, None, :] - means[None]  # (N, K, D)
    if covariance_type == "diag":
        covariances = jnp.einsum("nk,nkd->kd", responsibilities, diff**2) / nk[:, None] + reg_covar
    elif covariance_type == "full":
        covariances = (jnp.einsum("nk,nkd,nke->kde", responsibilities, diff, diff) / nk[:, None, None]
                       + reg_covar * jnp.eye(x.shape[-1], dtype=x.dtype))
    else:
        raise ValueError(f"covariance_type must be 'full' or 'diag', got {covariance_type!r}")
    return nk / jnp.sum(nk), means, covariances


def em_step(x, weights, means, covariances, reg_covar=1e-6):
    """One EM iteration (E then M, as scikit-learn's GaussianMixture). The covariance type is read off
    the shape of ``covariances``. -> (weights, means, covariances, mean log p(x_n) at the *input* theta)."""
    resp, log_px = e_step(x, weights, means, covariances)
    kind = "diag" if covariances.ndim == 2 else "full"
    return (*m_step(x, resp, kind, reg_covar), jnp.mean(log_px))


def free_energy(x, responsibilities, weights, means, covariances):
    """F_n(q, theta) = sum_k q_nk [log p(x_n, k) - log q_nk] (eq. 1) per example, 0 log 0 = 0.
    responsibilities: any q (N, K) with rows on the simplex -> (N,)."""
    joint = log_joint(x, weights, means, covariances)
    return jnp.sum(responsibilities * joint - xlogy(responsibilities, responsibilities), axis=-1)


def sample_gmm(weights, means, covariances, uniform, eps):
    """Ancestral sampling: k = inverse CDF of the weights at ``uniform`` (M,), then x = mu_k + L_k eps with
    L_k L_k^T = Sigma_k (diagonal: sqrt). The noise is passed in: uniform (M,) in [0, 1), eps (M, D) -> (M, D)."""
    cdf = jnp.cumsum(weights)
    k = jnp.sum(uniform[:, None] * cdf[-1] >= cdf[None, :-1], axis=-1)
    if covariances.ndim == 2:
        return means[k] + jnp.sqrt(covariances[k]) * eps
    tril = jnp.linalg.cholesky(0.5 * (covariances + jnp.swapaxes(covariances, -1, -2)))
    return means[k] + jnp.einsum("mij,mj->mi", tril[k], eps)
