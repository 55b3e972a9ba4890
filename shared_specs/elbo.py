"""Spec cases for ``elbo``: the Gaussian densities, divergences and bounds, in float64.

Each function runs in ``theory_jax.elbo`` and ``practice_torch.elbo`` on the same NumPy inputs
(gradients included); SciPy or a direct NumPy formula is the third witness where one exists.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from shared_specs.case import FunctionCase, cholesky_factor, gaussian

B, D, LATENT = 4, 5, 3


# Independent references (SciPy / NumPy) ---------------------------------------------------------
def ref_gaussian_log_prob(x, mean, logvar):
    return stats.norm.logpdf(x, mean, np.exp(0.5 * logvar)).sum(-1)


def ref_mvn_log_prob(x, mean, scale_tril):
    cov = scale_tril @ scale_tril.T
    return np.array([stats.multivariate_normal(m, cov).logpdf(xi) for xi, m in zip(x, np.broadcast_to(mean, x.shape))])


def ref_gaussian_kl(mean_q, logvar_q, mean_p, logvar_p):
    """Per coordinate: the integral of q log(q/p), by quadrature (scipy.integrate) on a few entries."""
    from scipy import integrate

    out = np.zeros(mean_q.shape[:-1])
    for idx in np.ndindex(*mean_q.shape[:-1]):
        total = 0.0
        for j in range(mean_q.shape[-1]):
            q = stats.norm(mean_q[idx][j], np.exp(0.5 * logvar_q[idx][j]))
            p = stats.norm(mean_p[idx][j], np.exp(0.5 * logvar_p[idx][j]))
            lo, hi = q.ppf(1e-15), q.isf(1e-15)
            total += integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), lo, hi, epsabs=1e-14,
                                    epsrel=1e-13)[0]
        out[idx] = total
    return out


def ref_mvn_kl(mean_q, tril_q, mean_p, tril_p):
    sq, sp = tril_q @ tril_q.T, tril_p @ tril_p.T
    inv = np.linalg.inv(sp)
    diff = mean_p - mean_q
    d = mean_q.shape[-1]
    return 0.5 * (np.trace(inv @ sq) + np.einsum("...i,ij,...j->...", diff, inv, diff) - d
                  + np.linalg.slogdet(sp)[1] - np.linalg.slogdet(sq)[1])


def ref_linear_gaussian_evidence(x, weight, bias, sigma):
    cov = weight @ weight.T + sigma**2 * np.eye(weight.shape[0])
    return stats.multivariate_normal(bias, cov).logpdf(x)


def ref_linear_gaussian_posterior(x, weight, bias, sigma):
    """Gaussian conditioning of the joint N([0, b], [[I, W^T], [W, W W^T + s^2 I]]) on x (Schur complement)."""
    cxx = weight @ weight.T + sigma**2 * np.eye(weight.shape[0])
    gain = np.linalg.solve(cxx, weight).T  # W^T Cxx^-1
    cov = np.eye(weight.shape[1]) - gain @ weight
    return (x - bias) @ gain.T, np.linalg.cholesky(0.5 * (cov + cov.T))


def ref_log_mean_exp(a):
    return special.logsumexp(a, axis=-1) - np.log(a.shape[-1])


# Input makers --------------------------------------------------------------------------------------
def _linear_model(rng):
    return {"weight": gaussian(rng, D, LATENT, scale=0.6), "bias": gaussian(rng, D, scale=0.5),
            "sigma": np.asarray(0.3 + rng.uniform(), dtype=np.float64)}


def _with_x(rng):
    return {"x": gaussian(rng, B, D), **_linear_model(rng)}


CASES = (
    FunctionCase("elbo/gaussian_log_prob", "gaussian_log_prob",
                 lambda r: {"x": gaussian(r, B, LATENT), "mean": gaussian(r, B, LATENT),
                            "logvar": gaussian(r, B, LATENT, scale=0.5)},
                 grad_wrt=("x", "mean", "logvar"), reference=ref_gaussian_log_prob),
    FunctionCase("elbo/mvn_log_prob", "mvn_log_prob",
                 lambda r: {"x": gaussian(r, B, LATENT), "mean": gaussian(r, LATENT),
                            "scale_tril": cholesky_factor(r, LATENT)},
                 grad_wrt=("x", "mean", "scale_tril"), reference=ref_mvn_log_prob),
    FunctionCase("elbo/gaussian_kl", "gaussian_kl",
                 lambda r: {"mean_q": gaussian(r, 2, LATENT), "logvar_q": gaussian(r, 2, LATENT, scale=0.5),
                            "mean_p": gaussian(r, 2, LATENT), "logvar_p": gaussian(r, 2, LATENT, scale=0.5)},
                 grad_wrt=("mean_q", "logvar_q", "mean_p", "logvar_p"), reference=ref_gaussian_kl),
    FunctionCase("elbo/standard_normal_kl", "standard_normal_kl",
                 lambda r: {"mean": gaussian(r, B, LATENT), "logvar": gaussian(r, B, LATENT, scale=0.5)},
                 grad_wrt=("mean", "logvar"),
                 reference=lambda mean, logvar: ref_gaussian_kl(mean, logvar, 0 * mean, 0 * logvar)),
    FunctionCase("elbo/mvn_kl", "mvn_kl",
                 lambda r: {"mean_q": gaussian(r, B, LATENT), "tril_q": cholesky_factor(r, LATENT),
                            "mean_p": gaussian(r, LATENT), "tril_p": cholesky_factor(r, LATENT)},
                 grad_wrt=("mean_q", "tril_q", "mean_p", "tril_p"), reference=ref_mvn_kl),
    FunctionCase("elbo/linear_gaussian_log_joint", "linear_gaussian_log_joint",
                 lambda r: {**_with_x(r), "z": gaussian(r, B, LATENT)},
                 grad_wrt=("x", "z", "weight", "bias", "sigma"),
                 reference=lambda x, z, weight, bias, sigma: (
                     stats.norm.logpdf(x, z @ weight.T + bias, sigma).sum(-1) + stats.norm.logpdf(z).sum(-1))),
    FunctionCase("elbo/linear_gaussian_evidence", "linear_gaussian_evidence", _with_x,
                 grad_wrt=("x", "weight", "bias", "sigma"), reference=ref_linear_gaussian_evidence),
    FunctionCase("elbo/linear_gaussian_posterior", "linear_gaussian_posterior", _with_x,
                 grad_wrt=("x", "weight", "bias", "sigma"), reference=ref_linear_gaussian_posterior),
    FunctionCase("elbo/linear_gaussian_elbo", "linear_gaussian_elbo",
                 lambda r: {**_with_x(r), "mean": gaussian(r, B, LATENT), "scale_tril": cholesky_factor(r, LATENT)},
                 grad_wrt=("x", "weight", "bias", "sigma", "mean", "scale_tril"),
                 # third witness: the identity log p(x) - KL(q || p(z|x)), from SciPy's evidence and posterior
                 reference=lambda x, weight, bias, sigma, mean, scale_tril: (
                     ref_linear_gaussian_evidence(x, weight, bias, sigma)
                     - ref_mvn_kl(mean, scale_tril, *ref_linear_gaussian_posterior(x, weight, bias, sigma)))),
    FunctionCase("elbo/log_mean_exp", "log_mean_exp",
                 lambda r: {"a": gaussian(r, B, 7, scale=30.0)},  # large spread: naive exp would overflow
                 grad_wrt=("a",), reference=ref_log_mean_exp),
    FunctionCase("elbo/iwae_bound", "iwae_bound", lambda r: {"log_weights": gaussian(r, B, 16, scale=3.0) - 50.0},
                 grad_wrt=("log_weights",), reference=lambda log_weights: ref_log_mean_exp(log_weights)),
    FunctionCase("elbo/sample_gaussian", "sample_gaussian",
                 lambda r: {"mean": gaussian(r, LATENT), "scale_tril": cholesky_factor(r, LATENT),
                            "eps": gaussian(r, B, LATENT)},
                 grad_wrt=("mean", "scale_tril", "eps"),
                 reference=lambda mean, scale_tril, eps: mean + np.einsum("ij,bj->bi", scale_tril, eps)),
)
