"""Disentanglement against known generating factors: the mutual information gap (Chen et al. 2018, sec. 5).

For each factor v_k, the mutual information I(z_j; v_k) of every code dimension z_j (the encoder's posterior means)
is estimated from histograms: each code dimension and each factor in ``bins`` equal-count bins, tied values in one
(a factor with few distinct values, like the Sersic index on its 0.05 grid, is not split at random), so
H(v_k) = log(bins) for distinct values (less with ties), and the score, like mutual information itself, does not
change when a code is squashed by a monotone map (disentanglement_lib's equal-width bins of the codes are moved by a
code's outliers). MIG is the mean over factors of (I(z_(1); v_k) - I(z_(2); v_k)) / H(v_k), the gap between the two
most informative code dimensions: 1 when one dimension alone carries a factor, near 0 when none or several do. The
galaxies know their five factors (``practice_torch.data.galaxies``), which is what makes the score computable.
"""

from __future__ import annotations

import numpy as np


def equal_count_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """(N, d) -> (N, d) int bin indices by rank: a value's bin is floor(bins n_below / N), n_below the number of its
    column's values below it, so tied values share a bin, distinct values fill each of the ``bins`` bins with N / bins,
    and a strictly increasing map of a column changes nothing."""
    values = np.asarray(values)
    below = np.stack([np.searchsorted(np.sort(column), column, side="left") for column in values.T], axis=1)
    return below * bins // len(values)


def mutual_information_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(z_j; v_k) in nats of discrete codes (N, d) and factors (N, K): (d, K), by sklearn's contingency tables."""
    from sklearn.metrics import mutual_info_score

    return np.array([[mutual_info_score(factors[:, k], codes[:, j]) for k in range(factors.shape[1])]
                     for j in range(codes.shape[1])])


def mutual_information_gap(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> dict[str, object]:
    """MIG of continuous codes (N, d), d >= 2, against continuous factors (N, K): {"mig": the mean gap,
    "gaps": (K,) each factor's normalised gap, "mutual_information": (d, K) I(z_j; v_k) / H(v_k),
    "best": (K,) the code dimension that carries each factor most}."""
    codes, factors = np.asarray(codes, np.float64), np.asarray(factors, np.float64)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors) or codes.shape[1] < 2:
        raise ValueError(f"MIG needs codes (N, d >= 2) and factors (N, K) of the same N, got {codes.shape} and "
                         f"{factors.shape}")
    discrete_factors = equal_count_bins(factors, bins)
    entropy = np.array([_entropy(discrete_factors[:, k]) for k in range(factors.shape[1])])
    info = mutual_information_matrix(equal_count_bins(codes, bins), discrete_factors) / entropy
    top = np.sort(info, axis=0)[::-1]
    gaps = top[0] - top[1]
    return {"mig": float(gaps.mean()), "gaps": gaps, "mutual_information": info, "best": info.argmax(0)}


def _entropy(labels: np.ndarray) -> float:
    """H of a discrete sample (N,) in nats."""
    p = np.unique(labels, return_counts=True)[1] / len(labels)
    return float(-(p * np.log(p)).sum())
