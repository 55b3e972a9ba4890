"""The VAE trained in JAX: ``jax_twin``, what ``practice_jax/loop.py`` trains (``python -m practice_jax train vae``)."""

from __future__ import annotations


def jax_twin(net, cfg):
    """The VAE trained in JAX (``python -m practice_jax train vae``, ``practice_jax/loop.py``): its flax twin, and
    the training loss of ``training.loss`` as a pure function (params, batch, noise, step) -> (loss, terms), with
    x (B, H, W, C) channels last, y (B,) and eps (B, d)."""
    import jax.numpy as jnp

    import theory_jax.vae as jv
    from practice_jax.loop import JaxTwin

    m = cfg.model
    twin = jv.VAE(image_shape=net.image_shape, latent_dim=net.latent_dim, architecture=m.architecture,
                  likelihood=m.likelihood, hidden=tuple(m.hidden), channels=tuple(m.channels),
                  num_classes=net.num_classes)

    def labels(batch):
        return batch[1] if net.num_classes else None

    def loss(params, batch, noise, step):
        if m.tc_beta == 1:
            recon, kl = twin.apply({"params": params}, batch[0], noise["eps"], labels(batch), method=jv.VAE.terms)
            return jnp.mean(m.beta * kl - recon), {"recon_nll": -jnp.mean(recon), "kl": jnp.mean(kl)}
        recon, kl, mi, tc, dim_kl = twin.apply({"params": params}, batch[0], noise["eps"], labels(batch),
                                               m.dataset_size, method=jv.VAE.tc_terms)
        return (jnp.mean(m.beta * kl + (m.tc_beta - 1) * tc - recon),
                {"recon_nll": -jnp.mean(recon), "kl": jnp.mean(kl), "mi": jnp.mean(mi), "tc": jnp.mean(tc),
                 "dim_kl": jnp.mean(dim_kl)})

    return JaxTwin(twin, loss, lambda batch, noise: (batch[0], noise["eps"], labels(batch)))
