"""BiGAN / ALI: a GAN over (x, z) pairs whose optimum makes the encoder and the generator invert each other.

Lectures: BiGAN / ALI (Donahue, Kraehenbuehl & Darrell 2017, "Adversarial feature learning", eq. 2-3, Proposition 1
and Theorems 1-2; Dumoulin et al. 2017, "Adversarially learned inference").

An encoder E: x -> z and a generator G: z -> x define two joint laws of pairs,

    p_E(x, z) = p_X(x) p_E(z | x)          (real data, encoded)
    p_G(x, z) = p_Z(z) p_G(x | z)          (prior draws, generated)

and a discriminator D(x, z) tells them apart: V(D, E, G) = E_{p_E}[log D(x, z)] + E_{p_G}[log(1 - D(x, z))].
As for a GAN, D* = p_E / (p_E + p_G) and V(D*, E, G) = 2 JS(p_E || p_G) - log 4; the global optimum is
p_E = p_G, and for deterministic E and G that forces E = G^-1: G(E(x)) = x for p_X-almost every x and
E(G(z)) = z for p_Z-almost every z (Theorem 2). The encoder then maps data to the latent space the generator uses,
which is why its features can be judged by a linear probe.
Twin: ``practice_torch/bigan`` (same names, same arguments); cases: ``shared_specs/bigan.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from theory_jax.gan import discriminator_loss
from theory_jax.subgradients import leaky_relu
from theory_jax.vae import downsample, downsampling_convs, flatten_image


# 1. The pure functions (twins in practice_torch.bigan) ------------------------------------------------------------
def encoder_joint(p_x, enc):
    """p_E(x, z) = p_X(x) p_E(z | x) on finite sets. p_x: (X,), enc: (X, Z) rows sum to 1 -> (X, Z)."""
    return p_x[:, None] * enc


def generator_joint(p_z, gen):
    """p_G(x, z) = p_Z(z) p_G(x | z) on finite sets, laid out like ``encoder_joint``. p_z: (Z,), gen: (Z, X) rows
    sum to 1 -> (X, Z)."""
    return (p_z[:, None] * gen).T


def pair_logits(x, z, w_x, w_z, w_out, b):
    """A joint discriminator D(x, z) = sigmoid(w_out . tanh(W_x x + W_z z + b)): x and z enter one hidden layer
    together (Donahue et al., sec. 3.3). x: (B, Dx), z: (B, Dz), w_x: (H, Dx), w_z: (H, Dz), w_out: (1, H), b: (H,)
    -> (B,)."""
    return (jnp.tanh(x @ w_x.T + z @ w_z.T + b) @ w_out.T)[:, 0]


def bigan_losses(x, z_encoded, x_generated, z, w_x, w_z, w_out, b):
    """(the discriminator's loss, the encoder's and generator's non-saturating loss) on a batch: real pairs
    (x, E(x)) labelled 1, generated pairs (G(z), z) labelled 0; E and G train on the flipped labels.
    x, x_generated: (B, Dx), z_encoded, z: (B, Dz) -> ((), ())."""
    real = pair_logits(x, z_encoded, w_x, w_z, w_out, b)
    fake = pair_logits(x_generated, z, w_x, w_z, w_out, b)
    return discriminator_loss(real, fake), discriminator_loss(fake, real)


# 2. The joint discriminator as a network (twin of practice_torch.bigan.networks) ----------------------------------
class FeatureTrunk(nn.Module):
    """x -> (B, width) features. Images (B, H, W, C): the VAE's strided conv trunk (``downsampling_convs``, GroupNorm,
    SiLU), flattened in NCHW order, Dense to ``width``, LeakyReLU(0.2). Vectors (B, D): a LeakyReLU(0.2) MLP of
    widths ``hidden``. ``shape`` is one example in torch's layout, (C, H, W) or (D,)."""

    shape: Sequence[int]
    width: int
    channels: Sequence[int] = (32, 64)
    hidden: Sequence[int] = (128, 128)
    groups: int = 8

    def setup(self):
        if len(self.shape) == 3:
            self.convs, self.norms = downsampling_convs(self.channels, self.groups)
            self.layers = [nn.Dense(self.width)]
        else:
            self.layers = [nn.Dense(w) for w in self.hidden]

    def __call__(self, x):
        h = flatten_image(downsample(self.convs, self.norms, x)) if len(self.shape) == 3 else x.reshape(len(x), -1)
        for layer in self.layers:
            h = leaky_relu(layer(h), 0.2)
        return h


class JointDiscriminator(nn.Module):
    """D(x, z)'s logit = ``pair_logits`` of an x-path (``FeatureTrunk`` of x) and a z-path (a two-layer LeakyReLU MLP
    of z, the x-path's width): the paths meet in ``joint`` tanh units (Donahue et al., sec. 3.3).
    x: (B, H, W, C) or (B, D), z: (B, latent_dim) -> (B,)."""

    shape: Sequence[int]
    latent_dim: int
    width: int
    joint: int
    channels: Sequence[int] = (32, 64)
    hidden: Sequence[int] = (128, 128)

    def setup(self):
        x_width = self.width if len(self.shape) == 3 else self.hidden[-1]
        self.x_path = FeatureTrunk(self.shape, self.width, self.channels, self.hidden)
        self.z_path = FeatureTrunk((self.latent_dim,), self.width, hidden=(x_width, x_width))
        init = nn.initializers.lecun_normal()
        self.w_x = self.param("w_x", init, (self.joint, x_width))
        self.w_z = self.param("w_z", init, (self.joint, x_width))
        self.w_out = self.param("w_out", init, (1, self.joint))
        self.b = self.param("b", nn.initializers.zeros, (self.joint,))

    def __call__(self, x, z):
        return pair_logits(self.x_path(x), self.z_path(z), self.w_x, self.w_z, self.w_out, self.b)
