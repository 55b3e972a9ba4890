"""Flow matching's samples in JAX (``practice_torch.flow_matching.training.sample``): x0 ~ N(0, I) pushed from t = 0
to t = 1 along the learned field, dx/dt = v_theta(t, x[, y]) (Lipman et al. 2023, eq. 1), by ``model.method`` over
``model.ode_steps`` (``ode.py``), the field classifier-free guided at ``model.guidance_scale`` for a class-conditional
run, (1 + w) v(x, y) - w v(x), or conditioned on the galaxies' parameters.

The field is the flax twin's (``practice_jax.flow_matching.Field``, the embedding seeing 1000 t as PyTorch's
``FlowModel``); x0 is drawn from the engine's generator as ``flow_matching.model.generate`` draws it. Images, 2-D
figures and the galaxies' parameter sweep go to the artefacts as PyTorch writes them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import theory_jax.diffusion as jdiff
from practice_jax.samplers import channels_first, channels_last
from practice_jax.samplers.ode import FIXED, dopri5_states, grid_states
from practice_torch.flow_matching.model import TIME_SCALE  # the field's embedding sees 1000 t
from theory_jax.cnf import STEPS


def twin_settings(model):
    """OT coupling and dropout are the training step's (the field is the same without them)."""
    return dataclasses.replace(model, coupling="independent", dropout=0.0)


def check(model, net) -> None:
    """Every solver of the PyTorch sampler (``flow_matching.sampling.METHODS``) solves here."""


def variable_shapes(module, net, model) -> dict:
    x = jnp.zeros((1, *net.shape[1:], net.shape[0]) if len(net.shape) == 3 else (1, *net.shape))
    extra = ((None, jnp.zeros((1, net.cond_dim))) if net.cond_dim
             else (jnp.zeros((1,), jnp.int32),) if net.num_classes else ())
    return jax.eval_shape(lambda: module.init(jax.random.key(0), x, jnp.zeros((1,)), *extra))


@dataclass
class Trajectory:
    """x: (frames, B, ...) the states at ``times`` (frames,), x[-1] the samples (images (B, C, H, W)); nfe: the field
    evaluations (batches), as ``practice_torch.flow_matching.sampling.Trajectory``."""

    x: np.ndarray
    times: np.ndarray
    nfe: int


# 1. The field and its solve -----------------------------------------------------------------------------------------
def velocity(module, params, t, x, labels=None, null=None, cond=None, w=0.0):
    """v_theta(t, x[, labels | cond]): t () in [0, 1] (the net sees 1000 t), x (B, ...) the model's space (images
    channels last); with the null labels ``null`` (B,), the guided (1 + w) v(x, y) - w v(x) (Ho & Salimans eq. 6's
    combination), both halves in one batch -> (B, ...)."""
    b = x.shape[0]
    time = jnp.broadcast_to(jnp.asarray(t, x.dtype) * TIME_SCALE, (b,))
    if cond is not None:
        return module.apply({"params": params}, x, time, None, cond)
    if labels is None:
        return module.apply({"params": params}, x, time)
    if null is None:
        return module.apply({"params": params}, x, time, labels)
    both = module.apply({"params": params}, jnp.concatenate([x, x]), jnp.concatenate([time, time]),
                        jnp.concatenate([labels, null]))
    v_cond, v_uncond = jnp.split(both, 2)
    return jdiff.cfg_eps(v_cond, v_uncond, w)


@partial(jax.jit, static_argnames=("module", "step"))
def fixed_path(module, params, x0, grid, labels=None, null=None, cond=None, w=0.0, *, step):
    """x at every point of ``grid`` (S + 1,) by ``step`` (a ``theory_jax.cnf.STEPS`` rule) -> (S + 1, B, ...)."""
    return grid_states(partial(velocity, module, params, labels=labels, null=null, cond=cond, w=w), x0, grid, step)


@partial(jax.jit, static_argnames="module")
def dopri5_path(module, params, x0, times, atol, rtol, labels=None, null=None, cond=None, w=0.0):
    """(x at ``times`` (F, B, ...), field evaluations) by dopri5 at atol/rtol."""
    return dopri5_states(partial(velocity, module, params, labels=labels, null=null, cond=cond, w=w), x0, times,
                         atol, rtol)


def generate(twin, model, n: int, generator, y=None, frames: int = 0, noise=None, step=None) -> Trajectory:
    """n samples in the model's space: x0 ~ N(0, I) from ``generator`` (or the given ``noise`` (n, *shape)), then the
    ODE of v_theta(., ., y) by ``model.method``, as ``practice_torch.flow_matching.model.generate`` (and its
    ``sampling.integrate``) solves it: fixed-step methods on the grid of ``ode_steps`` steps, the states at
    min(max(frames, 2), steps + 1) of its points; dopri5 at max(frames, 2) even times. y: (n,) labels or (n, P)
    galaxy parameters (NumPy); ``step``: the fixed-step rule (negative controls replace it)."""
    import torch

    net = twin.net
    x0 = (torch.randn((n, *net.shape), generator=generator) if noise is None else noise).numpy()
    images = len(net.shape) == 3
    to_twin, from_twin = (channels_last, channels_first) if images else (np.asarray, np.array)
    given = {}
    if net.cond_dim:
        given["cond"] = jnp.asarray(y, jnp.float32)
    elif net.num_classes and y is not None:
        given["labels"] = jnp.asarray(y, jnp.int32)
        if model.guidance_scale:
            given |= {"null": jnp.full((n,), net.num_classes, jnp.int32), "w": model.guidance_scale}
    params = twin.variables["params"]
    if model.method in FIXED:
        steps = model.ode_steps
        grid = torch.linspace(0, 1, steps + 1)  # torchdiffeq's grid; the output keeps only ``times``
        picks = torch.linspace(0, steps, min(max(frames, 2), steps + 1)).round().long()
        states = fixed_path(twin.module, params, to_twin(x0), grid.numpy(), **given, step=step or STEPS[model.method])
        xs = np.asarray(states)[picks.numpy()]
        return Trajectory(from_twin(xs), grid[picks].numpy(), steps * FIXED[model.method])
    times = torch.linspace(0, 1, max(frames, 2)).numpy()
    xs, nfe = dopri5_path(twin.module, params, to_twin(x0), times, model.atol, model.rtol, **given)
    return Trajectory(from_twin(xs), times, int(nfe))


# 2. The artefacts ----------------------------------------------------------------------------------------------------
def sample(twin, model, n: int, generator, examples=None) -> list:
    """Images: n samples (class-conditional: one row per class; galaxies: at the held-out ``examples``' parameters or
    parameters drawn like the data's), the ODE trajectories of 8 of them, and on galaxies the parameter sweep. 2-D:
    samples beside the held-out points, trajectories, the learned field and the density."""
    import torch

    from practice_torch.engine.interface import Artefact
    from practice_torch.flow_matching.figures import vector_figures
    from practice_torch.flow_matching.model import galaxy_conditions

    net, y, per_row = twin.net, None, math.ceil(math.sqrt(n))
    if net.num_classes:
        per_row = math.ceil(n / net.num_classes)
        y = np.repeat(np.arange(net.num_classes), per_row)
    elif net.cond_dim:
        y = (examples[1][:n].float() if examples is not None and len(examples[1]) >= n
             else galaxy_conditions(n, generator)).numpy()
    vectors = len(net.shape) == 1  # PyTorch's draws n there, one row per class on images
    trajectory = generate(twin, model, n if y is None or vectors else len(y), generator, y,
                          frames=max(model.frames, 2))
    if vectors:  # the density by the JAX field, not by the figures' PyTorch likelihood
        figures = vector_figures(FieldView(twin), torch_view(trajectory), None if examples is None else examples[0],
                                 density_grid=0)
        if not model.density_grid or net.shape[0] != 2:
            return figures
        return figures + [density_artefact(twin, model, torch.from_numpy(trajectory.x[-1]), examples)]
    x = torch.from_numpy(trajectory.x)
    chain = x[:, :8].transpose(0, 1).reshape(-1, *net.shape)  # 8 rows of frames
    artefacts = [Artefact("samples", "images", net.from_model(x[-1]).clamp(0, 1), nrow=per_row),
                 Artefact("trajectories", "images", net.from_model(chain).clamp(0, 1), nrow=len(trajectory.times))]
    if net.cond_dim:
        artefacts += galaxy_sweep(twin, model, generator)
    return artefacts


def torch_view(trajectory: Trajectory):
    """The trajectory as PyTorch's sampler returns it (``flow_matching.sampling.Trajectory``), for the figures."""
    import torch

    from practice_torch.flow_matching.sampling import Trajectory as TorchTrajectory

    return TorchTrajectory(torch.from_numpy(trajectory.x), torch.from_numpy(trajectory.times), trajectory.nfe)


class FieldView:
    """The JAX field as ``practice_torch.flow_matching.figures.field_figure`` calls a ``FlowModel``: ``view(x, t)``
    on CPU tensors x (G, 2), t () -> v (G, 2)."""

    def __init__(self, twin):
        self.twin = twin

    def parameters(self):
        import torch

        yield torch.zeros(())  # where the figure puts its points: the CPU

    def __call__(self, x, t):
        import torch

        v = velocity(self.twin.module, self.twin.variables["params"], float(t), jnp.asarray(x.numpy()))
        return torch.from_numpy(np.array(v))


@partial(jax.jit, static_argnames="module")
def density_log_prob(module, params, points):
    """log p_1 of ``points`` (G, D) by the instantaneous change of variables through the field (the exact trace, 20
    steps of the 3/8 rule from t = 1 down to 0, as the PyTorch figure's ``cnf.log_likelihood``) -> (G,)."""
    from theory_jax.cnf import log_likelihood

    return log_likelihood(partial(velocity, module, params), points, method="rk4", steps=20)


def density_artefact(twin, model, samples, examples):
    """'density': exp log p_1 on a ``model.density_grid`` lattice over the held-out points (or the samples (N, 2)),
    beside them and the samples (``plots.density_figure_2d``)."""
    import torch

    from practice_torch.plots import density_figure_2d

    def log_prob(points):
        return torch.from_numpy(np.array(density_log_prob(twin.module, twin.variables["params"], points.numpy())))

    box = examples[0] if examples is not None else samples
    return density_figure_2d("density", log_prob, box, samples, grid=model.density_grid,
                             title="log p_1 by the instantaneous change of variables")


def galaxy_sweep(twin, model, generator) -> list:
    """The galaxies helper's figure of samples along a sweep of each parameter (skipped, with a message, if absent)."""
    import torch

    try:
        from practice_torch.evaluation.galaxies import sweep_figure
    except ImportError as exc:
        print(f"galaxy sweep figure skipped: practice_torch.evaluation.galaxies is not available ({exc})")
        return []

    def conditioned(y, noise=None):
        return torch.from_numpy(generate(twin, model, len(y), generator, y.numpy(), noise=noise).x[-1])

    return [sweep_figure(conditioned, generator=generator)]
