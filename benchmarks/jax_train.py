"""``python -m benchmarks jax_train``: the same quick preset trained by PyTorch's engine and by ``practice_jax train``.

Step rows (always): the training step of each model's quick preset (``--jax-models``, default every model
``practice_jax.twins.TRAINERS`` lists on its default data set; ``MODEL@DATASET`` for another, as
``gan@fashion_mnist`` for the DCGAN) on this CPU, one thread each (the benchmark runner pins both libraries to
the same cores): JAX's jitted step (``JaxRun.advance``; a GAN's round of updates, ``JaxGameRun.advance``),
PyTorch's engine step eager and under ``torch.compile``; the first step (which compiles) apart from the steady
steps.

Quality rows (``--jax-quality``, tens of minutes a model on a CPU): each quick preset trained to the end in both
backends for each ``--jax-seeds`` seed, then evaluated by ``practice_torch eval`` (no sample metrics): the model's
headline held-out figure per backend and seed, and its mean and spread (max - min) over the seeds.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path


def split_model(name: str) -> tuple[str, str | None]:
    """``gan@fashion_mnist`` -> (``gan``, ``fashion_mnist``); ``vae`` -> (``vae``, None: its default data set)."""
    model, _, dataset = name.partition("@")
    return model, dataset or None


def jax_step_row(model: str, steps: int, overrides=(), dataset: str | None = None) -> dict:
    """The JAX trainer's step on ``model``'s quick preset (on ``dataset``, default its own): the first call (tracing
    and XLA compilation) and the mean of ``steps`` steady steps, each waited for."""
    from practice_jax.runs import new_run
    from practice_torch.engine.config import apply_overrides
    from practice_torch.models import get_model

    cfg = apply_overrides(get_model(model).default_config("quick", dataset), ["train.device=cpu", *overrides])
    run = new_run(cfg)
    start = time.perf_counter()
    run.advance()["loss"].block_until_ready()
    first = time.perf_counter() - start
    start, taken = time.perf_counter(), run.batches_taken
    for _ in range(steps):
        logged = run.advance()
    logged["loss"].block_until_ready()
    seconds = time.perf_counter() - start
    examples = (run.batches_taken - taken) * cfg.train.batch_size  # a GAN's round takes a batch per update
    return {"model": model, "dataset": cfg.data.name, "batch": cfg.train.batch_size, "backend": "JAX jit",
            "step_ms": 1000 * seconds / steps, "examples_per_s": examples / seconds,
            "first_step_s": first, "note": ""}


def torch_step_row(model: str, steps: int, compiled: bool, overrides=(), dataset: str | None = None) -> dict:
    """The PyTorch engine's step on the same preset (``benchmarks.gpu_steps.step_row`` on the CPU)."""
    from benchmarks.gpu_steps import step_row

    row = step_row(model, "quick", "cpu", steps, float("nan"), [f"train.compile={str(compiled).lower()}",
                                                               *overrides], dataset=dataset)
    return {"model": model, "dataset": row["dataset"], "batch": row["batch"],
            "backend": "PyTorch compiled" if compiled else "PyTorch eager", "step_ms": row.get("step_ms"),
            "examples_per_s": row.get("examples_per_s"), "first_step_s": row.get("first_step_s"),
            "note": row.get("note", "")}


def headline(model: str, metrics: dict) -> tuple[str, float]:
    """(label, value) of the first of the model's ``HEADLINE`` figures its evaluation reported."""
    from practice_torch.models import get_model

    for key, label, units in get_model(model).HEADLINE:
        if key in metrics:
            return f"{label} ({units})", float(metrics[key])
    raise KeyError(f"{model}'s evaluation reported none of its headline figures")


def quality_rows(model: str, seeds: list[int], folder: Path, dataset: str | None = None) -> list[dict]:
    """Each backend's quick run of ``model`` (on ``dataset``, default its own) per seed, evaluated; then a row per
    backend with the mean and spread."""
    from practice_jax.cli import main as jax_main
    from practice_torch.cli import main as torch_main

    rows = []
    for seed in seeds:
        for backend, main in (("PyTorch", lambda args: torch_main(["train", *args])), ("JAX", jax_main)):
            run = folder / f"{model}-{dataset or 'default'}-{backend}-{seed}"
            start = time.perf_counter()
            data = ["--dataset", dataset] if dataset else []
            if main([model, *data, "--out", str(run), "--set", f"train.seed={seed}", "--set", "train.device=cpu"]) != 0:
                raise RuntimeError(f"the {backend} run of {model} (seed {seed}) failed")
            seconds = time.perf_counter() - start
            if torch_main(["eval", str(run), "--device", "cpu", "--no-sample-metrics"]) != 0:
                raise RuntimeError(f"the evaluation of {run} failed")
            label, value = headline(model, json.loads((run / "eval_test.json").read_text()))
            rows.append({"model": model, "dataset": dataset or "", "backend": backend, "seed": seed, "figure": label,
                         "value": value, "train_s": seconds})
    for backend in ("PyTorch", "JAX"):
        values = [r["value"] for r in rows if r["backend"] == backend and r.get("seed") is not None]
        rows.append({"model": model, "dataset": dataset or "", "backend": backend, "seed": None,
                     "figure": rows[0]["figure"], "value": sum(values) / len(values),
                     "spread": max(values) - min(values)})
    return rows


# Settings timed beside each model's quick preset: the VAE's MLP, whose step has no convolution (XLA's CPU backend
# takes the gradients of strided and transposed convolutions several times slower than their forward pass)
VARIANTS = {"vae": ((), ("model.architecture=mlp",))}


def jax_train(args) -> list[dict]:
    from practice_jax.twins import TRAINERS
    from practice_torch.models import get_model

    models = [split_model(m) for m in args.jax_models.split(",") if m] or [(m, None) for m in TRAINERS]
    rows = []
    for model, dataset in models:
        for overrides in VARIANTS.get(model, ((),)):
            settings = {"set": " ".join(overrides)}
            rows.append({**jax_step_row(model, args.jax_steps, overrides, dataset), **settings})
            rows.append({**torch_step_row(model, args.jax_steps, False, overrides, dataset), **settings})
            if args.compile and hasattr(get_model(model), "loss"):  # train.compile: the default step's loss only
                rows.append({**torch_step_row(model, args.jax_steps, True, overrides, dataset), **settings})
            args.save(rows)
    if args.jax_quality:
        seeds = [int(s) for s in args.jax_seeds.split(",")]
        with tempfile.TemporaryDirectory() as tmp:
            for model, dataset in models:
                rows += quality_rows(model, seeds, Path(tmp), dataset)
                args.save(rows)
    return rows
