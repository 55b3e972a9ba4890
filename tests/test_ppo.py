"""PPO's functions: both backends agree, and a clip on the wrong side or GAE with gamma and lambda swapped is
caught."""

from __future__ import annotations

import jax.numpy as jnp
import torch

import practice_torch.ppo as PPO
from shared_specs import catalogue
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in catalogue.spec_cases("ppo")}


def test_the_clip_on_the_wrong_side_is_caught(both):
    """max instead of min: an optimistic bound that keeps pushing clipped ratios."""
    def optimistic(fn):
        def loss(log_probs, old_log_probs, advantages, clip):
            ratio = jnp.exp(log_probs - old_log_probs)
            return -jnp.mean(jnp.maximum(ratio * advantages, jnp.clip(ratio, 1 - clip, 1 + clip) * advantages))
        return loss

    caught(CASES["ppo/clipped_surrogate_loss"], Perturbation("max, not min", fn=optimistic))


def test_gae_with_gamma_and_lambda_swapped_is_caught(both):
    def swapped(fn):
        return lambda rewards, values, gamma, lam: fn(rewards, values, lam, gamma)

    caught(CASES["ppo/gae"], Perturbation("gamma <-> lambda", fn=swapped))


def test_k3_is_zero_only_when_the_policies_agree():
    lp = torch.tensor([-1.0, -2.0, -3.0], dtype=torch.float64)
    assert torch.all(PPO.kl_k3(lp, lp) == 0)
    assert torch.all(PPO.kl_k3(lp, lp + torch.tensor([0.3, -0.3, 1.0], dtype=torch.float64)) > 0)
