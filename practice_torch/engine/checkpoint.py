"""Checkpoints: weights as safetensors, everything else in a companion file, both written atomically.

    RUN/checkpoints/step_000500.safetensors   the model's state_dict; metadata names the format, model, step
    RUN/checkpoints/step_000500.state.pt      optimizer, LR schedule, step, EMA weights, every RNG state
    RUN/checkpoints/latest.json               {"step": 500, "weights": ..., "state": ...}, written last

Each file is written to a temporary file in the same directory, fsynced and renamed over its name
(``os.replace`` is atomic), and ``latest.json`` is replaced only once both files are complete; a
crash at any moment leaves the previous checkpoint intact. The RNG state covers torch (CPU and CUDA),
NumPy, Python's ``random``, the data order and the engine's noise generator, which is what makes a
resumed run bit-identical on CPU.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from practice_torch.engine import RunError

FORMAT = "generative-twins/checkpoint-1"
KEEP = 2  # checkpoints kept on disk, newest first


class CheckpointError(RunError):
    """A missing, corrupt, foreign or mismatched checkpoint."""


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, fsync it, rename it over ``path``, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def rng_state() -> dict[str, Any]:
    """Every global random state: torch CPU (and CUDA), NumPy's legacy generator, Python's ``random``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, model_name: str, step: int, weights: dict[str, torch.Tensor],
                    state: dict[str, Any], version: int = 1) -> Path:
    """Write checkpoint ``step`` (weights: a state_dict; state: anything ``torch.load(weights_only=True)``
    reads back) and point ``latest.json`` at it; older checkpoints beyond ``KEEP`` are removed. ``version``: the
    model's checkpoint version (its ``CHECKPOINT_VERSIONS``), in the weights' metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"step_{step:07d}"
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in weights.items()}
    metadata = {"format": FORMAT, "model": model_name, "step": str(step), "model_version": str(version)}
    atomic_write(folder / f"{stem}.safetensors", lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    atomic_write(folder / f"{stem}.state.pt", lambda tmp: torch.save({**state, "step": step}, tmp))
    pointer = {"format": FORMAT, "model": model_name, "step": step,
               "weights": f"{stem}.safetensors", "state": f"{stem}.state.pt"}
    atomic_write(folder / "latest.json", lambda tmp: tmp.write_text(json.dumps(pointer) + "\n"))
    stale = sorted(folder.glob("step_*.safetensors"))[:-KEEP]
    for old in stale:
        old.unlink()
        old.with_name(old.name.replace(".safetensors", ".state.pt")).unlink(missing_ok=True)
    return folder / f"{stem}.safetensors"


def latest_step(folder: Path) -> int | None:
    """The step of the newest complete checkpoint in ``folder``, or None."""
    try:
        return int(json.loads((folder / "latest.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_checkpoint(folder: Path, model_name: str, with_state: bool = True, versions: dict[int, str] | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, state) of the newest checkpoint; CheckpointError if it is missing, corrupt, not ``model_name``'s or
    of an older version of the model than ``versions`` (the model's ``CHECKPOINT_VERSIONS``) reads."""
    pointer_path = folder / "latest.json"
    if not pointer_path.is_file():
        raise CheckpointError(f"no checkpoint in {folder} (latest.json is missing)")
    try:
        pointer = json.loads(pointer_path.read_text())
        weights_path, state_path = folder / pointer["weights"], folder / pointer["state"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{pointer_path} is corrupt: not a checkpoint pointer") from None
    weights = read_weights(weights_path, model_name, versions)
    state: dict = {}
    if with_state:
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated zip, foreign pickle, missing file: all one message
            raise CheckpointError(f"{state_path} is corrupt or unreadable ({type(exc).__name__})") from None
        if not isinstance(state, dict) or state.get("step") != pointer.get("step"):
            raise CheckpointError(f"{state_path} does not belong to {weights_path.name}: the steps differ")
    return weights, state


def current_version(versions: dict[int, str] | None) -> int:
    """The newest of a model's ``CHECKPOINT_VERSIONS`` (1 when it has none)."""
    return max(versions) if versions else 1


def read_weights(path: Path, model_name: str, versions: dict[int, str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of one of our safetensors files, after checking its metadata names ``model_name`` and the
    model's current checkpoint version (a file without one is version 1). ``versions``: {version: what changed}, as
    the model declares them (None: not checked, for a model without versions or a reader of raw tensors)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise CheckpointError(f"{path} is not a generative-twins checkpoint (no {FORMAT!r} metadata)")
            if metadata.get("model") != model_name:
                raise CheckpointError(f"{path} is a checkpoint of model {metadata.get('model')!r}, not {model_name!r}")
            written, current = int(metadata.get("model_version", 1)), current_version(versions)
            if versions is not None and written != current:
                raise CheckpointError(f"{path} is a version {written} checkpoint of {model_name} and this code reads "
                                      f"version {current} ({versions.get(current, 'changed')}): "
                                      "train the run anew")
            return {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupt or unreadable: {str(exc).splitlines()[0]}") from None


def load_weights_into(net: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path | str) -> None:
    """``net.load_state_dict(weights)``, strict, with a one-line CheckpointError naming the first mismatch."""
    own = net.state_dict()
    problems = [f"{k} is missing" for k in own if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in own]
    problems += [f"{k} has shape {tuple(weights[k].shape)}, the model {tuple(v.shape)}"
                 for k, v in own.items() if k in weights and weights[k].shape != v.shape]
    if problems:
        raise CheckpointError(f"the checkpoint in {source} does not fit this model: {problems[0]}"
                              + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    net.load_state_dict(weights)
