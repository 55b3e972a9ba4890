"""Evaluating generative models: Frechet distance, Inception Score, kernel MMD / KID, precision and
recall by k-NN manifolds, bits/dim from a likelihood with dequantisation.

Lectures: evaluation of generative models (Heusel et al. 2017 for FID; Salimans et al. 2016 for the
Inception Score; Gretton et al. 2012 for the unbiased MMD; Binkowski et al. 2018 for KID;
Kynkaanniemi et al. 2019 for precision and recall; Theis, van den Oord & Bethge 2016 for bits/dim
and the dequantisation bound; Chong & Forsyth 2020 for the bias of the plug-in FID).

Every metric is a function of features (or class probabilities, or a negative log-likelihood):
which network makes the features is the implementation's business (``practice_torch/evaluation``).
Twin: ``practice_torch/evaluation`` (same names, same arguments); cases: ``shared_specs/evaluation.py``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.special import xlogy


# 1. Frechet distance between Gaussians (FID on features) -------------------------------------------
def gaussian_statistics(features):
    """(mean (d,), covariance (d, d)) of features (N, d), the covariance unbiased (ddof = 1, as np.cov)."""
    mean = jnp.mean(features, axis=0)
    centred = features - mean
    return mean, centred.T @ centred / (features.shape[0] - 1)


def sqrtm_psd(a):
    """The symmetric PSD square root V diag(sqrt(max(w, 0))) V^T of sym(a) = (a + a^T)/2. a: (..., d, d)."""
    w, v = jnp.linalg.eigh(0.5 * (a + jnp.swapaxes(a, -1, -2)))
    return (v * jnp.sqrt(jnp.clip(w, 0.0))[..., None, :]) @ jnp.swapaxes(v, -1, -2)


def frechet_distance(mean1, cov1, mean2, cov2):
    """d_F^2 = |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}) (Heusel et al. 2017, eq. 6). m: (..., d), S: (..., d, d).

    tr (S1 S2)^{1/2} = tr (S1^{1/2} S2 S1^{1/2})^{1/2}: the two are similar (conjugate by S1^{1/2}), and the
    second is symmetric PSD, so its square root is the sum of the square roots of its eigenvalues (eigh).
    """
    root = sqrtm_psd(cov1)
    inner = root @ cov2 @ root
    cross = jnp.linalg.eigvalsh(0.5 * (inner + jnp.swapaxes(inner, -1, -2)))
    trace = jnp.trace(cov1, axis1=-2, axis2=-1) + jnp.trace(cov2, axis1=-2, axis2=-1)
    return jnp.sum((mean1 - mean2) ** 2, axis=-1) + trace - 2.0 * jnp.sum(jnp.sqrt(jnp.clip(cross, 0.0)), axis=-1)


# 2. Inception Score ------------------------------------------------------------------------------------
def inception_score(probs):
    """IS = exp(E_x KL(p(y|x) || p(y))), p(y) = E_x p(y|x) (Salimans et al. 2016). probs: (N, C) rows p(y|x) -> ()."""
    marginal = jnp.mean(probs, axis=0)
    kl = jnp.sum(xlogy(probs, probs) - xlogy(probs, marginal), axis=-1)
    return jnp.exp(jnp.mean(kl))


# 3. Kernel MMD and KID -----------------------------------------------------------------------------------
def squared_distances(a, b):
    """|a_i - b_j|^2 = |a_i|^2 + |b_j|^2 - 2 a_i.b_j, clipped at 0. a: (N, d), b: (M, d) -> (N, M)."""
    return jnp.clip(jnp.sum(a**2, -1)[:, None] + jnp.sum(b**2, -1)[None, :] - 2.0 * a @ b.T, 0.0)


def rbf_kernel(x, y, bandwidth):
    """k(x, y) = exp(-|x - y|^2 / (2 l^2)). x: (N, d), y: (M, d) -> (N, M)."""
    return jnp.exp(-squared_distances(x, y) / (2.0 * bandwidth**2))


def polynomial_kernel(x, y):
    """KID's kernel k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018, sec. 3). x: (N, d), y: (M, d) -> (N, M)."""
    return (x @ y.T / x.shape[-1] + 1.0) ** 3


def mmd2_from_kernels(k_xx, k_yy, k_xy):
    """The unbiased MMD^2_u (Gretton et al. 2012, eq. 3): the U-statistic, diagonals of k_xx and k_yy left out.

    k_xx: (m, m), k_yy: (n, n), k_xy: (m, n) -> (). E[MMD^2_u] = MMD^2 exactly, so it can be negative.
    """
    m, n = k_xx.shape[0], k_yy.shape[0]
    xx = (jnp.sum(k_xx) - jnp.trace(k_xx)) / (m * (m - 1))
    yy = (jnp.sum(k_yy) - jnp.trace(k_yy)) / (n * (n - 1))
    return xx + yy - 2.0 * jnp.mean(k_xy)


def mmd2_unbiased(x, y, bandwidth):
    """MMD^2_u with the Gaussian RBF kernel of ``bandwidth``. x: (m, d), y: (n, d) -> ()."""
    return mmd2_from_kernels(rbf_kernel(x, x, bandwidth), rbf_kernel(y, y, bandwidth), rbf_kernel(x, y, bandwidth))


def mmd2_biased(x, y, bandwidth):
    """The V-statistic |mean phi(x) - mean phi(y)|^2 (diagonals kept): biased upwards by O(1/m + 1/n)."""
    return (jnp.mean(rbf_kernel(x, x, bandwidth)) + jnp.mean(rbf_kernel(y, y, bandwidth))
            - 2.0 * jnp.mean(rbf_kernel(x, y, bandwidth)))


def kid(x, y):
    """Kernel Inception Distance: MMD^2_u with the cubic polynomial kernel. x: (m, d), y: (n, d) features -> ()."""
    return mmd2_from_kernels(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


# 4. Precision and recall by k-NN manifolds -----------------------------------------------------------------
def knn_radii(points, k):
    """Squared distance of each point to its k-th nearest neighbour in the set, itself excluded. (N, d) -> (N,)."""
    return jnp.sort(squared_distances(points, points), axis=1)[:, k]


def precision_recall(real, fake, k=3):
    """(precision, recall) of Kynkaanniemi et al. 2019, eqs. 1-3. real: (N, d), fake: (M, d) features.

    The manifold of a set is the union of the balls around its points reaching their k-th neighbour;
    precision: the fraction of fake points inside the real manifold; recall: of real points inside the fake one.
    """
    d2 = squared_distances(real, fake)
    inside_real = jnp.any(d2 <= knn_radii(real, k)[:, None], axis=0)
    inside_fake = jnp.any(d2 <= knn_radii(fake, k)[None, :], axis=1)
    return jnp.mean(inside_real.astype(real.dtype)), jnp.mean(inside_fake.astype(real.dtype))


# 5. Bits per dimension and dequantisation -------------------------------------------------------------------
def bits_per_dim(nll, num_dims):
    """bits/dim = nll / (D ln 2): nats per example -> bits per dimension. nll: (...) -> (...)."""
    return nll / (num_dims * math.log(2.0))


def dequantize(x, u, levels=256):
    """Uniform dequantisation y = (x + u) / levels in [0, 1): x integer levels 0..levels-1, u ~ U[0, 1) passed in."""
    return (x + u) / levels


def nll_on_level_scale(nll, num_dims, levels=256):
    """-log p of the same density read on [0, levels)^D instead of [0, 1]^D: the Jacobian adds D log(levels)."""
    return nll + num_dims * math.log(levels)
