"""The JAX trainer's loop: ``train(cfg, run_dir)`` steps a run (``practice_jax/runs.py``) as the PyTorch engine steps
one (``engine/loop.py``), with the engine's bookkeeping, so that a JAX run is a run:

* the run folder started and finished as the engine's (``engine.runs.start_run``, ``end_of_run``: config.json,
  environment.json, the samples of the trained, or averaged, weights and the loss curves);
* each step's logged values summed on the device in the engine's log window (``engine.window.LogWindow``), read at
  each log step, checked (a NaN or an infinity stops the run, ``Diverged``, its last good checkpoint kept) and
  written to ``metrics.jsonl`` and TensorBoard, progress in a log;
* checkpoints in the engine's layout every ``train.checkpoint_every`` steps, at the end and on SIGINT or SIGTERM,
  which finish the step first (``StopOnSignals``); on several hosts every process stops after the same step and
  process 0 alone writes (``practice_jax/hosts.py``).

The command line is ``practice_jax/cli.py``; a model's step, ``practice_jax/<model>.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import torch

from practice_jax.hosts import agreed_signal, writes
from practice_jax.runs import new_run
from practice_torch.engine.bookkeeping import StopOnSignals, is_checkpoint_step, is_log_step
from practice_torch.engine.checkpoint import current_version, save_checkpoint
from practice_torch.engine.metrics import MetricsLog
from practice_torch.engine.runs import CHECKPOINTS, end_of_run, has_checkpoint, start_run, write_environment
from practice_torch.engine.window import LogWindow, check_finite
from practice_torch.progress import progress

CPU = torch.device("cpu")  # where the torch side (the weights' layout, the sampler) stays


@dataclass(frozen=True)
class Trained:
    """What ``train`` did: the step it reached, the signal that stopped it early (None: it finished), the files the
    end of the run wrote (samples, loss curves; none after a signal), the step this session started from and the mean
    loss of the last log window."""

    step: int
    signal: int | None = None
    files: tuple[Path, ...] = ()
    first: int = 0
    loss: float | None = None


def train(cfg, run_dir: Path, resume: bool = False, devices: int = 1) -> Trained:
    """Train ``cfg`` (an ``engine.config.RunConfig``) in JAX into ``run_dir`` (``resume``: on from its newest
    checkpoint, when it has one) on ``devices`` local devices."""
    t, writer = cfg.train, writes()
    run = new_run(cfg, devices=devices)
    if resume and has_checkpoint(run_dir):
        run.restore(run_dir)
    first = run.step
    if writer:
        gpu = jax.devices()[0].device_kind if jax.default_backend() == "gpu" else None
        start_run(run_dir, cfg, {}, CPU, 1, run.step, backend="jax", gpu=gpu)
    log = MetricsLog(run_dir, run.step) if writer else None
    bar = progress(total=t.steps, initial=run.step, desc=f"{cfg.model_name} on {cfg.data.name} (JAX)", unit="step",
                   disable=not writer)
    window, stop, last_loss = LogWindow(run.batches_taken * t.batch_size), StopOnSignals(), None
    try:
        with stop:
            while run.step < t.steps and stop.signal is None:
                lrs = run.learning_rates(run.step)
                window.add(run.advance(), lrs)  # asynchronous: nothing waits for the step until the log line
                stop.signal = agreed_signal(stop.signal)  # several processes: all stop after the same step
                if is_log_step(run.step, t.log_every, t.steps) or stop.signal is not None:
                    last_loss = log_line(run, run_dir, window, log, bar, writer)
                bar.update(1)
                if is_checkpoint_step(run.step, t.checkpoint_every, t.steps):
                    save(run, run_dir, writer)
    finally:
        bar.close()
        if log:
            log.close()
    save(run, run_dir, writer)
    if not writer:
        return Trained(run.step, stop.signal, first=first, loss=last_loss)
    write_environment(run_dir, CPU, 1, run.step, finished=True)
    if stop.signal is not None:
        return Trained(run.step, stop.signal, first=first, loss=last_loss)
    run.net.load_state_dict(run.weights(average=run.averaged))
    return Trained(run.step, None, tuple(end_of_run(run.module, cfg, run.net, run_dir)), first, last_loss)


def log_line(run, run_dir: Path, window: LogWindow, log: MetricsLog | None, bar, writer: bool) -> float:
    """The log window read (one transfer), checked (``Diverged`` on a NaN or an infinity) and written at
    ``run.step`` -> its mean loss."""
    t = run.cfg.train
    host = window.read(lambda sums: [float(v) for v in jax.device_get(sums)])
    check_finite(host, window.steps, run.step - window.steps, run.step, run_dir / CHECKPOINTS)
    means, rate = window.means(host, run.batches_taken * t.batch_size)
    if t.val_batch and hasattr(run.module, "validate") and writer:
        means.update(run.validate())
    if log:
        log.write(run.step, {**means, "examples_per_s": rate, "time_s": window.elapsed()})
    bar.set_postfix(loss=f"{means['loss']:.4g}", ex_per_s=f"{rate:.0f}", refresh=False)
    window.open(run.batches_taken * t.batch_size)
    return means["loss"]


def save(run, run_dir: Path, writer: bool) -> None:
    """A checkpoint of the run in the engine's layout (the process that writes the run; the others compute)."""
    if writer:
        version = current_version(getattr(run.module, "CHECKPOINT_VERSIONS", None))
        save_checkpoint(run_dir / CHECKPOINTS, run.cfg.model_name, run.step, run.weights(), run.checkpoint_state(),
                        version)

