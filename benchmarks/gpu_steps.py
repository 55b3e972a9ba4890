"""``python -m benchmarks gpu_steps``: every model's training step through the engine, as ``train`` runs it.

On a GPU the ``full`` preset of each model that has one (bf16, torch.compile where the preset asks), on a CPU the
``quick`` preset (``--preset`` overrides). Per model: examples per second and milliseconds per step over
``--gpu-steps`` timed steps (after the first), the model FLOPs of one step (forward and backward, counted by
``torch.utils.flop_counter`` on the eager loss, never guessed), MFU against the GEMM peak measured in the same run
(bf16 on a GPU, fp32 on a CPU), the share of the wall time the GPU is busy (the kernels' time from the profiler
against the host clock), host-device synchronisations per step (CUDA's sync debug mode counts them), and the time
to build the trainer (the data on the device, the network; latent_diffusion's first run also trains its autoencoder,
which later runs reuse: ``--gpu-set latent_diffusion:model.autoencoder_steps=200`` bounds it when only the step is
timed) and from there to the end of the first step (compiling), with what was compiled: inductor's mode and whether
its graphs came from the on-disk cache (``hit``: a warm start, as a second run on the machine has) or were compiled
(``miss``: a cold start); with ``--gpu-profile N``, the N kernels that take the most of the step, each with its
milliseconds a step and share (``--gpu-profile-models`` picks the models profiled). A model whose full preset needs
another run (a
trained generator, autoencoder or reference model) is reported as skipped, with the reason; one whose step fails
(out of memory, say) as failed, and the others still run; so is one that takes longer than ``--gpu-model-limit``
seconds in all (its row says in which part), so that one slow model cannot spend a lent GPU's time on the others.

Each row is written to the results file as it is measured, so a run that is stopped keeps what it timed; with
``--gpu-merge`` the rows join those already in the file from the same device and preset (a model timed again
replaces its row), so the models can be timed in several shorter runs.
"""

from __future__ import annotations

import copy
import json
import signal
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks.timing import best_of, count_flops, sync

__all__ = ["gpu_steps", "bf16_gemm_peak", "step_row"]

MEASURED = ("examples_per_s", "step_ms", "gflop_per_step", "mfu", "gpu_busy", "syncs_per_step", "build_s",
            "first_step_s", "compiled")


def bf16_gemm_peak(device: torch.device, n: int = 8192, repeats: int = 10) -> float:
    """bf16 GEMM FLOP/s of this GPU (2 n^3 per n x n matmul, the best of ``repeats``, CUDA events)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    best = float("inf")
    for i in range(repeats + 2):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        if i >= 2:
            best = min(best, start.elapsed_time(end) / 1000)
    return 2 * n**3 / best


def fp32_gemm_peak(sizes=(512, 1024), repeats: int = 5) -> float:
    """torch's fp32 GEMM FLOP/s on this CPU's threads (the ceiling of any torch model here), best over the sizes."""
    peak = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        peak = max(peak, 2 * n**3 / best_of(lambda: a @ b, repeats))
    return peak


def _step_flops(trainer) -> int:
    """Counted FLOPs of one eager forward and backward of the model's loss on one batch (the weights' gradients are
    cleared after); for a model that writes its own step (a GAN's round of updates), of one whole step."""
    if trainer.custom is not None:
        return count_flops(trainer._train_step)
    batch, noise = trainer._next_batch()  # the engine's own: this rank's rows on the device, and their noise

    def step():
        with trainer._autocast():
            loss, _ = trainer.model.loss(trainer.net, trainer.cfg.model, batch, noise, trainer.step)
        if loss.requires_grad:
            loss.backward()

    flops = count_flops(step)
    trainer.optimizer.zero_grad(set_to_none=True)
    return flops


def top_kernels(prof, steps: int, wall: float, n: int, device: str) -> list[dict]:
    """The ``n`` kernels (on a CPU: operators) that take the most of a profiled step: each one's name, milliseconds
    a step (its own time, its calls summed) and share of ``wall``, most first: on a GPU the unprofiled steps' wall
    time, on a CPU the profiled steps' own (the profiler's tracing slows the operators it times, so against the
    unprofiled steps their shares could sum past 1; a busy machine did that)."""
    own = (lambda e: e.self_device_time_total) if device == "cuda" else (lambda e: e.self_cpu_time_total)
    events = sorted(prof.key_averages(), key=own, reverse=True)[:n]
    return [{"kernel": e.key[:120], "ms_per_step": own(e) / 1e3 / steps, "share": own(e) / 1e6 / wall,
             "calls_per_step": e.count / steps} for e in events]


def _timed_steps(trainer, steps: int, top: int = 0) -> tuple[float, float | None, float | None, list[dict], int]:
    """(wall seconds of ``steps`` steps, the GPU's busy share, synchronisations per step, the ``top`` kernels'
    times: ``top_kernels``, the batches the timed steps took: not those of the profiled steps after them); the busy
    share and the syncs None on a CPU. Each step is the engine's ``_train_step``;
    the host reads nothing in between, as on a GPU run's non-log steps. On a GPU the steps are timed without the
    profiler (its tracing costs the host time), then run again under it and CUDA's sync debug mode: the busy share is
    the kernels' time per step against the unprofiled step."""
    from torch.profiler import ProfilerActivity, profile

    device = trainer.device
    sync(device)
    before = trainer.batches_taken
    start = time.perf_counter()
    for _ in range(steps):
        trainer._train_step()
    sync(device)
    wall = time.perf_counter() - start
    taken = trainer.batches_taken - before
    if device.type != "cuda":
        if not top:
            return wall, None, None, [], taken
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                trainer._train_step()
        profiled = time.perf_counter() - start
        return wall, None, None, top_kernels(prof, steps, profiled, top, "cpu"), taken

    with warnings.catch_warnings(record=True) as caught, profile(activities=[ProfilerActivity.CUDA]) as prof:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                trainer._train_step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
        sync(device)
    syncs = sum("synchronizing" in str(w.message) for w in caught)
    kernels = sum(e.self_device_time_total for e in prof.key_averages()) / 1e6  # microseconds -> seconds
    return (wall, min(kernels / wall, 1.0), syncs / steps, top_kernels(prof, steps, wall, top, "cuda") if top else [],
            taken)


def _compiled(cfg, before: dict[str, int]) -> str:
    """'eager', or inductor's mode with the graph cache's hits and misses since ``before`` (e.g. 'default, 2 miss')."""
    if not cfg.train.compile:
        return "eager"
    from torch._dynamo.utils import counters

    now = counters["inductor"]
    seen = [f"{now[k] - before.get(k, 0)} {k.rsplit('_', 1)[1]}" for k in ("fxgraph_cache_hit", "fxgraph_cache_miss")
            if now[k] > before.get(k, 0)]
    return ", ".join([cfg.train.compile_mode, *seen])


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:160]


class OverLimit(Exception):
    """A model's row took longer than its ``--gpu-model-limit``."""


@contextmanager
def _limited(seconds: float, part: list[str]):
    """Raise ``OverLimit`` in this (the main) thread once ``seconds`` have passed (0: no limit), naming ``part[0]``,
    the part of the row then running; yields the function that disarms it (for the clean-up after the row). Python
    runs the handler between bytecodes: a kernel the host waits on ends first."""
    if seconds <= 0:
        yield lambda: None
        return

    def over(signum, frame):
        raise OverLimit(f"over its {seconds:g} s limit in {part[0]}")

    previous = signal.signal(signal.SIGALRM, over)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield lambda: signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def step_row(name: str, preset: str, device: str, steps: int, peak: float, overrides=(), warmup: int = 0,
             dataset: str | None = None, top: int = 0, limit: float = 0) -> dict:
    """One model's row (see the module's docstring); ``peak``: the GEMM FLOP/s MFU is measured against;
    ``overrides``: ``--set``-style changes to the preset (e.g. ``data.limit=512`` for a smoke test), each for every
    model or, written ``MODEL:section.key=value``, for that model only; ``warmup``: untimed steps after the first;
    ``dataset``: the preset of that data set (default the model's own); ``top``: list that many of the step's
    kernels that take the most time (``top_kernels``), under ``kernels``; ``limit``: seconds the whole row may take
    (0: no limit), past which it is a failed row that says in which part it was."""
    from torch._dynamo.utils import counters

    from practice_torch.engine.config import apply_overrides
    from practice_torch.models import get_model, new_trainer

    module = get_model(name)
    scoped = [(o.partition(":")[0], o.partition(":")[2]) if ":" in o.split("=", 1)[0] else (name, o) for o in overrides]
    mine = [o for model, o in scoped if model == name]  # every model's overrides and this one's
    cfg = apply_overrides(module.default_config(preset, dataset), [f"train.device={device}", "train.samples=1", *mine])
    row = {"model": name, "dataset": cfg.data.name, "preset": preset, "batch": cfg.train.batch_size,
           "set": " ".join(mine)}
    torch._dynamo.reset()  # each model compiles as in a fresh process (and no model meets another's recompile limit)
    before = dict(counters["inductor"])  # inductor's graph-cache hits and misses so far
    part = ["building the trainer"]
    with tempfile.TemporaryDirectory() as tmp, _limited(limit, part) as disarm:
        start = time.perf_counter()
        try:
            trainer = new_trainer(copy.deepcopy(cfg), Path(tmp) / "run")
        except OverLimit as exc:  # the timer has fired: nothing is left to disarm
            return {**row, **dict.fromkeys(MEASURED), "note": f"failed: {exc}"}
        except Exception as exc:  # a preset that needs another run: reported, not fatal
            return {**row, **dict.fromkeys(MEASURED), "note": f"skipped: {_first_line(exc)}"}
        try:
            sync(trainer.device)
            built = time.perf_counter()
            part[0] = "the first step"
            trainer._train_step()
            sync(trainer.device)
            first = time.perf_counter() - built
            compiled = _compiled(cfg, before)
            part[0] = "counting the FLOPs"
            flops = _step_flops(trainer)
            part[0] = "the warm-up steps"
            for _ in range(warmup):  # CUDA graphs are recorded in the first calls after the compile
                trainer._train_step()
            part[0] = "the timed steps"
            wall, busy, syncs, kernels, taken = _timed_steps(trainer, steps, top)
            per_step_batches = taken / steps  # a GAN's round takes n_critic + 1
            batch = trainer.batch_size  # resolved: a batch of 0 is the whole split (full-batch EM)
        except OverLimit as exc:
            return {**row, **dict.fromkeys(MEASURED), "note": f"failed: {exc}"}
        except Exception as exc:  # out of memory, an operator without a kernel here: this row only
            return {**row, **dict.fromkeys(MEASURED), "note": f"failed: {type(exc).__name__}: {_first_line(exc)}"}
        finally:
            disarm()
            trainer.close()
            del trainer
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    per_step = wall / steps
    row["batch"] = batch
    return {**row, "examples_per_s": batch * per_step_batches / per_step, "step_ms": 1000 * per_step,
            "gflop_per_step": flops / 1e9, "mfu": flops / per_step / peak, "gpu_busy": busy,
            "syncs_per_step": syncs, "build_s": built - start, "first_step_s": first, "compiled": compiled,
            "note": "", **({"kernels": kernels} if top else {})}


def merged(kept: list[dict], rows: list[dict], order: list[str]) -> list[dict]:
    """``kept`` (an earlier run's rows) with ``rows`` (this run's) in their place: one row per model, this run's
    where both have one, in ``order`` (the catalogue's; models outside it last)."""
    by_model = {r["model"]: r for r in kept} | {r["model"]: r for r in rows}
    rank = {name: i for i, name in enumerate(order)}
    return sorted(by_model.values(), key=lambda r: rank.get(r["model"], len(rank)))


def earlier_rows(path: Path, device: str, gpu: str | None, preset: str) -> list[dict]:
    """The rows of the results file at ``path`` timed on the same device, GPU and preset ([] when there is none,
    or it is from another machine or preset: those rows are not mixed with this run's)."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())["rows"]
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"error: {path} is not a gpu_steps results file; move it away or run without --gpu-merge"
                         ) from None
    return [r for r in rows if r.get("device") == device and r.get("gpu") == gpu and r.get("preset") == preset]


def gpu_steps(args) -> list[dict]:
    """Rows of ``step_row`` for ``--gpu-models`` (default: every model with the preset), on CUDA when present;
    with ``--gpu-merge``, joined to the rows already in the results file (see the module's docstring). Each row is
    handed to ``args.save`` (when set) as soon as it is measured."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    preset = args.preset or ("full" if device == "cuda" else "quick")
    from practice_torch.models import models_with_preset
    from project.environment import commit

    every = models_with_preset("full")
    names = args.gpu_models.split(",") if args.gpu_models else every  # MODEL, or MODEL@DATASET: that data set's preset
    profiled = set(args.gpu_profile_models.split(",")) if args.gpu_profile_models else {n.split("@")[0] for n in names}
    steps = args.gpu_steps or (20 if device == "cuda" else 3)
    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    at = commit()
    kept = earlier_rows(args.results / "gpu_steps.json", device, gpu, preset) if args.gpu_merge else []
    peak = bf16_gemm_peak(torch.device("cuda")) if device == "cuda" else fp32_gemm_peak()
    print(f"{device}: GEMM peak {peak / 1e12:.2f} TFLOP/s ({'bf16' if device == 'cuda' else 'fp32, torch'}); "
          f"{preset} presets, {steps} timed steps each" + (f"; {len(kept)} earlier rows kept" if kept else ""))
    rows = []
    for entry in names:
        name, _, dataset = entry.partition("@")
        top = args.gpu_profile if name in profiled else 0
        row = step_row(name, preset, device, steps, peak, args.gpu_set, warmup=3 if device == "cuda" else 0,
                       dataset=dataset or None, top=top, limit=getattr(args, "gpu_model_limit", 0))
        print(f"  {name}: " + (row["note"] or f"{row['examples_per_s']:.0f} examples/s, MFU {row['mfu']:.3f}, first "
                                             f"step {row['first_step_s']:.1f} s ({row['compiled']})"), flush=True)
        for k in row.get("kernels", []):
            print(f"    {k['ms_per_step']:8.3f} ms/step {k['share']:6.1%} x{k['calls_per_step']:<5.0f} {k['kernel']}")
        rows.append({**row, "device": device, "gpu": gpu, "peak_tflops": peak / 1e12, "commit": at})
        if getattr(args, "save", None):
            args.save(merged(kept, rows, every))
    return merged(kept, rows, every)
