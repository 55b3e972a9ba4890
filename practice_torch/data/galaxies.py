"""Galaxies rendered with GalSim, conditioned on their physical parameters.

Each galaxy is a Sersic profile, sheared to an ellipticity, convolved with a fixed Moffat PSF (beta 3, FWHM 0.7"),
drawn on a size x size grid covering 6.4" (0.2"/pixel at 32, 0.1" at 64: the same galaxies, finer), plus Gaussian
pixel noise (sigma NOISE_SIGMA counts at 32 pixels, half that at 64: the same noise per unit area).

x: float32 (1, size, size) = asinh(counts / sigma) / 6: noise is about +-0.15, the brightest pixels about 1;
   ``to_counts`` inverts it.
y: float32 (5,), in the order of CONDITION (physical units, each drawn uniformly in its RANGES):
   0 sersic_n        Sersic index, 0.5 .. 4 on a 0.05 grid (GalSim caches one profile per distinct n)
   1 half_light_r    half-light radius of the round profile, arcsec, 0.3 .. 1.2
   2 e1, 3 e2        reduced shear g1, g2 (|g| uniform in 0 .. 0.6, position angle uniform)
   4 log10_flux      total flux, log10 counts, 3 .. 4.5
   By default each is mapped affinely from its range to [-1, 1] (``normalise_condition``); physical=True keeps units.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from practice_torch.data import DatasetInfo, DatasetMissing, cache_dir, register

CONDITION = ("sersic_n", "half_light_r", "e1", "e2", "log10_flux")
RANGES = np.array([[0.5, 4.0], [0.3, 1.2], [-0.6, 0.6], [-0.6, 0.6], [3.0, 4.5]], dtype=np.float32)
N_STEP, MAX_SHEAR = 0.05, 0.6
FIELD, PSF_FWHM, PSF_BETA = 6.4, 0.7, 3.0  # arcsec
NOISE_SIGMA, ASINH_SCALE = 5.0, 6.0  # counts per pixel at 32 x 32; x = asinh(counts / sigma) / ASINH_SCALE
SIZES = {"train": 12_000, "val": 1_000, "test": 1_000}
SEEDS = {"train": 0, "val": 1, "test": 2}


def draw_conditions(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 5) float32 physical parameters in the order of CONDITION."""
    sersic = np.round(rng.uniform(*RANGES[0], n) / N_STEP) * N_STEP
    radius = rng.uniform(*RANGES[1], n)
    shear, angle = rng.uniform(0, MAX_SHEAR, n), rng.uniform(0, np.pi, n)
    log_flux = rng.uniform(*RANGES[4], n)
    return np.stack([sersic, radius, shear * np.cos(2 * angle), shear * np.sin(2 * angle), log_flux], 1).astype(np.float32)


def render(conditions: np.ndarray, size: int = 32) -> np.ndarray:
    """(n, size, size) float32 noiseless images in counts of the galaxies ``conditions`` (n, 5) describes."""
    import galsim

    gsparams = galsim.GSParams(folding_threshold=1e-2, maximum_fft_size=2048)  # keeps n = 4 FFTs small
    psf = galsim.Moffat(beta=PSF_BETA, fwhm=PSF_FWHM, gsparams=gsparams)
    images = np.empty((len(conditions), size, size), np.float32)
    for i, (sersic, radius, e1, e2, log_flux) in enumerate(conditions.astype(np.float64)):
        galaxy = galsim.Sersic(n=sersic, half_light_radius=radius, flux=10**log_flux, gsparams=gsparams)
        galaxy = galsim.Convolve(galaxy.shear(g1=e1, g2=e2), psf, gsparams=gsparams)
        images[i] = galaxy.drawImage(nx=size, ny=size, scale=FIELD / size).array
    return images


def _build(split: str, size: int, pool: ProcessPoolExecutor) -> tuple[np.ndarray, np.ndarray]:
    """The split's noisy images (counts) and conditions. Galaxies are rendered in order of n (GalSim's cache holds
    100 Sersic indices) in chunks across the pool; noise comes from the split's seed, so the result never depends
    on the chunking."""
    rng = np.random.default_rng(SEEDS[split])
    conditions = draw_conditions(SIZES[split], rng)
    order = np.argsort(conditions[:, 0], kind="stable")
    chunks = np.array_split(order, 8)
    images = np.empty((len(conditions), size, size), np.float32)
    for chunk, rendered in zip(chunks, pool.map(render, [conditions[c] for c in chunks], [size] * len(chunks))):
        images[chunk] = rendered
    images += rng.normal(0.0, NOISE_SIGMA * 32 / size, images.shape).astype(np.float32)
    return images, conditions


def _cache_file(size: int) -> Path:
    return cache_dir() / "galaxies" / f"galaxies_{size}.npz"


def prepare(size: int = 32) -> str:
    """Render the three splits once (two processes) and cache them as one .npz (counts and physical conditions)."""
    path = _cache_file(size)
    if path.is_file():
        return f"cached ({path})"
    path.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        arrays = {}
        for split in SIZES:
            arrays[f"{split}_counts"], arrays[f"{split}_y"] = _build(split, size, pool)
    partial = path.with_suffix(f".{os.getpid()}.npz")  # renamed at the end: readers never see half a file
    np.savez(partial, **arrays)
    partial.rename(path)
    return f"rendered {sum(SIZES.values())} galaxies at {size}x{size} ({path})"


def normalise_condition(y: torch.Tensor) -> torch.Tensor:
    """Physical (..., 5) -> [-1, 1] per parameter (affine from RANGES)."""
    low, high = torch.from_numpy(RANGES).T
    return (y - low) / (high - low) * 2 - 1


def denormalise_condition(y: torch.Tensor) -> torch.Tensor:
    low, high = torch.from_numpy(RANGES).T
    return (y + 1) / 2 * (high - low) + low


def to_counts(x: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Invert the image normalisation: x (..., size, size) -> counts per pixel."""
    return torch.sinh(x * ASINH_SCALE) * (NOISE_SIGMA * 32 / size)


def load_galaxies(split: str, data_dir: Path | None = None, size: int = 32, physical: bool = False,
                  limit: int | None = None) -> TensorDataset:
    """train 12 000 / val 1 000 / test 1 000 galaxies (seeds 0, 1, 2); ``limit`` keeps the first N."""
    path = _cache_file(size)
    if not path.is_file():
        how = "`make data`" if size == 32 else f"`python -m practice_torch.data.galaxies {size}`"
        raise DatasetMissing(f"galaxies ({size}x{size}) are not rendered under {path.parent}: run {how}")
    with np.load(path) as arrays:
        counts, y = arrays[f"{split}_counts"][:limit], arrays[f"{split}_y"][:limit]
    x = torch.asinh(torch.from_numpy(counts) / (NOISE_SIGMA * 32 / size)).div_(ASINH_SCALE).unsqueeze(1)
    y = torch.from_numpy(y)
    return TensorDataset(x, y if physical else normalise_condition(y))


register(DatasetInfo(
    "galaxies", "image", (1, 32, 32), "float32", "asinh(counts/5)/6, about [-0.5, 1]",
    "(sersic_n, half_light_r [arcsec], e1, e2, log10_flux) mapped to [-1, 1] (physical=True: units)",
    "train 12 000 / val 1 000 / test 1 000, each drawn with its own seed (0, 1, 2)",
    "rendered with GalSim (Sersic * Moffat PSF + Gaussian noise) by prepare; size=64 on request",
    load_galaxies, prepare=prepare))

if __name__ == "__main__":
    print(prepare(int(sys.argv[1]) if len(sys.argv) > 1 else 32))
