"""GAN inversion's functions: both backends agree, slips are caught, and the torch step inverts a generator."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch

import practice_torch.gan_inversion as GI
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("gan_inversion")}


def test_a_step_up_the_gradient_is_caught(both):
    import theory_jax.gan_inversion as T

    def ascent(fn):
        def step(z, x, w1, b1, w2, b2, prior_weight, lr):
            return 2 * z - T.inversion_step(z, x, w1, b1, w2, b2, prior_weight, lr)  # z + lr B grad
        return step

    caught(CASES["gan_inversion/inversion_step"], Perturbation("ascent", fn=ascent))


def test_a_loss_summed_instead_of_averaged_over_values_is_caught(both):
    import theory_jax.gan_inversion as T

    def summed(fn):
        def loss(z, x, w1, b1, w2, b2, prior_weight):
            residual = T.mlp_generator(z, w1, b1, w2, b2) - x
            return jnp.mean(jnp.sum(residual**2, -1)) + prior_weight * jnp.mean(jnp.sum(z**2, -1))
        return loss

    caught(CASES["gan_inversion/inversion_loss"], Perturbation("no 1/D", fn=summed))


def test_descent_in_torch_recovers_a_code_of_the_generator():
    rng = np.random.default_rng(3)
    params = [torch.tensor(a) for a in (rng.standard_normal((6, 2)) * 0.8, rng.standard_normal(6) * 0.2,
                                        rng.standard_normal((5, 6)) / 2, rng.standard_normal(5) * 0.2)]
    target = torch.tensor(rng.standard_normal((1, 2)) * 0.5)
    x = GI.mlp_generator(target, *params)
    z = target + 0.2  # a start near the code, as an encoder would give (from far away L has local minima)
    start = GI.inversion_loss(z, x, *params, 0.0)
    with torch.no_grad():  # the step computes its own gradient, also without autograd recording
        for _ in range(2000):
            z = GI.inversion_step(z, x, *params, 0.0, 0.1)
    assert GI.inversion_loss(z, x, *params, 0.0) < 1e-8 * start
    assert torch.allclose(z, target, atol=1e-4)
