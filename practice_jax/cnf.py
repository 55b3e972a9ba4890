"""The CNF trained in JAX (``python -m practice_jax train cnf``, ``practice_jax/loop.py``): the flax twin of the field
(``theory_jax.cnf.ODEField``, under the name ``field`` as the PyTorch ``CNF`` holds it) and ``training.loss`` as a pure
function: the negative log-likelihood by the instantaneous change of variables, integrating the augmented ODE from
t = 1 down to t = 0 with the run's solver (torchdiffeq's fixed-step methods, the same steps; dopri5 is diffrax's, at
the run's tolerances, whose step-size controller is not torchdiffeq's) and the trace by the run's estimator with the
engine's drawn probe. Each function takes the ``Setup`` it trains first; ``jax_twin`` binds it once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

import theory_jax.cnf as jcnf
from practice_jax.loop import JaxTrainError, JaxTwin


class Flow(nn.Module):
    """dx/dt = f(t, x) with the field named as the PyTorch ``CNF``'s ``field``."""

    field: nn.Module

    def __call__(self, t, x):
        return self.field(t, x)


@dataclass(frozen=True)
class Setup:
    """The flax ``Flow`` and the run's ``model`` settings (solver, trace)."""

    twin: Any
    model: Any


def loss(setup: Setup, params, batch, noise, step):
    """-mean_b log p_1(x_b) in nats per point: (loss, {})."""
    m = setup.model
    solver = {"steps": m.steps} if m.method in jcnf.STEPS else {"atol": m.atol, "rtol": m.rtol}
    ll = jcnf.log_likelihood(lambda t, x: setup.twin.apply({"params": params}, t, x), batch[0], method=m.method,
                             trace="exact" if m.trace == "exact" else "hutchinson", probe=noise["probe"], **solver)
    return -jnp.mean(ll), {}


def init_args(setup: Setup, batch, noise):
    return jnp.zeros(()), batch[0]


def jax_twin(net, cfg):
    """The CNF's ``JaxTwin`` (JaxTrainError, one line, for the adjoint's gradients or a solver JAX lacks)."""
    m = cfg.model
    if m.adjoint:
        raise JaxTrainError("model.adjoint=true: the JAX trainer backpropagates through the solver (set "
                            "model.adjoint=false, or train with practice_torch)")
    if m.method not in (*jcnf.STEPS, "dopri5"):
        raise JaxTrainError(f"model.method={m.method}: the JAX trainer solves with {', '.join(jcnf.STEPS)} or dopri5")
    field = jcnf.ODEField(net.dim, tuple(m.hidden), m.time_input, m.activation)
    setup = Setup(Flow(field), m)
    return JaxTwin(setup.twin, partial(loss, setup), partial(init_args, setup))
