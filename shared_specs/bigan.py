"""Spec cases for ``bigan``: the two joint laws over (x, z) pairs, the joint discriminator and BiGAN's two losses,
in float64.

Each function runs in ``theory_jax.bigan`` and ``practice_torch.bigan`` on the same NumPy inputs, gradients
included (for ``bigan_losses``: in both batches of pairs and in the discriminator's weights). Third witnesses:
NumPy's outer products for the joints, ``scipy.special.log_expit`` for the losses.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from shared_specs.case import FunctionCase, gaussian

B, DX, DZ, H = 6, 4, 2, 5


def _discriminator(rng):
    return {"w_x": gaussian(rng, H, DX, scale=0.6), "w_z": gaussian(rng, H, DZ, scale=0.6),
            "w_out": gaussian(rng, 1, H), "b": gaussian(rng, H, scale=0.3)}


def ref_pair_logits(x, z, w_x, w_z, w_out, b):
    return np.tanh(x @ w_x.T + z @ w_z.T + b) @ w_out[0]


def ref_bigan_losses(x, z_encoded, x_generated, z, w_x, w_z, w_out, b):
    real = ref_pair_logits(x, z_encoded, w_x, w_z, w_out, b)
    fake = ref_pair_logits(x_generated, z, w_x, w_z, w_out, b)
    return (-np.mean(special.log_expit(real)) - np.mean(special.log_expit(-fake)),
            -np.mean(special.log_expit(fake)) - np.mean(special.log_expit(-real)))


CASES = (
    FunctionCase("bigan/encoder_joint", "encoder_joint",
                 lambda r: {"p_x": r.dirichlet(np.ones(4)), "enc": r.dirichlet(np.ones(3), size=4)},
                 grad_wrt=("p_x", "enc"), reference=lambda p_x, enc: np.einsum("x,xz->xz", p_x, enc)),
    FunctionCase("bigan/generator_joint", "generator_joint",
                 lambda r: {"p_z": r.dirichlet(np.ones(3)), "gen": r.dirichlet(np.ones(4), size=3)},
                 grad_wrt=("p_z", "gen"), reference=lambda p_z, gen: np.einsum("z,zx->xz", p_z, gen)),
    FunctionCase("bigan/pair_logits", "pair_logits",
                 lambda r: {"x": gaussian(r, B, DX), "z": gaussian(r, B, DZ), **_discriminator(r)},
                 grad_wrt=("x", "z", "w_x", "w_z", "w_out", "b"), reference=ref_pair_logits),
    FunctionCase("bigan/bigan_losses", "bigan_losses",
                 lambda r: {"x": gaussian(r, B, DX), "z_encoded": gaussian(r, B, DZ),
                            "x_generated": gaussian(r, B, DX), "z": gaussian(r, B, DZ), **_discriminator(r)},
                 grad_wrt=("x", "z_encoded", "x_generated", "z", "w_x", "w_z", "w_out", "b"),
                 reference=ref_bigan_losses),
)
