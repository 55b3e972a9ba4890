"""``python -m benchmarks guidance_sweep --run RUN [--classifier RUN]``: the guidance scale trades FID for accuracy.

For a class-conditional DDPM run (trained with ``--set model.conditional=true --set model.label_dropout=0.1``) and each
guidance scale w (default 0, 0.5, 1, 2, 4), one row per guidance kind:

* ``cfg``: classifier-free guidance, (1 + w) eps(x, y) - w eps(x) (``practice_torch.guidance.cfg_eps``);
* ``classifier`` (with ``--classifier``, a ``train guidance`` run on the same schedule): the run's unconditional
  eps(x) = eps(x, null) guided by grad log p_phi(y | x_t) with scale s = 1 + w, which targets the same tilt
  p_t(x) p_t(y | x_t)^{1+w} as CFG with w (``python -m theory_jax guidance``).

Each row: FID and KID of ``--guidance-samples`` samples (classes balanced) against as many test images, and the
accuracy of the project's feature network (``practice_torch.evaluation.feature_network``) on the samples with the labels
they were asked for, with its mean probability of that label; "test images" is the floor: other test images, their
true labels. Samples are drawn by DDIM (eta 0) on ``--guidance-steps`` respaced steps. Writes the table (JSON), a
plot of FID against accuracy and a grid of samples per kind (rows: scales, columns: classes) beside the JSON.
FID is biased upwards at small sample sizes: compare rows with the floor of the same n; KID is unbiased.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SCALES = "0,0.5,1,2,4"


def find_conditional_run(run: str | None) -> Path:
    """``--run``, or the newest conditional runs/ddpm-fashion_mnist-* (SystemExit, one line, if there is none)."""
    from practice_torch.models import run_config

    if run:
        return Path(run)
    found = [p for p in sorted((ROOT / "runs").glob("ddpm-fashion_mnist-*"), key=lambda p: p.stat().st_mtime)
             if (p / "config.json").is_file() and run_config(p).model.conditional]
    if not found:
        raise SystemExit("error: guidance_sweep needs --run RUN, a class-conditional ddpm run (python -m practice_torch "
                         "train ddpm --set model.conditional=true --set model.label_dropout=0.1)")
    return found[-1]


def balanced_labels(n: int, classes: int) -> torch.Tensor:
    """0, 1, ..., K-1, 0, 1, ... (n,): every class equally often (up to one)."""
    return torch.arange(n) % classes


@torch.no_grad()
def draw(ddpm, labels: torch.Tensor, scale: float, mode: str, guide, steps: int, seed: int,
         chunk: int = 250) -> tuple[torch.Tensor, float]:
    """Guided samples (N, C, H, W) in [0, 1] for ``labels``, and the wall time (seconds)."""
    from practice_torch.guidance import guided_sample

    generator, parts = torch.Generator().manual_seed(seed), []
    start = time.perf_counter()
    for lo in range(0, len(labels), chunk):
        parts.append(guided_sample(ddpm, labels[lo:lo + chunk], scale, mode, guide, steps=steps, sampler="ddim",
                                   generator=generator).cpu())
    return torch.cat(parts), time.perf_counter() - start


@torch.no_grad()
def label_accuracy(features, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean probability of the requested label) of the feature network on images (N, C, H, W)."""
    device = next(features.parameters()).device
    probs = torch.cat([features.probabilities(x.to(device)).cpu() for x in images.split(500)])
    return (float((probs.argmax(-1) == labels).float().mean()),
            float(probs.gather(1, labels[:, None]).mean()))


def sweep_plot(rows: list[dict], path: Path) -> Path:
    """FID against accuracy, one line per guidance kind, each point labelled with its scale (w for CFG, s = 1 + w
    for classifier guidance); the floor as a star."""
    from practice_torch.engine.artefacts import write_artefact
    from practice_torch.plots import figure_artefact, new_figure

    fig, (ax,) = new_figure(1, size=5.0)
    for kind in ("cfg", "classifier"):
        part = [r for r in rows if r["guidance"] == kind]
        if part:
            ax.plot([r["accuracy"] for r in part], [r["fid"] for r in part], "o-", label=kind)
            for r in part:
                label = f"w={r['scale']:g}" if kind == "cfg" else f"s={1 + r['scale']:g}"
                ax.annotate(label, (r["accuracy"], r["fid"]), textcoords="offset points", xytext=(4, 4))
    floor = [r for r in rows if r["guidance"] == "test images"]
    if floor:
        ax.plot([floor[0]["accuracy"]], [floor[0]["fid"]], "*", markersize=12, label="test images")
    ax.set(xlabel="accuracy of the feature network on the requested labels", ylabel="FID (project's features)",
           title="guidance scale sweep")
    ax.legend()
    return write_artefact(figure_artefact("sweep", fig), path)[0]


def guidance_sweep(args) -> list[dict]:
    from practice_torch.data import get_dataset
    from practice_torch.engine.artefacts import write_artefact
    from practice_torch.evaluation.features import feature_network
    from practice_torch.evaluation.samples import image_set_metrics
    from practice_torch.models import Artefact, open_run

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    run = find_conditional_run(args.run)
    _, cfg, ddpm = open_run(run, device)
    if not ddpm.num_classes:
        raise SystemExit(f"error: {run} is not class-conditional: guidance_sweep needs model.conditional=true")
    guide = open_run(Path(args.classifier), device)[2] if args.classifier else None
    scales = [float(s) for s in str(args.scales).split(",")]
    data_dir = args.data_dir or cfg.data.data_dir
    features = feature_network(cfg.data.name, data_dir, device)
    test_x, test_y = get_dataset(cfg.data.name, "test", data_dir)[:]
    n = min(args.guidance_samples, len(test_x) // 2)
    order = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(0))
    real, other, other_y = test_x[order[:n]], test_x[order[n:2 * n]], test_y[order[n:2 * n]].long()
    labels = balanced_labels(n, ddpm.num_classes)
    accuracy, confidence = label_accuracy(features, other, other_y)
    m = image_set_metrics(real, other, features)
    rows = [{"guidance": "test images", "scale": float("nan"), "samples": n, "fid": m["fid"], "kid": m["kid"],
             "accuracy": accuracy, "confidence": confidence, "precision": m["precision"], "recall": m["recall"],
             "seconds": 0.0}]
    kinds = ["cfg"] + (["classifier"] if guide is not None else [])
    for kind in kinds:
        grid = []
        for w in scales:
            scale = w if kind == "cfg" else 1 + w
            images, seconds = draw(ddpm, labels, scale, kind, guide, args.guidance_steps, seed=1)
            accuracy, confidence = label_accuracy(features, images, labels)
            m = image_set_metrics(real, images, features)
            rows.append({"guidance": kind, "scale": w, "samples": n, "fid": m["fid"], "kid": m["kid"],
                         "accuracy": accuracy, "confidence": confidence, "precision": m["precision"],
                         "recall": m["recall"], "seconds": seconds})
            grid.append(images[:ddpm.num_classes])
        write_artefact(Artefact("samples", "images", torch.cat(grid), nrow=ddpm.num_classes),
                       args.results / f"guidance_sweep_{kind}_samples.png")
    sweep_plot(rows, args.results / "guidance_sweep.png")
    where = {"run": run.name, "classifier": Path(args.classifier).name if guide else "-", "steps": args.guidance_steps}
    return [{**row, **where} for row in rows]
