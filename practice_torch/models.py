"""The table of trainable models, derived from the catalogue, and the lookups that hand a model to the engine.

The training engine (``practice_torch.engine``) knows nothing of any model: it is handed a model module (here
``get_model`` looks one up; ``new_trainer``, ``run_config`` and ``open_run`` hand it over). A model module knows
nothing of the engine beyond its interface (``engine/interface.py``, re-exported here). A topic becomes trainable
with ``python -m practice_torch train <topic>`` by a training adapter ``practice_torch/<topic>/training.py`` that
provides what ``ModelModule`` lists, and a ``trains`` line in its catalogue entry (``project/catalogue.py``).

The engine owns every random number: it passes a ``torch.Generator`` (on CPU) to ``draw_noise``,
``sample`` and ``evaluate``, and saves its state in each checkpoint, so a resumed run is exact.
Under torchrun the noise of the whole global batch is drawn on every rank and each rank keeps its
rows, so any number of processes computes the same step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from practice_torch.engine import RunError, distributed
from practice_torch.engine.checkpoint import latest_step
from practice_torch.engine.config import from_dict, to_dict
from practice_torch.engine.interface import INTERFACE, Artefact, ModelModule, missing_names, writes_own_step
from practice_torch.engine.loop import Trainer
from practice_torch.engine.runs import (
    CHECKPOINTS,
    Parent,
    dataset_info,
    load_trained,
    read_builds_on,
    read_config,
    run_model_name,
)
from project.catalogue import TOPICS

__all__ = ["INTERFACE", "MODELS", "Artefact", "ModelModule", "UnknownModel", "get_model", "new_trainer", "open_run",
           "run_config", "writes_own_step"]

# The trainable models, derived from the catalogue (``project.catalogue``, the one registry): name -> (training
# adapter module, what it trains).
MODELS: dict[str, tuple[str, str]] = {t.name: (t.training_module, t.trains) for t in TOPICS if t.trains}


class UnknownModel(RunError):
    pass


def get_model(name: str) -> ModelModule:
    """The module registered as ``name``; UnknownModel (one line, with the choices) otherwise."""
    if name not in MODELS:
        raise UnknownModel(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    module: ModuleType = importlib.import_module(MODELS[name][0])
    missing = missing_names(module)
    if missing:
        raise TypeError(f"{module.__name__} does not implement the model interface: no {', '.join(missing)}")
    return module  # type: ignore[return-value]


def models_with_preset(preset: str) -> list[str]:
    """The trainable models whose presets include ``preset``, in the catalogue's order."""
    return [name for name in MODELS if preset in getattr(get_model(name), "PRESETS", {})]


def new_trainer(cfg: Any, run_dir: Path, resume: bool = False):
    """The engine's ``Trainer`` for ``cfg`` (an ``engine.config.RunConfig``), handed the model it names and the runs
    it builds on (``parents``), its config completed by what it inherits from them."""
    module = get_model(cfg.model_name)
    joined = False
    if not resume and hasattr(module, "prerequisite_runs"):
        # under torchrun the runs trained first share this run's process group, joined here and left by this run
        # (a group left and joined again in one launch can hang the rendezvous)
        joined = distributed.setup(cfg.train.device)[2]
        cfg = with_prerequisites(module, cfg, run_dir)
    parents = parents_of(module, cfg, run_dir if resume else None)
    return Trainer(module, inherited(module, cfg, parents), run_dir, resume, parents, leaves_group=joined)


def with_prerequisites(module: ModelModule, cfg: Any, run_dir: Path) -> Any:
    """``cfg`` with each run its model's ``prerequisite_runs`` asks for (an ``engine.runs.Prerequisite`` for a key of
    ``BUILDS_ON`` left empty: latent diffusion's autoencoder) trained, or reused once finished, and named by that
    key: the engine's resolution, which config.json then records. It goes to ``prerequisite_dir``: inside the new
    run's folder ``run_dir`` unless the prerequisite names a root of its own."""
    if not hasattr(module, "prerequisite_runs"):
        return cfg
    named = {}
    for key, need in module.prerequisite_runs(cfg.model, dataset_info(cfg.data)).items():
        run_cfg = need.edit(get_model(need.model).default_config(need.preset, cfg.data.name))
        if need.same_seed:
            run_cfg = dataclasses.replace(run_cfg, train=dataclasses.replace(run_cfg.train, seed=cfg.train.seed))
        where = prerequisite_dir(need, key, run_cfg, run_dir)
        done = latest_step(where / CHECKPOINTS)
        if done != run_cfg.train.steps:
            if os.environ.get("RANK", "0") == "0":  # under torchrun, before any process group: rank 0 reports
                print(f"{cfg.model_name}: training its {key} ({run_cfg.train.steps} {need.model} steps) into {where}")
            trainer = new_trainer(run_cfg, where, resume=done is not None)
            try:
                outcome = trainer.run()
            finally:
                trainer.close()
            if outcome.signal is not None:
                again = "run again to continue it" if need.root else f"remove {run_dir} and train again"
                raise RunError(f"the training of {cfg.model_name}'s {key} in {where} was stopped; {again}")
        named[key] = str(where)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **named))


def prerequisite_dir(need: Any, key: str, run_cfg: Any, run_dir: Path) -> Path:
    """Where the prerequisite ``need`` (an ``engine.runs.Prerequisite``, named by the model key ``key``, trained with
    ``run_cfg``) goes: with an empty ``root``, into the folder of the run that builds on it, ``run_dir``/<key>, so a
    run writes nothing outside its folder; otherwise ``root``/<model>-<data set>-<hash of its config>, where later
    runs find and reuse it."""
    if not need.root:
        return run_dir / key
    digest = hashlib.sha256(json.dumps(to_dict(run_cfg), sort_keys=True).encode()).hexdigest()[:8]
    return Path(need.root) / f"{need.model}-{run_cfg.data.name}-{digest}"


def parents_of(module: ModelModule, cfg: Any, reopened: Path | None = None) -> dict[str, Parent]:
    """The trained runs a run builds on, by the model keys of its ``BUILDS_ON`` ({key: the model of the run it
    names}). A new run opens each one its config names (its network in eval mode, on the CPU; RunError, one line,
    for a folder that is not a trained run of that model); a reopened run (``reopened``: its folder) reads them off
    its builds_on.json, configs only (its checkpoint holds their weights)."""
    if not hasattr(module, "BUILDS_ON"):
        return {}
    if reopened is not None:
        return {key: Parent(r["run"], r["model"], r["step"],
                            from_dict(r["config"], get_model(r["model"]).Config) if r.get("config") else None)
                for key, r in read_builds_on(reopened).items()}
    parents = {}
    for key, model_name in module.BUILDS_ON.items():
        if not getattr(cfg.model, key):
            continue
        path = Path(getattr(cfg.model, key))
        try:
            found = run_model_name(path)
        except (RunError, OSError) as exc:
            raise RunError(f"model.{key}={path}: not a trained {model_name} run ({exc})") from None
        if found != model_name:
            raise RunError(f"model.{key}={path} is a {found} run; name a trained {model_name} run (python -m "
                           f"practice_torch train {model_name})")
        _, parent_cfg, net = open_run(path, torch.device("cpu"))
        parents[key] = Parent(str(path), model_name, latest_step(path / CHECKPOINTS) or 0, parent_cfg, net)
    return parents


def inherited(module: ModelModule, cfg: Any, parents: dict[str, Parent]) -> Any:
    """``cfg`` with the model keys its model takes from the runs it builds on (its ``inherit(config, parents)``,
    e.g. the reference language model's settings): the engine's one resolution, which config.json then records."""
    if not parents or not hasattr(module, "inherit"):
        return cfg
    return dataclasses.replace(cfg, model=module.inherit(cfg.model, parents))


def run_config(run_dir: Path):
    """The config of the run in ``run_dir``, read with its model's ``Config`` (``engine.runs.read_config``)."""
    return read_config(run_dir, get_model(run_model_name(run_dir)))


def new_run_config(model: str, preset: str | None, dataset: str | None, overrides=()):
    """The config a new run of ``model`` trains with, in either backend (``python -m practice_torch train`` and
    ``python -m practice_jax train``): the preset (default quick) on ``dataset`` (default the model's) with
    ``overrides`` applied; ConfigError (one line) for a value out of its range (``engine.config.check_train``)."""
    from practice_torch.engine.config import apply_overrides, check_model, check_train

    cfg = apply_overrides(get_model(model).default_config(preset or "quick", dataset), overrides)
    check_train(cfg.train)
    check_model(get_model(model), cfg.model)
    return cfg


def resumed_config(run_dir: Path, model: str, overrides=()):
    """The config a resumed run of ``model`` continues with, in either backend: the run's config.json with
    ``overrides`` applied; ConfigError (one line) for a value out of its range, a change to what its checkpoint
    fixes (the model's ``ARCHITECTURE``) or fewer steps than its checkpoint has trained (which would train nothing
    and leave a config.json that says less than the weights hold)."""
    from practice_torch.engine.config import ConfigError, apply_overrides, check_model, check_train, incompatibilities

    saved = run_config(run_dir)
    cfg = apply_overrides(saved, overrides)
    cfg.model_name = model
    check_train(cfg.train)
    check_model(get_model(saved.model_name), cfg.model)
    problems = incompatibilities(saved, cfg, getattr(get_model(model), "ARCHITECTURE", None))
    if problems:
        raise ConfigError(f"cannot resume {run_dir} with this config: {problems[0]}")
    done = latest_step(run_dir / CHECKPOINTS)
    if done is not None and cfg.train.steps < done:
        raise ConfigError(f"cannot resume {run_dir} to {cfg.train.steps} steps: it has trained {done} already; give "
                          f"--steps {done} or more (leave --steps out to finish its {saved.train.steps})")
    return cfg


def open_run(run_dir: Path, device: torch.device, overrides=()) -> tuple[ModelModule, Any, nn.Module]:
    """(model module, config, network in eval mode with the newest weights) of a trained run
    (``engine.runs.load_trained``, handed the run's model)."""
    module = get_model(run_model_name(run_dir))
    return load_trained(run_dir, module, device, overrides, parents_of(module, None, run_dir))
