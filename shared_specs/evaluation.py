"""Spec cases for ``evaluation``: the metrics of generative models, in float64.

Each function runs in ``theory_jax.evaluation`` and ``practice_torch.evaluation`` on the same NumPy inputs,
gradients included wherever the metric is differentiable (precision and recall count points: they are not).
Third witnesses: scipy.linalg.sqrtm for the Frechet distance, np.cov for the statistics, direct double loops
over pairs for MMD and KID, a brute-force k-NN with scipy.spatial.distance for precision and recall.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
from scipy.spatial import distance

from shared_specs.case import FunctionCase, gaussian, uniform

D, N, M, CLASSES = 4, 9, 7, 5


# Independent references (SciPy / NumPy / brute force) ----------------------------------------------------
def ref_frechet_distance(mean1, cov1, mean2, cov2):
    """|m1 - m2|^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)), the square root of the non-symmetric product by SciPy."""
    return np.sum((mean1 - mean2) ** 2) + np.trace(cov1 + cov2 - 2 * np.real(scipy.linalg.sqrtm(cov1 @ cov2)))


def ref_gaussian_statistics(features):
    return features.mean(axis=0), np.cov(features, rowvar=False)


def ref_inception_score(probs):
    """exp(H(y) - E_x H(y|x)): the mutual-information form, one image at a time."""
    marginal = probs.mean(axis=0)
    kls = [sum(p * math.log(p / q) for p, q in zip(row, marginal)) for row in probs]
    return math.exp(sum(kls) / len(kls))


def _u_statistic(x, y, kernel):
    """MMD^2_u by direct double loops over the pairs i != j (Gretton et al. 2012, eq. 3)."""
    m, n = len(x), len(y)
    xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def ref_mmd2_unbiased(x, y, bandwidth):
    return _u_statistic(x, y, lambda a, b: math.exp(-np.sum((a - b) ** 2) / (2 * bandwidth**2)))


def ref_kid(x, y):
    return _u_statistic(x, y, lambda a, b: (a @ b / len(a) + 1) ** 3)


def ref_precision_recall(real, fake, k=3):
    """Brute-force k-NN: every distance by scipy.spatial.distance.cdist, the k-th neighbour by a full sort."""
    radius_real = np.sort(distance.cdist(real, real), axis=1)[:, k]
    radius_fake = np.sort(distance.cdist(fake, fake), axis=1)[:, k]
    cross = distance.cdist(real, fake)
    precision = np.mean([any(cross[i, j] <= radius_real[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(cross[i, j] <= radius_fake[j] for j in range(len(fake))) for i in range(len(real))])
    return precision, recall


# Input makers -----------------------------------------------------------------------------------------------
def _spd(r, d=D):
    a = r.standard_normal((d, d))
    return a @ a.T / d + 0.5 * np.eye(d)


def _gaussians(r):
    return {"mean1": gaussian(r, D), "cov1": _spd(r), "mean2": gaussian(r, D), "cov2": _spd(r)}


def _equal_gaussians(r):
    mean, cov = gaussian(r, D), _spd(r)
    return {"mean1": mean, "cov1": cov, "mean2": mean.copy(), "cov2": cov.copy()}


def _probs(r, n=N, alpha=0.7):
    return r.dirichlet(np.full(CLASSES, alpha), size=n)


def _confident_probs(r):
    """Nearly one-hot rows (Dirichlet 0.1), kept off 0 so that log p and its gradient stay finite."""
    return {"probs": 0.98 * _probs(r, 12, 0.1) + 0.02 / CLASSES}


def _feature_sets(r, shift=0.5):
    return {"x": gaussian(r, N, D), "y": gaussian(r, M, D) + shift}


def _real_fake(r):
    """Two overlapping clouds, the fake one shifted: some points of each fall outside the other's manifold."""
    return {"real": gaussian(r, 40, 3), "fake": gaussian(r, 30, 3) + 1.0}


CASES = (
    FunctionCase("evaluation/frechet_distance", "frechet_distance", _gaussians,
                 grad_wrt=("mean1", "cov1", "mean2", "cov2"), reference=ref_frechet_distance),
    FunctionCase("evaluation/frechet_distance/equal", "frechet_distance", _equal_gaussians,
                 grad_wrt=("mean1", "cov2"), reference=ref_frechet_distance),
    FunctionCase("evaluation/gaussian_statistics", "gaussian_statistics", lambda r: {"features": gaussian(r, 12, D)},
                 grad_wrt=("features",), reference=ref_gaussian_statistics),
    FunctionCase("evaluation/sqrtm_psd", "sqrtm_psd", lambda r: {"a": _spd(r)}, grad_wrt=("a",),
                 reference=lambda a: np.real(scipy.linalg.sqrtm(a))),
    FunctionCase("evaluation/inception_score", "inception_score", lambda r: {"probs": _probs(r)},
                 grad_wrt=("probs",), reference=ref_inception_score),
    FunctionCase("evaluation/inception_score/confident", "inception_score", _confident_probs,
                 grad_wrt=("probs",), reference=ref_inception_score),
    FunctionCase("evaluation/mmd2_unbiased", "mmd2_unbiased", _feature_sets, static={"bandwidth": 1.3},
                 grad_wrt=("x", "y"), reference=ref_mmd2_unbiased),
    FunctionCase("evaluation/mmd2_unbiased/equal", "mmd2_unbiased", lambda r: _feature_sets(r, shift=0.0),
                 static={"bandwidth": 0.7}, grad_wrt=("x", "y"), reference=ref_mmd2_unbiased),
    FunctionCase("evaluation/kid", "kid", lambda r: {"x": np.abs(gaussian(r, N, 6)), "y": np.abs(gaussian(r, M, 6)) + 0.2},
                 grad_wrt=("x", "y"), reference=ref_kid),
    FunctionCase("evaluation/precision_recall", "precision_recall", _real_fake, reference=ref_precision_recall),
    FunctionCase("evaluation/precision_recall/k5", "precision_recall", _real_fake, static={"k": 5},
                 reference=lambda real, fake, k: ref_precision_recall(real, fake, k)),
    FunctionCase("evaluation/bits_per_dim", "bits_per_dim",
                 lambda r: {"nll": 600.0 + 50.0 * r.standard_normal(N)}, static={"num_dims": 784}, grad_wrt=("nll",),
                 reference=lambda nll, num_dims: nll / num_dims / math.log(2)),
    FunctionCase("evaluation/dequantize", "dequantize",
                 lambda r: {"x": r.integers(0, 256, size=(N, D)).astype("float64"), "u": uniform(r, N, D)},
                 grad_wrt=("x", "u"), reference=lambda x, u: (x + u) / 256),
    FunctionCase("evaluation/nll_on_level_scale", "nll_on_level_scale",
                 lambda r: {"nll": -1500.0 + 40.0 * r.standard_normal(N)}, static={"num_dims": 784},
                 grad_wrt=("nll",), reference=lambda nll, num_dims: nll + num_dims * 8 * math.log(2)),
)
