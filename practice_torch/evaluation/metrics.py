"""The metrics in PyTorch: the twins of ``theory_jax/evaluation.py`` (same names, same arguments), plus the
estimators run on real feature sets (split Inception Score, KID over subsets, FID from two feature sets).

``python -m theory_jax evaluation`` proves what these compute; ``shared_specs/evaluation.py`` checks that the
two backends agree, with SciPy, NumPy double loops and a brute-force k-NN as third witnesses.
"""

from __future__ import annotations

import math

import torch
from torch.special import xlogy

CHUNK = 1024  # rows of a distance matrix held at once in the k-NN searches


# 1. Frechet distance between Gaussians ---------------------------------------------------------------
def gaussian_statistics(features):
    """(mean (d,), covariance (d, d)) of features (N, d), the covariance unbiased (ddof = 1, as np.cov)."""
    mean = features.mean(dim=0)
    centred = features - mean
    return mean, centred.T @ centred / (features.shape[0] - 1)


def sqrtm_psd(a):
    """The symmetric PSD square root V diag(sqrt(max(w, 0))) V^T of sym(a) = (a + a^T)/2. a: (..., d, d)."""
    w, v = torch.linalg.eigh(0.5 * (a + a.transpose(-1, -2)))
    return (v * w.clamp(min=0.0).sqrt()[..., None, :]) @ v.transpose(-1, -2)


def frechet_distance(mean1, cov1, mean2, cov2):
    """d_F^2 = |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}) (Heusel et al. 2017, eq. 6). m: (..., d), S: (..., d, d).

    tr (S1 S2)^{1/2} = tr (S1^{1/2} S2 S1^{1/2})^{1/2} = sum of the square roots of that symmetric matrix's eigenvalues.
    """
    root = sqrtm_psd(cov1)
    inner = root @ cov2 @ root
    cross = torch.linalg.eigvalsh(0.5 * (inner + inner.transpose(-1, -2)))
    trace = torch.diagonal(cov1, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(cov2, dim1=-2, dim2=-1).sum(-1)
    return ((mean1 - mean2) ** 2).sum(-1) + trace - 2.0 * cross.clamp(min=0.0).sqrt().sum(-1)


# 2. Inception Score -------------------------------------------------------------------------------------
def inception_score(probs):
    """IS = exp(E_x KL(p(y|x) || p(y))), p(y) = E_x p(y|x) (Salimans et al. 2016). probs: (N, C) -> ()."""
    marginal = probs.mean(dim=0)
    kl = (xlogy(probs, probs) - xlogy(probs, marginal)).sum(-1)
    return torch.exp(kl.mean())


# 3. Kernel MMD and KID -------------------------------------------------------------------------------------
def squared_distances(a, b):
    """|a_i - b_j|^2 = |a_i|^2 + |b_j|^2 - 2 a_i.b_j, clipped at 0. a: (N, d), b: (M, d) -> (N, M)."""
    return ((a**2).sum(-1)[:, None] + (b**2).sum(-1)[None, :] - 2.0 * a @ b.T).clamp(min=0.0)


def rbf_kernel(x, y, bandwidth):
    """k(x, y) = exp(-|x - y|^2 / (2 l^2)). x: (N, d), y: (M, d) -> (N, M)."""
    return torch.exp(-squared_distances(x, y) / (2.0 * bandwidth**2))


def polynomial_kernel(x, y):
    """KID's kernel k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018, sec. 3). x: (N, d), y: (M, d) -> (N, M)."""
    return (x @ y.T / x.shape[-1] + 1.0) ** 3


def mmd2_from_kernels(k_xx, k_yy, k_xy):
    """The unbiased MMD^2_u (Gretton et al. 2012, eq. 3), diagonals of k_xx and k_yy left out. -> ()."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    xx = (k_xx.sum() - torch.diagonal(k_xx).sum()) / (m * (m - 1))
    yy = (k_yy.sum() - torch.diagonal(k_yy).sum()) / (n * (n - 1))
    return xx + yy - 2.0 * k_xy.mean()


def mmd2_unbiased(x, y, bandwidth):
    """MMD^2_u with the Gaussian RBF kernel of ``bandwidth``. x: (m, d), y: (n, d) -> ()."""
    return mmd2_from_kernels(rbf_kernel(x, x, bandwidth), rbf_kernel(y, y, bandwidth), rbf_kernel(x, y, bandwidth))


def kid(x, y):
    """Kernel Inception Distance: MMD^2_u with the cubic polynomial kernel. x: (m, d), y: (n, d) features -> ()."""
    return mmd2_from_kernels(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


# 4. Precision and recall by k-NN manifolds ----------------------------------------------------------------
def knn_radii(points, k):
    """Squared distance of each point to its k-th nearest neighbour in the set, itself excluded. (N, d) -> (N,)."""
    if not 0 < k < len(points):
        raise ValueError(f"the k-th nearest neighbour (k = {k}) needs at least {k + 1} points, got {len(points)}")
    return torch.cat([torch.topk(squared_distances(chunk, points), k + 1, dim=1, largest=False).values[:, k]
                      for chunk in points.split(CHUNK)])


def _inside(points, centres, radii):
    """Whether each point lies in some ball |p - c|^2 <= r. points: (M, d), centres: (N, d), radii: (N,) -> (M,)."""
    return torch.cat([(squared_distances(centres, chunk) <= radii[:, None]).any(dim=0) for chunk in points.split(CHUNK)])


def precision_recall(real, fake, k=3):
    """(precision, recall) of Kynkaanniemi et al. 2019, eqs. 1-3. real: (N, d), fake: (M, d) features.

    precision: the fraction of fake points inside the real manifold (union of balls reaching each real point's
    k-th neighbour); recall: the fraction of real points inside the fake manifold. Exact, chunked over rows.
    """
    precision = _inside(fake, real, knn_radii(real, k)).to(real.dtype).mean()
    recall = _inside(real, fake, knn_radii(fake, k)).to(real.dtype).mean()
    return precision, recall


# 5. Bits per dimension and dequantisation -----------------------------------------------------------------
def bits_per_dim(nll, num_dims):
    """bits/dim = nll / (D ln 2): nats per example -> bits per dimension."""
    return nll / (num_dims * math.log(2.0))


def dequantize(x, u, levels=256):
    """Uniform dequantisation y = (x + u) / levels in [0, 1): x integer levels, u ~ U[0, 1) passed in."""
    return (x + u) / levels


def nll_on_level_scale(nll, num_dims, levels=256):
    """-log p of the same density read on [0, levels)^D instead of [0, 1]^D: the Jacobian adds D log(levels)."""
    return nll + num_dims * math.log(levels)


def wasserstein2(a: torch.Tensor, b: torch.Tensor) -> float:
    """The exact 2-Wasserstein distance between two empirical measures of equal size (N, D): the optimal assignment
    (SciPy's linear_sum_assignment) of the squared Euclidean costs, square-rooted."""
    from scipy.optimize import linear_sum_assignment

    if len(a) != len(b):
        raise ValueError(f"wasserstein2 needs equal sizes, got {len(a)} and {len(b)}")
    cost = torch.cdist(a.double(), b.double()).pow(2).numpy()
    rows, cols = linear_sum_assignment(cost)
    return math.sqrt(float(cost[rows, cols].mean()))


# 6. Estimators on feature sets (what ``eval`` and the sanity table report) -----------------------------------
def fid_from_features(real, fake):
    """FID between two feature sets (N, d), (M, d): Gaussian statistics and the Frechet distance in float64."""
    return float(frechet_distance(*gaussian_statistics(real.double()), *gaussian_statistics(fake.double())))


def inception_score_splits(probs, splits: int = 10, generator: torch.Generator | None = None) -> tuple[float, float]:
    """Mean and standard deviation of the IS over ``splits`` consecutive parts of probs (N, C) (Salimans et al.);
    of a random permutation of the rows when a ``generator`` is given: a class-conditional model's samples come
    ordered by class, and consecutive parts would each hold one class (an IS near 1)."""
    if generator is not None:
        probs = probs[torch.randperm(len(probs), generator=generator)]
    scores = torch.stack([inception_score(part) for part in probs.double().chunk(splits)])
    return float(scores.mean()), float(scores.std()) if len(scores) > 1 else 0.0


def kid_subsets(real, fake, subsets: int = 100, subset_size: int = 1000,
                generator: torch.Generator | None = None) -> tuple[float, float]:
    """Mean and standard deviation of KID over random subsets of both sets (Binkowski et al. 2018, app. D).

    Independent subsets of the two sets; a set compared with itself (``fake is real``) uses the same rows on
    both sides, so its KID is the floor of the U-statistic, 2 (mean k(x_i, x_j) - mean k(x_i, x_i)) / m < 0.
    """
    size = min(subset_size, len(real), len(fake))
    values = []
    for _ in range(subsets):
        rows_real = torch.randperm(len(real), generator=generator)[:size].to(real.device)
        rows_fake = rows_real if fake is real else torch.randperm(len(fake), generator=generator)[:size].to(fake.device)
        values.append(kid(real[rows_real].double(), fake[rows_fake].double()))
    values = torch.stack(values)
    return float(values.mean()), float(values.std()) if subsets > 1 else 0.0
