"""DDPM trained in JAX (``python -m practice_jax train ddpm``): the flax twin of the
denoiser (the U-Net on images, the MLP on vectors; ``shared_specs.twins.nets.flax_twin``) under the name
``denoiser``, as in the PyTorch ``Diffusion``, and ``training.loss`` as a pure function: L_simple (Ho et al. eq. 14)
at the drawn t and eps, the labels replaced by the null token where ``drop`` says. Each function takes the ``Setup``
it trains first; ``jax_twin`` binds it once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

import theory_jax.ddpm as jd
import theory_jax.diffusion as jdiff
from practice_jax import state
from practice_jax.twins import JaxTwin
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
    [-1, 1]), the classes (0: unconditional), one example's shape (H, W, C) or (D,) and the share of labels dropped."""

    twin: Any
    alpha_bars: Any
    images: bool
    num_classes: int
    shape: tuple[int, ...] = ()
    label_dropout: float = 0.0


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


def train_step(setup: Setup, train_state: state.TrainState, batch, noise):
    """One AdamW step on L_simple (the engine's default step) -> (the new state, the logged values)."""
    return state.train_step(partial(loss, setup), train_state, batch, noise)


def draw_noise(setup: Setup, key, n: int) -> dict:
    """t ~ U{0..T-1} (n,), eps ~ N(0, I) (n, *shape) and, conditional, drop (n,): the labels that become the null
    token (``training.draw_noise``, with ``jax.random``)."""
    k_t, k_eps, k_drop = jax.random.split(key, 3)
    noise = {"t": jax.random.randint(k_t, (n,), 0, len(setup.alpha_bars)),
             "eps": jax.random.normal(k_eps, (n, *setup.shape))}
    if setup.num_classes:
        noise["drop"] = jax.random.uniform(k_drop, (n,)) < setup.label_dropout
    return noise


def init_args(setup: Setup, batch, noise):
    return batch[0], noise["t"], labels(setup, batch, noise)


def jax_twin(net, cfg):
    """DDPM's ``JaxTwin``; ValueError (one line) for dropout, whose masks the engine's noise does not carry, and for
    a cascade, whose two stages the JAX twin does not have."""
    if getattr(cfg.model, "dropout", 0.0):
        raise ValueError(f"model.dropout={cfg.model.dropout}: the JAX trainer draws no dropout masks (set it to 0)")
    if getattr(cfg.model, "cascade", False):
        raise ValueError("model.cascade=true: the JAX trainer has one DDPM; train the cascade with practice_torch")
    twin = Denoising(flax_twin(net.denoiser)[0], bool(net.num_classes))
    shape = tuple(net.shape[1:]) + tuple(net.shape[:1]) if len(net.shape) == 3 else tuple(net.shape)  # channels last
    setup = Setup(twin, jnp.asarray(net.alpha_bars.cpu().numpy()), net.images, net.num_classes, shape,
                  getattr(cfg.model, "label_dropout", 0.0))
    return JaxTwin(twin, partial(loss, setup), partial(train_step, setup), partial(init_args, setup),
                   partial(draw_noise, setup))
