"""BiGAN's joints and losses: both backends agree, and pairs that lose their pairing are caught."""

from __future__ import annotations

import numpy as np
import torch

import practice_torch.bigan as BG
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("bigan")}


def test_a_generator_joint_not_transposed_to_the_encoders_layout_is_caught(both):
    def untransposed(fn):
        return lambda p_z, gen: p_z[:, None] * gen  # (Z, X), not (X, Z): shapes differ here (3 x 4)

    caught(CASES["bigan/generator_joint"], Perturbation("(Z, X) layout", fn=untransposed))


def test_a_discriminator_that_sees_only_x_is_caught(both):
    import theory_jax.bigan as T

    def x_only(fn):
        return lambda x, z, w_x, w_z, w_out, b: T.pair_logits(x, 0 * z, w_x, w_z, w_out, b)

    caught(CASES["bigan/pair_logits"], Perturbation("z ignored", fn=x_only))


def test_the_losses_swap_the_labels_between_the_two_players():
    rng = np.random.default_rng(0)
    x, ze, xg, z = (torch.tensor(rng.standard_normal(s)) for s in ((5, 4), (5, 2), (5, 4), (5, 2)))
    weights = [torch.tensor(rng.standard_normal(s)) for s in ((3, 4), (3, 2), (1, 3), (3,))]
    d_loss, eg_loss = BG.bigan_losses(x, ze, xg, z, *weights)
    swapped_d, swapped_eg = BG.bigan_losses(xg, z, x, ze, *weights)  # real and generated pairs exchanged
    assert torch.allclose(d_loss, swapped_eg, rtol=1e-14) and torch.allclose(eg_loss, swapped_d, rtol=1e-14)
    assert not torch.allclose(d_loss, eg_loss)
