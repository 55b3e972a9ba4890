"""Spec cases: backend-neutral descriptions of one check, built from NumPy only.

Three kinds, one per level of the tolerance policy (a whole short training run in both trainers is a twin-training
case, ``practice_jax/twin_cases.py``, outside this package since it runs ``practice_jax``):

* ``FunctionCase``: a pure function with the same name in ``theory_jax.<topic>`` and
  ``practice_torch.<topic>``, called with the same NumPy inputs (noise included, rule 1).
* ``ModuleCase``: a module with the same class name in both backends, its weights drawn once in
  the torch ``state_dict`` layout and carried to flax by ``shared_specs.interop`` (rule 2).
* ``StepCase``: a few optimizer steps from the same weights on the same batches.

Inputs are drawn from a generator seeded by the case id, so a case is the same on every machine
and two cases never share draws by accident.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Inputs = dict[str, np.ndarray]
InputMaker = Callable[[np.random.Generator], Inputs]


def rng_for(case_id: str, salt: str = "") -> np.random.Generator:
    """A NumPy generator seeded by the SHA-256 of ``case_id`` (and ``salt``): stable across runs."""
    digest = hashlib.sha256(f"{case_id}{salt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@dataclass(frozen=True)
class FunctionCase:
    """``fn(**inputs, **static)`` in both backends; gradients of <out, cotangent> w.r.t. ``grad_wrt``.

    ``reference``: an independent NumPy/SciPy/closed-form ``reference(**inputs, **static)``, the
    third witness (docs/ARCHITECTURE.md rule 6), compared at the same tolerance.
    """

    id: str
    fn: str
    make_inputs: InputMaker
    dtype: str = "float64"
    level: str = "function"
    grad_wrt: tuple[str, ...] = ()
    static: Mapping[str, Any] = field(default_factory=dict)
    reference: Callable[..., Any] | None = None
    kind: str = "function"


@dataclass(frozen=True)
class ModuleCase:
    """``Module(**config)`` in both backends, weights from ``init_weights``, ``method(**inputs)``.

    ``image_inputs``/``image_outputs``: names of inputs and flattened output paths that are
    images. Cases hold them NCHW (the exchange layout); the flax side takes and returns NHWC.
    Gradients: of <out, cotangent> w.r.t. every parameter and the inputs in ``grad_wrt``.
    ``train``: for modules with batch normalisation, True normalises by the batch's statistics (torch's
    ``module.train()``, flax's ``train=True`` with ``batch_stats`` mutable), False by the running statistics, which
    cross by the converter; None (the default) leaves torch's mode alone and passes no ``train`` to flax.
    ``static``: keyword arguments of ``method`` that are settings, not arrays (a loss's beta, its objective): passed
    as they are in both backends, never differentiated; the network holds weights, the call says how to use them.
    """

    id: str
    module: str
    config: Mapping[str, Any]
    make_inputs: InputMaker
    method: str = "__call__"
    dtype: str = "float32"
    level: str = "network"
    grad_wrt: tuple[str, ...] = ()
    image_inputs: tuple[str, ...] = ()
    image_outputs: tuple[str, ...] = ()
    train: bool | None = None
    static: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "module"


@dataclass(frozen=True)
class StepCase:
    """``steps`` optimizer updates of ``Module(**config)`` minimising its ``method`` (a scalar loss).

    ``optimizer``: {'name': 'adam' | 'adamw', 'lr', 'betas', 'eps', 'weight_decay'} with the same
    meaning in torch.optim and optax. ``make_batches`` returns one input dict per step; ``static`` the method's
    setting keywords, as in ``ModuleCase``. Compared: the weights after the last step, in the torch layout.
    """

    id: str
    module: str
    config: Mapping[str, Any]
    make_batches: Callable[[np.random.Generator], list[Inputs]]
    optimizer: Mapping[str, Any]
    method: str = "loss"
    dtype: str = "float32"
    level: str = "step"
    image_inputs: tuple[str, ...] = ()
    static: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "step"


Case = FunctionCase | ModuleCase | StepCase


def init_weights(shapes: Mapping[str, tuple[int, ...]], rng: np.random.Generator, dtype: str = "float32") -> Inputs:
    """Weights for a torch ``state_dict`` schema, drawn in name order (never a framework's initialiser).

    Matrices and kernels: N(0, 1/fan_in) with fan_in the product of all but the first axis;
    biases N(0, 0.1^2); norm scales (1-D ``weight``) 1 + N(0, 0.1^2); other parameters N(0, 0.1^2); batch norm's
    running variances exp(N(0, 0.1^2)) (positive) and its ``num_batches_tracked`` 0 (an integer count).
    """
    out: Inputs = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[name] = np.zeros(shape, np.int64)
            continue
        if leaf == "running_var":
            value = np.exp(0.1 * rng.standard_normal(shape))
        elif leaf == "weight" and len(shape) >= 2:
            value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        elif leaf == "weight":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            value = 0.1 * rng.standard_normal(shape)
        out[name] = value.astype(dtype)
    return out


def gaussian(rng: np.random.Generator, *shape: int, dtype: str = "float64", scale: float = 1.0) -> np.ndarray:
    """N(0, scale^2) draws of ``shape``."""
    return (scale * rng.standard_normal(shape)).astype(dtype)


def uniform(rng: np.random.Generator, *shape: int, low: float = 0.0, high: float = 1.0,
            dtype: str = "float64") -> np.ndarray:
    return rng.uniform(low, high, size=shape).astype(dtype)


def cholesky_factor(rng: np.random.Generator, d: int, dtype: str = "float64") -> np.ndarray:
    """A random lower-triangular (d, d) factor with positive diagonal (a well-conditioned covariance)."""
    low = np.tril(0.3 * rng.standard_normal((d, d)), -1)
    return (low + np.diag(np.exp(0.3 * rng.standard_normal(d)))).astype(dtype)
