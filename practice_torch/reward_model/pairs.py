"""Preference pairs labelled by a programmatic judge, written once for reward_model and dpo.

For each of B prompts (the first ``prompt_length`` characters of a data window), two responses are drawn from the
frozen reference language model with the engine's uniforms (noise ``u``: (B, 2, L)), and the judge scores both; the
chosen response is the one with the higher reward (Christiano et al. 2017, section 2.2, with the judge in the
human's place). A pair whose two rewards are equal carries no preference: it is kept in the batch, marked ``tied``,
and masked out of every loss and accuracy (``untied_mean``), not redrawn, so a step's noise stays one fixed-size
draw and a resumed run is exact.

Both topics draw their noise with ``draw_pair_noise`` and their pairs with ``preference_pairs`` from the same
frozen reference, so a reward_model run and a dpo run with the same seed, batch size and reference train on the same
pairs (``tests/test_dpo_training.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from practice_torch.policy_gradient.judges import score
from practice_torch.policy_gradient.policy import decode, sample_responses


@dataclass
class PreferencePairs:
    """B labelled pairs. prompts: (B, P) int64; responses: (B, 2, L) int64 in drawn order; chosen, rejected: (B, L)
    int64; rewards: (B, 2) float64, the judge's reward of the two responses in drawn order; first_wins: (B,) bool,
    whether the first drawn response was chosen; tied: (B,) bool, equal rewards (no preference: masked out)."""

    prompts: torch.Tensor
    responses: torch.Tensor
    chosen: torch.Tensor
    rejected: torch.Tensor
    rewards: torch.Tensor
    first_wins: torch.Tensor
    tied: torch.Tensor

    @property
    def untied(self) -> torch.Tensor:
        return ~self.tied

    def reward_gap(self) -> torch.Tensor:
        """The judge's r(chosen) - r(rejected) >= 0: (B,) float64."""
        return (self.rewards[:, 0] - self.rewards[:, 1]).abs()


def draw_pair_noise(n: int, response_length: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The uniforms of n prompts' two responses (inverse-CDF draws): (n, 2, L), drawn in float64 and rounded, as
    the language model's sampler does."""
    return {"u": torch.rand((n, 2, response_length), generator=generator, dtype=torch.float64).float()}


def label_pairs(prompts: torch.Tensor, responses: torch.Tensor, rewards: torch.Tensor) -> PreferencePairs:
    """Chosen = the higher reward, ties marked. prompts: (B, P), responses: (B, 2, L), rewards: (B, 2)."""
    first_wins = rewards[:, 0] > rewards[:, 1]
    pick = first_wins[:, None].to(responses.device)
    chosen = torch.where(pick, responses[:, 0], responses[:, 1])
    rejected = torch.where(pick, responses[:, 1], responses[:, 0])
    return PreferencePairs(prompts, responses, chosen, rejected, rewards, first_wins, rewards[:, 0] == rewards[:, 1])


@torch.no_grad()
def preference_pairs(reference, prompts: torch.Tensor, u: torch.Tensor, judge: Callable[[str], float]
                     ) -> PreferencePairs:
    """Two responses per prompt from the frozen ``reference`` LM (by the uniforms u: (B, 2, L)), scored by
    ``judge`` and labelled. prompts: (B, P) int64."""
    responses = sample_responses(reference, prompts, u.to(prompts.device))
    b, _, length = responses.shape
    rewards = torch.tensor(score(judge, decode(responses.reshape(2 * b, length))), dtype=torch.float64)
    return label_pairs(prompts, responses, rewards.reshape(b, 2))


def untied_mean(loss_fn: Callable[..., torch.Tensor], untied: torch.Tensor, *per_pair: torch.Tensor) -> torch.Tensor:
    """``loss_fn`` (a mean over pairs: preference_loss, dpo_loss) on the untied pairs only; 0, still attached to
    the graph, when every pair of the batch is tied. untied: (B,) bool, per_pair: each (B,)."""
    if not bool(untied.any()):
        return 0.0 * sum(x.sum() for x in per_pair)
    keep = untied.to(per_pair[0].device)
    return loss_fn(*(x[keep] for x in per_pair))
