"""The CNF's samples in JAX (``practice_torch.cnf.training.sample``): noise z ~ N(0, I) at t = 0 pushed to the data at
t = 1 along the learned field dx/dt = f(t, x) (Chen et al. 2018) by ``model.sample_method`` (``model.sample_steps``
of a fixed-step method, or dopri5 at the eval tolerances; ``ode.py``), and the density log p_1(x) = log N(z; 0, I) -
int_0^1 tr(df/dx) dt on a grid, with the exact trace, by ``theory_jax.cnf.log_likelihood``.

The field is the flax twin's (``practice_jax.cnf.Flow``); z is drawn from the engine's generator as
``practice_torch.cnf.sampling.draw_samples`` draws it; the figures are PyTorch's."""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from practice_jax.samplers import SampleError
from practice_jax.samplers.ode import FIXED, METHODS, at_times, dopri5_states, grid_states
from theory_jax.cnf import STEPS, log_likelihood


def twin_settings(model):
    """The training solver and its gradients (the adjoint) are the training step's; the field is the same."""
    return dataclasses.replace(model, adjoint=False, method="dopri5")


def check(model, net) -> None:
    if model.sample_method not in METHODS:
        raise SampleError(f"model.sample_method={model.sample_method}: practice_jax sample solves with "
                          f"{', '.join(METHODS)} (or sample with python -m practice_torch sample)")


def variable_shapes(module, net, model) -> dict:
    return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(()), jnp.zeros((1, net.dim))))


def field_of(module, params):
    """f(t, x): t (), x (B, D) -> (B, D), the flax twin's."""
    return lambda t, x: module.apply({"params": params}, jnp.asarray(t, x.dtype), x)


@partial(jax.jit, static_argnames=("module", "step"))
def fixed_transport(module, params, z, grid, *, step):
    """z (B, D) at grid[0] pushed over ``grid`` (S + 1,) by ``step`` -> x at every grid point (S + 1, B, D)."""
    return grid_states(field_of(module, params), z, grid, step)


@partial(jax.jit, static_argnames="module")
def dopri5_transport(module, params, z, times, atol, rtol):
    """(x at ``times`` (F, B, D), field evaluations) by dopri5."""
    return dopri5_states(field_of(module, params), z, times, atol, rtol)


@partial(jax.jit, static_argnames="module")
def exact_log_prob(module, params, x, atol, rtol):
    """log p_1(x) (B,) of x (B, D): the augmented ODE from t = 1 down to 0 by dopri5 at atol/rtol, the exact trace."""
    return log_likelihood(field_of(module, params), x, method="dopri5", atol=atol, rtol=rtol, trace="exact")


def draw_samples(twin, model, n: int, generator, frames: int = 2, step=None):
    """(x at ``frames`` times evenly spread over [0, 1] (frames, n, D), the times (frames,), NFE), as
    ``practice_torch.cnf.sampling.draw_samples``: z drawn from ``generator``, pushed by the sampling solver (a
    fixed-step method on its grid of ``sample_steps`` steps, its outputs between grid points interpolated as
    torchdiffeq's; ``step``: that method's rule, replaced by negative controls)."""
    import torch

    z = torch.randn((n, twin.net.dim), generator=generator).numpy()
    times = torch.linspace(0.0, 1.0, max(frames, 2))
    params, method = twin.variables["params"], model.sample_method
    if method in FIXED:
        grid = torch.linspace(0.0, 1.0, model.sample_steps + 1).numpy()  # cnf.functions.solver_options's grid
        states = np.asarray(fixed_transport(twin.module, params, z, grid, step=step or STEPS[method]))
        return at_times(states, grid, times.numpy()), times.numpy(), model.sample_steps * FIXED[method]
    xs, nfe = dopri5_transport(twin.module, params, z, times.numpy(), model.eval_atol, model.eval_rtol)
    return np.array(xs), times.numpy(), int(nfe)


def eval_log_prob(twin, model, x: np.ndarray) -> np.ndarray:
    """log p_1(x) (B,) with the exact trace at the eval tolerances (dopri5)."""
    return np.array(exact_log_prob(twin.module, twin.variables["params"], x, model.eval_atol, model.eval_rtol))


def sample(twin, model, n: int, generator, examples=None) -> list:
    """'density' (exp log p_1 on a grid with the exact trace, beside the data and the samples) and 'trajectories'
    (the particles at ``frames`` times from noise at t = 0 to data at t = 1, and 300 of their paths)."""
    import torch

    from practice_torch.cnf.sampling import cnf_trajectory_figure
    from practice_torch.engine.interface import Artefact
    from practice_torch.plots import density_figure_1d, density_figure_2d

    xs, times, nfe = draw_samples(twin, model, n, generator, model.frames)
    xs, times = torch.from_numpy(xs), torch.from_numpy(times)
    data = examples[0] if examples is not None else xs[-1]

    def log_prob(points):
        return torch.from_numpy(eval_log_prob(twin, model, points.numpy()))

    if twin.net.dim == 1:
        return [density_figure_1d("density", log_prob, data, grid=model.grid * 4, title="CNF density (exact trace)")]
    if twin.net.dim != 2:
        return [Artefact("samples", "text", [" ".join(f"{v:.4f}" for v in row) for row in xs[-1].tolist()])]
    return [density_figure_2d("density", log_prob, data, xs[-1], grid=model.grid,
                              title="CNF density: log p_1 with the exact trace"),
            cnf_trajectory_figure(xs, times, data, nfe)]
