"""The target domains of DANN: deterministic shifts of a registered image data set.

The source domain is a labelled image set (Fashion-MNIST by default); a target domain is the same images, shifted.
The shift is built here, from the embedded data only, and is the same on every machine: the textures and crops
come from a generator seeded by the split (``SEEDS``), never from the engine's.

* ``galaxies`` (the default): MNIST-M's blend (Ganin et al. 2016, sec. 5.2.4), ``|x - b|``, with ``b`` a crop of
  a GalSim galaxy (``practice_torch.data.galaxies``) contrast-stretched by ``GALAXY_STRETCH`` and clipped to
  [0, 1]: the garment is inverted where it lies over the galaxy, and the galaxy's pixel noise is amplified. The
  target's train split blends over the galaxies' train split, its test split over their test split.
* ``patches``: the same blend over a crop of another image of the same split, upsampled twice (smooth clutter).
* ``inverted``: ``1 - x``. A source-only classifier falls to chance, and DANN may align the two feature
  distributions with the classes permuted (Known limits, ``docs/topics/domain_adversarial.md``).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F
from torch.utils.data import TensorDataset

SHIFTS = ("galaxies", "patches", "inverted")
SEEDS = {"train": 0, "val": 1, "test": 2}
GALAXY_STRETCH = 2.0  # the galaxy's asinh brightness (noise about +-0.15, cores about 1) times this, clipped to [0, 1]


def random_crops(pool, n: int, size: tuple[int, int], generator: torch.Generator):
    """n crops of ``size`` (h, w) at random places of random images of ``pool``. pool: (M, C, H', W') with
    H' >= h, W' >= w -> (n, C, h, w)."""
    h, w = size
    rows = torch.randint(len(pool), (n,), generator=generator)
    top = torch.randint(pool.shape[-2] - h + 1, (n,), generator=generator)
    left = torch.randint(pool.shape[-1] - w + 1, (n,), generator=generator)
    ys = (top[:, None] + torch.arange(h))[:, None, :, None]  # (n, 1, h, 1)
    xs = (left[:, None] + torch.arange(w))[:, None, None, :]  # (n, 1, 1, w)
    return pool[rows[:, None, None, None], torch.arange(pool.shape[1])[None, :, None, None], ys, xs]


def fit_to(pool, size: tuple[int, int], margin: float = 32 / 28):
    """The texture images bilinearly resized so that they exceed ``size`` (h, w) by ``margin`` (a 32-pixel galaxy
    around a 28-pixel garment): room for random crops. pool: (M, C, H', W') -> (M, C, ceil(margin h), ceil(margin w))."""
    target = (math.ceil(margin * size[0]), math.ceil(margin * size[1]))
    if tuple(pool.shape[-2:]) == target:
        return pool
    return F.interpolate(pool, size=target, mode="bilinear", align_corners=False)


def blend(x, background):
    """MNIST-M's blend |x - b| (Ganin et al. 2016, sec. 5.2.4). x: (N, C, H, W) in [0, 1], background: (N, 1 or C,
    H, W) in [0, 1] -> (N, C, H, W) in [0, 1]."""
    return (x - background).abs()


def shift_images(x, shift: str, split: str, textures=None):
    """The target domain's images: ``shift`` applied to the source images of ``split``. x: (N, C, H, W) in [0, 1];
    textures: (M, 1, H', W') in [0, 1]-ish galaxy images for ``galaxies`` (their own split), else unused ->
    (N, C, H, W) in [0, 1]. Deterministic: the crops are drawn from a generator seeded by the split."""
    if shift not in SHIFTS:
        raise ValueError(f"unknown model.target {shift!r}; choose from {', '.join(SHIFTS)}")
    generator = torch.Generator().manual_seed(SEEDS[split])
    size = tuple(x.shape[-2:])
    if shift == "inverted":
        return 1.0 - x
    if shift == "patches":
        pool = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return blend(x, random_crops(pool, len(x), size, generator))
    if textures is None:
        raise ValueError("model.target=galaxies needs the galaxy images (textures)")
    crops = random_crops(fit_to(textures, size), len(x), size, generator)
    return blend(x, (GALAXY_STRETCH * crops).clamp(0.0, 1.0))


def galaxy_textures(split: str):
    """The galaxies of ``split`` as (M, 1, 32, 32) float32 (``DatasetMissing``, one line, if not prepared)."""
    from practice_torch.data import get_dataset

    return get_dataset("galaxies", split).tensors[0]


def target_domain(x, y, shift: str, split: str) -> TensorDataset:
    """The target domain of the source examples (x (N, C, H, W), y (N,)) of ``split``: (shifted x, y). The labels
    ride along for evaluation only; training draws target images alone."""
    textures = galaxy_textures(split) if shift == "galaxies" else None
    return TensorDataset(shift_images(x, shift, split, textures), y)
