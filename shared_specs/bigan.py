"""Spec cases for ``bigan``: the two joint laws over (x, z) pairs, the joint discriminator and BiGAN's two losses,
in float64; and the trained joint discriminator network (``JointDiscriminator``: a conv x-path on images, an MLP one
on vectors, the paths meeting in ``pair_logits``) as float32 module cases.

Each function runs in ``theory_jax.bigan`` and ``practice_torch.bigan`` on the same NumPy inputs, gradients
included (for ``bigan_losses``: in both batches of pairs and in the discriminator's weights). Third witnesses:
NumPy's outer products for the joints, ``scipy.special.log_expit`` for the losses.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

B, DX, DZ, H = 6, 4, 2, 5
IMAGE_D = {"shape": (1, 8, 8), "latent_dim": 3, "width": 8, "joint": 6, "channels": (4, 8)}
VECTOR_D = {"shape": (2,), "latent_dim": 2, "width": 8, "joint": 6, "hidden": (8, 8)}


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
    ModuleCase("bigan/joint_discriminator", "JointDiscriminator", IMAGE_D,
               lambda r: {"x": uniform(r, 3, 1, 8, 8, dtype="float32"), "z": gaussian(r, 3, 3, dtype="float32")},
               grad_wrt=("x", "z"), image_inputs=("x",)),
    ModuleCase("bigan/joint_discriminator/vectors", "JointDiscriminator", VECTOR_D,
               lambda r: {"x": gaussian(r, 4, 2, dtype="float32"), "z": gaussian(r, 4, 2, dtype="float32")},
               grad_wrt=("x", "z")),
)
