"""DDPM trained in JAX: ``jax_twin``, what ``practice_jax/loop.py`` trains (``python -m practice_jax train ddpm``)."""

from __future__ import annotations

from shared_specs.twins.nets import flax_twin


def jax_twin(net, cfg):
    """DDPM trained in JAX (``python -m practice_jax train ddpm``, ``practice_jax/loop.py``): the flax twin of the
    denoiser (the U-Net on images, the MLP on vectors; ``shared_specs.twins.nets.flax_twin``) under the name
    ``denoiser``, as in the PyTorch ``Diffusion``, and ``training.loss`` as a pure function: L_simple (Ho et al.
    eq. 14) at the drawn t and eps, the labels replaced by the null token where ``drop`` says. ValueError (one line)
    for dropout, whose masks the engine's noise does not carry."""
    import jax.numpy as jnp
    from flax import linen as nn

    import theory_jax.ddpm as jd
    import theory_jax.diffusion as jdiff
    from practice_jax.loop import JaxTwin

    if getattr(cfg.model, "dropout", 0.0):
        raise ValueError(f"model.dropout={cfg.model.dropout}: the JAX trainer draws no dropout masks (set it to 0)")
    twin_denoiser = flax_twin(net.denoiser)[0]
    alpha_bars = jnp.asarray(net.alpha_bars.cpu().numpy())  # the schedule's alpha_bar_t, t = 0..T-1
    k = net.num_classes

    class Denoising(nn.Module):
        """eps_theta(x_t, t[, y]) with the twin named as the PyTorch ``Diffusion``'s ``denoiser``."""

        denoiser: nn.Module

        def __call__(self, x_t, t, y=None):
            return self.denoiser(x_t, t, y) if k else self.denoiser(x_t, t)

    twin = Denoising(twin_denoiser)

    def labels(batch, noise):
        return jdiff.null_labels(batch[1], noise["drop"], k) if k else None

    def loss(params, batch, noise, step):
        x0 = 2 * batch[0] - 1 if net.images else batch[0]  # the model's scale (``Diffusion.to_model``)
        t = noise["t"]
        a_t = alpha_bars[t].astype(x0.dtype)  # torch's per_example casts it to x's dtype
        x_t = jdiff.q_sample(x0, a_t, noise["eps"])
        eps_pred = twin.apply({"params": params}, x_t, t, labels(batch, noise))
        return jnp.mean(jd.eps_loss(noise["eps"], eps_pred)), {}

    return JaxTwin(twin, loss, lambda batch, noise: (batch[0], noise["t"], labels(batch, noise)))
