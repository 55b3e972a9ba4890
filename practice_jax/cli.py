"""Training in JAX: ``python -m practice_jax train MODEL [--dataset D] [--preset quick] [--steps N] [--set KEY=VALUE]
[--rng torch|jax] [--out RUN] [--devices N]``, or ``python -m practice_jax train MODEL --resume RUN [--steps N]``.

The same model as ``python -m practice_torch train MODEL``, trained the functional way: the flax twin of the
network (``practice_jax/<model>.py``), optax, and the model's ``train_step`` jitted once, on a ``TrainState``
(``practice_jax/state.py``: the engine's clipping, AdamW, warmup and cosine schedule, and EMA). Everything around
the step is the engine's, so that a JAX run is a run:

* the config is the PyTorch preset's (``default_config``, ``--set``), written to ``config.json``;
* the initial weights are the PyTorch network's, built with the run's seed and converted
  (``shared_specs.interop.torch_to_flax``); the batches are the engine's (``GlobalBatches``: the same order from the
  same seed) and the noise its ``draw_noise`` from the same generator, handed to JAX as arrays (images channels
  last), so that a JAX run and a PyTorch run of one config agree; ``--rng jax`` (``train.rng=jax``) draws the noise
  with ``jax.random`` instead, a JAX run of its own;
* ``metrics.jsonl``, TensorBoard events and ``loss.png`` as the engine writes them (``practice_jax/loop.py``), progress
  in a log; checkpoints in the PyTorch layout, with AdamW's moments and the schedule in torch's format
  (``practice_jax/torch_layout.py``), so ``practice_torch sample``, ``eval``, ``train --resume`` and ``theory_jax
  check`` read the run unchanged; ``python -m practice_jax sample RUN`` samples it in JAX;
* ``--devices N`` (default: every local JAX device) trains data-parallel; ``--coordinator``, ``--processes`` and
  ``--process-id`` join several hosts (``practice_jax/hosts.py``);
* ``--resume RUN`` continues a run, JAX's or PyTorch's, from its newest checkpoint, exactly where an uninterrupted JAX
  run would be (a run killed before its first checkpoint starts again from step 0); SIGINT or SIGTERM finishes the
  step, writes a checkpoint and exits with 128 + the signal number.

Supported models: ``practice_jax.twins.TRAINERS``. Bad input is one line on stderr and exit 2; a run whose loss or
gradient became NaN or infinite stops with one line and exit 1, its last good checkpoint kept.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from practice_jax.twins import TRAINERS, JaxTrainError, twin_of


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m practice_jax train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help=f"one of {', '.join(TRAINERS)}")
    parser.add_argument("--dataset", help="data set (default: the model's)")
    parser.add_argument("--preset", choices=("quick", "full"), help="the model's preset (default: quick)")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: the preset's; on --resume: extend the "
                                                   "run to this many)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, as practice_torch train's --set (repeatable)")
    parser.add_argument("--rng", choices=("torch", "jax"), help="what draws each step's noise: the engine's torch "
                        "generator (default: the run agrees with PyTorch's) or jax.random (train.rng)")
    parser.add_argument("--out", help="run directory (default runs/<model>-<dataset>-jax-<k>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run (JAX's or PyTorch's) from its newest "
                                                            "checkpoint")
    parser.add_argument("--devices", type=int, help="train data-parallel on this many local JAX devices (default: "
                                                    "all of them; each batch split over them)")
    hosts = parser.add_argument_group("several hosts (practice_jax/hosts.py): every process the same command")
    hosts.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, where the processes meet")
    hosts.add_argument("--processes", type=int, help="how many processes train the run")
    hosts.add_argument("--process-id", type=int, help="this process's id, 0 (which writes the run) to processes - 1")
    return parser


def unsupported(train) -> str | None:
    """What of ``train`` (a TrainConfig) the JAX trainer does not do, as a one-line error, or None."""
    if train.precision != "fp32":
        return f"train.precision={train.precision}: the JAX trainer trains in float32 (--set train.precision=fp32)"
    if train.early_stop:
        return f"train.early_stop={train.early_stop}: the JAX trainer does not stop early (set it to '')"
    if train.batch_size < 1:
        return f"train.batch_size={train.batch_size}: the JAX trainer takes minibatches (a positive size)"
    if train.optimizer != "adamw" or train.schedule != "cosine":
        return (f"train.optimizer={train.optimizer} train.schedule={train.schedule}: the JAX trainer trains with AdamW "
                "and the cosine schedule (--set train.optimizer=adamw --set train.schedule=cosine)")
    return None


def new_run_dir(cfg, root: Path = Path("runs")) -> Path:
    """runs/<model>-<data set>-jax-<k>, the first k not taken."""
    k = 1
    while (root / f"{cfg.model_name}-{cfg.data.name}-jax-{k}").exists():
        k += 1
    return root / f"{cfg.model_name}-{cfg.data.name}-jax-{k}"


def main(argv: list[str] | None = None) -> int:
    from practice_jax.hosts import initialize
    from practice_jax.loop import train
    from practice_torch.cli import finished_line
    from practice_torch.data import DatasetMissing
    from practice_torch.engine import RunError
    from practice_torch.engine.runs import has_checkpoint, restart_note
    from practice_torch.engine.window import Diverged

    args = build_parser().parse_args(argv)
    try:
        initialize(args.coordinator, args.processes, args.process_id, bool(args.resume), args.out)
        twin_of(args.model)
        cfg, run_dir = command_config(args)
        problem = unsupported(cfg.train)
        if problem:
            raise JaxTrainError(problem)
        resume = bool(args.resume) and has_checkpoint(run_dir)
        if args.resume and not resume:  # killed or preempted before its first checkpoint: its config.json restarts it
            print(restart_note(run_dir), file=sys.stderr)
        started = time.perf_counter()
        trained = train(cfg, run_dir, resume=resume, devices=devices_of(args))
    except (JaxTrainError, RunError, DatasetMissing, ValueError) as exc:  # ValueError: a build the adapter refuses
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except Diverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if trained.signal is not None:
        print(f"stopped by {signal.Signals(trained.signal).name} after step {trained.step}; checkpoint saved. Continue "
              f"with: python -m practice_jax train {cfg.model_name} --resume {run_dir}", file=sys.stderr)
        return 128 + trained.signal
    print(finished_line(f"{cfg.model_name} in JAX", trained.first, trained.step, time.perf_counter() - started,
                        trained.loss, run_dir))
    for path in trained.files:
        print(f"  wrote {path}")
    return 0


def devices_of(args) -> int:
    """--devices, or every local JAX device."""
    import jax

    return args.devices if args.devices is not None else len(jax.local_devices())


def command_config(args) -> tuple[Any, Path]:
    """(the run's config, its directory): a new run's (the preset, --set, --rng, --out) or, with --resume, the run's
    own config.json with --steps and --set applied, refused in one line where it changes what the checkpoint fixes
    (or the noise's source, which the run keeps)."""
    from practice_jax.hosts import writes
    from practice_torch.engine import RunError
    from practice_torch.engine.runs import check_new_run_dir
    from practice_torch.models import new_run_config, resumed_config

    overrides = ([f"train.steps={args.steps}"] if args.steps is not None else []) + args.set
    if not args.resume:
        cfg = new_run_config(args.model, args.preset, args.dataset,
                             overrides + ([f"train.rng={args.rng}"] if args.rng else []))
        run_dir = Path(args.out) if args.out else new_run_dir(cfg)
        if writes():  # several hosts: process 0 makes the folder, the others may find it made
            check_new_run_dir(run_dir)
        return cfg, run_dir
    if args.out or args.preset or args.dataset:
        raise RunError("--resume continues a run in its own directory with its own config: drop "
                       "--out/--preset/--dataset")
    run_dir = Path(args.resume)
    cfg = resumed_config(run_dir, args.model, overrides)
    if args.rng and args.rng != cfg.train.rng:
        raise RunError(f"--rng {args.rng}: {run_dir} draws its noise with train.rng={cfg.train.rng}, which a "
                       "resumed run keeps")
    return cfg, run_dir
