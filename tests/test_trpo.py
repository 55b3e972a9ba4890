"""TRPO's pieces: both backends agree, and a product without the second backward, an unconverged solve or a KL the
wrong way round is caught."""

from __future__ import annotations

import jax
import numpy as np
import torch

import practice_torch.trpo as TR
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("trpo")}


def test_a_fisher_product_without_the_second_backward_is_caught(both):
    import theory_jax.trpo as T

    def first_order(fn):  # grad KL . v: zero at theta_old, not F v
        return lambda old_logits, logits, state_weights, v: jax.grad(
            lambda t: T.mean_kl(old_logits, t, state_weights))(logits) * v

    caught(CASES["trpo/fisher_vector_product"], Perturbation("one backward", fn=first_order))


def test_an_unconverged_conjugate_gradient_is_caught(both):
    def short(fn):
        return lambda matrix, b, iterations: fn(matrix, b, 2)

    assert "reference" in caught(CASES["trpo/conjugate_gradient"], Perturbation("2 iterations", fn=short))


def test_the_kl_the_wrong_way_round_is_caught(both):
    def reversed_kl(fn):
        return lambda old_logits, logits, state_weights: fn(logits, old_logits, state_weights)

    caught(CASES["trpo/mean_kl"], Perturbation("KL(pi || pi_old)", fn=reversed_kl))


def test_the_torch_product_matches_the_explicit_fisher():
    rng = np.random.default_rng(0)
    old = torch.tensor(rng.standard_normal((2, 3)))
    rho = torch.tensor([0.3, 0.7], dtype=torch.float64)
    hessian = torch.autograd.functional.hessian(lambda t: TR.mean_kl(old, t, rho), old.clone()).reshape(6, 6)
    v = torch.tensor(rng.standard_normal((2, 3)))
    assert torch.allclose(TR.fisher_vector_product(old, old.clone(), rho, v).ravel(), hessian @ v.ravel(), rtol=1e-12)
