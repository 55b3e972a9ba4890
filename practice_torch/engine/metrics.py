"""What a run records as it trains: ``metrics.jsonl``, TensorBoard events and, at the end, loss curves.

One JSON object per logged step, e.g. ``{"step": 500, "loss": 251.3, "lr": 0.00098, "grad_norm": 41.2,
"examples_per_s": 5120.0, "threads": 2, "time_s": 61.2, ...the model's own metrics}`` (``threads``: the
intra-op threads at that step, engine/threads.py); the same scalars go to
TensorBoard under ``train/<name>`` (``tensorboard --logdir RUN/events``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
NOT_PLOTTED = ("step", "time_s", "examples_per_s", "threads")


class MetricsLog:
    """Appends to RUN/metrics.jsonl and RUN/events; a resumed run first drops the records after its checkpoint (a run
    stopped before its first checkpoint, trained again from step 0, drops them all)."""

    def __init__(self, run_dir: Path, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / METRICS_FILE
        resumed = self.path.exists()
        if resumed:
            kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= start_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        self.file = open(self.path, "a")
        self.writer = SummaryWriter(str(run_dir / "events"), purge_step=start_step if resumed else None)

    def write(self, step: int, values: dict[str, float]) -> None:
        record = {"step": step, **{k: round(v, 6) if math.isfinite(v) else str(v) for k, v in values.items()}}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for name, value in values.items():
            self.writer.add_scalar(f"train/{name}", value, step)

    def close(self) -> None:
        self.file.close()
        self.writer.close()


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


PANELS_PER_ROW = 4


def plot_losses(run_dir: Path, out: Path) -> Path | None:
    """One panel per logged quantity (loss, the model's terms, grad norm, lr) against the step, ``PANELS_PER_ROW``
    to a row, as a PNG."""
    records = read_metrics(run_dir)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in records[-1] if k not in NOT_PLOTTED]
    cols = min(PANELS_PER_ROW, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows + 0.4), squeeze=False)
    steps = [r["step"] for r in records]
    for ax, name in zip(axes.flat, names):
        ax.plot(steps, [float(r.get(name, "nan")) for r in records], lw=1.2)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        if name in ("grad_norm",):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("step", fontsize=8)
    # a fixed layout: tight_layout measures every panel's text, which cost more than the plot itself
    fig.subplots_adjust(left=0.07 if cols < 3 else 0.045, right=0.98, bottom=0.4 / (2.4 * rows + 0.4) + 0.06,
                        top=1 - 0.35 / (2.4 * rows + 0.4), wspace=0.32, hspace=0.5)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
