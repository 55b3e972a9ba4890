"""Galaxies from their parameters: ``measure`` reads the parameters back (a noiseless galaxy exactly, the real test
set as well as the measurement allows: the ceiling), the shear sign convention and a shuffled pairing are caught,
the sweep figure sweeps one parameter per row with shared noise, and the benchmark runs on a tiny trained run.
The quick preset's samples tracking their parameters is a slow test."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from practice_torch.data import get_dataset, get_info
from practice_torch.data.galaxies import ASINH_SCALE, CONDITION, NOISE_SIGMA, normalise_condition, render
from practice_torch.evaluation.galaxies import (
    condition_correlations,
    measure,
    psf_half_light_radius,
    sweep_conditions,
    sweep_figure,
)


@pytest.fixture(scope="module")
def test_set() -> tuple[torch.Tensor, torch.Tensor]:
    """The first 300 test galaxies (x normalised, y normalised); renders the cache if it is empty (a minute)."""
    status = get_info("galaxies").prepare()
    if status.startswith("NOT"):
        pytest.skip(f"galaxies: {status}")
    return get_dataset("galaxies", "test", limit=300)[:]


def nearest_real(test_set):
    """A stand-in generator: the real test image whose condition is nearest to each requested one."""
    x, y = test_set
    return lambda q: x[torch.cdist(q.float(), y).argmin(1)]


def normalised_image(counts: np.ndarray) -> torch.Tensor:
    return torch.asinh(torch.from_numpy(counts) / NOISE_SIGMA).div(ASINH_SCALE)[:, None]


def test_a_noiseless_galaxy_is_read_back():
    physical = np.array([[1.0, 0.6, 0.3, -0.2, 4.0], [0.5, 0.9, -0.1, 0.4, 3.5], [1.0, 0.4, 0.0, 0.0, 3.2],
                         [1.0, 0.8, 0.0, 0.0, 3.2], [1.0, 1.2, 0.0, 0.0, 3.2]], np.float32)
    m = measure(normalised_image(render(physical)))
    np.testing.assert_allclose(m["e1"], physical[:, 2], atol=0.02)  # REGAUSS undoes the PSF's rounding
    np.testing.assert_allclose(m["e2"], physical[:, 3], atol=0.02)
    np.testing.assert_allclose(m["log10_flux"], physical[:, 4], atol=0.03)  # light beyond the field: < 0.03 dex
    # the PSF taken off in quadrature (exact for Gaussians) leaves the Moffat's wings: small galaxies read large
    np.testing.assert_allclose(m["half_light_r"], physical[:, 1], atol=0.15)
    assert np.all(np.diff(m["half_light_r"][2:]) > 0.3)  # 0.4" -> 0.8" -> 1.2" at n = 1
    assert (m["shape_method"] == 2).all() and 0.3 < psf_half_light_radius() < 0.6


def test_measurements_track_the_true_parameters_of_real_test_galaxies(test_set):
    """The ceiling a generator can reach: measured vs true parameters of real (noisy, PSF-convolved) galaxies."""
    x, y = test_set
    corr = condition_correlations(y, measure(x))
    assert corr["log10_flux"]["pearson"] > 0.99 and abs(corr["log10_flux"]["slope"] - 1) < 0.05
    for e in ("e1", "e2"):
        assert corr[e]["pearson"] > 0.93 and abs(corr[e]["slope"] - 1) < 0.1  # PSF-corrected: calibrated
    assert corr["half_light_r"]["pearson"] > 0.85 and corr["half_light_r"]["spearman"] > 0.85
    assert corr["sersic_n"]["spearman"] > 0.6 and corr["sersic_n"]["measured_as"] == "concentration"
    assert all(c["n"] == len(x) for c in corr.values())


def test_the_shear_convention_and_the_pairing_are_checked(test_set):
    """Negative controls: transposing the images (x <-> y) flips e1 and keeps e2; shuffled conditions correlate
    with nothing."""
    x, y = test_set
    corr = condition_correlations(y, measure(x.transpose(-1, -2)))
    assert corr["e1"]["pearson"] < -0.9 and corr["e2"]["pearson"] > 0.9
    shuffled = condition_correlations(y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))], measure(x))
    assert all(abs(c["pearson"]) < 0.2 for c in shuffled.values())


def test_condition_correlations_in_either_units():
    rng = np.random.default_rng(0)
    physical = torch.from_numpy(rng.uniform(0, 1, (50, 5)) * np.array([3.5, 0.9, 1.2, 1.2, 1.5])
                                + np.array([0.5, 0.3, -0.6, -0.6, 3.0]))
    measured = {"concentration": physical[:, 0].numpy() ** 2, "half_light_r": physical[:, 1].numpy(),
                "e1": physical[:, 2].numpy(), "e2": physical[:, 3].numpy(), "log10_flux": physical[:, 4].numpy()}
    measured["e2"][:5] = np.nan
    for corr in (condition_correlations(normalise_condition(physical), measured),
                 condition_correlations(physical, measured, normalised=False)):
        assert list(corr) == list(CONDITION) and corr["e2"]["n"] == 45 and corr["e1"]["n"] == 50
        for name in ("half_light_r", "e1", "e2", "log10_flux"):
            assert corr[name]["pearson"] == pytest.approx(1) and corr[name]["slope"] == pytest.approx(1)
        assert corr["sersic_n"]["spearman"] == pytest.approx(1) and corr["sersic_n"]["pearson"] < 1 - 1e-3


def test_sweep_figure_sweeps_one_parameter_per_row_with_shared_noise(test_set):
    real, calls = nearest_real(test_set), []

    def generate(y, noise):
        calls.append((y.clone(), noise.clone()))
        return real(y)

    artefact = sweep_figure(generate, points=5, generator=torch.Generator().manual_seed(0))
    assert artefact.kind == "images" and artefact.data.ndim == 4 and artefact.data.shape[:2] == (1, 3)
    assert 0 <= artefact.data.min() and artefact.data.max() <= 1
    assert len(calls) == len(CONDITION)
    for j, (y, noise) in enumerate(calls):
        assert y.shape == (5, 5) and noise.shape == (5, 1, 32, 32)
        assert torch.equal(y[:, j], torch.linspace(-1, 1, 5)) and not y[:, np.arange(5) != j].any()
        assert torch.equal(noise, noise[:1].expand_as(noise))  # one start per row
    assert not torch.equal(calls[0][1], calls[1][1])
    torch.testing.assert_close(sweep_conditions(5), torch.stack([y for y, _ in calls]))
    plain = []
    sweep_figure(lambda y: plain.append(y) or real(y), points=3)  # a generator without noise= still works
    assert len(plain) == 5 and plain[0].shape == (3, 5)


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match="takes \\(N, 1, S, S\\)"):
        measure(torch.zeros(2, 32, 32))
    with pytest.raises(ValueError, match="points >= 2"):
        sweep_figure(lambda y: y, points=1)


def test_the_benchmark_on_a_tiny_run(tmp_path, test_set):
    from benchmarks.__main__ import BENCHMARKS, DEFAULT
    from benchmarks.galaxies import conditioning_rows, galaxy_conditioning
    from practice_torch.flow_matching import training as flow_matching_training

    assert BENCHMARKS["galaxy_conditioning"] is galaxy_conditioning and "galaxy_conditioning" not in DEFAULT
    from practice_torch.engine.config import apply_overrides
    from practice_torch.models import new_trainer

    x, y = test_set
    rows, _, _ = conditioning_rows(x[:60], x[:60], y[:60])  # samples = the real images: the ceiling twice
    assert [r["parameter"] for r in rows] == list(CONDITION)
    assert all(r["pearson"] == r["pearson_real"] and r["samples"] == 60 for r in rows)

    cfg = apply_overrides(flow_matching_training.default_config("quick", "galaxies"), [
        "model.channels=8", "model.channel_mults=1,2", "model.attention_levels=", "model.ode_steps=1",
        "train.steps=2", "train.batch_size=8", "train.samples=4", "data.limit=16", "train.threads=1"])
    trainer = new_trainer(cfg, tmp_path / "run")
    try:
        trainer.run()
    finally:
        trainer.close()
    args = argparse.Namespace(run=str(tmp_path / "run"), galaxy_samples=12, results=tmp_path / "results")
    rows = galaxy_conditioning(args)
    assert [r["parameter"] for r in rows] == list(CONDITION) and all(r["samples"] == 12 for r in rows)
    assert (tmp_path / "results" / "galaxy_conditioning.png").is_file()
    assert (tmp_path / "results" / "galaxy_conditioning_sweep.png").is_file()
    assert rows[0]["pearson_real"] > 0.3  # the real column is measured on real images


@pytest.mark.slow
def test_quick_preset_samples_track_their_parameters(tmp_path, test_set):
    """The quick preset (minutes on 2 cores): samples at test conditions have the requested radius, shape and flux."""
    from benchmarks.galaxies import conditioned_samples, conditioning_rows
    from practice_torch.flow_matching import training as flow_matching_training
    from practice_torch.models import new_trainer, open_run

    trainer = new_trainer(flow_matching_training.default_config("quick", "galaxies"), tmp_path / "run")
    try:
        trainer.run()
    finally:
        trainer.close()
    module, cfg, net = open_run(tmp_path / "run", torch.device("cpu"))
    x, y = test_set
    rows, _, _ = conditioning_rows(conditioned_samples(module, cfg, net, y[:200]), x[:200], y[:200])
    corr = {r["parameter"]: r["pearson"] for r in rows}
    assert corr["half_light_r"] > 0.7 and corr["e1"] > 0.8 and corr["e2"] > 0.8 and corr["log10_flux"] > 0.9
