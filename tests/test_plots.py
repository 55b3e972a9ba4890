"""The 2-D/1-D figures come back as one RGB image artefact that the engine can write."""

from __future__ import annotations

import torch

from practice_torch.engine.artefacts import write_artefacts
from practice_torch.plots import density_figure_1d, density_figure_2d, scatter_figure_2d


def test_figures_are_rgb_images_written_as_png(tmp_path):
    data = torch.randn(500, 2)
    figures = [density_figure_2d("density", lambda p: -0.5 * (p**2).sum(-1), data, samples=data[:50]),
               density_figure_1d("density_1d", lambda p: -0.5 * p[:, 0] ** 2, data[:, 0]),
               scatter_figure_2d("samples", data[:100], data)]
    for artefact in figures:
        assert artefact.kind == "images" and artefact.data.shape[:2] == (1, 3)
        assert 0.0 <= float(artefact.data.min()) and float(artefact.data.max()) <= 1.0
        assert float(artefact.data.std()) > 0.05  # something was drawn
    paths = write_artefacts(figures, tmp_path)
    assert [p.name for p in paths] == ["density.png", "density_1d.png", "samples.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_the_density_panel_follows_log_prob():
    """A density concentrated on the right half shows up brighter there than on the left (not a blank panel)."""
    data = torch.randn(2000, 2)
    right = density_figure_2d("d", lambda p: torch.where(p[:, 0] > 0, 0.0, -30.0), data).data[0]
    left = density_figure_2d("d", lambda p: torch.where(p[:, 0] < 0, 0.0, -30.0), data).data[0]
    assert not torch.equal(right, left)


def test_trajectory_figure_draws_the_chosen_panels_and_the_paths():
    from practice_torch.plots import trajectory_figure

    xs = torch.randn(6, 50, 2).cumsum(0)
    full = trajectory_figure(xs, torch.linspace(0, 1, 6), (-5, 5), (-5, 5), "paths")
    picked = trajectory_figure(xs, torch.linspace(0, 1, 6), (-5, 5), (-5, 5), "paths", panels=[0, 5])
    assert full.name == picked.name == "trajectories" and full.kind == "images"
    assert full.data.shape[-1] > picked.data.shape[-1]  # seven panels against three, in one row
