"""Galaxies from their physical parameters: the parameters measured back on images, and how well they track.

The data set (``practice_torch.data.galaxies``) draws a Sersic profile of index n and half-light radius r, shears
it to (e1, e2) = the reduced shear (g1, g2), scales it to a flux F, convolves it with a Moffat PSF (FWHM 0.7")
and adds Gaussian pixel noise. A conditional generator is asked for (n, r, e1, e2, log10 F); ``measure`` reads
them back off any images in the data set's normalisation, real or generated, the same way, so the correlation of
measured vs requested on real test images is the ceiling a generator can reach (``condition_correlations``).

How each measurement works, and how the PSF and the noise bias it (test set, 32 x 32; ``tests/test_galaxies_fm.py``):

* ``log10_flux``: log10 of the sum of all pixels (counts). The PSF conserves flux and the noise sums to zero on
  average (sd sigma S = 160 counts, 0.07 dex at 10^3 counts); light beyond the 6.4" field is lost (up to -0.1 dex
  for n = 4, r = 1.2": -0.04 dex on average). A sum <= 1 count reads as 0 (far below the data's 3 .. 4.5).
* ``e1, e2``: GalSim's HSM re-Gaussianization (Hirata & Seljak 2003, ``galsim.hsm.EstimateShear``, REGAUSS) with
  the data set's PSF: the PSF-corrected distortion e = (a^2 - b^2) / (a^2 + b^2), turned into the reduced shear
  g = e / (1 + sqrt(1 - |e|^2)) that the data set applied. The adaptive moments of the observed image are rounder
  (PSF dilution: slope 0.54 on the true g); after the correction the slope is 0.99. Noise scatters the shape,
  and 1% of the test galaxies (faint ones) come out with |e| >= 1; there, and where REGAUSS fails, the observed
  adaptive moments (``galsim.hsm.FindAdaptiveMom``), then plain second moments, stand in (``shape_method`` 2/1/0).
* ``half_light_r``: the curve of growth in elliptical apertures (centre and shape from the adaptive moments,
  circularised radius sqrt(a b), which the shear keeps equal to r; 4 x 4 points per pixel): the radius enclosing
  half of the field's flux, with the PSF's half-light radius (0.44") taken off in quadrature. That is exact for
  Gaussians only: the Moffat's wings leave small galaxies up to 0.15" too large. The finite field makes large
  concentrated galaxies look smaller (slope 0.89 for n < 1.5, 0.53 for n > 2.5); noise scatters faint ones.
* ``concentration``: C = 5 log10(r80 / r20) of the same curve of growth (PSF included), a proxy for the Sersic
  index n (the PSF pulls small galaxies towards its own C, so it tracks n least well).

The ceiling on the 1000 real test galaxies (Pearson): log10 flux 0.995, e1 0.958, e2 0.960, r 0.908, n through C
0.720 (Spearman 0.767). ``sweep_figure`` shows samples along each parameter; ``tracking_figure`` plots measured
against requested; ``python -m benchmarks galaxy_conditioning`` puts a trained model's numbers beside the ceiling.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from practice_torch.data.galaxies import CONDITION, FIELD, PSF_BETA, PSF_FWHM, RANGES, denormalise_condition, to_counts
from practice_torch.engine.interface import Artefact

MEASURED_AS = {"sersic_n": "concentration", "half_light_r": "half_light_r", "e1": "e1", "e2": "e2",
               "log10_flux": "log10_flux"}  # condition -> the measurement that tracks it
LABELS = {"sersic_n": ("Sersic n", ""), "half_light_r": ("r", '"'), "e1": ("e1", ""), "e2": ("e2", ""),
          "log10_flux": ("log10 F", "")}
SUBPIXELS = 4  # the curve of growth samples each pixel at 4 x 4 points
MAX_DISTORTION = 0.99  # |e| is clipped here when a shape is turned into a reduced shear

Generate = Callable[..., torch.Tensor]


# 1. The measurements ----------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def psf_image(size: int):
    """The data set's Moffat PSF drawn on its size x size grid (``galsim.Image``), for REGAUSS."""
    import galsim

    return galsim.Moffat(beta=PSF_BETA, fwhm=PSF_FWHM).drawImage(nx=size, ny=size, scale=FIELD / size)


@lru_cache(maxsize=1)
def psf_half_light_radius() -> float:
    """The PSF's half-light radius in arcsec (0.44" for FWHM 0.7", beta 3)."""
    import galsim

    return float(galsim.Moffat(beta=PSF_BETA, fwhm=PSF_FWHM).half_light_radius)


def shear_from_distortion(e1: float, e2: float) -> tuple[float, float]:
    """Distortion e = (a^2 - b^2) / (a^2 + b^2) -> reduced shear g = e / (1 + sqrt(1 - |e|^2)), |e| clipped."""
    e = np.hypot(e1, e2)
    if e > MAX_DISTORTION:
        e1, e2, e = e1 * MAX_DISTORTION / e, e2 * MAX_DISTORTION / e, MAX_DISTORTION
    k = 1.0 / (1.0 + np.sqrt(1.0 - e * e))
    return e1 * k, e2 * k


def plain_moments(counts: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, g1, g2) of the unweighted moments of the positive pixels: counts (S, S), x = column, y = row."""
    w = np.clip(counts, 0.0, None)
    total = w.sum()
    if total <= 0:
        return (counts.shape[1] - 1) / 2, (counts.shape[0] - 1) / 2, 0.0, 0.0
    ys, xs = np.indices(counts.shape, dtype=np.float64)
    cx, cy = (w * xs).sum() / total, (w * ys).sum() / total
    qxx, qyy, qxy = ((w * (xs - cx) ** 2).sum(), (w * (ys - cy) ** 2).sum(), (w * (xs - cx) * (ys - cy)).sum())
    g1, g2 = shear_from_distortion((qxx - qyy) / (qxx + qyy), 2 * qxy / (qxx + qyy)) if qxx + qyy > 0 else (0.0, 0.0)
    return cx, cy, g1, g2


def centre_and_shape(counts: np.ndarray, scale: float) -> tuple[float, float, float, float, int]:
    """(x, y, g1, g2, method): the centroid (pixels, 0-based) and observed reduced shear of the adaptive moments
    (method 1), or of the plain moments where HSM fails (method 0)."""
    import galsim

    m = galsim.hsm.FindAdaptiveMom(galsim.Image(counts, scale=scale), strict=False)
    if m.moments_status == 0 and m.observed_shape.g < 1:
        return m.moments_centroid.x - 1, m.moments_centroid.y - 1, m.observed_shape.g1, m.observed_shape.g2, 1
    return (*plain_moments(counts), 0)


def corrected_shape(counts: np.ndarray, size: int, scale: float) -> tuple[float, float] | None:
    """The PSF-corrected reduced shear (g1, g2) by REGAUSS, or None where HSM fails."""
    import galsim

    r = galsim.hsm.EstimateShear(galsim.Image(counts, scale=scale), psf_image(size), shear_est="REGAUSS",
                                 strict=False)
    if r.error_message or not np.hypot(r.corrected_e1, r.corrected_e2) < 1:  # noise can push |e| past 1
        return None
    return shear_from_distortion(r.corrected_e1, r.corrected_e2)


def elliptical_radius(size: int, x: float, y: float, g1: float, g2: float, sub: int = SUBPIXELS) -> np.ndarray:
    """(S, S, sub^2) circularised radius |S_g^{-1} (p - c)| in pixels at sub x sub points p of each pixel (a
    smooth curve of growth: pixel centres alone give it steps of ~0.5 pixel). S_g = [[1 + g1, g2], [g2, 1 - g1]] /
    sqrt(1 - g^2) is GalSim's shear (det 1), so a round profile sheared by g has its isophotes at constant radius."""
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    ys, xs = np.indices((size, size), dtype=np.float64)
    dx = (xs - x)[..., None, None] + offsets[None, :]
    dy = (ys - y)[..., None, None] + offsets[:, None]
    norm = np.sqrt(max(1.0 - g1 * g1 - g2 * g2, 1e-6))
    return (np.hypot((1 - g1) * dx - g2 * dy, -g2 * dx + (1 + g1) * dy) / norm).reshape(size, size, sub * sub)


def light_radii(counts: np.ndarray, radius: np.ndarray, fractions: tuple[float, ...], step: float = 0.05
                ) -> np.ndarray:
    """Radii (same unit as ``radius`` (S, S, K): K points per pixel, each with 1/K of its counts) enclosing each
    fraction of the total ``counts`` (S, S): the curve of growth on rings of width ``step``, its first crossing
    interpolated linearly within the ring; NaN if the total is <= 0."""
    points = np.broadcast_to(counts[..., None] / radius.shape[-1], radius.shape)
    ring = np.bincount((radius / step).astype(np.int64).ravel(), weights=points.ravel())
    cum = np.cumsum(ring)  # cum[i]: the counts within radius (i + 1) step
    if cum[-1] <= 0:
        return np.full(len(fractions), np.nan)
    out = []
    for f in fractions:
        k = int(np.argmax(cum >= f * cum[-1]))  # the ring where the curve first reaches f total
        inside = cum[k - 1] if k else 0.0
        out.append((k + (f * cum[-1] - inside) / ring[k]) * step)
    return np.array(out)


def measure_counts(counts: np.ndarray) -> dict[str, float]:
    """The measurements of one image in counts (S, S) (see the module docstring)."""
    size = counts.shape[-1]
    scale = FIELD / size
    counts = np.ascontiguousarray(counts, dtype=np.float64)
    x, y, g1, g2, method = centre_and_shape(counts, scale)
    r20, r50, r80 = light_radii(counts, elliptical_radius(size, x, y, g1, g2), (0.2, 0.5, 0.8)) * scale
    corrected = corrected_shape(counts, size, scale)
    if corrected is not None:
        (g1, g2), method = corrected, 2
    return {"half_light_r": float(np.sqrt(max(r50**2 - psf_half_light_radius() ** 2, 0.0))),
            "e1": float(g1), "e2": float(g2), "log10_flux": float(np.log10(max(counts.sum(), 1.0))),
            "concentration": float(5 * np.log10(r80 / r20)) if r20 > 0 else np.nan, "shape_method": method}


def measure(x: torch.Tensor) -> dict[str, np.ndarray]:
    """Physical parameters measured on images x: (N, 1, S, S) in the data set's normalisation (asinh(counts /
    sigma) / 6, inverted by ``to_counts``) -> {half_light_r (arcsec), e1, e2, log10_flux, concentration,
    shape_method}, each (N,) float64 (shape_method: 2 PSF-corrected, 1 adaptive moments, 0 plain moments)."""
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != x.shape[3]:
        raise ValueError(f"measure takes (N, 1, S, S) galaxy images, got shape {tuple(x.shape)}")
    counts = to_counts(x[:, 0].detach().double().cpu(), x.shape[-1]).numpy()
    rows = [measure_counts(c) for c in counts]
    return {k: np.array([row[k] for row in rows], dtype=np.float64) for k in rows[0]} if rows else {}


def condition_correlations(requested: torch.Tensor | np.ndarray, measured: dict[str, np.ndarray],
                           normalised: bool = True) -> dict[str, dict[str, float]]:
    """Per condition (CONDITION order): Pearson and Spearman correlation of the requested parameter (N, 5)
    (``normalised`` to [-1, 1], or physical) with its measurement (``MEASURED_AS``), over the n rows where the
    measurement is finite; and the slope of measured on requested in physical units (1: calibrated)."""
    from scipy.stats import pearsonr, spearmanr

    requested = torch.as_tensor(requested, dtype=torch.float64).cpu()
    physical = (denormalise_condition(requested) if normalised else requested).numpy()
    out = {}
    for j, name in enumerate(CONDITION):
        got = measured[MEASURED_AS[name]]
        ok = np.isfinite(got)
        a, b = physical[ok, j], got[ok]
        varied = ok.sum() > 2 and np.ptp(a) > 0 and np.ptp(b) > 0
        out[name] = {"measured_as": MEASURED_AS[name], "n": int(ok.sum()),
                     "pearson": float(pearsonr(a, b)[0]) if varied else np.nan,
                     "spearman": float(spearmanr(a, b)[0]) if varied else np.nan,
                     "slope": float(np.polyfit(a, b, 1)[0]) if varied else np.nan}
    return out


# 2. Figures ----------------------------------------------------------------------------------------------------
def sweep_conditions(points: int) -> torch.Tensor:
    """(5, points, 5) normalised conditions: row j sweeps parameter j over [-1, 1] (its whole range), the others
    at 0: mid-range (n 2.25, r 0.75", e1 = e2 = 0, log10 F 3.75)."""
    y = torch.zeros(len(CONDITION), points, len(CONDITION))
    for j in range(len(CONDITION)):
        y[j, :, j] = torch.linspace(-1, 1, points)
    return y


def takes_noise(generate: Generate) -> bool:
    """Whether ``generate`` accepts ``noise=`` (the sampler's start x0 at t = 0) beside the conditions."""
    try:
        return "noise" in inspect.signature(generate).parameters
    except (TypeError, ValueError):
        return False


def panel_label(name: str, value: float) -> str:
    label, unit = LABELS[name]
    return f"{label} = {value:.2f}{unit}"


@torch.no_grad()
def sweep_figure(generate: Generate, *, points: int = 7, generator: torch.Generator | None = None,
                 size: int = 32) -> Artefact:
    """Samples along a sweep of each parameter: one row per parameter (CONDITION order) over its range, the others
    at mid-range (``sweep_conditions``); titles in physical units, and under each panel the swept parameter as
    ``measure`` reads it off the sample (the Sersic row: the concentration C).

    ``generate(y: (N, 5) normalised conditions) -> x: (N, 1, S, S)`` in the data set's normalisation. When it also
    takes ``noise`` ((N, 1, S, S), the start of the sampler), one draw from ``generator`` is shared across each row,
    so only the parameter changes along it; otherwise every panel has its own noise (the figure says which)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from practice_torch.plots import figure_artefact

    if points < 2:
        raise ValueError(f"a sweep needs points >= 2, got {points}")
    y, shared = sweep_conditions(points), takes_noise(generate)
    noise = torch.randn((len(CONDITION), 1, 1, size, size), generator=generator)
    rows = [(generate(y[j], noise=noise[j].expand(points, -1, -1, -1)) if shared else generate(y[j])).float().cpu()
            for j in range(len(CONDITION))]
    measured = measure(torch.cat(rows))
    physical = denormalise_condition(y).numpy()
    fig, axes = plt.subplots(len(CONDITION), points, figsize=(1.5 * points + 0.6, 1.85 * len(CONDITION)), dpi=100,
                             squeeze=False)
    for j, name in enumerate(CONDITION):
        got = measured[MEASURED_AS[name]][j * points:(j + 1) * points]
        for k in range(points):
            ax = axes[j, k]
            ax.imshow(rows[j][k, 0].numpy(), cmap="afmhot", vmin=-0.2, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(panel_label(name, physical[j, k, j]), fontsize=8)
            shown = f"C = {got[k]:.2f}" if name == "sersic_n" else f"meas. {got[k]:.2f}{LABELS[name][1]}"
            ax.set_xlabel(shown, fontsize=7, labelpad=2)
        axes[j, 0].set_ylabel(f"{LABELS[name][0]} sweep", fontsize=9)
    mid = ", ".join(panel_label(name, v) for name, v in zip(CONDITION, physical[0, points // 2]) if name != "sersic_n")
    fig.suptitle(f"one parameter per row, the others at mid-range (n = {physical[1, 0, 0]:.2f}, {mid}); "
                 f"{'the same noise along each row' if shared else 'independent noise in every panel'}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return figure_artefact("parameter_sweep", fig)


def tracking_figure(requested: torch.Tensor, measured: dict[str, np.ndarray],
                    reference: tuple[torch.Tensor, dict[str, np.ndarray]] | None = None,
                    name: str = "conditioning") -> Artefact:
    """One panel per parameter: measured against requested (physical units) for samples (``requested`` (N, 5)
    normalised, ``measured`` from ``measure``) and, when given, for real images (``reference``), with the Pearson
    correlation of each in the legend and the identity line where the measurement is in the same units."""
    from practice_torch.plots import figure_artefact, new_figure

    fig, axes = new_figure(len(CONDITION), size=3.2)
    sets = [("samples", requested, measured)] + ([("real", *reference)] if reference is not None else [])
    for label, y, got in sets:
        corr = condition_correlations(y, got)
        physical = denormalise_condition(torch.as_tensor(y, dtype=torch.float64).cpu()).numpy()
        for j, cond in enumerate(CONDITION):
            axes[j].scatter(physical[:, j], got[MEASURED_AS[cond]], s=3, alpha=0.4,
                            label=f"{label} (r = {corr[cond]['pearson']:.3f})")
    for j, cond in enumerate(CONDITION):
        label, unit = LABELS[cond]
        if cond != "sersic_n":
            axes[j].plot(RANGES[j], RANGES[j], "k--", lw=1)
        axes[j].set(xlabel=f"requested {label}{' [arcsec]' if unit else ''}",
                    ylabel=f"measured {'C' if cond == 'sersic_n' else label}")
        axes[j].legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    return figure_artefact(name, fig)
