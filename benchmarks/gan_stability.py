"""``python -m benchmarks gan_stability``: the GAN's stability remedies against the plain game, at the same budget,
over seeds.

Each variant is a ``--set`` of an existing topic's quick preset: the plain GAN (``gan``), R1 on the discriminator
(``gan`` with ``model.r1``), spectral normalisation of every discriminator layer (``gan`` with
``model.spectral_norm=true``), the minibatch standard deviation (``model.minibatch_std=true``), the unrolled
discriminator (``model.unrolled_steps=5``) and WGAN-GP (``wgan``'s default critic); on images, when named, progressive
growing (``model.progressive=true``, with the preset's R1). Each is trained with
``train.seed`` 0, 1 and 2 (``--stability-seeds``) on ``--stability-dataset`` (the 8 Gaussians by default;
``fashion_mnist`` for the DCGANs), then ``eval``: modes covered of 8 and the high-quality share (samples within 3
standard deviations of a mode) on the Gaussians; on images FID (project features, 1000 samples), the classes covered
(those the feature network's classifier gives at least half a fair share of the samples) and the smallest class
share. The image presets of ``gan`` carry R1 (weight 10): there the plain game and every other remedy run with
``model.r1=0`` and the R1 row keeps the preset's weight. The DCGAN's quick preset plays 3000 rounds of two batches
and WGAN-GP's 1000 rounds of six, the same 6000 batches of 64. A row per run, and a summary row per variant (mean
and the range over seeds). ``--stability-jobs N`` trains N runs at once, one process each (for idle cores or several
GPUs: on one GPU the processes take turns; each run's log goes to a file of its own), so its wall times are not one
run's alone; finished runs are saved as they come;
``--stability-steps N`` trains each run N steps instead of its preset's (a quick look; the budgets then differ).
``--stability-done FILE[,FILE]`` takes the runs already in earlier results files of this benchmark (an interrupted
one, or parts run on other machines or cores) as finished: only the others are trained, and the table has them all.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

VARIANTS = {"plain": ("gan", ()), "r1": ("gan", ("model.r1=0.1",)), "spectral_norm": ("gan", ("model.spectral_norm=true",)),
            "minibatch_std": ("gan", ("model.minibatch_std=true",)), "unrolled": ("gan", ("model.unrolled_steps=5",)),
            "wgan_gp": ("wgan", ()), "progressive": ("gan", ("model.progressive=true",))}
# the image presets' R1 made explicit, both ways; progressive growing (images only, named) keeps the preset's R1
IMAGE_SETS = {"plain": ("model.r1=0",), "r1": ("model.r1=10",), "progressive": ("model.r1=10", "model.progressive=true")}
METRICS = {"gaussians": ("modes_covered", "high_quality")}
IMAGE_METRICS = ("fid", "classes_covered", "class_share_min")


def variant_sets(variant: str, images: bool) -> tuple[str, ...]:
    """The ``--set`` options of ``variant``: on images the plain game and each remedy without R1 (WGAN-GP has none)."""
    model, sets = VARIANTS[variant]
    if not images or model != "gan":
        return sets
    return IMAGE_SETS.get(variant, ("model.r1=0", *sets))


def classes_covered(evaluation: dict) -> int:
    """How many classes the feature network's classifier gives at least half a fair share of the samples."""
    from practice_torch.gan.quality import COVERED_SHARE

    shares = [v for k, v in evaluation.items() if re.fullmatch(r"class_share_\d+", k)]
    return sum(s >= COVERED_SHARE / len(shares) for s in shares)


def done_runs(files: str, keys: tuple[str, ...], variants: list[str], seeds: list[int]) -> list[dict]:
    """The rows of finished runs (one variant, one seed) of ``variants`` and ``seeds`` in earlier results files
    (comma-separated), the first file's row where two have the same run; a one-line error for a file that is not this
    benchmark's, or whose rows lack the metrics ``keys`` of this data set (another data set's)."""
    rows = {}
    for name in (f for f in files.split(",") if f):
        try:
            result = json.loads(Path(name).read_text())
            assert result["meta"]["benchmark"] == "gan_stability"
        except (OSError, ValueError, KeyError, AssertionError):
            raise SystemExit(f"error: {name} is not a results file of gan_stability") from None
        for row in result["rows"]:
            if not isinstance(row["seed"], int) or row["variant"] not in variants or row["seed"] not in seeds:
                continue
            if any(k not in row for k in keys):
                raise SystemExit(f"error: {name} holds runs without {', '.join(keys)}: runs on another data set")
            rows.setdefault((row["variant"], row["seed"]), row)
    return list(rows.values())


def one_run(variant: str, dataset: str, seed: int, out: Path, steps: int = 0) -> dict:
    """Train and evaluate one quick run of ``variant`` into ``out`` (``steps`` > 0: that many instead of the
    preset's): its row."""
    from practice_torch.cli import main
    from practice_torch.data import is_image_set

    model, images = VARIANTS[variant][0], is_image_set(dataset)
    sets = variant_sets(variant, images)
    started = time.perf_counter()
    argv = ["train", model, "--dataset", dataset, "--out", str(out), "--set", f"train.seed={seed}",
            *(["--steps", str(steps)] if steps else [])]
    if main([*argv, *(a for s in sets for a in ("--set", s))]) != 0:
        raise RuntimeError(f"{variant} seed {seed}: training failed")
    if main(["eval", str(out), *(["--samples", "1000"] if images else [])]) != 0:
        raise RuntimeError(f"{variant} seed {seed}: eval failed")
    evaluation = json.loads((out / "eval_test.json").read_text())
    row = {"variant": variant, "model": model, "set": " ".join(sets), "seed": seed}
    if images:
        row.update(fid=evaluation.get("fid", evaluation.get("fid_samples")), classes_covered=classes_covered(evaluation),
                   class_share_min=evaluation["class_share_min"])
    else:
        row.update({k: evaluation[k] for k in METRICS.get(dataset, ())})
    row["wall_s"] = time.perf_counter() - started
    return row


def logged_run(variant: str, dataset: str, seed: int, out: Path, steps: int = 0) -> dict:
    """``one_run`` in a worker process, its progress bars and messages written to ``out``'s ``.log`` beside it."""
    import contextlib
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with open(out.with_suffix(".log"), "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return one_run(variant, dataset, seed, out, steps)


def gan_stability(args) -> list[dict]:
    import tempfile
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from practice_torch.data import is_image_set

    dataset = args.stability_dataset
    seeds = [int(s) for s in args.stability_seeds.split(",")]
    variants = [v for v in args.stability_variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    if "progressive" in variants and not is_image_set(dataset):
        raise SystemExit(f"error: progressive growing grows images; {dataset} is not one (--stability-dataset "
                         "fashion_mnist)")
    jobs = getattr(args, "stability_jobs", 1)
    if jobs < 1:
        raise SystemExit(f"error: --stability-jobs must be at least 1, got {jobs}")
    keys = IMAGE_METRICS if is_image_set(dataset) else METRICS.get(dataset, ())
    finished = done_runs(getattr(args, "stability_done", ""), keys, variants, seeds)
    if finished:
        print(f"  {len(finished)} runs taken as done from {args.stability_done}", flush=True)

    def done(run: dict) -> None:
        """Report a finished run and save the rows so far: an interrupted benchmark keeps its finished runs."""
        finished.append(run)
        print(f"  {run['variant']} seed {run['seed']}: " + ", ".join(f"{k} {run[k]:.4g}" for k in keys)
              + f", {run['wall_s']:.0f} s", flush=True)
        if hasattr(args, "save"):
            args.save(finished)

    with tempfile.TemporaryDirectory() as tmp:
        steps = getattr(args, "stability_steps", 0)
        # seed by seed, so that a stopped benchmark has every variant's first seeds
        todo = [(v, dataset, s, Path(tmp) / f"{v}-{s}", steps) for s in seeds for v in variants
                if not any(r["variant"] == v and r["seed"] == s for r in finished)]
        if jobs == 1:
            for task in todo:
                done(one_run(*task))
        else:
            with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(logged_run, *task): task for task in todo}
                for future in as_completed(futures):
                    try:
                        done(future.result())
                    except Exception as error:  # the temporary folder goes with the exit: its log's last line
                        log = futures[future][3].with_suffix(".log")
                        last = [line for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
                        where = f" ({last[-1]})" if last else ""
                        raise SystemExit(f"error: {error}{where}") from None
    rows = []
    for variant in variants:
        runs = sorted((r for r in finished if r["variant"] == variant), key=lambda r: r["seed"])
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
