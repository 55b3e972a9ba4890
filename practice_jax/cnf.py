"""The CNF trained in JAX (``python -m practice_jax train cnf``): the flax twin of the field
(``theory_jax.cnf.ODEField``, under the name ``field`` as the PyTorch ``CNF`` holds it) and ``training.loss`` as a pure
function: the negative log-likelihood by the instantaneous change of variables, integrating the augmented ODE from
t = 1 down to t = 0 with the run's solver (torchdiffeq's fixed-step methods, the same steps; dopri5 is diffrax's, at
the run's tolerances, whose step-size controller is not torchdiffeq's) and the trace by the run's estimator with the
engine's drawn probe. Each function takes the ``Setup`` it trains first; ``jax_twin`` binds it once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

import theory_jax.cnf as jcnf
from practice_jax import state
from practice_jax.twins import JaxTrainError, JaxTwin


class Flow(nn.Module):
    """dx/dt = f(t, x) with the field named as the PyTorch ``CNF``'s ``field``."""

    field: nn.Module

    def __call__(self, t, x):
        return self.field(t, x)


@dataclass(frozen=True)
class Setup:
    """The flax ``Flow``, the run's ``model`` settings (solver, trace) and the data's dimension."""

    twin: Any
    model: Any
    dim: int = 2


def loss(setup: Setup, params, batch, noise, step):
    """-mean_b log p_1(x_b) in nats per point: (loss, {})."""
    m = setup.model
    solver = {"steps": m.steps} if m.method in jcnf.STEPS else {"atol": m.atol, "rtol": m.rtol}
    ll = jcnf.log_likelihood(lambda t, x: setup.twin.apply({"params": params}, t, x), batch[0], method=m.method,
                             trace="exact" if m.trace == "exact" else "hutchinson", probe=noise["probe"], **solver)
    return -jnp.mean(ll), {}


def train_step(setup: Setup, train_state: state.TrainState, batch, noise):
    """One AdamW step on the negative log-likelihood (the engine's default step) -> (the new state, the logged
    values)."""
    return state.train_step(partial(loss, setup), train_state, batch, noise)


def draw_noise(setup: Setup, key, n: int) -> dict:
    """One Hutchinson probe v (n, D) per example: Rademacher, or N(0, I) for trace 'hutchinson_gaussian'
    (``training.draw_noise``, with ``jax.random``)."""
    if setup.model.trace == "hutchinson_gaussian":
        return {"probe": jax.random.normal(key, (n, setup.dim))}
    return {"probe": jax.random.rademacher(key, (n, setup.dim), dtype=jnp.float32)}


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
    setup = Setup(Flow(field), m, net.dim)
    return JaxTwin(setup.twin, partial(loss, setup), partial(train_step, setup), partial(init_args, setup),
                   partial(draw_noise, setup))
