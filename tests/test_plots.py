"""The 2-D/1-D figures come back as one RGB image artefact that the engine can write."""

from __future__ import annotations

import torch

from practice_torch.engine.artefacts import write_artefacts
from practice_torch.plots import critic_surface_2d, density_figure_1d, density_figure_2d, scatter_figure_2d


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


def test_the_critic_surface_reads_the_critic_on_a_lattice_over_the_data():
    """The contours are the critic's own values on a 128 x 128 lattice inside the data's box; another critic draws
    another picture."""
    data, seen = torch.randn(1000, 2), []

    def critic(points):
        seen.append(points)
        return points[:, 0] ** 2 - points[:, 1]

    tilted = critic_surface_2d("c", critic, data[:100] * 0.5, data).data[0]
    assert seen[0].shape == (128 * 128, 2) and seen[0].dtype == torch.float32
    assert (seen[0].amin(0) >= data.amin(0) - 1).all() and (seen[0].amax(0) <= data.amax(0) + 1).all()
    assert not torch.equal(tilted, critic_surface_2d("c", lambda p: p[:, 1] - p[:, 0], data[:100] * 0.5, data).data[0])


def test_trajectory_figure_draws_the_chosen_panels_and_the_paths():
    from practice_torch.plots import trajectory_figure

    xs = torch.randn(6, 50, 2).cumsum(0)
    full = trajectory_figure(xs, torch.linspace(0, 1, 6), (-5, 5), (-5, 5), "paths")
    picked = trajectory_figure(xs, torch.linspace(0, 1, 6), (-5, 5), (-5, 5), "paths", panels=[0, 5])
    assert full.name == picked.name == "trajectories" and full.kind == "images"
    assert full.data.shape[-1] > picked.data.shape[-1]  # seven panels against three, in one row
