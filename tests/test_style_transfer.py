"""Style and cycle losses: both backends agree, and the usual slips (normalisation, Gram of positions, L2 cycle) are
caught."""

from __future__ import annotations

import jax.numpy as jnp
import torch

import practice_torch.style_transfer as S
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("style_transfer")}


def test_an_unnormalised_gram_is_caught(both):
    def unnormalised(fn):
        def gram(features):
            b, c = features.shape[:2]
            flat = jnp.reshape(features, (b, c, -1))
            return flat @ jnp.swapaxes(flat, 1, 2)
        return gram

    caught(CASES["style_transfer/gram_matrix"], Perturbation("no 1/(C H W)", fn=unnormalised))


def test_a_gram_over_positions_instead_of_channels_is_caught(both):
    def positions(fn):
        def gram(features):
            b, c = features.shape[:2]
            flat = jnp.reshape(features, (b, c, -1))
            return jnp.swapaxes(flat, 1, 2) @ flat / flat.shape[1] / flat.shape[2]  # (B, N, N)
        return gram

    caught(CASES["style_transfer/gram_matrix"], Perturbation("F^T F", fn=positions))


def test_a_squared_cycle_loss_is_caught(both):
    def squared(fn):
        return lambda x, x_cycled, y, y_cycled: jnp.mean((x_cycled - x) ** 2) + jnp.mean((y_cycled - y) ** 2)

    caught(CASES["style_transfer/cycle_loss"], Perturbation("L2 instead of L1", fn=squared))


def test_style_ignores_where_features_fire_and_content_does_not():
    f = torch.randn(1, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rolled = torch.roll(f, shifts=(1, 2), dims=(2, 3))
    assert S.style_loss(rolled, f) < 1e-30 < S.content_loss(rolled, f)


def test_jnp_abs_slope_at_zero_is_caught(both):
    """jnp.abs takes slope 1 at 0, torch.abs sign(0) = 0: an L1 loss whose residual is exactly 0 (a translator that
    already cycles a value back) got a gradient in one backend and none in the other."""
    def with_jnp_abs(fn):
        return lambda x, x_cycled, y, y_cycled: jnp.mean(jnp.abs(x_cycled - x)) + jnp.mean(jnp.abs(y_cycled - y))

    assert "grad" in caught(CASES["style_transfer/cycle_loss/ties"], Perturbation("jnp.abs", fn=with_jnp_abs))
