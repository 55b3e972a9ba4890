"""The WGAN's functions: both backends agree, the mistakes peers have shipped are caught, the double backward works."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

import practice_torch.wgan as W
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("wgan")}


def test_penalty_at_the_real_data_instead_of_interpolates_is_caught(both):
    import theory_jax.wgan as T

    def at_real(fn):
        def penalty(real, fake, alpha, w1, b1, w2, b2):
            grads = jax.grad(lambda x: jnp.sum(T.mlp_critic(x, w1, b1, w2, b2)))(real)
            return T.gradient_penalty(grads)
        return penalty

    caught(CASES["wgan/critic_gradient_penalty"], Perturbation("penalty at x_real", fn=at_real))


def test_the_two_sided_penalty_in_place_of_the_one_sided_is_caught(both):
    def two_sided(fn):
        return lambda grads: jnp.mean((jnp.linalg.norm(jnp.reshape(grads, (grads.shape[0], -1)), axis=-1) - 1) ** 2)

    caught(CASES["wgan/lipschitz_penalty"], Perturbation("two-sided penalty", fn=two_sided))


def test_one_alpha_per_pixel_is_caught(both):
    def per_pixel(fn):
        def f(real, fake, alpha):
            a = jnp.resize(alpha, real.shape)  # a different alpha for every value, not one per example
            return a * real + (1 - a) * fake
        return f

    caught(CASES["wgan/interpolates"], Perturbation("one alpha per pixel", fn=per_pixel))


def test_the_double_backward_moves_the_critic_toward_unit_gradients():
    """For f(x) = w . x the penalty is (||w|| - 1)^2 and its gradient 2 (||w|| - 1) w / ||w||, through the input
    gradients' graph; under no_grad the same penalty is computed without a graph."""
    w = torch.tensor([1.5, -2.0], dtype=torch.float64, requires_grad=True)
    x = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    penalty = W.gradient_penalty(W.input_gradients(lambda v: v @ w, x))
    assert torch.allclose(penalty, torch.tensor(2.25, dtype=torch.float64), rtol=1e-14, atol=0)
    penalty.backward()
    assert torch.allclose(w.grad, 2 * (2.5 - 1) * w.detach() / 2.5, rtol=1e-14, atol=0)
    with torch.no_grad():
        grads = W.input_gradients(lambda v: v @ w, x)
    assert not grads.requires_grad and torch.allclose(grads, w.detach().expand(7, 2))


def test_the_sorted_w1_is_the_optimal_coupling():
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(30), 2 * rng.standard_normal(30) + 1
    cost = np.abs(x[:, None] - y[None, :])
    rows, cols = linear_sum_assignment(cost)
    assert np.isclose(float(W.w1_sorted(torch.tensor(x), torch.tensor(y))), cost[rows, cols].mean(), rtol=1e-12)
    assert float(W.w1_sorted(torch.tensor(x), torch.tensor(y))) < np.abs(x - y).mean()  # any other coupling costs more


def test_jnp_abs_and_clip_slopes_at_the_kinks_are_caught(both):
    """At equal sorted pairs jnp.abs takes slope 1 where torch.abs takes 0, and on the clip bounds jnp.clip takes 1/2
    where torch.clamp takes 1: the tie cases catch the jax.numpy conventions."""
    assert "grad" in caught(CASES["wgan/w1_sorted/ties"], Perturbation(
        "jnp.abs", fn=lambda fn: lambda x, y: jnp.mean(jnp.abs(jnp.sort(x) - jnp.sort(y)))))
    assert "grad" in caught(CASES["wgan/clip_weights/on_the_bounds"], Perturbation(
        "jnp.clip", fn=lambda fn: lambda w, c: jnp.clip(w, -c, c)))
