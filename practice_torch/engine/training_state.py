"""A checkpoint's training state, written and read in one order by both loops: the PyTorch engine's (``loop.py``) and
the JAX trainer's (``practice_jax/runs.py``), so that either resumes a run the other wrote.

    weights          the network's state_dict (safetensors; ``checkpoint.py``)
    optimizers       {"optimizer", "scheduler"} of the default step, or {"players": {name: {...}}} of a custom one
    ema              {"updates", "shadow"} or None
    position         {"batches": the data order} or {"environments": a control task's episodes} (+ "jax_key")
    noise, rng       the engine's noise generator; every global RNG (``checkpoint.rng_state``)
    early_stop       (best, its step, log steps since)

A run reopens in that order too: the weights into its network (``reopen``), then its optimizers (each loop its own),
then its place (``restore_position``); a state that does not fit is one line (``unfit``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from practice_torch.engine.checkpoint import CheckpointError, load_checkpoint, load_weights_into, rng_state, set_rng_state

CHECKPOINTS = "checkpoints"  # RUN/checkpoints (``engine.runs``)


def training_state(optimizers: dict, ema: dict | None, position: dict, noise: torch.Generator,
                   early_stop: tuple = (math.inf, 0, 0)) -> dict:
    """The companion state of a checkpoint, in the order every reader expects: the optimizers' part, the EMA, the
    run's position in its data, the noise generator, every global RNG and early stopping's count."""
    return {**optimizers, "ema": ema, **position, "noise": noise.get_state(), "rng": rng_state(),
            "early_stop": early_stop}


def reopen(run_dir: Path, model_name: str, net: nn.Module, versions: dict[int, str] | None = None) -> dict:
    """The newest checkpoint of ``run_dir``: its weights loaded into ``net``; -> its training state (CheckpointError,
    one line, for one that is missing, corrupt, foreign or of another version)."""
    folder = run_dir / CHECKPOINTS
    weights, state = load_checkpoint(folder, model_name, versions=versions)
    load_weights_into(net, weights, folder)
    return state


def restore_position(state: dict, data, noise: torch.Generator) -> int:
    """After the weights and the optimizers: the data's place (``data``: the batch order, or a control task's
    environments, whichever the state keeps), the noise generator and every global RNG; -> the step."""
    data.load_state_dict(state["batches"] if "batches" in state else state["environments"])
    noise.set_state(state["noise"])
    set_rng_state(state["rng"])
    return int(state["step"])


@contextmanager
def unfit(run_dir: Path) -> Iterator[None]:
    """Reading a checkpoint's training state into a run: a state that does not fit it (a missing entry, a shape or
    a type another run wrote) is a CheckpointError, one line."""
    try:
        yield
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"the training state in {run_dir / CHECKPOINTS} does not fit this run: {exc}") from None
