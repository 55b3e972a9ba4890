"""The VAE trained in JAX (``python -m practice_jax train vae``): its flax twin, the training loss of
``training.loss`` as a pure function of (params, batch, noise, step), with x (B, H, W, C) channels last, y (B,) and
eps (B, d), and its step. Each function takes the ``twins.Setup`` it trains first; ``jax_twin`` binds it once."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

import theory_jax.vae as jv
from practice_jax import state
from practice_jax.twins import JaxTrainError, JaxTwin, Setup


def loss(setup: Setup, params, batch, noise, step):
    """-ELBO with beta (Higgins et al.), or the beta-TCVAE's decomposition when ``model.tc_beta`` != 1 (Chen et al.
    2018): (loss, {term: value})."""
    m, y = setup.model, setup.labels(batch)
    if m.levels == 2:  # the hierarchical VAE: each level's KL logged apart
        recon, kl_top, kl_lower = setup.twin.apply({"params": params}, batch[0], noise["eps"],
                                                   method=jv.HierarchicalVAE.level_terms)
        return (jnp.mean(m.beta * (kl_top + kl_lower) - recon),
                {"recon_nll": -jnp.mean(recon), "kl": jnp.mean(kl_top + kl_lower), "kl_top": jnp.mean(kl_top),
                 "kl_lower": jnp.mean(kl_lower)})
    if m.tc_beta == 1:
        recon, kl = setup.twin.apply({"params": params}, batch[0], noise["eps"], y, method=jv.VAE.terms)
        return jnp.mean(m.beta * kl - recon), {"recon_nll": -jnp.mean(recon), "kl": jnp.mean(kl)}
    recon, kl, mi, tc, dim_kl = setup.twin.apply({"params": params}, batch[0], noise["eps"], y, m.dataset_size,
                                                 method=jv.VAE.tc_terms)
    return (jnp.mean(m.beta * kl + (m.tc_beta - 1) * tc - recon),
            {"recon_nll": -jnp.mean(recon), "kl": jnp.mean(kl), "mi": jnp.mean(mi), "tc": jnp.mean(tc),
             "dim_kl": jnp.mean(dim_kl)})


def train_step(setup: Setup, train_state: state.TrainState, batch, noise):
    """One AdamW step on the VAE's loss (the engine's default step) -> (the new state, the logged values)."""
    return state.train_step(partial(loss, setup), train_state, batch, noise)


def draw_noise(setup: Setup, key, n: int) -> dict:
    """eps ~ N(0, I), (n, d): the one reparameterised sample per example (``training.draw_noise``, with
    ``jax.random``)."""
    d = setup.model.top_dim + setup.model.latent_dim if setup.model.levels == 2 else setup.model.latent_dim
    return {"eps": jax.random.normal(key, (n, d))}


def init_args(setup: Setup, batch, noise):
    return batch[0], noise["eps"], setup.labels(batch)


def jax_twin(net, cfg):
    """The VAE's ``JaxTwin``: the flax ``VAE`` of ``net``'s architecture and its loss, bound to its ``Setup``."""
    m = cfg.model
    if m.factor_gamma or m.vaegan_gamma:
        what = (f"FactorVAE (model.factor_gamma={m.factor_gamma})", "its TC discriminator") if m.factor_gamma else (
            f"VAE-GAN (model.vaegan_gamma={m.vaegan_gamma})", "its discriminator")
        raise JaxTrainError(f"{what[0]} trains in PyTorch only: {what[1]} has no JAX trainer; drop the key, or train "
                            "with python -m practice_torch")
    if m.levels == 2:
        twin = jv.HierarchicalVAE(image_shape=net.image_shape, latent_dim=m.latent_dim, top_dim=m.top_dim,
                                  likelihood=m.likelihood, channels=tuple(m.channels), hidden=m.hidden[0])
        setup = Setup(twin, m)
        return bound(setup)
    twin = jv.VAE(image_shape=net.image_shape, latent_dim=net.latent_dim, architecture=m.architecture,
                  likelihood=m.likelihood, hidden=tuple(m.hidden), channels=tuple(m.channels),
                  num_classes=net.num_classes)
    return bound(Setup(twin, m, bool(net.num_classes)))


def bound(setup: Setup) -> JaxTwin:
    """The VAE's ``JaxTwin``: its functions bound to ``setup``."""
    return JaxTwin(setup.twin, partial(loss, setup), partial(train_step, setup), partial(init_args, setup),
                   partial(draw_noise, setup))
