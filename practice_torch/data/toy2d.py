"""2-D toy data sets, generated in code: two moons, a ring of Gaussians, concentric rings.

x: float32 (2,), roughly in [-3, 3]; y: int64 component (moon, mode or ring index).
Each split is drawn with its own fixed seed (train 0, val 1, test 2), so splits never overlap by design.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from practice_torch.data import DatasetInfo, register

SEEDS = {"train": 0, "val": 1, "test": 2}
SIZES = {"train": 20_000, "val": 2_000, "test": 2_000}


def moons(n: int, rng: np.random.Generator, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons

    x, y = make_moons(n, noise=noise, random_state=int(rng.integers(2**31)))
    return (x - [0.5, 0.25]) * 1.5, y


def gaussians(n: int, rng: np.random.Generator, modes: int = 8, radius: float = 2.0, std: float = 0.1):
    y = rng.integers(0, modes, n)
    angle = 2 * np.pi * y / modes
    centers = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centers + std * rng.standard_normal((n, 2)), y


def rings(n: int, rng: np.random.Generator, radii=(0.75, 1.5, 2.25), std: float = 0.06):
    y = rng.integers(0, len(radii), n)
    angle = rng.uniform(0, 2 * np.pi, n)
    r = np.asarray(radii)[y] + std * rng.standard_normal(n)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1), y


def _loader(make):
    def load(split: str, data_dir=None, n: int | None = None, limit: int | None = None) -> Dataset:
        size = limit or n or SIZES[split]
        x, y = make(size, np.random.default_rng(SEEDS[split]))
        return TensorDataset(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64)))
    return load


_SPLITS = "train 20 000 / val 2 000 / test 2 000, each drawn with its own seed (0, 1, 2)"
register(DatasetInfo("moons", "2-D", (2,), "float32", "about [-2.5, 2.5]", "moon 0/1", _SPLITS,
                     "generated (scikit-learn make_moons, noise 0.05)", _loader(moons), num_classes=2))
register(DatasetInfo("gaussians", "2-D", (2,), "float32", "about [-2.5, 2.5]", "mode 0-7", _SPLITS,
                     "generated: 8 Gaussians (std 0.1) on a circle of radius 2", _loader(gaussians), num_classes=8))
register(DatasetInfo("rings", "2-D", (2,), "float32", "about [-2.5, 2.5]", "ring 0-2", _SPLITS,
                     "generated: 3 concentric rings (radii 0.75, 1.5, 2.25)", _loader(rings), num_classes=3))
