"""PPO's functions: both backends agree, and a clip on the wrong side, jnp.clip's half slope on the clip bounds or GAE
with gamma and lambda swapped is caught."""

from __future__ import annotations

import jax.numpy as jnp
import torch

import practice_torch.ppo as PPO
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("ppo")}


def test_gae_with_gamma_and_lambda_swapped_is_caught(both):
    def swapped(fn):
        return lambda rewards, values, gamma, lam: fn(rewards, values, lam, gamma)

    caught(CASES["ppo/gae"], Perturbation("gamma <-> lambda", fn=swapped))


def test_k3_is_zero_only_when_the_policies_agree():
    lp = torch.tensor([-1.0, -2.0, -3.0], dtype=torch.float64)
    assert torch.all(PPO.kl_k3(lp, lp) == 0)
    assert torch.all(PPO.kl_k3(lp, lp + torch.tensor([0.3, -0.3, 1.0], dtype=torch.float64)) > 0)


def test_jnp_clips_half_slope_on_the_bounds_is_caught(both):
    """jnp.clip splits a tie's slope 1/2 : 1/2 with its bound, so at a ratio exactly on 1 - eps with A > 0 the
    surrogate's gradient came out 3/4 of -rho A / N (the bug the reference implementations exposed)."""
    def with_jnp_clip(fn):
        def loss(log_probs, old_log_probs, advantages, clip):
            ratio = jnp.exp(log_probs - old_log_probs)
            return -jnp.mean(jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - clip, 1 + clip) * advantages))
        return loss

    message = caught(CASES["ppo/clipped_surrogate_loss/on_the_bounds"], Perturbation("jnp.clip", fn=with_jnp_clip))
    assert "grad" in message
    # ...and the ordinary case, whose ratios miss the bounds, cannot tell the two apart: the tie case is what catches it
    from shared_specs.runner import run_case
    assert run_case(CASES["ppo/clipped_surrogate_loss"], Perturbation("jnp.clip", fn=with_jnp_clip)).passed


def test_the_surrogates_slope_on_the_lower_bound_is_the_true_one():
    """The issue's case: log pi = log(0.8), old 0, A = 1, eps = 0.2: the objective is rho A on both sides of the
    bound, so d/d log pi = -rho A / N = -0.8 (torch, SB3, CleanRL and TRL agree)."""
    import jax

    import theory_jax.ppo as T

    log_pi = jnp.log(jnp.asarray([0.8]))
    assert float(jnp.exp(log_pi)[0]) == 0.8
    grad = jax.grad(T.clipped_surrogate_loss)(log_pi, jnp.zeros(1), jnp.ones(1), 0.2)
    lp = torch.tensor([float(log_pi[0])], dtype=torch.float64, requires_grad=True)
    PPO.clipped_surrogate_loss(lp, torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64), 0.2).backward()
    assert float(grad[0]) == lp.grad.item() == -0.8
