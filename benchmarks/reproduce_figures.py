"""The figures of ``python -m benchmarks reproduce`` (``benchmarks/reproduce.py``): a row's arms' samples side by side
(``draw_pictures``), a row's learning curves over its seeds beside peers' published points (``draw_curves``), and the
families' trade of quality against sampling time (``draw_families``), each titled with the commit and the machine.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.reproduce_rows import Row, run_dir
from shared_specs.families import FAMILIES, family_figures
from shared_specs.measured import at_a_time


def draw_pictures(row: Row, folder: Path, meta: dict, out: Path, seeds: list[int] = (0,)) -> Path:
    """``docs/figures/reproduce_<row>_pictures.png``: each of ``row.pictures`` (a stem of a run's ``samples/``
    images) of every arm's first run of ``seeds`` in ``folder`` (seed 0 unless a sweep in another checkout banked
    it), a row an arm (an arm without that picture, a GAN's reconstructions, or with no run here, left blank), titled
    with the seed, the commit and the machine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(row.arms), len(row.pictures), squeeze=False, layout="constrained",  # room for the
                             figsize=(max(3.2 * len(row.pictures), 6.4), 3.3 * len(row.arms) + 0.4))  # two-line title
    shown = set()
    for i, arm in enumerate(row.arms):
        seed = next((s for s in seeds if run_dir(folder, row, arm, s).is_dir()), seeds[0])
        for j, stem in enumerate(row.pictures):
            ax, image = axes[i][j], run_dir(folder, row, arm, seed) / "samples" / f"{stem}.png"
            if image.is_file():
                ax.imshow(mpimg.imread(image), cmap="gray")
                shown.add(seed)
            ax.set_title(f"{arm.name}: {stem if image.is_file() else f'no {stem}'}"
                         + (f" (seed {seed})" if seed != seeds[0] else ""), fontsize=9)
            ax.axis("off")
    seed_names = ", ".join(str(s) for s in sorted(shown)) or str(seeds[0])
    fig.suptitle(f"{row.title}, seed {seed_names}\n{meta['commit']} · {meta['machine']}", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def logged_curve(out: Path, x: str, y: str) -> list[tuple[float, float]]:
    """(x, y) of every line of a run's metrics.jsonl that logs both."""
    lines = (json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip())
    return [(line[x], line[y]) for line in lines if x in line and y in line]


def draw_curves(row: Row, folder: Path, seeds: list[int], meta: dict, out: Path, carried: dict | None = None
                ) -> Path:
    """``docs/figures/reproduce_<row>.png``: each arm's logged ``row.curve`` over the seeds, mean and a band of one
    standard deviation (on the first seed's x, every seed cut to the shortest), beside the published points with
    their standard deviations; titled with the commit, the machine and the load. A run ``carried`` (banked by a
    sweep elsewhere: (row, arm, seed) -> its bank entry) is drawn from the curve it banked."""
    import numpy as np

    from benchmarks.plots import new_axes, save

    x_key, y_key, label = row.curve
    fig, ax = new_axes((7, 4))
    for k, arm in enumerate(row.arms):
        curves = [carried[(row.id, arm.name, seed)].get("curve", []) if (row.id, arm.name, seed) in (carried or {})
                  else logged_curve(run_dir(folder, row, arm, seed), x_key, y_key) for seed in seeds]
        n = min(len(c) for c in curves)
        xs, ys = np.array([x for x, _ in curves[0][:n]]), np.array([[y for _, y in c[:n]] for c in curves])
        mean, sd = ys.mean(0), ys.std(0, ddof=1) if len(ys) > 1 else np.zeros(n)
        ax.plot(xs, mean, color=f"C{k}", lw=1.5, label=f"{arm.name}: mean +- sd over {len(seeds)} seeds")
        ax.fill_between(xs, mean - sd, mean + sd, color=f"C{k}", alpha=0.2)
    for k, (whose, x, y, sd) in enumerate(row.published):
        ax.errorbar([x], [y], yerr=[sd], fmt="s^v"[k % 3], color="k", ms=5, capsize=3, label=whose)
    ax.set(xlabel=x_key.replace("_", " "), ylabel=label,
           title=f"{row.title}\n{meta['commit']} · {meta['machine']}\n{at_a_time(meta['jobs'])}, one thread each "
                 f"· load average {meta['load_before']} before, {meta['load_after']} after")
    ax.title.set_fontsize(8)
    save(fig, ax, out)
    return out


def draw_families(record: dict, out: Path) -> Path | None:
    """``docs/figures/families.png``: the families' trade of quality against sampling time, each model of
    ``shared_specs.families.FAMILIES`` whose row measured both its FID and its milliseconds a sample a point (means
    over the row's seeds; hollow where 2 000 samples were scored, whose FIDs run higher than 10 000's). None, and
    nothing written, while no model has both."""
    from benchmarks.plots import new_axes, save

    points = [(f, figures) for f in FAMILIES if (figures := family_figures(record, f))
              and figures["fid"] is not None and figures["sample_ms"] is not None]
    if not points:
        return None
    kinds = sorted({f.family for f, _ in points})
    fig, ax = new_axes((7, 4.5))
    for f, figures in points:
        colour = f"C{kinds.index(f.family)}"
        full = (figures["samples"] or 0) >= 10_000
        ax.scatter([figures["sample_ms"]], [figures["fid"]], s=40, color=colour if full else "none", edgecolors=colour)
        ax.annotate(f.model, (figures["sample_ms"], figures["fid"]), xytext=(4, 3), textcoords="offset points",
                    fontsize=7)
    ax.set_xscale("log")
    ax.margins(x=0.3, y=0.1)  # room for the names beside the points
    ax.set(xlabel="milliseconds a sample on one CPU thread (log)", ylabel="FID (lower is better)",
           title="Quality against sampling time, Fashion-MNIST, each point a mean over its row's seeds\n"
                 "filled: 10 000 samples scored; hollow: 2 000 (their FIDs run higher)")
    ax.title.set_fontsize(8)
    for i, kind in enumerate(kinds):  # the legend's markers, filled whatever a family's first point scored (a legend
        ax.scatter([], [], s=40, color=f"C{i}", label=kind)  # of the points would show it hollow where that was 2 000)
    save(fig, ax, out)
    return out
