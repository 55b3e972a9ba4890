"""``python -m practice_torch list | train | sample | eval | features`` (docs/ARCHITECTURE.md, "An implementation trains
for real").

    python -m practice_torch list
    python -m practice_torch train vae                                  # quick preset, Fashion-MNIST
    python -m practice_torch train vae --set model.conditional=true --set model.beta=4 --out runs/cvae
    python -m practice_torch train vae --resume runs/cvae               # continue a stopped run (see README)
    python -m practice_torch train vae --resume runs/cvae --steps 8000  # extend it to 8000 steps
    torchrun --nproc_per_node=2 -m practice_torch train vae             # DistributedDataParallel
    python -m practice_torch sample runs/cvae --n 100 --out cvae.png  # without --out: runs/cvae/samples-<k>/
    python -m practice_torch eval runs/cvae --split test            # + FID, IS, KID, precision/recall of samples
    python -m practice_torch features fashion_mnist                 # train and cache the feature network they use
    python -m practice_torch results runs/cvae --load idle          # its row in docs/results.json (then make docs)

User errors (unknown model or data set, malformed override, missing data, corrupt or foreign
checkpoint, incompatible resume, an --out that already holds a run) print one line on stderr and
exit with status 2, having written nothing. A diverged run exits with 1; a run stopped by SIGINT or
SIGTERM checkpoints and exits with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from practice_torch.data import DatasetMissing
from practice_torch.engine import RunError

SHORTHANDS = {"dataset": "data.name", "steps": "train.steps", "device": "train.device", "data_dir": "data.data_dir"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m practice_torch", description="Train, sample and evaluate models.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="models, data sets and presets")

    train = commands.add_parser("train", help="train a model (a new run, or --resume one)")
    train.add_argument("model")
    train.add_argument("--dataset", help="data set (default: the model's)")
    train.add_argument("--device", help="auto | cpu | cuda (default auto: cuda when available)")
    train.add_argument("--steps", help="optimizer steps (on --resume: extend the run to this many)")
    train.add_argument("--preset", choices=("quick", "full"), help="configuration of a new run (default quick)")
    train.add_argument("--out", help="run directory of a new run (default runs/<model>-<dataset>-<k>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its newest checkpoint")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. model.latent_dim=32 or train.lr=1e-3 (repeatable)")
    train.add_argument("--data-dir", help="where standard data sets live (torchvision layouts)")

    sample = commands.add_parser("sample", help="write samples of a trained run")
    sample.add_argument("run_dir")
    sample.add_argument("--n", type=int, help="number of samples (default: the run's train.samples, or 64 where it is 0)")
    sample.add_argument("--out", help="write only the samples, to this file (.png / .wav / .txt); without it, every "
                                      "artefact goes to RUN/samples-<k>/, beside those training wrote in RUN/samples/")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="auto")
    sample.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE",
                        help="use the trained net differently, e.g. --set model.sampler=ddim (repeatable)")

    evaluate = commands.add_parser("eval", help="held-out metrics of a trained run")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE",
                          help="use the trained net differently, e.g. --set model.sample_steps=50 (repeatable)")
    evaluate.add_argument("--samples", type=int, metavar="N",
                          help="samples for FID/IS/KID/precision/recall, and for a model's own sample-based "
                               "figures (a GAN's reference FIDs) (default: as many as held-out examples, at most "
                               "10 000)")
    evaluate.add_argument("--no-sample-metrics", dest="sample_metrics", action="store_false",
                          help="report only the model's own metrics (no samples, no feature network)")
    evaluate.add_argument("--data-dir", help="where the data set and Inception-v3 weights for the standard FID live "
                                             "(default: the run's data.data_dir)")
    evaluate.add_argument("--inception", metavar="FILE", help="Inception-v3 weights (pt_inception-2015-12-05-*.pth "
                                                               "or inception_v3_google-*.pth) for the standard FID")

    features = commands.add_parser("features", help="train and cache the feature network of an image data set")
    features.add_argument("dataset")
    features.add_argument("--data-dir", help="where standard data sets live (torchvision layouts)")
    features.add_argument("--retrain", action="store_true", help="train again even if one is cached")
    features.add_argument("--device", default="auto")

    results = commands.add_parser("results", help="add trained and evaluated runs to docs/results.json",
                                  description="Add each run's row (headline held-out figure, settings, time, machine, "
                                              "commit) to docs/results.json; `make docs` renders the tables.")
    results.add_argument("run_dirs", nargs="+", metavar="RUN")
    results.add_argument("--load", required=True,
                         help="what else the machine ran meanwhile, in words (e.g. 'idle', 'make test beside it')")
    results.add_argument("--file", type=Path, help="the results file (default: docs/results.json)")
    return parser


def list_all(args) -> int:
    from practice_torch.data import all_datasets
    from practice_torch.engine.config import PRESETS
    from practice_torch.models import MODELS
    from practice_torch.results import RESULTS_FILE

    print("models (below each: its quick preset's steps and batch on each data set, and the training time measured "
          "on a CPU where docs/results.json has the run; the full presets: docs/gpu.md):")
    rows = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.is_file() else []
    for name, (module, about) in MODELS.items():
        print(f"  {name:<15} {about}  ({module})")
        print(f"  {'':<15}   quick: {quick_preset(name, rows)}")
    print("data sets:")
    for info in all_datasets().values():
        classes = f", {info.num_classes} classes" if info.num_classes else ""
        print(f"  {info.name:<15} {info.modality:<6} {str(info.shape):<13} {info.source}{classes}")
    print("presets:")
    for name, about in PRESETS.items():
        print(f"  {name:<15} {about}")
    return 0


def quick_preset(model: str, rows: list[dict]) -> str:
    """'fashion_mnist 3000 steps of 128 (1 min 38 s on AMD EPYC, 2 cores, idle); any image data set 1500 steps of 64':
    each row of the model's quick preset, with the training time a results row measured for it as it comes
    (``results.preset_timing``; a modality's row: of each data set it covers that has one)."""
    from practice_torch.data import all_datasets
    from practice_torch.models import get_model
    from practice_torch.progress import duration
    from practice_torch.results import preset_timing

    module = get_model(model)
    given, table, datasets = tuple(getattr(module, "BUILDS_ON", {})), module.PRESETS["quick"], all_datasets()
    parts = []
    for key, row in table.items():
        batch = f"of {row.train.batch_size}" if row.train.batch_size else "of the whole split"
        where = key if key in datasets else "any other data set" if key == "*" else f"any {key} data set"
        covered = [key] if key in datasets else [  # a modality's row or '*': the data sets it covers
            name for name, info in datasets.items() if name not in table
            and (info.modality == key or key == "*" and info.modality not in table)]
        timings = [(name, m) for name in covered if (m := preset_timing(rows, model, name, given=given))]
        timing = "; ".join(f"{'' if name == key else f'{name}: '}{duration(m['train_seconds'])} on {m['machine']}, "
                           f"{m['load'].split(' (')[0].split(':')[0]}" for name, m in timings)
        parts.append(f"{where} {row.train.steps} steps {batch}" + (f" ({timing})" if timing else ""))
    return "; ".join(parts)


def train(args) -> int:
    import signal

    from practice_torch.engine.runs import check_new_run_dir, default_run_dir, has_checkpoint, restart_note
    from practice_torch.models import get_model, new_run_config, new_trainer, resumed_config

    get_model(args.model)
    overrides = [f"{key}={getattr(args, name)}" for name, key in SHORTHANDS.items() if getattr(args, name) is not None]
    overrides += args.set
    if args.resume:
        if args.out or args.preset:
            raise RunError("--resume continues a run in its own directory with its own config: drop --out/--preset")
        run_dir = Path(args.resume)
        cfg = resumed_config(run_dir, args.model, overrides)
        resume = has_checkpoint(run_dir)
        if not resume:  # killed or preempted before its first checkpoint: its config.json starts it again
            print(restart_note(run_dir), file=sys.stderr)
    else:
        cfg = new_run_config(args.model, args.preset, args.dataset, overrides)
        run_dir = Path(args.out) if args.out else default_run_dir(cfg)
        check_new_run_dir(run_dir)
        resume = False
    trainer = new_trainer(cfg, run_dir, resume=resume)
    first, started = trainer.step, time.perf_counter()
    try:
        outcome = trainer.run()
    finally:
        trainer.close()
    if not trainer.procs.is_main:
        return 0 if outcome.signal is None else 128 + outcome.signal
    if outcome.threads:
        print(thread_note(outcome.threads), file=sys.stderr)
    if outcome.signal is not None:
        print(f"stopped by {signal.Signals(outcome.signal).name} after step {outcome.step}; checkpoint saved. Continue "
              f"with: python -m practice_torch train {cfg.model_name} --resume {run_dir}", file=sys.stderr)
        return 128 + outcome.signal
    print(finished_line(cfg.model_name, first, outcome.step, time.perf_counter() - started, outcome.loss, run_dir))
    if outcome.early_stop is not None:
        print(f"  early stop: {cfg.train.early_stop} did not improve on {outcome.early_stop[0]:.4g} (step "
              f"{outcome.early_stop[1]}) for {cfg.train.patience} log steps")
    report(outcome.files)
    return 0


def finished_line(model: str, first: int, step: int, seconds: float, loss: float | None, run_dir: Path) -> str:
    """'trained vae for 3000 steps in 2 min 05 s, loss 212.4 at the last log step; run directory runs/vae' (a
    resumed run: the steps and the time of this session)."""
    from practice_torch.progress import duration

    done = f"for {step} steps" if not first else f"for {step} steps ({step - first} of them now)"
    final = f", loss {loss:.4g} at the last log step" if loss is not None else ""
    return f"trained {model} {done} in {duration(seconds)}{final}; run directory {run_dir}"


def thread_note(teams: tuple[int, ...]) -> str:
    """What a CPU run whose thread team changed size with the load should know of its last bits."""
    sizes = " -> ".join(map(str, teams))
    return (f"note: the thread team changed size with the load ({sizes}); a team of another size may round sums "
            "differently in their last bits, so this run may not be bit-identical to a rerun or to the run never "
            "stopped: train.threads=N fixes the team")


def open_for_use(run_dir: Path, device, overrides):
    """``open_run`` for ``sample`` and ``eval``; on a CPU, without the run's ``train.threads``, the threads are the
    cores other processes leave free (one look at the load: ``engine.threads.fit_to_load``)."""
    from practice_torch.engine.threads import fit_to_load
    from practice_torch.models import open_run

    module, cfg, net = open_run(run_dir, device, overrides)
    if device.type == "cpu" and not cfg.train.threads and (resized := fit_to_load()):
        print(resized, file=sys.stderr)
    return module, cfg, net


def sample(args) -> int:
    from practice_torch.engine.artefacts import write_artefact, write_artefacts
    from practice_torch.engine.config import TrainConfig
    from practice_torch.engine.distributed import resolve_device
    from practice_torch.engine.runs import held_out_examples, new_samples_dir, write_samples

    if args.n is not None and args.n < 1:
        raise RunError(f"--n must be positive, got {args.n} (leave it out for the run's train.samples)")
    run_dir = Path(args.run_dir)
    module, cfg, net = open_for_use(run_dir, resolve_device(args.device), args.set)
    n = args.n or cfg.train.samples or TrainConfig.samples  # a run that wrote none at its end (train.samples=0)
    examples = held_out_examples(cfg.data, n)  # reconstructions of them; a control task's episodes
    artefacts = write_samples(module, cfg, net, n, args.seed, examples)
    if args.out:
        report(write_artefact(artefacts[0], Path(args.out)))
    else:
        report(write_artefacts(artefacts, new_samples_dir(run_dir)))  # beside the samples training wrote
    return 0


def evaluate(args) -> int:
    import inspect

    import torch

    from practice_torch.engine.checkpoint import atomic_write
    from practice_torch.engine.config import derive_seed
    from practice_torch.engine.distributed import resolve_device
    from practice_torch.engine.runs import load_split
    from practice_torch.evaluation.samples import METRIC_NOTES

    run_dir = Path(args.run_dir)
    if args.samples is not None and args.samples < 2:
        raise RunError(f"--samples must be at least 2, got {args.samples}")
    if args.inception and not Path(args.inception).is_file():
        raise RunError(f"--inception {args.inception}: no such file (Inception-v3 weights for the standard FID)")
    device = resolve_device(args.device)
    module, cfg, net = open_for_use(run_dir, device, args.set)
    dataset = load_split(cfg.data, args.split)
    generator = torch.Generator().manual_seed(derive_seed(args.seed, "eval"))
    takes_samples = "samples" in inspect.signature(module.evaluate).parameters  # it draws samples of its own
    options = {"samples": args.samples} if takes_samples and args.samples is not None else {}
    metrics = module.evaluate(net, cfg.model, dataset, generator, **options)
    if args.sample_metrics:  # FID, IS, KID, precision/recall of samples, for image models with a feature network
        from practice_torch.engine.runs import dataset_info
        from practice_torch.evaluation.samples import model_sample_metrics

        sampler = torch.Generator().manual_seed(derive_seed(args.seed, "sample-metrics"))
        metrics.update(model_sample_metrics(module, cfg, net, dataset_info(cfg.data), dataset, args.samples, sampler,
                                            device, args.data_dir or cfg.data.data_dir, args.inception))
    out = run_dir / f"eval_{args.split}.json"
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(metrics, indent=2) + "\n"))
    print(f"{cfg.model_name} on {cfg.data.name} ({args.split}):")
    for line in metric_lines(metrics, {**METRIC_NOTES, **getattr(module, "METRIC_NOTES", {})}):
        print(line)
    print(f"wrote {out}")
    return 0


def metric_lines(metrics: dict, notes: dict[str, str]) -> list[str]:
    """A line per metric, with its note where ``notes`` has one (a format string of the metrics: what was measured
    on how many examples); a note naming a metric the evaluation did not report is left out."""
    lines = []
    for name, value in metrics.items():
        line = f"  {name:<24} {value:.4f}" if isinstance(value, float) else f"  {name:<24} {value}"
        try:
            note = notes[name].format(**metrics) if name in notes else ""
        except KeyError:
            note = ""
        lines.append(f"{line}  ({note})" if note else line)
    return lines


def features(args) -> int:
    from practice_torch.engine.distributed import resolve_device
    from practice_torch.evaluation.features import cache_paths, feature_network

    net = feature_network(args.dataset, args.data_dir, resolve_device(args.device), retrain=args.retrain)
    print(f"feature network for {args.dataset}: test accuracy {100 * net.test_accuracy:.2f}%  "
          f"({cache_paths(args.dataset)[0]})")
    return 0


def results(args) -> int:
    from practice_torch.results import RESULTS_FILE, add_rows, result_row

    path = args.file or RESULTS_FILE
    rows = [result_row(Path(run), args.load) for run in args.run_dirs]
    add_rows(rows, path)
    for row in rows:
        print(f"  {row['model']} on {row['dataset']} ({row['preset']}): {row['label']} {row['value']:.4g} "
              f"{row['units']}, {row['steps']} steps in {row['train_seconds']:.0f} s on {row['machine']}")
    print(f"wrote {path}; `make docs` puts it in docs/results.md and the topic's records and lesson pages")
    return 0


def report(paths) -> None:
    """'wrote PATH' per picture or text; WAV files counted per folder."""
    wavs = [p for p in paths if p.suffix == ".wav"]
    for path in paths:
        if path.suffix != ".wav":
            print(f"  wrote {path}")
    for folder in sorted({p.parent for p in wavs}):
        print(f"  wrote {sum(p.parent == folder for p in wavs)} WAV files in {folder}")


COMMANDS = {"list": list_all, "train": train, "sample": sample, "eval": evaluate, "features": features,
            "results": results}


def main(argv: list[str] | None = None) -> int:
    from practice_torch.engine.window import Diverged

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (RunError, DatasetMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Diverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
