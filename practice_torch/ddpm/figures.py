"""Figures of a DDPM on vectors: 2-D samples beside the data and the reverse chain as scatter panels (the adapter's
``sample``, and ``python -m practice_jax sample``'s, draw them)."""

from __future__ import annotations

import torch

from practice_torch.engine.interface import Artefact


def vector_figures(x0: torch.Tensor, snapshots: list[torch.Tensor], times: list[int], examples) -> list[Artefact]:
    """2-D: samples beside the data (``plots.scatter_figure_2d``) and the reverse chain as scatter panels at
    x_T ... x_0 on the data's axes; other D: the samples as text."""
    if x0.shape[1] != 2:
        return [Artefact("samples", "text", [" ".join(f"{v:.4f}" for v in row) for row in x0.tolist()])]
    from practice_torch.plots import data_limits, figure_artefact, new_figure, scatter_figure_2d

    data = x0 if examples is None else examples[0]
    (x_lo, x_hi), (y_lo, y_hi) = data_limits(data.numpy())
    picks = torch.linspace(0, len(snapshots) - 1, min(6, len(snapshots))).round().long().tolist()
    panels = [(snapshots[i], times[i]) for i in picks]
    fig, axes = new_figure(len(panels), size=3.0)
    for i, (ax, (points, t)) in enumerate(zip(axes, panels)):
        ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=1, alpha=0.5)
        ax.set(xlim=(x_lo, x_hi), ylim=(y_lo, y_hi), title="x_T" if i == 0 else f"after step t = {t}")
    return [scatter_figure_2d("samples", x0, data, title="DDPM samples"), figure_artefact("chain", fig)]
