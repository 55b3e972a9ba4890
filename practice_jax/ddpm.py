"""DDPM trained in JAX (``python -m practice_jax train ddpm``, ``practice_jax/loop.py``): the flax twin of the
denoiser (the U-Net on images, the MLP on vectors; ``shared_specs.twins.nets.flax_twin``) under the name
``denoiser``, as in the PyTorch ``Diffusion``, and ``training.loss`` as a pure function: L_simple (Ho et al. eq. 14)
at the drawn t and eps, the labels replaced by the null token where ``drop`` says. Each function takes the ``Setup``
it trains first; ``jax_twin`` binds it once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

import theory_jax.ddpm as jd
import theory_jax.diffusion as jdiff
from practice_jax.loop import JaxTwin
from shared_specs.twins.nets import flax_twin


class Denoising(nn.Module):
    """eps_theta(x_t, t[, y]) with the twin named as the PyTorch ``Diffusion``'s ``denoiser``."""

    denoiser: nn.Module
    conditional: bool = False

    def __call__(self, x_t, t, y=None):
        return self.denoiser(x_t, t, y) if self.conditional else self.denoiser(x_t, t)


@dataclass(frozen=True)
class Setup:
    """The flax ``Denoising``, the schedule's alpha_bar_t (t = 0..T-1), whether the data are images (trained on
    [-1, 1]) and the classes (0: unconditional)."""

    twin: Any
    alpha_bars: Any
    images: bool
    num_classes: int


def labels(setup: Setup, batch, noise):
    return jdiff.null_labels(batch[1], noise["drop"], setup.num_classes) if setup.num_classes else None


def loss(setup: Setup, params, batch, noise, step):
    """L_simple at the drawn t and eps: (loss, {})."""
    x0 = 2 * batch[0] - 1 if setup.images else batch[0]  # the model's scale (``Diffusion.to_model``)
    t = noise["t"]
    a_t = setup.alpha_bars[t].astype(x0.dtype)  # torch's per_example casts it to x's dtype
    x_t = jdiff.q_sample(x0, a_t, noise["eps"])
    eps_pred = setup.twin.apply({"params": params}, x_t, t, labels(setup, batch, noise))
    return jnp.mean(jd.eps_loss(noise["eps"], eps_pred)), {}


def init_args(setup: Setup, batch, noise):
    return batch[0], noise["t"], labels(setup, batch, noise)


def jax_twin(net, cfg):
    """DDPM's ``JaxTwin``; ValueError (one line) for dropout, whose masks the engine's noise does not carry."""
    if getattr(cfg.model, "dropout", 0.0):
        raise ValueError(f"model.dropout={cfg.model.dropout}: the JAX trainer draws no dropout masks (set it to 0)")
    twin = Denoising(flax_twin(net.denoiser)[0], bool(net.num_classes))
    setup = Setup(twin, jnp.asarray(net.alpha_bars.cpu().numpy()), net.images, net.num_classes)
    return JaxTwin(twin, partial(loss, setup), partial(init_args, setup))
