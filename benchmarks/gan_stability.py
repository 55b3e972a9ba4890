"""``python -m benchmarks gan_stability``: the GAN's stability remedies against the plain game, at the same budget,
over seeds.

Each variant is a ``--set`` of an existing topic's quick preset: the plain GAN (``gan``), R1 on the discriminator
(``gan`` with ``model.r1``), spectral normalisation of every discriminator layer (``gan`` with
``model.spectral_norm=true``), the minibatch standard deviation (``model.minibatch_std=true``), the unrolled
discriminator (``model.unrolled_steps=5``) and WGAN-GP (``wgan``'s default critic). Each is trained with
``train.seed`` 0, 1 and 2 (``--stability-seeds``) on ``--stability-dataset`` (the 8 Gaussians by default;
``fashion_mnist`` for the DCGANs), then ``eval``: modes covered of 8 and the high-quality share (samples within 3
standard deviations of a mode) on the Gaussians, FID on the project's features on images. A row per run, and a
summary row per variant (mean and the range over seeds).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

VARIANTS = {"plain": ("gan", ()), "r1": ("gan", ("model.r1=0.1",)), "spectral_norm": ("gan", ("model.spectral_norm=true",)),
            "minibatch_std": ("gan", ("model.minibatch_std=true",)), "unrolled": ("gan", ("model.unrolled_steps=5",)),
            "wgan_gp": ("wgan", ())}
METRICS = {"gaussians": ("modes_covered", "high_quality"), "fashion_mnist": ("fid",)}


def one_run(variant: str, dataset: str, seed: int, out: Path) -> dict:
    """Train and evaluate one quick run of ``variant`` into ``out``: its row."""
    from practice_torch.cli import main

    model, sets = VARIANTS[variant]
    started = time.perf_counter()
    argv = ["train", model, "--dataset", dataset, "--out", str(out), "--set", f"train.seed={seed}"]
    if main([*argv, *(a for s in sets for a in ("--set", s))]) != 0:
        raise RuntimeError(f"{variant} seed {seed}: training failed")
    if main(["eval", str(out), *(["--samples", "1000"] if dataset != "gaussians" else [])]) != 0:
        raise RuntimeError(f"{variant} seed {seed}: eval failed")
    evaluation = json.loads((out / "eval_test.json").read_text())
    row = {"variant": variant, "model": model, "set": " ".join(sets), "seed": seed}
    row.update({k: evaluation.get(k, evaluation.get(f"{k}_samples")) for k in METRICS.get(dataset, ("fid",))})
    row["wall_s"] = time.perf_counter() - started
    return row


def gan_stability(args) -> list[dict]:
    import tempfile

    dataset = args.stability_dataset
    seeds = [int(s) for s in args.stability_seeds.split(",")]
    variants = [v for v in args.stability_variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    rows, keys = [], METRICS.get(dataset, ("fid",))
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            runs = []
            for seed in seeds:
                runs.append(one_run(variant, dataset, seed, Path(tmp) / f"{variant}-{seed}"))
                print(f"  {variant} seed {seed}: " + ", ".join(f"{k} {runs[-1][k]:.4g}" for k in keys)
                      + f", {runs[-1]['wall_s']:.0f} s", flush=True)
            summary = {"variant": variant, "model": runs[0]["model"], "set": runs[0]["set"], "seed": "mean"}
            for k in keys:
                values = [r[k] for r in runs]
                summary[k] = sum(values) / len(values)
                summary[f"{k}_range"] = f"{min(values):.4g}-{max(values):.4g}"
            summary["wall_s"] = sum(r["wall_s"] for r in runs) / len(runs)
            rows += [*runs, summary]
            if hasattr(args, "save"):
                args.save(rows)
    return rows
