"""DPO's functions: both backends agree, the reference is never trained, and swapped or mis-scaled losses are
caught."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

import practice_torch.dpo as DPO
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("dpo")}


def test_beta_outside_the_sigmoid_is_caught(both):
    def outside(fn):
        return lambda policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: beta * fn(
            policy_chosen, policy_rejected, ref_chosen, ref_rejected, 1.0)

    caught(CASES["dpo/dpo_loss"], Perturbation("beta outside", fn=outside))


def test_the_reference_gets_no_gradient_in_either_backend():
    """A reference that is updated is a bug: both twins hold its log-probabilities constant; the same loss without
    that (the negative control) does move it."""
    import theory_jax.dpo as T

    rng = np.random.default_rng(0)
    pc, pr, rc, rr = (rng.standard_normal(5) - 10 for _ in range(4))
    grads = jax.grad(T.dpo_loss, argnums=(2, 3))(pc, pr, rc, rr, 0.3)
    assert all(np.all(np.asarray(g) == 0) for g in grads)

    def updated(pc_, pr_, rc_, rr_, beta):
        margin = beta * ((pc_ - rc_) - (pr_ - rr_))
        return jnp.mean(jax.nn.softplus(-margin))

    assert np.any(np.asarray(jax.grad(updated, argnums=2)(pc, pr, rc, rr, 0.3)) != 0)
    tensors = [torch.tensor(a, requires_grad=True) for a in (pc, pr, rc, rr)]
    DPO.dpo_loss(*tensors, 0.3).backward()
    assert tensors[0].grad is not None and tensors[2].grad is None and tensors[3].grad is None
