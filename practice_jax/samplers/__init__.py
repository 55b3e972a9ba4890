"""Sampling in JAX, one module per model (``python -m practice_jax sample``, ``practice_jax/sampling.py``).

Each ``practice_jax/samplers/<model>.py`` is the JAX side of its PyTorch adapter's ``sample``: the reverse process
(a decoder, an ancestral or DDIM chain, a decoding rule, an ODE) as pure JAX functions that take their noise as
arguments (docs/ARCHITECTURE.md, rule 1), the math from ``theory_jax/<topic>.py``, and a ``sample`` that draws that
noise from the engine's ``torch.Generator`` in the order the PyTorch sampler draws it, so that on the same weights and
the same seed both backends write the same samples. Each module provides

* ``twin_settings(model) -> model``: the run's model settings with those only the training step reads (dropout,
  OT coupling, the training solver, FactorVAE's discriminator, ...) set to values the trainer's ``jax_twin`` takes:
  the network it builds is the same;
* ``check(model, net)``: ``SampleError`` (one line) for what the JAX sampler does not draw;
* ``variable_shapes(module, net, model)``: the flax variables' shapes (``jax.eval_shape`` of ``module.init``);
* ``sample(twin, model, n, generator, examples) -> list[Artefact]``: the PyTorch ``sample``'s artefacts, samples
  first;
* optionally ``TRAINING_MODULES``: top-level torch modules that only training reads (left out of the conversion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SAMPLERS = ("vae", "gan", "ddpm", "language_model", "flow_matching", "cnf")  # every model JAX trains (TRAINERS)


class SampleError(ValueError):
    """Bad input to the JAX sampler (one line)."""


@dataclass(frozen=True)
class Twin:
    """A trained run's network in JAX: the flax ``module`` (the trainer's ``jax_twin``), its ``variables``
    ({"params": ...} and, with running statistics, "batch_stats"), and the PyTorch network ``net`` whose weights they
    are, read for what it knows of the data (shapes, classes, the noise schedule), never run."""

    module: Any
    variables: dict
    net: Any


def channels_last(x) -> np.ndarray:
    """(..., C, H, W) -> (..., H, W, C): PyTorch's images (and their noise) as the flax twins take them."""
    return np.moveaxis(np.asarray(x), -3, -1)


def channels_first(x) -> np.ndarray:
    """(..., H, W, C) -> (..., C, H, W), a writable copy (``torch.from_numpy`` takes it as it is)."""
    return np.array(np.moveaxis(np.asarray(x), -1, -3))
