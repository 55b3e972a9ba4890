"""Figures of a 2-D flow-matching model: samples beside the data, ODE trajectories, the learned field, the density."""

from __future__ import annotations

import torch

from practice_torch.models import Artefact
from practice_torch.plots import (
    data_limits,
    density_figure_2d,
    figure_artefact,
    new_figure,
    scatter_figure_2d,
    trajectory_figure,
)


@torch.no_grad()
def vector_figures(net, trajectory, data: torch.Tensor | None, density_grid: int = 60, field: bool = True
                   ) -> list[Artefact]:
    """'samples' (x at t = 1 beside ``data`` (N, 2)), 'trajectories' (the states at the recorded times and 300 paths
    from noise to data) and, for a model that is a field (``field``), 'field' (v_theta(t, .) as streamlines at t = 0,
    1/2, 0.9) and, when ``practice_torch.cnf`` is there, 'density' (exp log p_1 from the instantaneous change of
    variables)."""
    xs = trajectory.x.cpu()
    samples = xs[-1]
    if samples.shape[1] != 2:
        return [Artefact("samples", "text", [" ".join(f"{v:.4f}" for v in row) for row in samples.tolist()])]
    box = data if data is not None else samples
    (x_lo, x_hi), (y_lo, y_hi) = data_limits(box.numpy())
    lim = dict(xlim=(min(x_lo, -3), max(x_hi, 3)), ylim=(min(y_lo, -3), max(y_hi, 3)))
    out = [scatter_figure_2d("samples", samples, box, title=f"flow matching samples ({trajectory.nfe} NFE)")]
    picks = torch.linspace(0, len(xs) - 1, min(5, len(xs))).round().long().tolist()
    out.append(trajectory_figure(xs, trajectory.times, lim["xlim"], lim["ylim"], "paths from noise to data", picks))
    if not field:
        return out
    out.append(field_figure(net, lim))
    if not density_grid:
        return out
    try:
        from practice_torch.cnf import log_likelihood
    except ImportError:
        return out

    def log_prob(points: torch.Tensor) -> torch.Tensor:
        device = next(net.parameters()).device
        field = lambda t, x: net(x, t)  # noqa: E731
        return log_likelihood(field, points.to(device), method="rk4", steps=20).cpu()

    out.append(density_figure_2d("density", log_prob, box, samples, grid=density_grid,
                                 title="log p_1 by the instantaneous change of variables"))
    return out


@torch.no_grad()
def field_figure(net, lim: dict, grid: int = 25) -> Artefact:
    """Streamlines of the learned v_theta(t, x) at t = 0, 0.5 and 0.9, coloured by speed."""
    (x0, x1), (y0, y1) = lim["xlim"], lim["ylim"]
    xs, ys = torch.linspace(x0, x1, grid), torch.linspace(y0, y1, grid)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1).to(next(net.parameters()).device)
    fig, axes = new_figure(3, size=3.5)
    for ax, t in zip(axes, (0.0, 0.5, 0.9)):
        v = net(points, torch.tensor(t)).cpu().reshape(grid, grid, 2)
        ax.streamplot(xs.numpy(), ys.numpy(), v[..., 0].numpy(), v[..., 1].numpy(), density=1.0,
                      color=v.norm(dim=-1).numpy(), cmap="viridis")
        ax.set(xlim=(x0, x1), ylim=(y0, y1), title=f"v(t = {t}, x)")
    return figure_artefact("field", fig)
