"""Deterministic splits shared by every data set."""

from __future__ import annotations

import numpy as np


def split_indices(n: int, split: str, fractions: tuple[float, float] = (0.85, 0.15), seed: int = 0) -> np.ndarray:
    """Indices of ``split`` ('train' or 'val') in a fixed permutation of range(n) (seeded, stable).

    For data sets that ship a train/test split, 'val' is carved out of the shipped train part.
    """
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(fractions[0] * n))
    return np.sort(order[:cut] if split == "train" else order[cut:])


def three_way(n: int, split: str, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0) -> np.ndarray:
    """Indices of 'train'/'val'/'test' in a fixed permutation of range(n), for data sets with no shipped split."""
    order = np.random.default_rng(seed).permutation(n)
    a = int(round(fractions[0] * n))
    b = a + int(round(fractions[1] * n))
    return np.sort({"train": order[:a], "val": order[a:b], "test": order[b:]}[split])
