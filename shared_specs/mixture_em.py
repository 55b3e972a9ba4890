"""Spec cases for ``mixture_em``: the Gaussian mixture's density, E-step, M-step and one EM iteration.

Each function runs in ``theory_jax.mixture_em`` and ``practice_torch.mixture_em`` on the same NumPy
inputs in float64, gradients included (the whole EM iteration is differentiable). Third witnesses:
SciPy's densities and log-sum-exp, Bayes' rule and the M-step formulas written out in NumPy, and
scikit-learn's ``GaussianMixture`` run for one iteration (``max_iter=1``: one E-step, one M-step)
from the same initial weights, means and precisions, with ``reg_covar`` equal to ours.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import special, stats

from shared_specs.case import FunctionCase, cholesky_factor, gaussian

N, D, K = 24, 3, 4
REG_COVAR = 1e-6


# Input makers ------------------------------------------------------------------------------------
def _covariances(rng: np.random.Generator, kind: str) -> np.ndarray:
    if kind == "diag":
        return np.exp(0.4 * rng.standard_normal((K, D)))
    tril = np.stack([cholesky_factor(rng, D) for _ in range(K)])
    return tril @ np.swapaxes(tril, 1, 2)


def _mixture(kind: str, spread: float = 1.0):
    """A mixture and N points near it (``spread`` scales the points: 100 puts them far from every component)."""
    def make(rng):
        means = gaussian(rng, K, D, scale=1.5)
        return {"x": spread * gaussian(rng, N, D, scale=1.5), "weights": rng.dirichlet(np.full(K, 3.0)),
                "means": means, "covariances": _covariances(rng, kind)}
    return make


def _responsibilities(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"x": gaussian(rng, N, D, scale=1.5), "responsibilities": rng.dirichlet(np.full(K, 2.0), size=N)}


# Independent references ----------------------------------------------------------------------------
def ref_component_log_prob(x, means, covariances):
    if covariances.ndim == 2:
        return np.stack([stats.norm.logpdf(x, m, np.sqrt(c)).sum(-1) for m, c in zip(means, covariances)], axis=1)
    return np.stack([stats.multivariate_normal(m, c).logpdf(x) for m, c in zip(means, covariances)], axis=1)


def ref_log_likelihood(x, weights, means, covariances):
    return special.logsumexp(np.log(weights) + ref_component_log_prob(x, means, covariances), axis=1)


def ref_e_step(x, weights, means, covariances):
    """Bayes' rule as written, p(k|x) = pi_k N_k(x) / sum_j pi_j N_j(x), with SciPy's densities (not logs);
    points far from every component (where the densities underflow) use SciPy's log-sum-exp."""
    log_joint = np.log(weights) + ref_component_log_prob(x, means, covariances)
    dens = np.exp(log_joint)
    if np.all(dens.sum(1) > 1e-200):
        return dens / dens.sum(1, keepdims=True), np.log(dens.sum(1))
    log_px = special.logsumexp(log_joint, axis=1)
    return np.exp(log_joint - log_px[:, None]), log_px


def ref_m_step(x, responsibilities, covariance_type, reg_covar):
    """The M-step (Bishop eqs. 9.24-9.27) component by component, plain NumPy loops."""
    weights, means, covariances = [], [], []
    for r in responsibilities.T:
        nk = r.sum()
        mu = (r[:, None] * x).sum(0) / nk
        cov = sum(rn * np.outer(xn - mu, xn - mu) for rn, xn in zip(r, x)) / nk + reg_covar * np.eye(x.shape[1])
        weights.append(nk / len(x))
        means.append(mu)
        covariances.append(np.diag(cov) if covariance_type == "diag" else cov)
    return np.array(weights), np.array(means), np.array(covariances)


def ref_em_step(x, weights, means, covariances, reg_covar):
    """scikit-learn's GaussianMixture, one iteration from the same start (precisions_init = Sigma^-1)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    diag = covariances.ndim == 2
    gm = GaussianMixture(len(weights), covariance_type="diag" if diag else "full", reg_covar=reg_covar, max_iter=1,
                         weights_init=weights, means_init=means,
                         precisions_init=1.0 / covariances if diag else np.linalg.inv(covariances))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # one iteration is never "converged"
        gm.fit(x)
    return gm.weights_, gm.means_, gm.covariances_, gm.lower_bound_  # lower_bound_: mean log p(x) before the M-step


def ref_free_energy(x, responsibilities, weights, means, covariances):
    """The identity F(q) = log p(x) - KL(q || p(z|x)) (eq. 2), from the SciPy posterior."""
    post, log_px = ref_e_step(x, weights, means, covariances)
    q = responsibilities
    return log_px - np.sum(q * (np.log(q) - np.log(post)), axis=1)


def ref_sample_gmm(weights, means, covariances, uniform, eps):
    k = np.searchsorted(np.cumsum(weights), uniform * np.sum(weights), side="right")
    scale = np.sqrt(covariances) if covariances.ndim == 2 else np.linalg.cholesky(covariances)
    return np.array([means[j] + (scale[j] * e if covariances.ndim == 2 else scale[j] @ e) for j, e in zip(k, eps)])


THETA = ("weights", "means", "covariances")
CASES = (
    FunctionCase("mixture_em/component_log_prob/full", "component_log_prob",
                 lambda r: {k: v for k, v in _mixture("full")(r).items() if k != "weights"},
                 grad_wrt=("x", "means", "covariances"), reference=ref_component_log_prob),
    FunctionCase("mixture_em/component_log_prob/diag", "component_log_prob",
                 lambda r: {k: v for k, v in _mixture("diag")(r).items() if k != "weights"},
                 grad_wrt=("x", "means", "covariances"), reference=ref_component_log_prob),
    FunctionCase("mixture_em/log_likelihood/full", "log_likelihood", _mixture("full"),
                 grad_wrt=("x", *THETA), reference=ref_log_likelihood),
    FunctionCase("mixture_em/log_likelihood/diag", "log_likelihood", _mixture("diag"),
                 grad_wrt=("x", *THETA), reference=ref_log_likelihood),
    FunctionCase("mixture_em/e_step/full", "e_step", _mixture("full"), grad_wrt=("x", *THETA), reference=ref_e_step),
    # 100x farther out: every pi_k N_k(x) underflows to 0 in float64, so only a log-sum-exp E-step is finite
    FunctionCase("mixture_em/e_step/far_away", "e_step", _mixture("full", spread=100.0), grad_wrt=("x", *THETA),
                 reference=ref_e_step),
    FunctionCase("mixture_em/m_step/full", "m_step", _responsibilities, grad_wrt=("x", "responsibilities"),
                 static={"covariance_type": "full", "reg_covar": REG_COVAR}, reference=ref_m_step),
    FunctionCase("mixture_em/m_step/diag", "m_step", _responsibilities, grad_wrt=("x", "responsibilities"),
                 static={"covariance_type": "diag", "reg_covar": REG_COVAR}, reference=ref_m_step),
    FunctionCase("mixture_em/em_step/full", "em_step", _mixture("full"), grad_wrt=("x", *THETA),
                 static={"reg_covar": REG_COVAR}, reference=ref_em_step),
    FunctionCase("mixture_em/em_step/diag", "em_step", _mixture("diag"), grad_wrt=("x", *THETA),
                 static={"reg_covar": REG_COVAR}, reference=ref_em_step),
    FunctionCase("mixture_em/free_energy", "free_energy",
                 lambda r: {"x": gaussian(r, N, D, scale=1.5), "responsibilities": r.dirichlet(np.full(K, 2.0), size=N),
                            **{k: v for k, v in _mixture("full")(r).items() if k != "x"}},
                 grad_wrt=("x", "responsibilities", *THETA), reference=ref_free_energy),
    FunctionCase("mixture_em/sample_gmm", "sample_gmm",
                 lambda r: {**{k: v for k, v in _mixture("full")(r).items() if k != "x"},
                            "uniform": r.uniform(size=50), "eps": gaussian(r, 50, D)},
                 grad_wrt=("means", "covariances", "eps"), reference=ref_sample_gmm),
)
