"""The VAE trained in JAX (``python -m practice_jax train vae``, ``practice_jax/loop.py``): its flax twin, and the
training loss of ``training.loss`` as a pure function of (params, batch, noise, step), with x (B, H, W, C) channels
last, y (B,) and eps (B, d). Each function takes the ``loop.Setup`` it trains first; ``jax_twin`` binds it once."""

from __future__ import annotations

from functools import partial

import jax.numpy as jnp

import theory_jax.vae as jv
from practice_jax.loop import JaxTrainError, JaxTwin, Setup


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
        return JaxTwin(twin, partial(loss, setup), partial(init_args, setup))
    twin = jv.VAE(image_shape=net.image_shape, latent_dim=net.latent_dim, architecture=m.architecture,
                  likelihood=m.likelihood, hidden=tuple(m.hidden), channels=tuple(m.channels),
                  num_classes=net.num_classes)
    setup = Setup(twin, m, bool(net.num_classes))
    return JaxTwin(twin, partial(loss, setup), partial(init_args, setup))
