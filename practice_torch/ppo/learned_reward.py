"""PPO's learned reward (``model.reward_model=RUN``): the frozen reward model of a trained ``reward_model`` run as
the judge of PPO's responses, its score normalised to mean 0 and sd 1 over the reference model's responses to 256
validation prompts (Ziegler et al. 2019, sec. 2.2). ``config`` is PPO's ``Config`` (``ppo/training.py``); ``net``
its ``PolicyWithValue``, whose ``scorer`` this is."""

from __future__ import annotations

import torch

from practice_torch.policy_gradient import fine_tuning as pg
from practice_torch.policy_gradient.policy import LM_KEYS, build_lm, sample_responses
from practice_torch.reward_model.networks import RewardModel

NORMALISING_PROMPTS = 256  # the reference's responses the reward model's score is normalised over


def frozen_scorer(config, data, parent) -> RewardModel:
    """The frozen reward model of the reward_model run ``parent`` (an ``engine.runs.Parent``): its network the first
    time, an empty one of the same architecture afterwards (its weights come with this run's checkpoint); either way
    without the reward model's reference copy, which only drew its preference pairs. ValueError, one line, for a
    reward model of another language model or episode than this run's."""
    if parent.net is None:
        scorer = RewardModel(build_lm(config, data.num_classes))
    else:
        differs = [k for k in (*LM_KEYS, "prompt_length", "response_length")
                   if getattr(parent.config.model, k) != getattr(config, k)]
        if differs:
            raise ValueError(f"model.reward_model={parent.run} has {differs[0]}={getattr(parent.config.model, differs[0])} "
                             f"where this run has {getattr(config, differs[0])}: train it on the same language model")
        scorer = parent.net
    scorer.register_buffer("score_mean", torch.zeros(()))
    scorer.register_buffer("score_sd", torch.ones(()))
    return scorer.without_reference().requires_grad_(False).eval()


@torch.no_grad()
def normalise_scores(net, config) -> None:
    """Set the reward model's score mean and sd from the reference's responses to the validation split's first
    ``NORMALISING_PROMPTS`` windows (a fixed seed: the same numbers every time)."""
    prompts = pg.validation_prompts(NORMALISING_PROMPTS, config.prompt_length)
    u = torch.rand((len(prompts), 1, config.response_length), generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64).float()
    scores = net.scorer(prompts, sample_responses(net.reference, prompts, u)[:, 0])
    net.scorer.score_mean.fill_(scores.mean())
    net.scorer.score_sd.fill_(scores.std(correction=1).clamp_min(1e-6))
