"""The Gaussian mixture and its EM iteration in PyTorch: the twin of ``theory_jax/mixture_em.py``.

Same function names and arguments as the derivation module, so ``shared_specs/mixture_em.py`` calls
both with the same NumPy inputs; the equation numbers are the derivation's. Every function is batched
over the data, x: (N, D), with K components; covariances are (K, D, D) full or (K, D) diagonal.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

LOG_2PI = math.log(2 * math.pi)
Reduce = Callable[[torch.Tensor], torch.Tensor]


def _no_reduce(t: torch.Tensor) -> torch.Tensor:
    return t


# 1. The mixture density ---------------------------------------------------------------------------
def cholesky(covariances: torch.Tensor) -> torch.Tensor:
    """L with L L^T = Sigma for full covariances (K, D, D), after symmetrising Sigma (so both backends
    agree on the gradient with respect to a covariance matrix)."""
    return torch.linalg.cholesky(0.5 * (covariances + covariances.mT))


def component_log_prob(x, means, covariances):
    """log N(x_n; mu_k, Sigma_k) for every example and component. x: (N, D), means: (K, D),
    covariances: (K, D, D) full or (K, D) diagonal -> (N, K).
    log N = -1/2 (D log 2pi + |L^-1 (x - mu)|^2) - sum log diag L, with L the Cholesky factor."""
    diff = x[:, None, :] - means[None]  # (N, K, D)
    if covariances.ndim == 2:
        return -0.5 * torch.sum(LOG_2PI + torch.log(covariances) + diff**2 / covariances, dim=-1)
    tril = cholesky(covariances)
    white = torch.linalg.solve_triangular(tril, diff.permute(1, 2, 0), upper=False)  # (K, D, N)
    log_det = 2.0 * torch.sum(torch.log(torch.diagonal(tril, dim1=-2, dim2=-1)), dim=-1)  # (K,)
    return (-0.5 * (x.shape[-1] * LOG_2PI + torch.sum(white**2, dim=1) + log_det[:, None])).T


def log_joint(x, weights, means, covariances):
    """log p(x_n, z = k) = log pi_k + log N(x_n; mu_k, Sigma_k). weights: (K,) on the simplex -> (N, K)."""
    return torch.log(weights) + component_log_prob(x, means, covariances)


def log_likelihood(x, weights, means, covariances):
    """log p(x_n) = logsumexp_k [log pi_k + log N(x_n; mu_k, Sigma_k)] per example -> (N,)."""
    return torch.logsumexp(log_joint(x, weights, means, covariances), dim=-1)


# 2. EM --------------------------------------------------------------------------------------------
def e_step(x, weights, means, covariances):
    """Responsibilities r_nk = p(z = k | x_n) by Bayes' rule (eq. 3), as exp(log p(x, k) - log p(x)):
    exact far from every component. -> (responsibilities (N, K), log p(x_n) (N,))."""
    joint = log_joint(x, weights, means, covariances)
    log_px = torch.logsumexp(joint, dim=-1)
    return torch.exp(joint - log_px[:, None]), log_px


def m_step(x, responsibilities, covariance_type="full", reg_covar=1e-6):
    """The closed-form maximiser of F(q, theta) for q = responsibilities (N, K) (eqs. 4-6):
    pi_k = N_k / N, mu_k = sum_n r_nk x_n / N_k, Sigma_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T / N_k + reg_covar I
    (diagonal: its diagonal). -> (weights (K,), means (K, D), covariances (K, D, D) or (K, D))."""
    return moments_m_step(x, responsibilities, covariance_type, reg_covar, _no_reduce)


def moments_m_step(x, responsibilities, covariance_type: str, reg_covar: float, reduce: Reduce):
    """``m_step`` from sufficient statistics summed by ``reduce`` over the data: identity in one process,
    an all-reduce (sum) under torchrun, so every rank gets the M-step of the whole global batch. Two rounds:
    N_k and sum r x first, then the centred second moments about the global means (no cancellation)."""
    if covariance_type not in ("full", "diag"):
        raise ValueError(f"covariance_type must be 'full' or 'diag', got {covariance_type!r}")
    r = responsibilities
    nk = reduce(torch.sum(r, dim=0)) + 10 * torch.finfo(r.dtype).eps  # eq. 4; eps as scikit-learn: no 0/0
    means = reduce(r.T @ x) / nk[:, None]  # eq. 5
    diff = x[:, None, :] - means[None]  # (N, K, D)
    if covariance_type == "diag":
        covariances = reduce(torch.einsum("nk,nkd->kd", r, diff**2)) / nk[:, None] + reg_covar
    else:  # eq. 6, as K batched (D, N) @ (N, D) products
        weighted = (r.T[:, :, None] * diff.transpose(0, 1)).transpose(1, 2)  # (K, D, N)
        covariances = (reduce(weighted @ diff.transpose(0, 1)) / nk[:, None, None]
                       + reg_covar * torch.eye(x.shape[-1], dtype=x.dtype, device=x.device))
    return nk / torch.sum(nk), means, covariances


def em_step(x, weights, means, covariances, reg_covar=1e-6):
    """One EM iteration, E then M (as scikit-learn's GaussianMixture); the covariance type is read off the
    shape of ``covariances``. -> (weights, means, covariances, mean log p(x_n) at the *input* parameters)."""
    resp, log_px = e_step(x, weights, means, covariances)
    return (*m_step(x, resp, "diag" if covariances.ndim == 2 else "full", reg_covar), torch.mean(log_px))


def free_energy(x, responsibilities, weights, means, covariances):
    """F_n(q, theta) = sum_k q_nk [log p(x_n, k) - log q_nk] (the ELBO, eq. 1) per example, 0 log 0 = 0.
    responsibilities: any q (N, K) with rows on the simplex -> (N,)."""
    joint = log_joint(x, weights, means, covariances)
    q = responsibilities
    return torch.sum(q * joint - torch.special.xlogy(q, q), dim=-1)


def sample_gmm(weights, means, covariances, uniform, eps):
    """Ancestral sampling: k = inverse CDF of the weights at ``uniform`` (M,), then x = mu_k + L_k eps
    (diagonal: sqrt(Sigma_k) eps). Noise passed in: uniform (M,) in [0, 1), eps (M, D) -> (M, D)."""
    cdf = torch.cumsum(weights, dim=0)
    k = torch.sum(uniform[:, None] * cdf[-1] >= cdf[None, :-1], dim=-1)
    if covariances.ndim == 2:
        return means[k] + torch.sqrt(covariances[k]) * eps
    return means[k] + torch.einsum("mij,mj->mi", cholesky(covariances)[k], eps)
