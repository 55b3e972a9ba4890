"""PPO's learned reward (``model.reward_model=RUN``): the frozen reward model of a trained ``reward_model`` run as
the judge of PPO's responses, its score normalised to mean 0 and sd 1 over the reference model's responses to 256
validation prompts (Ziegler et al. 2019, sec. 2.2). ``config`` is PPO's ``Config`` (``ppo/training.py``); ``net``
its ``PolicyWithValue``, whose ``scorer`` this is."""

from __future__ import annotations

from pathlib import Path

import torch

from practice_torch.engine import RunError
from practice_torch.engine.checkpoint import latest_step
from practice_torch.engine.runs import run_model_name
from practice_torch.policy_gradient import fine_tuning as pg
from practice_torch.policy_gradient.policy import LM_KEYS, build_lm, sample_responses
from practice_torch.reward_model.networks import RewardModel

NORMALISING_PROMPTS = 256  # the reference's responses the reward model's score is normalised over


def load_reward_model(config, data):
    """The frozen reward model of the run ``config.reward_model`` (its step recorded), or, once recorded, an empty
    one of the same architecture (its weights come with this run's checkpoint). Either way without the reward
    model's reference copy, which only drew its preference pairs. ValueError, one line, for a path
    that is not a trained reward_model run on this language model's architecture and episode."""
    from practice_torch.models import open_run

    if config.reward_model_step:
        scorer = RewardModel(build_lm(config, data.num_classes), config)
    else:
        path = Path(config.reward_model)
        try:
            if run_model_name(path) != "reward_model":
                raise ValueError(f"model.reward_model={path} is a {run_model_name(path)} run; name a trained "
                                 "reward_model run (python -m practice_torch train reward_model)")
            _, cfg, scorer = open_run(path, torch.device("cpu"))
        except (RunError, OSError) as exc:
            raise ValueError(f"model.reward_model={path}: not a trained reward_model run ({exc})") from None
        differs = [k for k in (*LM_KEYS, "prompt_length", "response_length")
                   if getattr(cfg.model, k) != getattr(config, k)]
        if differs:
            raise ValueError(f"model.reward_model={path} has {differs[0]}={getattr(cfg.model, differs[0])} where "
                             f"this run has {getattr(config, differs[0])}: train it on the same language model")
        config.reward_model_step = latest_step(path / "checkpoints") or 0
    scorer.register_buffer("score_mean", torch.zeros(()))
    scorer.register_buffer("score_sd", torch.ones(()))
    return scorer.without_reference().requires_grad_(False).eval()


@torch.no_grad()
def normalise_scores(net) -> None:
    """Set the reward model's score mean and sd from the reference's responses to the validation split's first
    ``NORMALISING_PROMPTS`` windows (a fixed seed: the same numbers every time)."""
    prompts = pg.validation_prompts(NORMALISING_PROMPTS, net.prompt_length)
    u = torch.rand((len(prompts), 1, net.response_length), generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64).float()
    scores = net.scorer(prompts, sample_responses(net.reference, prompts, u)[:, 0])
    net.scorer.score_mean.fill_(scores.mean())
    net.scorer.score_sd.fill_(scores.std(correction=1).clamp_min(1e-6))
