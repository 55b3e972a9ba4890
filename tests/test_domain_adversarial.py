"""DANN's reversal layer and losses: both backends agree, and a reversal forgotten or applied twice is caught."""

from __future__ import annotations

import torch

import practice_torch.domain_adversarial as DA
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("domain_adversarial")}


def test_a_forgotten_reversal_is_caught(both):
    def identity(fn):
        return lambda x, lam: x  # forward right, backward not reversed

    assert "gradient" in caught(CASES["domain_adversarial/gradient_reversal"], Perturbation("no reversal", fn=identity))


def test_a_reversal_applied_twice_is_caught(both):
    import theory_jax.domain_adversarial as T

    def twice(fn):
        def objective(x_source, labels, x_target, w_f, w_y, w_d, lam):
            def reverse(v):
                return T.gradient_reversal(T.gradient_reversal(v, lam), lam)
            fs, ft = T.jnp.tanh(x_source @ w_f.T), T.jnp.tanh(x_target @ w_f.T)
            return T.label_loss(fs @ w_y.T, labels) + T.domain_loss((reverse(fs) @ w_d.T)[:, 0],
                                                                    (reverse(ft) @ w_d.T)[:, 0])
        return objective

    assert "gradient" in caught(CASES["domain_adversarial/dann_objective"], Perturbation("reversed twice", fn=twice))


def test_the_layer_reverses_and_scales_the_gradient_and_follows_its_schedule():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    layer = DA.GradientReversal(lam=float(DA.lambda_schedule(torch.tensor(0.3))))
    out = layer(x)
    assert torch.equal(out, x)
    weights = torch.randn(4, 3, dtype=torch.float64)
    (out * weights).sum().backward()
    assert torch.allclose(x.grad, -layer.lam * weights, rtol=1e-15, atol=0)
    assert 0.9 < layer.lam < 0.91  # 2 / (1 + e^-3) - 1
