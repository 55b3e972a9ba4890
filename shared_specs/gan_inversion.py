"""Spec cases for ``gan_inversion``: the small generator, the inversion objective, one gradient step on it and the
latent-regression objective, in float64; and the trained encoder ``Encoder`` as a module case (float32, weights
through the converter, gradients for the images and every parameter).

Each function runs in ``theory_jax.gan_inversion`` and ``practice_torch.gan_inversion`` on the same NumPy inputs,
gradients included (for ``inversion_step``, a gradient of a gradient step). Third witnesses: NumPy, and for the step
central finite differences of the objective.
"""

from __future__ import annotations

import numpy as np

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

B, K, H, D = 4, 3, 6, 5
ENCODER = {"image_shape": (1, 8, 8), "latent_dim": K, "channels": (4, 8), "features": 6, "groups": 2}


def _generator(rng):
    return {"w1": gaussian(rng, H, K, scale=0.8), "b1": gaussian(rng, H, scale=0.2),
            "w2": gaussian(rng, D, H, scale=0.5), "b2": gaussian(rng, D, scale=0.2)}


def ref_mlp_generator(z, w1, b1, w2, b2):
    return np.tanh(z @ w1.T + b1) @ w2.T + b2


def ref_inversion_loss(z, x, w1, b1, w2, b2, prior_weight):
    residual = ref_mlp_generator(z, w1, b1, w2, b2) - x
    return np.mean(np.sum(residual**2, -1)) / D + prior_weight * np.mean(np.sum(z**2, -1))


def ref_inversion_step(z, x, w1, b1, w2, b2, prior_weight, lr):
    """z - lr B dL/dz with dL/dz by central finite differences."""
    h = np.finfo(np.float64).eps ** (1 / 3)
    grad = np.zeros_like(z)
    for idx in np.ndindex(*z.shape):
        up, down = z.copy(), z.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (ref_inversion_loss(up, x, w1, b1, w2, b2, prior_weight)
                     - ref_inversion_loss(down, x, w1, b1, w2, b2, prior_weight)) / (2 * h)
    return z - lr * z.shape[0] * grad


def _problem(rng):
    return {"z": gaussian(rng, B, K), "x": gaussian(rng, B, D), **_generator(rng),
            "prior_weight": np.asarray(0.05)}


CASES = (
    FunctionCase("gan_inversion/mlp_generator", "mlp_generator", lambda r: {"z": gaussian(r, B, K), **_generator(r)},
                 grad_wrt=("z", "w1", "b1", "w2", "b2"), reference=ref_mlp_generator),
    FunctionCase("gan_inversion/inversion_loss", "inversion_loss", _problem,
                 grad_wrt=("z", "x", "w1", "b1", "w2", "b2", "prior_weight"), reference=ref_inversion_loss),
    FunctionCase("gan_inversion/inversion_step", "inversion_step", lambda r: {**_problem(r), "lr": np.asarray(0.3)},
                 grad_wrt=("z", "x", "w1", "w2", "prior_weight", "lr"), reference=ref_inversion_step,
                 level="network"),  # the finite-difference witness is good to ~1e-10
    FunctionCase("gan_inversion/latent_regression_loss", "latent_regression_loss",
                 lambda r: {"z": gaussian(r, B, K), "z_recovered": gaussian(r, B, K)}, grad_wrt=("z", "z_recovered"),
                 reference=lambda z, z_recovered: np.mean(np.sum((z_recovered - z) ** 2, -1))),
    ModuleCase("gan_inversion/encoder", "Encoder", ENCODER,
               lambda r: {"x": uniform(r, 3, 1, 8, 8, dtype="float32")}, grad_wrt=("x",), image_inputs=("x",)),
)
