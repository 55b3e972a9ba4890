"""The log window: what both training loops (the PyTorch engine's ``loop.py``, the JAX trainer's
``practice_jax/loop.py``) keep of the steps between two log lines, and the check that stops a run whose loss or
gradient became NaN or infinite.

Each step's logged values (loss, checks such as ``grad_norm``, the model's terms) are summed where they were
computed, on the device, so that a step never waits for the device; the learning rates, known on the host, are summed
there. At a synchronisation point the loop reads the sums in one transfer (``read``, with its framework's way of
bringing arrays to the host), checks them (``check_finite``) and, at a log step, writes their means (``means``) with
the examples a second since the window opened.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from practice_torch.engine.checkpoint import latest_step

CHECK_NAMES = {"grad_norm": "gradient norm", "update_norm": "update norm"}  # logged, and checked for finiteness


class Spent:
    """Seconds of a session's loop spent apart from the training steps, by name ("first_step": the compile, where
    there is one; "validation"; "checkpoints"), so that a run's time can be read apart (``environment.json``)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def on(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


class Diverged(Exception):
    """The loss or the gradient became NaN or infinite; the message says where and what is kept."""


def check_name(key: str) -> str | None:
    """What a logged check measures ("gradient norm of the generator" for grad_norm_generator), or None."""
    if key in CHECK_NAMES:
        return CHECK_NAMES[key]
    if key.startswith("grad_norm_"):
        return f"gradient norm of the {key.removeprefix('grad_norm_')}"
    return None


class LogWindow:
    """The steps since the last log line: their logged values summed (device arrays: torch tensors or JAX arrays),
    their learning rates summed on the host, their count, and when the window opened with how many examples seen."""

    def __init__(self, examples: int):
        self.started = time.perf_counter()  # the session's start: ``time_s`` of each log line
        self.open(examples)

    def open(self, examples: int) -> None:
        """A new window, after a log line: nothing summed, its clock and example count from now."""
        self.sums: dict = {}
        self.lr_sums: dict[str, float] = {}
        self.steps, self.start, self.examples = 0, time.perf_counter(), examples

    def add(self, values: dict, lrs: dict[str, float]) -> None:
        """One step's logged values (a player that did not update this step logs none of its own) and rates."""
        for name, value in values.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        for name, rate in lrs.items():
            self.lr_sums[name] = self.lr_sums.get(name, 0.0) + rate
        self.steps += 1

    def read(self, to_host: Callable[[list], list[float]]) -> dict[str, float]:
        """The sums on the host, in one transfer: ``to_host`` takes the device values, in order, to floats."""
        names = list(self.sums)
        return dict(zip(names, to_host([self.sums[name] for name in names])))

    def means(self, host: dict[str, float], examples: int) -> tuple[dict[str, float], float]:
        """(the window's mean of each summed value, ``host`` as ``read`` gave it, and of each learning rate; the
        examples a second since the window opened, ``examples`` the count now)."""
        rate = (examples - self.examples) / (time.perf_counter() - self.start)
        means = {k: v / self.steps for k, v in host.items()}
        means.update({k: v / self.steps for k, v in self.lr_sums.items()})
        return means, rate

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def check_finite(values: dict[str, float], window: int, checked: int, step: int, checkpoints: Path,
                 hint: str = "try a lower train.lr or a train.grad_clip") -> None:
    """Diverged (one line) when the summed loss or a check (``check_name``) of the ``window`` steps since step
    ``checked`` is not finite (a NaN or an infinity in any step of a window makes its sum so); the message names the
    last good checkpoint in ``checkpoints``, which is kept."""
    checks = [k for k in values if check_name(k)]
    if all(math.isfinite(values[k]) for k in ("loss", *checks)):
        return
    kept = latest_step(checkpoints)
    what = ", ".join(f"{check_name(k)} {values[k] / window}" for k in checks)
    where = f"at step {step}" if step == checked + 1 else f"within steps {checked + 1}-{step}"
    raise Diverged(f"the loss became {values['loss'] / window} ({what}) {where}; stopped. "
                   + (f"The last good checkpoint (step {kept}) is kept in {checkpoints}"
                      if kept is not None else "No checkpoint had been written") + f"; {hint}")
