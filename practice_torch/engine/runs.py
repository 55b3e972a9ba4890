"""Run directories: where a run lives, how it is created without overwriting, and reloaded.

    RUN/config.json       the resolved configuration (preset + overrides, + what it inherits from the runs it builds on)
    RUN/builds_on.json    the trained runs it builds on (a model's ``BUILDS_ON``): folder, model, step, config
    RUN/environment.json  where it trained: CPU, cores, GPU, libraries, commit, load (``write_environment``)
    RUN/checkpoints/      safetensors weights + companion state (``checkpoint.py``)
    RUN/metrics.jsonl     RUN/events/ (TensorBoard)    RUN/loss.png
    RUN/samples/          the model's artefacts: samples, reconstructions, ... (PNG, WAV, text)
    RUN/eval_<split>.json written by ``python -m practice_torch eval RUN``
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from practice_torch.data import DatasetInfo, DatasetMissing, get_dataset, get_info, stacked
from practice_torch.engine import RunError
from practice_torch.engine.artefacts import write_artefacts
from practice_torch.engine.checkpoint import atomic_write, load_checkpoint, load_weights_into
from practice_torch.engine.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    apply_overrides,
    check_model,
    derive_seed,
    from_dict,
    to_dict,
)
from practice_torch.engine.interface import ModelModule

CONFIG_FILE = "config.json"
BUILDS_ON_FILE = "builds_on.json"
ENVIRONMENT_FILE = "environment.json"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
# "0" in the environment: a completed run draws no RUN/loss.png (about half a second of matplotlib, the bulk of a
# few-step run's time; the test suite's runs set it, `tests/conftest.py`); anything else, or unset, draws it.
LOSS_PLOT_ENV = "GENERATIVE_TWINS_LOSS_PLOT"


def default_run_dir(cfg: RunConfig, root: Path = Path("runs")) -> Path:
    """runs/<model>-<data set>-<k>, the first k not taken."""
    k = 1
    while (root / f"{cfg.model_name}-{cfg.data.name}-{k}").exists():
        k += 1
    return root / f"{cfg.model_name}-{cfg.data.name}-{k}"


def check_new_run_dir(path: Path) -> None:
    """Refuse to start a new run where one (or anything else) already is, or where no folder can be written."""
    if (path / CONFIG_FILE).exists():
        raise RunError(f"{path} already holds a run: pass --resume {path} to continue it, or another --out")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunError(f"{path} exists and is not empty; choose another --out")
    if os.environ.get("RANK", "0") == "0":  # under torchrun rank 0 alone, which alone writes
        check_writable(path)


def check_writable(path: Path) -> None:
    """RunError (one line) where the folder ``path`` cannot be made and written to: probed by making it (and the
    folders above it that are missing) and a file in it, all removed again, so nothing is left behind. Runs started
    side by side under one folder (a sweep's) may make and fill its folders meanwhile: those are theirs, kept."""
    made = []
    try:
        for folder in [*reversed(path.parents), path]:
            if folder.exists() and not folder.is_dir():
                raise RunError(f"cannot write the run directory {path}: {folder} is a file, not a folder; choose "
                               "another --out")
            if not folder.exists():
                try:
                    folder.mkdir()
                    made.append(folder)
                except FileExistsError:  # another process made it since
                    continue
        probe = path / ".probe"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        where = exc.filename or path
        raise RunError(f"cannot write the run directory {path}: {where}: {exc.strerror or exc}; choose another "
                       "--out") from None
    finally:
        for folder in reversed(made):
            with contextlib.suppress(OSError):  # another run's folder is in it now
                folder.rmdir()


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` has a checkpoint to continue from (its ``latest.json``): False for a run stopped
    (killed, preempted) before its first, which ``--resume`` trains again from step 0 with its config.json."""
    return (run_dir / CHECKPOINTS / "latest.json").exists()


def restart_note(run_dir: Path) -> str:
    """What ``--resume`` says of a run that has no checkpoint (``has_checkpoint``): it starts again."""
    return f"{run_dir} was stopped before its first checkpoint: training it from step 0 with its config.json"


def write_config(run_dir: Path, cfg: RunConfig) -> None:
    atomic_write(run_dir / CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps(to_dict(cfg), indent=2) + "\n"))


def write_environment(run_dir: Path, device: torch.device, world_size: int, step: int, finished: bool = False,
                      backend: str = "pytorch", gpu: str | None = None, spent: dict[str, float] | None = None) -> None:
    """RUN/environment.json: the machine, libraries and commit of the latest training session, the load average
    (1, 5, 15 min) when it started and, once ``finished``, when it ended, with the session's ``spent`` seconds
    (``window.Spent``: the first step, validation, checkpoints), and the ``backend`` that trained it ('pytorch', or
    'jax': ``practice_jax train``); results tables quote it. ``gpu`` names the GPU a backend other than torch
    computed on (JAX's device), which ``device`` (torch's) cannot tell."""
    from project.environment import describe

    path = run_dir / ENVIRONMENT_FILE
    record = json.loads(path.read_text()) if finished and path.is_file() else {}
    if not finished:
        gpu = gpu or (torch.cuda.get_device_name(device) if device.type == "cuda" else None)
        record = {**describe(), "device": "cuda" if gpu else device.type, "gpu": gpu, "processes": world_size,
                  "from_step": step, "load_at_start": [round(x, 2) for x in os.getloadavg()], "backend": backend}
    else:
        record.update(to_step=step, load_at_end=[round(x, 2) for x in os.getloadavg()])
        if spent is not None:
            record["seconds"] = {name: round(s, 2) for name, s in spent.items()}
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))


def _raw_config(run_dir: Path) -> dict:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict) or not isinstance(raw["model_name"], str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path} is corrupt: not a run configuration") from None
    return raw


def run_model_name(run_dir: Path) -> str:
    """The name of the model the run in ``run_dir`` trains (its config.json's ``model_name``)."""
    return _raw_config(run_dir)["model_name"]


def read_config(run_dir: Path, module: ModelModule) -> RunConfig:
    """The run's config.json, checked field by field against the model's and the engine's dataclasses."""
    return from_dict(_raw_config(run_dir), module.Config)


def registry_entry(name: str) -> DatasetInfo:
    try:
        return get_info(name)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None


def dataset_info(data: DataConfig) -> DatasetInfo:
    """The registry's entry for the run's data set; with a ``data.view`` the example shape is read off the data."""
    info = registry_entry(data.name)
    if data.view is None:
        return info
    return dataclasses.replace(info, shape=tuple(load_split(data, "train", limit=1)[0][0].shape))


def keep_classes(dataset: Dataset, classes: Sequence[int], info: DatasetInfo, limit: int | None = None) -> Dataset:
    """The examples of ``dataset`` whose integer label is in ``classes`` (the first ``limit`` of them): single-class
    training (``data.classes``). ConfigError, one line, for an unlabelled set or a label it does not have."""
    if not info.num_classes or not isinstance(dataset, TensorDataset) or len(dataset.tensors) != 2:
        raise ConfigError(f"data.classes needs a data set with class labels; {info.name}'s y is {info.condition}")
    bad = sorted(set(classes) - set(range(info.num_classes)))
    if bad or not classes:
        raise ConfigError(f"data.classes={','.join(map(str, classes))}: {info.name} has labels 0..{info.num_classes - 1}")
    x, y = dataset.tensors
    keep = torch.isin(y, torch.tensor(list(classes), dtype=y.dtype)).nonzero().squeeze(1)[:limit]
    return TensorDataset(x[keep], y[keep])


def load_split(data: DataConfig, split: str, limit: int | None = None) -> Dataset:
    """One split of the run's data set (DatasetMissing, one line, if it is not on this machine), restricted to
    ``data.classes`` when set (``limit`` then counts the kept examples). The split carries its run's data section as
    ``run_data``, so that an evaluation handed one split loads another the same way (``sibling_split``)."""
    if data.classes is not None:
        kept = keep_classes(load_split(dataclasses.replace(data, classes=None), split), data.classes,
                            registry_entry(data.name), limit)
        kept.run_data = data
        return kept
    options: dict[str, Any] = {"limit": limit}
    if data.download:
        options["download"] = True
    if data.view is not None:
        options["view"] = data.view
    accepted = inspect.signature(registry_entry(data.name).load).parameters
    for option in options:
        if option not in accepted:
            raise ConfigError(f"data set {data.name} has no option {option!r} (data.{option})")
    try:
        dataset = get_dataset(data.name, split, data.data_dir, **options)
    except ValueError as exc:  # a value the loader rejects, e.g. an unknown view
        raise ConfigError(f"data set {data.name}: {exc}") from None
    dataset.run_data = data
    return dataset


def sibling_split(dataset: Dataset | HeldOut, split: str, limit: int | None = None, **changes) -> Dataset:
    """Another split of the data set ``dataset`` (a split ``load_split`` loaded, as ``evaluate`` is handed, or the
    ``HeldOut`` examples ``sample`` is handed) with the same options (data_dir, view, classes; ``changes`` replaces
    some, e.g. classes=None for every class)."""
    return load_split(dataclasses.replace(dataset.run_data, **changes), split, limit)


@dataclasses.dataclass(frozen=True)
class Parent:
    """A trained run another run builds on, named by one of its model keys (the model's ``BUILDS_ON``): its folder,
    its model, the step of the checkpoint read and its config (a ``RunConfig``, or None where no registry read it), and,
    while the new run is built for the first time, its network (eval mode, on the CPU). ``net`` is None whenever the
    run that builds on it is reopened (resume, sample, eval): its own checkpoint then holds every weight it took."""

    run: str
    model: str
    step: int
    config: RunConfig | None
    net: nn.Module | None = None


@dataclasses.dataclass(frozen=True)
class Prerequisite:
    """A run the engine trains before a run that builds on it, when the key of ``BUILDS_ON`` that would name it is
    empty (a model's ``prerequisite_runs``): ``model``'s ``preset`` on the same data set, changed by ``edit``
    (RunConfig -> RunConfig), inside the folder of the run that builds on it (RUN/<key>) when ``root`` is empty, or
    in ``root``/<model>-<data set>-<hash of its config>, where a finished one is reused. ``same_seed``: it trains
    with the seed of the run that builds on it (a 2-rectified flow's teacher: each seed its own), else with the
    preset's."""

    model: str
    preset: str
    edit: Callable[[RunConfig], RunConfig]
    root: str
    same_seed: bool = False


def inherited_keys(config: Any, parent: Parent | None, keys: Sequence[str]) -> Any:
    """A model's ``inherit`` for one parent: ``config`` (a model section) with ``keys`` taken from the parent run's
    model section; unchanged without the parent or its config."""
    if parent is None or parent.config is None:
        return config
    return dataclasses.replace(config, **{key: getattr(parent.config.model, key) for key in keys})


def write_builds_on(run_dir: Path, parents: dict[str, Parent]) -> None:
    """RUN/builds_on.json: each parent's folder, model, step and config, what the run was built from."""
    record = {key: {"run": p.run, "model": p.model, "step": p.step, "config": to_dict(p.config) if p.config else None}
              for key, p in parents.items()}
    atomic_write(run_dir / BUILDS_ON_FILE, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))


def read_builds_on(run_dir: Path) -> dict[str, dict]:
    """The raw records of RUN/builds_on.json ({} for a run that builds on none)."""
    path = run_dir / BUILDS_ON_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise ConfigError(f"{path} is corrupt: not a record of the runs it builds on") from None


def build_net(module: ModelModule, cfg: RunConfig, info: DatasetInfo, parents: dict[str, Parent] | None = None
              ) -> nn.Module:
    """The model's network; a model that builds on other runs (``BUILDS_ON``) is handed them as ``parents``
    (those of RUN/builds_on.json, without networks, when none are given)."""
    try:
        if hasattr(module, "BUILDS_ON"):
            return module.build(cfg.model, info, parents or {})
        return module.build(cfg.model, info)
    except ValueError as exc:
        raise ConfigError(f"cannot build {cfg.model_name} on {info.name}: {exc}") from None


def reopened_parents(run_dir: Path) -> dict[str, Parent]:
    """The runs a run builds on as its builds_on.json records them, without configs or networks (the engine alone;
    ``practice_torch.models`` reads their configs through the registry)."""
    return {key: Parent(r["run"], r["model"], r["step"], None) for key, r in read_builds_on(run_dir).items()}


def load_trained(run_dir: Path, module: ModelModule, device: torch.device, overrides: Sequence[str] = (),
                 parents: dict[str, Parent] | None = None) -> tuple[ModelModule, RunConfig, nn.Module]:
    """(model module, config, network in eval mode with the newest weights, EMA ones if the run keeps them).

    ``overrides`` (``model.KEY=VALUE``) change how the trained net is used, e.g. a sampler and its number of steps;
    the data and train sections are the run's own, so only model keys may be given. The run's ``train.threads``
    applies here too: a model that trains faster on one thread also samples faster on one."""
    cfg = read_config(run_dir, module)
    if overrides:
        bad = [item for item in overrides if not item.strip().startswith("model.")]
        if bad:
            raise ConfigError(f"--set {bad[0]!r}: sample and eval take model.KEY=VALUE only (e.g. a sampler setting); "
                              "data and train keys are fixed by the run")
        keys = [item.strip().removeprefix("model.").split("=")[0].strip() for item in overrides]
        fixed = [k for k in keys if k in getattr(module, "ARCHITECTURE", ())]
        if fixed:
            raise ConfigError(f"--set model.{fixed[0]}: model.{fixed[0]} is fixed by the checkpoint (the network and "
                              "what its weights mean); sample and eval may change how the net is used (e.g. a sampler "
                              "setting)")
        use = getattr(module, "USE", None)  # what sample and eval may change; the rest only the training step reads
        stepwise = [k for k in keys if use is not None and k not in use and k in _field_names(module.Config)]
        if stepwise:
            allowed = ", ".join(f"model.{k}" for k in use) or "none of its keys"
            raise ConfigError(f"--set model.{stepwise[0]}: only the training step reads it, so it changes nothing "
                              f"here; sample and eval of {cfg.model_name} may change {allowed}")
        cfg = apply_overrides(cfg, list(overrides))
        check_model(module, cfg.model)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    net = build_net(module, cfg, dataset_info(cfg.data), reopened_parents(run_dir) if parents is None else parents)
    weights, state = load_checkpoint(run_dir / CHECKPOINTS, cfg.model_name,
                                     versions=getattr(module, "CHECKPOINT_VERSIONS", None))
    if state.get("ema") is not None:
        weights = {**weights, **state["ema"]["shadow"]}
    load_weights_into(net, weights, run_dir)
    return module, cfg, net.to(device).eval()


def _field_names(config_class: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config_class)}


class HeldOut(tuple):
    """Held-out examples as a tuple of batched columns (x (n, ...), y (n,)) that, as a split does, carries its run's
    data section as ``run_data``: a sampler that pictures another split loads it the same way (``sibling_split``)."""

    run_data: DataConfig


def held_out_examples(data: DataConfig, n: int):
    """The first n validation examples, for reconstructions, as ``HeldOut`` columns; None when the data set is not
    here. A control task's: its first n validation episodes (``data.control.EpisodeSeeds``, which names the
    environment its greedy episodes are played in)."""
    try:
        val = load_split(data, "val", limit=n)
    except DatasetMissing:
        return None
    if registry_entry(data.name).environment is not None:
        return val
    examples = HeldOut(stacked(val, n))
    examples.run_data = data
    return examples


@torch.no_grad()
def write_samples(module: ModelModule, cfg: RunConfig, net: nn.Module, n: int, seed: int,
                  examples: tuple[torch.Tensor, ...] | None) -> list:
    """The model's artefacts (samples first) for n samples drawn with ``seed``; the net is left as it was."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "samples"))
    was_training = net.training
    net.eval()
    try:
        return module.sample(net, cfg.model, n, generator, examples)
    finally:
        net.train(was_training)


def save_samples(artefacts: list, run_dir: Path) -> list[Path]:
    """The end of training's artefacts, in RUN/samples/."""
    return write_artefacts(artefacts, run_dir / SAMPLES)


def new_samples_dir(run_dir: Path) -> Path:
    """RUN/samples-<k>, the first k not taken: where ``sample`` writes, beside (never over) what training wrote."""
    k = 1
    while (run_dir / f"{SAMPLES}-{k}").exists():
        k += 1
    return run_dir / f"{SAMPLES}-{k}"


def start_run(run_dir: Path, cfg: RunConfig, parents: dict[str, Parent], device: torch.device, world_size: int,
              step: int, backend: str = "pytorch", gpu: str | None = None) -> None:
    """The run's folder as both trainers start a session in it: made, its config.json (the resolved config), its
    builds_on.json (the runs it builds on, written once) and its environment.json (``write_environment``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, cfg)
    if parents and not (run_dir / BUILDS_ON_FILE).exists():
        write_builds_on(run_dir, parents)
    write_environment(run_dir, device, world_size, step, backend=backend, gpu=gpu)


def end_of_run(module: ModelModule, cfg: RunConfig, net: nn.Module, run_dir: Path) -> list[Path]:
    """What a completed run writes last, in either trainer: its samples (``train.samples`` of them, drawn by ``net``,
    the EMA's weights where the run keeps them; none with ``train.samples=0``, which ``sample`` draws later) in
    RUN/samples/, and its loss curves, RUN/loss.png (none where $GENERATIVE_TWINS_LOSS_PLOT is "0")."""
    from practice_torch.engine.metrics import plot_losses

    n, written = cfg.train.samples, []
    if n:
        written = save_samples(write_samples(module, cfg, net, n, cfg.train.seed, held_out_examples(cfg.data, n)),
                               run_dir)
    plot = plot_losses(run_dir, run_dir / "loss.png") if os.environ.get(LOSS_PLOT_ENV) != "0" else None
    return written + ([plot] if plot else [])


@torch.no_grad()
def validation_terms(module: ModelModule, net: nn.Module, cfg: RunConfig, val_set: Dataset, step: int,
                     to_device: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> dict[str, float]:
    """The model's ``validate`` terms at a log step, as both trainers score them: the ``train.val_batch`` rows of
    ``val_set`` that step reads (``bookkeeping.validation_rows``: so a resumed run scores the same rows), moved by
    ``to_device``, in eval mode (no dropout), without gradients, under the run's autocast; the net's mode is
    restored."""
    from practice_torch.engine.batches import fetch
    from practice_torch.engine.bookkeeping import validation_rows

    t = cfg.train
    rows = torch.tensor(validation_rows(step, t.log_every, t.val_batch, len(val_set)))
    batch = tuple(to_device(x) for x in fetch(val_set, rows))
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        with torch.autocast(device.type, torch.bfloat16, enabled=t.precision == "bf16"):
            terms = module.validate(net, cfg.model, batch)
    finally:
        net.train(was_training)
    return {k: float(v) for k, v in terms.items()}


def ema_copy(net: nn.Module, ema_weights: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``net`` holding the averaged weights (for samples at the end of a run)."""
    twin = copy.deepcopy(net)
    twin.load_state_dict(ema_weights)
    return twin
