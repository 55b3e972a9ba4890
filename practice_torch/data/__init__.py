"""One registry of named data sets, offline by default (docs/ARCHITECTURE.md, "Data").

    from practice_torch.data import get_dataset
    train = get_dataset("fashion_mnist", "train")       # a torch Dataset of (x, y)
    x, y = train[0]                                     # x: (1, 28, 28) float32 in [0, 1], y: int64 label

Every entry documents its example shape, dtype, value range, its deterministic train/val/test
splits and its labels or conditions (``DatasetInfo``); ``python -m practice_torch.data list``
prints them. A data set that is not on the machine raises ``DatasetMissing`` with one line
saying how to get it. Modules register themselves on import (images, toy2d, ...).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

SPLITS = ("train", "val", "test")


class DatasetMissing(RuntimeError):
    """The data set is not on this machine; the message is one line saying how to get it."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is. ``load(split, data_dir, **options)`` returns a torch ``Dataset`` of (x, y)."""

    name: str
    modality: str  # image | 2-D | 1-D | text | audio | control
    shape: tuple[int, ...]  # one example's x
    dtype: str
    value_range: str
    condition: str  # what y is
    splits: str  # how train/val/test are made (deterministic)
    source: str
    load: Callable[..., Dataset]
    num_classes: int = 0
    environment: str | None = None  # a control task's gymnasium id (modality "control", data/control.py)
    actions: int = 0  # a control task's number of discrete actions
    prepare: Callable[[], str] | None = field(default=None, compare=False)  # one-off set-up, returns a status line

    @property
    def unit_images(self) -> bool:
        """8-bit images in [0, 1] (Fashion-MNIST, MNIST, CIFAR-10, digits), not real-valued ones (the galaxies)."""
        return self.modality == "image" and self.value_range == "[0, 1]"


REGISTRY: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> DatasetInfo:
    REGISTRY[info.name] = info
    return info


def cache_dir() -> Path:
    """Where built or fetched data sets are cached: $GENERATIVE_TWINS_DATA or ~/.cache/generative-twins."""
    path = Path(os.environ.get("GENERATIVE_TWINS_DATA", Path.home() / ".cache" / "generative-twins"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def get_info(name: str) -> DatasetInfo:
    _load_modules()
    if name not in REGISTRY:
        raise KeyError(f"unknown data set {name!r}; choose from {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def is_image_set(name: str) -> bool:
    """Whether ``name`` is a data set of (C, H, W) images, for a model's default preset; False for an unknown name
    (the engine then reports it, in one line)."""
    try:
        return len(get_info(name).shape) == 3
    except KeyError:
        return False


def get_dataset(name: str, split: str = "train", data_dir: str | Path | None = None, **options: Any) -> Dataset:
    """The ``split`` of data set ``name``. Raises KeyError (unknown name or split) or DatasetMissing."""
    info = get_info(name)
    if split not in SPLITS:
        raise KeyError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    return info.load(split, None if data_dir is None else Path(data_dir), **options)


def stacked(dataset: Dataset, limit: int | None = None) -> tuple[torch.Tensor, ...]:
    """The columns of a data set's first ``limit`` examples (all when None), each stacked: ((N, ...), (N,), ...).
    A TensorDataset's own tensors are sliced, not copied."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if isinstance(dataset, TensorDataset):
        return tuple(t[:n] for t in dataset.tensors)
    return tuple(torch.stack([torch.as_tensor(v) for v in column]) for column in zip(*(dataset[i] for i in range(n))))


def all_datasets() -> dict[str, DatasetInfo]:
    _load_modules()
    return dict(REGISTRY)


def _load_modules() -> None:
    """Import the modules that register data sets (each registers on import)."""
    import importlib

    for module in MODULES:
        importlib.import_module(f"practice_torch.data.{module}")


MODULES = ["images", "toy2d", "text", "sequence_tasks", "audio", "galaxies", "control"]
