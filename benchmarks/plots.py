"""The benchmarks' line figures: one set of axes, drawn by the caller, finished and written here."""

from __future__ import annotations

from pathlib import Path


def new_axes(size=(6, 4)):
    """(figure, axes) on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def save(fig, ax, out: Path) -> None:
    """Legend, grid, tight layout; write ``out`` (its folder made) at 100 dpi and close the figure."""
    import matplotlib.pyplot as plt

    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
