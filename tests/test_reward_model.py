"""The reward model's functions: both backends agree, and a swapped pair and a head on the padding are caught."""

from __future__ import annotations

import torch

import practice_torch.reward_model as RM
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("reward_model")}


def test_chosen_and_rejected_swapped_are_caught(both):
    def swapped(fn):
        return lambda r_chosen, r_rejected: fn(r_rejected, r_chosen)

    caught(CASES["reward_model/preference_loss"], Perturbation("swapped", fn=swapped))


def test_a_head_on_the_last_position_instead_of_the_last_token_is_caught(both):
    def padding(fn):
        return lambda hidden, lengths, w, b: (hidden[:, -1] @ w.T)[:, 0] + b[0]

    caught(CASES["reward_model/last_token_reward"], Perturbation("head on the padding", fn=padding))


def test_a_constant_added_to_every_reward_changes_nothing():
    rw, rl = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    assert torch.allclose(RM.preference_loss(rw + 7.5, rl + 7.5), RM.preference_loss(rw, rl), rtol=1e-14)
