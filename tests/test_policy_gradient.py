"""REINFORCE's pieces: both backends agree, and the usual slips (an unmasked prompt, a baseline that sees its own
sample, an undiscounted return) are caught."""

from __future__ import annotations

import jax.numpy as jnp
import torch

import practice_torch.policy_gradient as PG
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("policy_gradient")}


def test_an_unmasked_prompt_is_caught(both):
    def unmasked(fn):
        return lambda logits, tokens, mask: fn(logits, tokens, jnp.ones_like(mask))

    caught(CASES["policy_gradient/sequence_log_prob"], Perturbation("prompt counted", fn=unmasked))


def test_a_baseline_that_includes_its_own_sample_is_caught(both):
    def with_itself(fn):
        return lambda returns: jnp.broadcast_to(jnp.mean(returns, -1, keepdims=True), returns.shape)

    caught(CASES["policy_gradient/leave_one_out_baseline"], Perturbation("mean of all K", fn=with_itself))


def test_the_surrogate_moves_only_the_log_probabilities():
    log_probs = torch.tensor([-1.0, -2.0, -0.5], dtype=torch.float64, requires_grad=True)
    returns = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    baseline = PG.leave_one_out_baseline(returns[None])[0]
    PG.reinforce_loss(log_probs, returns, baseline).backward()
    assert returns.grad is None or torch.all(returns.grad == 0)
    assert torch.allclose(log_probs.grad, -(returns - baseline).detach() / 3, rtol=1e-15)
