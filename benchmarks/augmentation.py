"""``python -m benchmarks augmentation --aug-runs cgan=RUN,cvae=RUN,...``: generated images as training data,
scored as Ravuri & Vinyals' (2019) classification accuracy score (CAS): test accuracy on real images of a classifier
trained on generated ones.

The classifier is the project's own, the feature network's architecture and optimiser
(``evaluation.features.FeatureNetwork``: three conv blocks, AdamW with a one-cycle schedule), trained from scratch
for ``--aug-steps`` steps of batch 128 on each training set, the same budget for every set:

- ``real``: ``--aug-real`` K real training images per class (the few-shot baseline);
- ``real + samples``: the same plus ``--aug-samples`` M samples per class of each class-conditional run;
- ``samples only``: M samples per class of a run (the CAS proper), beside ``real, M per class`` (its ceiling);
- ``imbalanced``: M real images per class in the first half of the classes, K in the second;
- ``imbalanced, rebalanced``: the same, each minority class topped up to M with a run's samples.

Each ``--aug-seeds`` seed draws the real subsets, the runs' samples, the classifier's initialisation and its
batches. Rows: one per (set, run, seed) with the test accuracy on the whole real test split and, for the imbalanced
sets, the accuracy on the minority classes' test images; a summary row per (set, run): the mean and the range over
seeds. The runs are any class-conditional image runs of the same data set (``gan`` or ``vae`` with
``model.conditional=true``, ``latent_diffusion``, ``ddpm`` with ``model.conditional=true``): their samples come from
their own ``sample`` (``evaluation.samples.draw_images``), clamped to [0, 1].
"""

from __future__ import annotations

import time
from pathlib import Path

import torch


def parse_runs(text: str) -> dict[str, Path]:
    """'cgan=runs/a,cvae=runs/b' -> {'cgan': Path('runs/a'), ...} (SystemExit, one line, on a bad entry)."""
    runs = {}
    for entry in filter(None, text.split(",")):
        name, _, path = entry.partition("=")
        if not name or not path:
            raise SystemExit(f"error: --aug-runs entries are NAME=RUN_DIR, got {entry!r}")
        runs[name] = Path(path)
    return runs


def per_class(y: torch.Tensor, counts: list[int], generator: torch.Generator) -> torch.Tensor:
    """Indices of ``counts[c]`` examples of each class c, drawn without replacement from labels y (N,); a one-line
    SystemExit when a class has fewer."""
    chosen = []
    for c, k in enumerate(counts):
        where = torch.nonzero(y == c).flatten()
        if len(where) < k:
            raise SystemExit(f"error: class {c} has {len(where)} examples, fewer than the {k} asked for")
        chosen.append(where[torch.randperm(len(where), generator=generator)[:k]])
    return torch.cat(chosen)


def top_up_rows(classes: list[int], per: int, n: int) -> torch.Tensor:
    """Rows of the first n samples of each of ``classes`` in samples laid out class by class, ``per`` each."""
    return torch.cat([torch.arange(c * per, c * per + n) for c in classes])


def train_classifier(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int, seed: int, batch_size: int = 128):
    """The project's classifier (``FeatureNetwork``, the feature network's configuration) trained on (x (N, C, H, W)
    in [0, 1], y (N,)) for ``steps`` steps of batches drawn uniformly with replacement; returned in eval mode."""
    from practice_torch.evaluation.features import FeatureConfig, FeatureNetwork, fit_classifier

    config = FeatureConfig()
    torch.manual_seed(seed)
    net = FeatureNetwork(tuple(x.shape[1:]), classes, config.channels, config.feature_dim, config.dropout)
    draws = torch.Generator().manual_seed(seed)
    return fit_classifier(net, x, y, [torch.randint(len(x), (batch_size,), generator=draws) for _ in range(steps)], config)


@torch.no_grad()
def class_samples(opened: tuple, run: Path, per: int, classes: int, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``per`` samples of each class, class by class ((classes * per, C, H, W) in [0, 1], (classes * per,)), from a
    class-conditional run's own sampler (``opened``: the run's ``open_run``); a one-line SystemExit for a run whose
    sampler draws no labelled images."""
    from practice_torch.evaluation.samples import draw_images

    module, cfg, net = opened
    drawn = draw_images(module, cfg, net, per * classes, generator)
    if drawn is None or drawn[1] is None:
        raise SystemExit(f"error: {run} draws no class-conditional images; train it with model.conditional=true")
    x, y = drawn
    rows = per_class(y, [per] * classes, generator)
    return x[rows], y[rows]


def augmentation(args) -> list[dict]:
    """Rows (set, run, seed, training examples, test accuracy, minority-class test accuracy)."""
    from practice_torch.data import get_dataset, get_info, stacked
    from practice_torch.evaluation.features import accuracy
    from practice_torch.models import open_run, run_config

    runs = parse_runs(getattr(args, "aug_runs", ""))
    dataset, k, m = args.dataset, args.aug_real, args.aug_samples
    if not 0 < k <= m or args.aug_steps < 1:
        raise SystemExit(f"error: --aug-real ({k}) must be at least 1 and at most --aug-samples ({m}), and --aug-steps "
                         f"({args.aug_steps}) at least 1")
    missing = [str(run) for run in runs.values() if not (run / "config.json").is_file()]
    if missing:
        raise SystemExit(f"error: {missing[0]} is not a run directory (no config.json); train one first")
    info = get_info(dataset)
    if not info.unit_images or not info.num_classes:
        raise SystemExit(f"error: augmentation needs a labelled data set of 8-bit images; {dataset} is not one")
    for name, run in runs.items():
        if run_config(run).data.name != dataset:
            raise SystemExit(f"error: run {name} ({run}) was trained on {run_config(run).data.name}, not {dataset}")
    classes = info.num_classes
    x_train, y_train = stacked(get_dataset(dataset, "train"))[:2]
    x_test, y_test = stacked(get_dataset(dataset, "test"))[:2]
    opened = {name: open_run(run, torch.device("cpu")) for name, run in runs.items()}  # once, for every seed
    minority = list(range(classes // 2, classes))
    is_minority = torch.isin(y_test, torch.tensor(minority))
    rows = []

    def add(setting: str, run: str, seed: int, x: torch.Tensor, y: torch.Tensor) -> None:
        start = time.perf_counter()
        net = train_classifier(x, y, classes, args.aug_steps, seed)
        row = {"set": setting, "run": run, "seed": seed, "examples": len(y),
               "test_accuracy": accuracy(net, x_test, y_test),
               "minority_accuracy": accuracy(net, x_test[is_minority], y_test[is_minority]),
               "seconds": time.perf_counter() - start}
        rows.append(row)
        print(f"  seed {seed} {setting:>28} {run:>8}: {len(y):>6} examples, test accuracy {row['test_accuracy']:.4f} "
              f"(minority classes {row['minority_accuracy']:.4f}), {row['seconds']:.0f} s", flush=True)
        if hasattr(args, "save"):
            args.save(rows)

    for seed in (int(s) for s in args.aug_seeds.split(",")):
        draw = torch.Generator().manual_seed(seed)
        few = per_class(y_train, [k] * classes, draw)
        ceiling = per_class(y_train, [m] * classes, draw)
        skewed = per_class(y_train, [m if c not in minority else k for c in range(classes)], draw)
        add(f"real, {k} per class", "", seed, x_train[few], y_train[few])
        add(f"real, {m} per class", "", seed, x_train[ceiling], y_train[ceiling])
        add(f"imbalanced ({m} / {k})", "", seed, x_train[skewed], y_train[skewed])
        for name, run in runs.items():
            x_gen, y_gen = class_samples(opened[name], run, m, classes, torch.Generator().manual_seed(1000 + seed))
            add(f"real {k} + samples {m} per class", name, seed, torch.cat([x_train[few], x_gen]),
                torch.cat([y_train[few], y_gen]))
            add(f"samples only, {m} per class", name, seed, x_gen, y_gen)
            top_up = top_up_rows(minority, m, m - k)
            add("imbalanced, rebalanced", name, seed, torch.cat([x_train[skewed], x_gen[top_up]]),
                torch.cat([y_train[skewed], y_gen[top_up]]))
    summary = []
    for key in dict.fromkeys((r["set"], r["run"]) for r in rows):
        group = [r for r in rows if (r["set"], r["run"]) == key]
        row = {"set": key[0], "run": key[1], "seed": "mean", "examples": group[0]["examples"]}
        for metric in ("test_accuracy", "minority_accuracy"):
            values = [r[metric] for r in group]
            row[metric] = sum(values) / len(values)
            row[f"{metric}_range"] = f"{min(values):.4f}-{max(values):.4f}"
        row["seconds"] = sum(r["seconds"] for r in group) / len(group)
        summary.append(row)
    rows = rows + summary
    if hasattr(args, "save"):
        args.save(rows)
    return rows
