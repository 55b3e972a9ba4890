"""Toy data sets generated in code: two moons, a ring of Gaussians, concentric rings, the mode-collapse benchmarks'
ring and grid, WGAN-GP's 25 Gaussians and Swiss roll (2-D) and a 1-D mixture.

x: float32 (2,) (or (1,) for mixture1d), roughly in [-3, 3] (grid25 in [-4.2, 4.2]); y: int64 component (moon, mode,
ring or mixture component index; swissroll: float32 t, the position along the roll).
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


def grid(n: int, rng: np.random.Generator, side: int = 5, spacing: float = 2.0, std: float = 0.05):
    """25 Gaussians (std 0.05) centred on the points {-4, -2, 0, 2, 4}^2: VEEGAN's 2D grid as PacGAN's code draws it
    (Srivastava et al. 2017, sec. 5.1; Lin et al. 2018, Table 1)."""
    y = rng.integers(0, side * side, n)
    ticks = spacing * (np.arange(side) - (side - 1) / 2)
    centres = np.stack([ticks[y // side], ticks[y % side]], axis=1)
    return centres + std * rng.standard_normal((n, 2)), y


def swiss_roll(n: int, rng: np.random.Generator):
    """WGAN-GP's Swiss roll (Gulrajani et al. 2017, Figure 1; its gan_toy.py): scikit-learn's ``make_swiss_roll``
    (noise 0.25), the plane of its first and third coordinates, divided by 7.5 ("stdev plus a little"). y: the
    position along the roll, its parameter t in [3 pi / 2, 9 pi / 2] (a float: no modes to count)."""
    from sklearn.datasets import make_swiss_roll

    x, t = make_swiss_roll(n, noise=0.25, random_state=int(rng.integers(2**31)))
    return x[:, [0, 2]] / 7.5, t


MIXTURE1D_WEIGHTS = (0.45, 0.35, 0.20)


def mixture1d(n: int, rng: np.random.Generator):
    """A bimodal, right-skewed 1-D mixture: 0.45 N(-1.6, 0.3^2) + 0.35 N(0.4, 0.5^2) + 0.2 (1 + Gamma(2, scale 0.35)),
    drawn by inverse-CDF sampling from one stream of uniform pairs (component, then value), so the first k
    examples of a split are the same whatever its size."""
    from scipy import stats

    u = rng.random((n, 2))
    y = np.searchsorted(np.cumsum(MIXTURE1D_WEIGHTS)[:-1], u[:, 0], side="right")
    x = np.select([y == 0, y == 1], [stats.norm.ppf(u[:, 1], -1.6, 0.3), stats.norm.ppf(u[:, 1], 0.4, 0.5)],
                  1.0 + stats.gamma.ppf(u[:, 1], 2.0, scale=0.35))
    return x[:, None], y


def mixture1d_log_density(x: np.ndarray) -> np.ndarray:
    """The exact log-density of ``mixture1d`` at x (...) or (..., 1) -> (...), for checking a model's NLL."""
    from scipy import special, stats

    x = np.asarray(x, dtype=np.float64)
    x = x[..., 0] if x.ndim and x.shape[-1] == 1 else x
    parts = np.stack([stats.norm.logpdf(x, -1.6, 0.3), stats.norm.logpdf(x, 0.4, 0.5),
                      stats.gamma.logpdf(x - 1.0, 2.0, scale=0.35)])
    return special.logsumexp(parts + np.log(MIXTURE1D_WEIGHTS).reshape((3,) + (1,) * x.ndim), axis=0)


def _loader(make, sizes=SIZES, **options):
    def load(split: str, data_dir=None, n: int | None = None, limit: int | None = None) -> Dataset:
        size = limit or n or sizes[split]
        x, y = make(size, np.random.default_rng(SEEDS[split]), **options)
        labels = y.astype(np.int64) if np.issubdtype(y.dtype, np.integer) else y.astype(np.float32)
        return TensorDataset(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(labels))
    return load


_SPLITS = "train 20 000 / val 2 000 / test 2 000, each drawn with its own seed (0, 1, 2)"
register(DatasetInfo("moons", "2-D", (2,), "float32", "about [-2.5, 2.5]", "moon 0/1", _SPLITS,
                     "generated (scikit-learn make_moons, noise 0.05)", _loader(moons), num_classes=2))
register(DatasetInfo("gaussians", "2-D", (2,), "float32", "about [-2.5, 2.5]", "mode 0-7", _SPLITS,
                     "generated: 8 Gaussians (std 0.1) on a circle of radius 2", _loader(gaussians), num_classes=8))
register(DatasetInfo("rings", "2-D", (2,), "float32", "about [-2.5, 2.5]", "ring 0-2", _SPLITS,
                     "generated: 3 concentric rings (radii 0.75, 1.5, 2.25)", _loader(rings), num_classes=3))
# The mode-collapse benchmarks' sets (PacGAN's synthetic_data_experiments): 2 500 test points, the samples the papers
# score a generator on
MODE_COLLAPSE_SIZES = {"train": 20_000, "val": 2_000, "test": 2_500}
_MODE_COLLAPSE_SPLITS = "train 20 000 / val 2 000 / test 2 500 (the papers' sample count), each with its own seed"
register(DatasetInfo("ring8", "2-D", (2,), "float32", "about [-1.04, 1.04]", "mode 0-7", _MODE_COLLAPSE_SPLITS,
                     "generated: VEEGAN's 2D ring as PacGAN draws it, 8 Gaussians (std 0.01) on the unit circle",
                     _loader(gaussians, MODE_COLLAPSE_SIZES, radius=1.0, std=0.01), num_classes=8))
register(DatasetInfo("grid25", "2-D", (2,), "float32", "about [-4.2, 4.2]", "mode 0-24", _MODE_COLLAPSE_SPLITS,
                     "generated: VEEGAN's 2D grid as PacGAN draws it, 25 Gaussians (std 0.05) on {-4, -2, 0, 2, 4}^2",
                     _loader(grid, MODE_COLLAPSE_SIZES), num_classes=25))
register(DatasetInfo("gaussians25", "2-D", (2,), "float32", "about [-1.5, 1.5]", "mode 0-24", _SPLITS,
                     "generated: WGAN-GP's 25 Gaussians (gan_toy.py), grid25 divided by 2.828: std 0.0177 on "
                     "{-1.41, -0.71, 0, 0.71, 1.41}^2", _loader(grid, std=0.05 / 2.828, spacing=2 / 2.828),
                     num_classes=25))
register(DatasetInfo("swissroll", "2-D", (2,), "float32", "about [-1.5, 2]", "t, the position along the roll (float)",
                     _SPLITS,
                     "generated: WGAN-GP's Swiss roll (gan_toy.py): make_swiss_roll (noise 0.25), coordinates 0 and 2, "
                     "divided by 7.5", _loader(swiss_roll)))
register(DatasetInfo("mixture1d", "1-D", (1,), "float32", "about [-2.8, 4.8]", "component 0-2", _SPLITS,
                     "generated: 0.45 N(-1.6, 0.3^2) + 0.35 N(0.4, 0.5^2) + 0.2 (1 + Gamma(2, scale 0.35))",
                     _loader(mixture1d), num_classes=3))
