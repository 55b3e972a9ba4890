"""Presets as data: each training adapter's ``PRESETS`` table, and the run configuration it gives.

A table maps a preset name ('quick': a 2-core CPU in minutes; 'full': one GPU) to rows keyed by a data set's name,
by a modality ('image', '2-D', '1-D', 'audio', 'text': any data set of that kind), or '*' (any other data set). A
row holds the model and train sections and the data options that go with them; the data set is the one asked for.
The first row's key is the model's default data set. For example::

    PRESETS = {
        "quick": {"moons": Preset(Config(hidden=128), TrainConfig(steps=3000, batch_size=256)),
                  "image": Preset(Config(architecture="unet"), TrainConfig(steps=1500, batch_size=64))},
        "full": {...},
    }
    default_config = preset_config("flow_matching", PRESETS)   # the model interface's default_config
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from practice_torch.data import get_info
from practice_torch.engine.config import ConfigError, DataConfig, RunConfig, TrainConfig

__all__ = ["Preset", "preset_config", "resolve"]


@dataclass(frozen=True)
class Preset:
    """One row of a preset table: the model section (the model's ``Config``), the train section, and the data
    section's options (``view``: e.g. 'mel' for spectrograms of an audio set)."""

    model: Any
    train: TrainConfig
    view: str | None = None


def _row(rows: dict[str, Preset], dataset: str) -> Preset | None:
    if dataset in rows:
        return rows[dataset]
    try:
        modality = get_info(dataset).modality
    except KeyError:
        modality = None  # an unknown data set: the engine names it, in one line, when it loads the data
    return rows.get(modality) or rows.get("*")


def resolve(model_name: str, table: dict[str, dict[str, Preset]], preset: str, dataset: str | None = None
            ) -> RunConfig:
    """The whole run configuration of ``preset`` on ``dataset`` (None: the table's first data set), a fresh copy.
    ConfigError, one line, for an unknown preset or a data set no row covers."""
    if preset not in table:
        raise ConfigError(f"unknown preset {preset!r} for {model_name}; choose from {', '.join(table)}")
    rows = table[preset]
    name = dataset or next(iter(rows))
    row = _row(rows, name)
    if row is None:
        covered = ", ".join(rows)
        raise ConfigError(f"{model_name} has no {preset} preset for data set {name!r}; its presets cover {covered}")
    return RunConfig(model_name, copy.deepcopy(row.model), DataConfig(name, view=row.view), copy.deepcopy(row.train))


def preset_config(model_name: str, table: dict[str, dict[str, Preset]]) -> Callable[..., RunConfig]:
    """The model interface's ``default_config(preset, dataset=None)`` read off ``table``."""

    def default_config(preset: str = "quick", dataset: str | None = None) -> RunConfig:
        return resolve(model_name, table, preset, dataset)

    default_config.__doc__ = f"The run configuration of a {model_name} preset: ``resolve`` over its ``PRESETS``."
    return default_config
