"""Processes and devices: one process, or a torchrun of many with DistributedDataParallel.

    torchrun --nproc_per_node=2 -m practice_torch train vae ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; ``setup`` then joins the process group (gloo on CPU,
NCCL on GPU, each rank on cuda:LOCAL_RANK). Only rank 0 writes files. The loss is a per-example
mean on each rank's equal shard, so DDP's gradient average is the gradient of the global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from practice_torch.engine.config import ConfigError


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda (this rank's GPU) when one is available, else cpu; 'cuda' without one is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for but no CUDA device is available; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def setup(device_name: str) -> tuple[Processes, torch.device, bool]:
    """This process's place in a torchrun (or a single process), its device, and whether this call joined the
    process group: the caller that joined it leaves it (``teardown``); a run nested in another (latent_diffusion's
    autoencoder) shares the outer run's group and leaves it alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    procs = Processes(int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name, procs.local_rank)
    joined = procs.is_distributed and not dist.is_initialized()
    if joined:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return procs, device, joined


def teardown(procs: Processes) -> None:
    """Leave the process group. Drop every object that holds the group (the DistributedDataParallel wrapper)
    before this: the group's threads are then joined here, while the interpreter is alive. A gloo group first
    freed at interpreter exit can abort the process ("terminate called without an active exception")."""
    if procs.is_distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(procs: Processes) -> None:
    if procs.is_distributed:
        dist.barrier()


def reduce_mean(values: torch.Tensor, procs: Processes) -> torch.Tensor:
    """The mean over ranks of a small float tensor (every rank gets it), e.g. the logged losses."""
    if not procs.is_distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / procs.world_size


def gathered_rows(x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of x, in rank order, on every rank (the identity in one process): a rollout every rank then
    holds whole. x: (n, ...) -> (world * n, ...)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    parts = [torch.empty_like(x) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def rank_rows(x: torch.Tensor) -> torch.Tensor:
    """This rank's share of rows every rank holds (all of them in one process). x: (world * n, ...) -> (n, ...)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    n = len(x) // world
    return x[rank * n:(rank + 1) * n]
