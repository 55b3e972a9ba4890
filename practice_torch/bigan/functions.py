"""BiGAN's joint laws, joint discriminator and losses (Donahue et al. 2017, eq. 2-3). Twins of
``theory_jax/bigan.py``, same names and arguments."""

from __future__ import annotations

import torch

from practice_torch.gan.functions import discriminator_loss


def encoder_joint(p_x, enc):
    """p_E(x, z) = p_X(x) p_E(z | x) on finite sets. p_x: (X,), enc: (X, Z) -> (X, Z)."""
    return p_x[:, None] * enc


def generator_joint(p_z, gen):
    """p_G(x, z) = p_Z(z) p_G(x | z), laid out like ``encoder_joint``. p_z: (Z,), gen: (Z, X) -> (X, Z)."""
    return (p_z[:, None] * gen).T


def pair_logits(x, z, w_x, w_z, w_out, b):
    """D(x, z)'s logit, w_out . tanh(W_x x + W_z z + b): x and z enter one hidden layer together.
    x: (B, Dx), z: (B, Dz), w_x: (H, Dx), w_z: (H, Dz), w_out: (1, H), b: (H,) -> (B,)."""
    return (torch.tanh(x @ w_x.T + z @ w_z.T + b) @ w_out.T)[:, 0]


def bigan_losses(x, z_encoded, x_generated, z, w_x, w_z, w_out, b):
    """(the discriminator's loss, the encoder's and generator's non-saturating loss): real pairs (x, E(x)) are
    labelled 1, generated pairs (G(z), z) 0; E and G train on the flipped labels. -> ((), ())."""
    real = pair_logits(x, z_encoded, w_x, w_z, w_out, b)
    fake = pair_logits(x_generated, z, w_x, w_z, w_out, b)
    return discriminator_loss(real, fake), discriminator_loss(fake, real)
