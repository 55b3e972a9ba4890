"""Pictures of low-dimensional models (a learned density against the data, samples against the data), and rows of
images, each labelled with what it shows (``labelled_rows``).

Every figure comes back as an ``Artefact`` of kind "images" (one RGB picture), so a model's ``sample``
can hand it to the engine like any image grid:

    from practice_torch.plots import density_figure_2d
    artefact = density_figure_2d("density", lambda xy: net.log_prob(xy), data_xy)   # -> density.png
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from practice_torch.models import Artefact

LogProb = Callable[[torch.Tensor], torch.Tensor]


def figure_artefact(name: str, fig) -> Artefact:
    """A matplotlib figure rendered once into an (1, 3, H, W) image in [0, 1]; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba(), dtype=np.float32)[..., :3] / 255.0
    plt.close(fig)
    return Artefact(name, "images", torch.from_numpy(rgba.copy()).permute(2, 0, 1)[None], nrow=1)


def new_figure(panels: int, size: float = 4.0):
    """(figure, axes): one row of ``panels`` square axes of ``size`` inches, on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(size * panels, size), dpi=100, squeeze=False)
    return fig, axes[0]


def labelled_rows(rows: list[tuple[str, torch.Tensor]], titles: dict[int, str] | None = None, per_row: int = 8,
                  scale: int = 3):
    """A matplotlib figure of image rows, each (label, images (k, C, H, W) in [0, 1]) drawn as one grid row of up to
    ``per_row`` images with its label on the left; ``titles`` {row index: a title above that row}; each pixel drawn
    ``scale`` x ``scale``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    titles = titles or {}
    strips = [(label, make_grid(images.float().clamp(0, 1), nrow=per_row, padding=1, pad_value=1.0))
              for label, images in rows]
    height, width = max(s.shape[1] for _, s in strips), max(s.shape[2] for _, s in strips)
    row, gap, top = scale * height / 100, 0.25, 0.25 if titles else 0.05  # inches; a gap holds a title
    margin = 0.2 + 0.075 * max(len(label) for label, _ in strips)  # inches: the longest label at 9 points
    fig, axes = plt.subplots(len(strips), 1, figsize=(scale * width / 100 + margin + 0.1,
                                                      len(strips) * row * (1 + gap) + top), dpi=100, squeeze=False)
    for i, (ax, (label, strip)) in enumerate(zip(axes[:, 0], strips)):
        ax.imshow(strip.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_title(titles.get(i, ""), loc="left", fontsize=9, pad=3)
    fig.subplots_adjust(left=margin / fig.get_figwidth(), right=0.99, top=1 - top / fig.get_figheight(),
                        bottom=gap * row / fig.get_figheight(), hspace=gap)
    return fig


def data_limits(data: np.ndarray, margin: float = 0.15) -> list[tuple[float, float]]:
    """Per column of data (N, D): the 0.1%..99.9% quantile range widened by ``margin`` on each side."""
    lo, hi = np.quantile(data, 0.001, axis=0), np.quantile(data, 0.999, axis=0)
    pad = margin * (hi - lo)
    return [(float(a), float(b)) for a, b in zip(lo - pad, hi + pad)]


@torch.no_grad()
def density_figure_2d(name: str, log_prob: LogProb, data: torch.Tensor, samples: torch.Tensor | None = None,
                      grid: int = 200, title: str = "model density") -> Artefact:
    """Panels: a 2-D histogram of ``data`` (N, 2); exp(log_prob) on a grid x grid lattice over the same box;
    and, when given, a scatter of ``samples`` (M, 2). ``log_prob``: (G, 2) -> (G,), called on CPU float32."""
    data_np = data.detach().cpu().numpy()
    (x0, x1), (y0, y1) = data_limits(data_np)
    xs, ys = np.linspace(x0, x1, grid), np.linspace(y0, y1, grid)
    points = torch.from_numpy(np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype(np.float32))
    density = torch.exp(log_prob(points)).reshape(grid, grid).cpu().numpy()
    fig, axes = new_figure(3 if samples is not None else 2)
    axes[0].hist2d(data_np[:, 0], data_np[:, 1], bins=100, range=[[x0, x1], [y0, y1]], cmap="viridis")
    axes[0].set_title(f"data ({len(data_np)} points)")
    axes[1].imshow(density, origin="lower", extent=(x0, x1, y0, y1), aspect="auto", cmap="viridis")
    axes[1].set_title(title)
    if samples is not None:
        s = samples.detach().cpu().numpy()
        axes[2].scatter(s[:, 0], s[:, 1], s=1, alpha=0.5)
        axes[2].set(xlim=(x0, x1), ylim=(y0, y1), title=f"samples ({len(s)})")
    return figure_artefact(name, fig)


@torch.no_grad()
def density_figure_1d(name: str, log_prob: LogProb, data: torch.Tensor, grid: int = 400,
                      title: str = "model density") -> Artefact:
    """A density histogram of ``data`` (N,) or (N, 1) with exp(log_prob) over it; log_prob: (G, 1) -> (G,)."""
    data_np = data.detach().cpu().numpy().reshape(-1)
    ((x0, x1),) = data_limits(data_np[:, None])
    xs = torch.linspace(x0, x1, grid)[:, None]
    fig, axes = new_figure(1, size=5.0)
    axes[0].hist(data_np, bins=100, range=(x0, x1), density=True, alpha=0.5, label=f"data ({len(data_np)})")
    axes[0].plot(xs[:, 0].numpy(), torch.exp(log_prob(xs)).cpu().numpy(), lw=2, label=title)
    axes[0].legend()
    return figure_artefact(name, fig)


@torch.no_grad()
def histogram_figure_1d(name: str, samples: torch.Tensor, data: torch.Tensor, title: str = "samples",
                        curve=None, curve_label: str = "") -> Artefact:
    """Density histograms of ``samples`` (M,) or (M, 1) over ``data`` (N,) or (N, 1) on the data's range; ``curve``:
    (G, 1) -> (G,), drawn over it on its own axis (e.g. a critic)."""
    data_np, s = data.detach().cpu().numpy().reshape(-1), samples.detach().cpu().numpy().reshape(-1)
    ((x0, x1),) = data_limits(data_np[:, None])
    fig, axes = new_figure(1, size=5.0)
    axes[0].hist(data_np, bins=100, range=(x0, x1), density=True, alpha=0.5, label=f"data ({len(data_np)})")
    axes[0].hist(s, bins=100, range=(x0, x1), density=True, alpha=0.5, label=f"{title} ({len(s)})")
    axes[0].legend(loc="upper left")
    if curve is not None:
        xs = torch.linspace(x0, x1, 400)[:, None]
        twin = axes[0].twinx()
        twin.plot(xs[:, 0].numpy(), curve(xs).detach().cpu().numpy(), color="k", lw=1.5, label=curve_label)
        twin.legend(loc="upper right")
    return figure_artefact(name, fig)


@torch.no_grad()
@torch.no_grad()
def critic_surface_2d(name: str, critic, samples: torch.Tensor, data: torch.Tensor, grid: int = 128,
                      title: str = "critic f(x)") -> Artefact:
    """The critic's value surface as Gulrajani et al.'s Figure 1 draws it: contours of ``critic`` ((G, 2) -> (G,),
    called on CPU float32 points) over a grid x grid lattice of the data's box, the data (N, 2) and the ``samples``
    (M, 2) over them."""
    data_np, s = data.detach().cpu().numpy(), samples.detach().cpu().numpy()
    (x0, x1), (y0, y1) = data_limits(data_np)
    xs, ys = np.linspace(x0, x1, grid), np.linspace(y0, y1, grid)
    points = torch.from_numpy(np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype(np.float32))
    values = critic(points).reshape(grid, grid).cpu().numpy()
    fig, axes = new_figure(1, size=5.0)
    contours = axes[0].contour(xs, ys, values, levels=12, cmap="viridis", linewidths=0.8)
    fig.colorbar(contours, ax=axes[0], label=title)
    axes[0].scatter(data_np[:, 0], data_np[:, 1], s=4, marker="+", color="tab:orange", label=f"data ({len(data_np)})")
    axes[0].scatter(s[:, 0], s[:, 1], s=4, marker="+", color="tab:green", label=f"samples ({len(s)})")
    axes[0].set(xlim=(x0, x1), ylim=(y0, y1), title=f"{title}: contours over data and samples")
    axes[0].legend(loc="upper right", fontsize="small")
    return figure_artefact(name, fig)


def scatter_figure_2d(name: str, samples: torch.Tensor, data: torch.Tensor, title: str = "samples") -> Artefact:
    """``samples`` (M, 2) beside ``data`` (N, 2) on the same axes limits."""
    data_np, s = data.detach().cpu().numpy(), samples.detach().cpu().numpy()
    (x0, x1), (y0, y1) = data_limits(data_np)
    fig, axes = new_figure(2)
    for ax, points, label in ((axes[0], data_np, "data"), (axes[1], s, title)):
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.5)
        ax.set(xlim=(x0, x1), ylim=(y0, y1), title=f"{label} ({len(points)})")
    return figure_artefact(name, fig)


def trajectory_figure(xs: torch.Tensor, times: torch.Tensor, xlim: tuple[float, float], ylim: tuple[float, float],
                      title: str, panels: list[int] | None = None, paths: int = 300) -> Artefact:
    """'trajectories' of a 2-D flow: the particles xs (T, N, 2) at the ``panels`` indices of ``times`` (T,) (default
    all), then ``paths`` whole paths from noise (t = 0) to data, their ends in red, titled ``title``."""
    panels = list(range(len(times))) if panels is None else panels
    fig, axes = new_figure(len(panels) + 1, size=3.0)
    for ax, i in zip(axes, panels):
        ax.scatter(xs[i, :, 0], xs[i, :, 1], s=1, alpha=0.4)
        ax.set(xlim=xlim, ylim=ylim, title=f"x_t, t = {float(times[i]):.2f}")
    lines = xs[:, :paths]
    axes[-1].plot(lines[..., 0].numpy(), lines[..., 1].numpy(), color="tab:blue", alpha=0.25, lw=0.6)
    axes[-1].scatter(lines[-1, :, 0], lines[-1, :, 1], s=2, color="tab:red")
    axes[-1].set(xlim=xlim, ylim=ylim, title=title)
    return figure_artefact("trajectories", fig)
