"""Flow matching trained in JAX (``python -m practice_jax train flow_matching``): the flax
twin of the field (the MLP on 2-D data, the U-Net on images; ``shared_specs.twins.nets.flax_twin``) and
``training.loss`` as a pure function: L_CFM (Lipman et al. eq. 9) on the straight conditional path from the drawn
noise x0 to the data at the drawn t (eqs. 22-23), the field seeing 1000 t as the PyTorch ``FlowModel`` does, with
its labels (dropped ones the null token) or its vector of galaxy parameters. Each function takes the ``Setup`` it
trains first; ``jax_twin`` binds it once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
from flax import linen as nn

import theory_jax.diffusion as jdiff
import theory_jax.flow_matching as jfm
from practice_jax import state
from practice_jax.twins import JaxTrainError, JaxTwin
from shared_specs.twins.nets import flax_twin

TIME_SCALE = 1000.0  # practice_torch.flow_matching.model.TIME_SCALE: the field's embedding sees 1000 t


class Field(nn.Module):
    """v_theta(x_t, 1000 t[, labels | None, vector]) with the twin named as the PyTorch ``FlowModel``'s ``net``."""

    net: nn.Module

    def __call__(self, x_t, t, *extra):
        return self.net(x_t, t, *extra)


@dataclass(frozen=True)
class Setup:
    """The flax field, the run's ``model`` settings, whether the data are images in [0, 1] (modelled as 2x - 1), the
    classes (0: no labels) and the size of the conditioning vector (0: none)."""

    twin: Any
    model: Any
    unit_images: bool
    num_classes: int
    cond_dim: int
    shape: tuple[int, ...] = ()  # one example's: (H, W, C) or (D,)


def field_inputs(setup: Setup, batch, noise) -> tuple:
    """What the field reads beside x_t and 1000 t: (labels,) with the dropped ones the null token, (None, vector)
    for the galaxies' parameters, or ()."""
    if setup.cond_dim:
        return None, batch[1].astype(batch[0].dtype)
    if setup.num_classes:
        return (jdiff.null_labels(batch[1], noise["drop"], setup.num_classes),)
    return ()


def loss(setup: Setup, params, batch, noise, step):
    """L_CFM on the batch's images or points at the drawn t and x0: (loss, {})."""
    x1 = 2 * batch[0] - 1 if setup.unit_images else batch[0]  # FlowModel.to_model
    t = noise["t"].astype(x1.dtype)
    x_t, u = jfm.path_sample_and_target(x1, noise["x0"], t, setup.model.sigma_min)
    v = setup.twin.apply({"params": params}, x_t, t * TIME_SCALE, *field_inputs(setup, batch, noise))
    return jfm.cfm_loss(v, u), {}


def train_step(setup: Setup, train_state: state.TrainState, batch, noise):
    """One AdamW step on L_CFM (the engine's default step) -> (the new state, the logged values)."""
    return state.train_step(partial(loss, setup), train_state, batch, noise)


def draw_noise(setup: Setup, key, n: int) -> dict:
    """t ~ U[0, 1] (n,), x0 ~ N(0, I) (n, *shape) and, with labels, drop (n,): those that become the null token
    (``training.draw_noise``, with ``jax.random``)."""
    k_t, k_x0, k_drop = jax.random.split(key, 3)
    noise = {"t": jax.random.uniform(k_t, (n,)), "x0": jax.random.normal(k_x0, (n, *setup.shape))}
    if setup.num_classes:
        noise["drop"] = jax.random.uniform(k_drop, (n,)) < setup.model.label_dropout
    return noise


def init_args(setup: Setup, batch, noise):
    return (batch[0], noise["t"], *field_inputs(setup, batch, noise))


def jax_twin(net, cfg):
    """Flow matching's ``JaxTwin`` (JaxTrainError, one line, for OT coupling, whose assignment is solved on the host
    between the batch and the step, for dropout, whose masks the engine's noise does not carry, and for reflow and
    consistency distillation, which draw on a teacher's ODE)."""
    m = cfg.model
    if m.coupling != "independent":
        raise JaxTrainError(f"model.coupling={m.coupling}: the JAX trainer pairs noise and data independently "
                            "(set model.coupling=independent, or train OT-CFM with practice_torch)")
    if m.dropout:
        raise JaxTrainError(f"model.dropout={m.dropout}: the JAX trainer draws no dropout masks (set it to 0)")
    if m.reflow or m.consistency:
        what = "model.reflow=true" if m.reflow else "model.consistency=true"
        raise JaxTrainError(f"{what}: the JAX trainer fits the flow to data pairs; train a run that distils a "
                            "teacher's ODE with practice_torch")
    twin = Field(flax_twin(net.net)[0])
    shape = tuple(net.shape[1:]) + tuple(net.shape[:1]) if len(net.shape) == 3 else tuple(net.shape)  # channels last
    setup = Setup(twin, m, net.unit_images, net.num_classes, net.cond_dim, shape)
    return JaxTwin(twin, partial(loss, setup), partial(train_step, setup), partial(init_args, setup),
                   partial(draw_noise, setup))
