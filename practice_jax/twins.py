"""What a model brings to the JAX trainer: its flax twin, its loss and its step, in ``practice_jax/<model>.py``.

Each of ``TRAINERS`` has a module ``practice_jax/<model>.py`` whose ``jax_twin(net, cfg)`` returns

* a ``JaxTwin`` for a model whose step is one loss: its flax ``module``, ``loss(params, batch, noise, step)``, its
  module-level ``train_step(state, batch, noise)`` (``practice_jax.state.train_step`` on its loss), the arguments
  ``init`` traces the twin with, and ``draw_noise(key, n)``: the noise of a batch drawn with ``jax.random`` (a run
  with ``--rng jax``), as the PyTorch adapter's ``draw_noise`` draws it with torch's generator;
* a ``JaxGame`` for a model whose step is more than one loss (the GAN's two players): its players, their
  objectives and the round of the game (``train_step(run, config)``), written top to bottom on ``JaxGameRun``'s
  ``next_batch`` and ``update`` as the PyTorch adapter's is on the engine's ``StepRun``.

A model's functions take its ``Setup`` (the flax twin, the run's model settings, whether it is conditional) first;
``jax_twin`` binds it once, so that each step compiles once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TRAINERS = ("vae", "gan", "ddpm", "language_model", "flow_matching", "cnf")  # each with a practice_jax/<model>.py


class JaxTrainError(ValueError):
    """Bad input to the JAX trainer (one line)."""


@dataclass(frozen=True)
class JaxTwin:
    """A model's training in JAX: its flax ``module``; ``loss(params, batch, noise, step) -> (loss, {term: value})``
    (batch and noise as the PyTorch loss gets them, NumPy/JAX arrays, images (B, H, W, C)); ``train_step(state, batch,
    noise) -> (state, logged)``, jitted by the loop; ``init_args(batch, noise)``: the positional arguments of
    ``module.init`` (only their shapes matter); ``draw_noise(key, n) -> {name: array}``: a batch's noise drawn with
    ``jax.random``."""

    module: Any
    loss: Callable
    train_step: Callable
    init_args: Callable
    draw_noise: Callable


@dataclass(frozen=True)
class JaxGame:
    """A model whose step is more than one loss (a GAN's two players), trained in JAX: its flax ``module``;
    ``players``: {name: the module's top-level parameter collections it updates}, in the order of the PyTorch
    adapter's ``players``; ``train_step(run, config) -> (loss, terms)``, the round of the game; ``init_args(batch,
    noise)`` and ``init_method``: what ``module.init`` is called with; ``objectives``: each player's objective;
    ``draw_noise(key, n)``: a batch's noise drawn with ``jax.random``."""

    module: Any
    players: dict[str, tuple[str, ...]]
    train_step: Callable
    init_args: Callable
    init_method: Any = None
    objectives: dict[str, Callable] | None = None
    draw_noise: Callable | None = None


@dataclass(frozen=True)
class Setup:
    """What a model's loss reads besides its parameters, batch and noise: its flax ``twin``, the run's ``model``
    settings and whether it is ``conditional`` (the batch's labels, its second part, go to the network)."""

    twin: Any
    model: Any
    conditional: bool = False

    def labels(self, batch):
        return batch[1] if self.conditional else None


def twin_of(model: str) -> Callable:
    """The model's ``jax_twin`` (JaxTrainError, one line, for a model without one)."""
    if model not in TRAINERS:
        raise JaxTrainError(f"{model} has no JAX trainer yet; choose from {', '.join(TRAINERS)}")
    return importlib.import_module(f"practice_jax.{model}").jax_twin
