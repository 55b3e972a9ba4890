"""GAN inversion: finding the latent code of an image, by optimisation, by a trained encoder, and by both.

Lectures: GAN inversion (Zhu et al. 2016, "Generative visual manipulation on the natural image manifold", eq. 1-2;
Creswell & Bharath 2018, "Inverting the generator of a generative adversarial network"; Bau et al. 2019; Xia et
al. 2022's survey for the taxonomy: optimisation-based, learning-based, hybrid).

Inversion as optimisation: for an image x and a trained generator G,

    z* = argmin_z L(z),   L(z) = ||G(z) - x||^2 / D + lambda ||z||^2                   (Zhu et al. eq. 1)

(D the number of values of x; lambda keeps z where the prior has mass). Learning-based inversion trains an
encoder E on the generator's own samples by latent regression, min_E E_z ||E(G(z)) - z||^2 (Zhu et al. eq. 2);
the hybrid starts the optimisation at E(x). For a linear generator everything is closed form: the optimiser is a
ridge regression, gradient descent contracts at the rate the condition number sets, and the best latent
regression is the posterior mean.
The encoder the project trains against a frozen generator (``Encoder``, the VAE's conv trunk and two Dense layers)
has its flax twin here.
Twin: ``practice_torch/gan_inversion`` (same names, same arguments); cases: ``shared_specs/gan_inversion.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from theory_jax.vae import downsample, downsampling_convs, flatten_image


# 1. The pure functions (twins in practice_torch.gan_inversion) --------------------------------------------------
def mlp_generator(z, w1, b1, w2, b2):
    """A small generator G(z) = W2 tanh(W1 z + b1) + b2 (PyTorch layout: W1: (H, K), W2: (D, H)).
    z: (B, K) -> (B, D)."""
    return jnp.tanh(z @ w1.T + b1) @ w2.T + b2


def inversion_loss(z, x, w1, b1, w2, b2, prior_weight):
    """L(z) = mean_b ||G(z_b) - x_b||^2 / D + lambda mean_b ||z_b||^2 (Zhu et al. eq. 1), G = ``mlp_generator``.
    z: (B, K), x: (B, D), prior_weight: () -> ()."""
    residual = mlp_generator(z, w1, b1, w2, b2) - x
    return jnp.mean(jnp.sum(residual**2, -1)) / x.shape[-1] + prior_weight * jnp.mean(jnp.sum(z**2, -1))


def inversion_step(z, x, w1, b1, w2, b2, prior_weight, lr):
    """One gradient-descent step on the batch's ``inversion_loss`` scaled by the batch size, so that each code
    moves by its own gradient: z - lr B dL/dz. z: (B, K), x: (B, D), lr: () -> (B, K)."""
    grad = jax.grad(inversion_loss)(z, x, w1, b1, w2, b2, prior_weight)
    return z - lr * z.shape[0] * grad


def latent_regression_loss(z, z_recovered):
    """The encoder's objective mean_b ||E(G(z_b)) - z_b||^2 (Zhu et al. eq. 2), given z and E(G(z)).
    z, z_recovered: (B, K) -> ()."""
    return jnp.mean(jnp.sum((z_recovered - z) ** 2, -1))


class Encoder(nn.Module):
    """E(x), the learning-based inverter trained by ``latent_regression_loss``: the conv encoders' trunk
    (``downsampling_convs``: strided 3x3 convs with explicit padding 1, GroupNorm, SiLU), flattened in NCHW order,
    then Dense ``fc`` to ``features`` values, SiLU, Dense ``out`` to d. x: (B, H, W, C) -> (B, d)."""

    image_shape: Sequence[int]
    latent_dim: int
    channels: Sequence[int] = (32, 64)
    features: int = 256
    groups: int = 8

    def setup(self):
        self.convs, self.norms = downsampling_convs(self.channels, self.groups)
        self.fc = nn.Dense(self.features)
        self.out = nn.Dense(self.latent_dim)

    def __call__(self, x):
        h = flatten_image(downsample(self.convs, self.norms, x))
        return self.out(nn.silu(self.fc(h)))
