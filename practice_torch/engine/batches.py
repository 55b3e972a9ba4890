"""Reproducible global batches, the same on every rank, each rank keeping its shard.

Epoch e visits ``randperm(n)`` drawn from a generator seeded by (seed, e); a step takes the next B
indices of it (the last incomplete batch of an epoch is dropped). The whole data order is therefore
a function of (seed, epoch, position): a checkpoint saves those three numbers and a resumed run
continues exactly where it stopped. Under torchrun, rank r of w keeps the slice
``[r B/w, (r+1) B/w)`` of every global batch (what DistributedSampler does for a shuffled set), so the
ranks together see the very batch one process with batch B would see.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset, default_collate

from practice_torch.engine.config import ConfigError, derive_seed
from practice_torch.progress import progress


class GlobalBatches:
    """Indices of this rank's share of the next global batch: ``next()`` -> (B / world_size,) int64."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if batch_size > n:
            raise ConfigError(f"train.batch_size={batch_size} is larger than the training set ({n} examples)")
        if batch_size % world_size:
            raise ConfigError(f"train.batch_size={batch_size} does not split evenly over {world_size} processes")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.position = 0, 0
        self._order: tuple[int, torch.Tensor] | None = None

    def permutation(self, epoch: int) -> torch.Tensor:
        """The visiting order of ``epoch``: a permutation of range(n), a function of (seed, epoch) only."""
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, f"data order/epoch {epoch}"))
            self._order = (epoch, torch.randperm(self.n, generator=generator))
        return self._order[1]

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > self.n:
            self.epoch, self.position = self.epoch + 1, 0
        batch = self.permutation(self.epoch)[self.position: self.position + self.batch_size]
        self.position += self.batch_size
        share = self.batch_size // self.world_size
        return batch[self.rank * share: (self.rank + 1) * share]

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])


def in_memory(dataset: Dataset, max_bytes: int = 4 << 30) -> Dataset:
    """The data set as one TensorDataset (read once, with a progress bar) when it fits in ``max_bytes``: data
    sets that decode files on access (audio, ...) then cost nothing per step. Tensor data sets pass through."""
    if isinstance(dataset, TensorDataset) or len(dataset) == 0:
        return dataset
    first = dataset[0]
    if sum(torch.as_tensor(t).nbytes for t in first) * len(dataset) > max_bytes:
        return dataset
    items = [dataset[i] for i in progress(range(len(dataset)), desc="loading data", unit="ex", leave=False)]
    return TensorDataset(*(torch.stack([torch.as_tensor(t) for t in column]) for column in zip(*items)))


def fits_on_device(nbytes: int, free_bytes: int, share: float = 0.25) -> bool:
    """Whether a data set of ``nbytes`` may live on a GPU with ``free_bytes`` free: at most ``share`` of it, so the
    model's activations keep the rest."""
    return nbytes <= share * free_bytes


def on_device(dataset: Dataset, device: torch.device) -> Dataset:
    """An in-memory data set moved to a GPU when it fits (``fits_on_device``): its batches are then gathered there,
    with no copy from the host per step. Anything else (a CPU, a data set read on access, one too big) passes
    through."""
    if device.type != "cuda" or not isinstance(dataset, TensorDataset):
        return dataset
    free, _ = torch.cuda.mem_get_info(device)
    if not fits_on_device(sum(t.nbytes for t in dataset.tensors), free):
        return dataset
    return TensorDataset(*(t.to(device) for t in dataset.tensors))


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device`` without making the host wait: a CPU tensor bound for a GPU is copied through pinned
    memory (torch's caching host allocator keeps the pinned block until the copy is done), so the copy is queued
    behind the device's work instead of synchronising with it. Anything else is ``x.to(device)``."""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def fetch(dataset: Dataset, indices: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The examples at ``indices`` as a batch (x, y, ...), each with leading dimension len(indices). For a data set
    on a GPU the indices go there first (``to_device``): indexing a GPU tensor with CPU indices would copy them with
    a synchronisation every step."""
    if isinstance(dataset, TensorDataset):
        indices = to_device(indices, dataset.tensors[0].device)
        return tuple(t[indices] for t in dataset.tensors)
    return tuple(default_collate([dataset[i] for i in indices.tolist()]))


def shard(tree: dict[str, torch.Tensor], rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """This rank's rows of tensors drawn for the whole global batch (the noise): (B, ...) -> (B / w, ...)."""
    out = {}
    for name, t in tree.items():
        share = t.shape[0] // world_size
        out[name] = t[rank * share: (rank + 1) * share]
    return out
