"""Disentanglement against known generating factors: the mutual information gap (Chen et al. 2018, sec. 5).

For each factor v_k, the mutual information I(z_j; v_k) of every code dimension z_j (the encoder's posterior means)
is estimated from histograms: each code dimension and each continuous factor in ``bins`` equal-count bins, so
H(v_k) = log(bins) and the score, like mutual information itself, does not change when a code is squashed by a monotone
map (disentanglement_lib's equal-width bins of the codes are moved by a code's outliers). MIG is the mean over factors of
(I(z_(1); v_k) - I(z_(2); v_k)) / H(v_k), the gap between the two most informative code dimensions: 1 when one
dimension alone carries a factor, near 0 when none or several do. The galaxies know their five factors
(``practice_torch.data.galaxies``), which is what makes the score computable.
"""

from __future__ import annotations

import numpy as np


def equal_count_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """(N, d) -> (N, d) int bin indices by rank: each column's ``bins`` bins hold N / bins values each."""
    ranks = np.argsort(np.argsort(values, axis=0, kind="stable"), axis=0, kind="stable")
    return ranks * bins // len(values)


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
