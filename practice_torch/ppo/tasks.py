"""PPO's and TRPO's two kinds of task, told apart by the network: a control task's ``rollout.ActorCritic`` or the
language model's policy and reference (``policy_gradient.policy.PolicyAndReference``, PPO's with a value head).
What ``eval`` and ``sample`` do on each is written once here for both adapters: a control task plays the greedy
policy (``rollout``), the language model reports and shows what REINFORCE's does (``policy_gradient.fine_tuning``).
"""

from __future__ import annotations

import torch

from practice_torch.policy_gradient import fine_tuning as pg
from practice_torch.ppo import rollout as control


def evaluate(net, config, dataset, generator: torch.Generator) -> dict[str, float]:
    """A control task: the greedy policy's returns on the split's episodes (their seeds). The language model:
    ``policy_gradient.fine_tuning.fine_tuning_metrics`` of the policy."""
    if isinstance(net, control.ActorCritic):
        return control.greedy_returns(net.policy, dataset)
    return pg.fine_tuning_metrics(net, config, dataset, generator)


def sample(net, config, n: int, generator: torch.Generator, examples=None):
    """A control task: ``n`` greedy episodes of the validation split (their observations over time, and returns).
    The language model: as REINFORCE's, the policy's responses, and side by side with the reference's."""
    if isinstance(net, control.ActorCritic):  # examples: the validation split's episodes (EpisodeSeeds)
        return control.episode_artefacts(net.policy, examples, n)
    return pg.sample(net, config, n, generator, examples)


__all__ = ["evaluate", "sample"]
