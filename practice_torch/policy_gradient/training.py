"""REINFORCE's training adapter (``practice_torch.models``):
``python -m practice_torch train policy_gradient --set model.reference=RUN_DIR``.

The policy is the character language model of a trained ``language_model`` run (``model.reference``), fine-tuned
toward a programmatic judge (``judges.py``; ``model.judge``). Each step takes B data windows as prompts (their
first ``model.prompt_length`` characters), draws K = ``model.samples_per_prompt`` responses of
``model.response_length`` characters per prompt from the current policy (temperature 1, the engine's uniforms), and
scores them: the return of a response is the judge's reward minus ``model.kl_coef`` times its k1 estimate of the
KL to the frozen reference, log pi(y) - log pi_ref(y) (Ziegler et al. 2019). The loss is REINFORCE's surrogate
(Williams 1992) with the leave-one-out baseline of the prompt's other K - 1 returns (Kool et al. 2019):
-mean (G - b) log pi(y | prompt), the prompt's characters masked out of log pi.

``eval`` draws one response per held-out prompt (``model.eval_prompts`` test windows) from the policy and from the
reference, and reports the judge's mean reward of each with its standard deviation and standard error, the gain in
units of the reference's standard deviation, the KL from the policy to the reference (exact per character, summed
over the response, averaged over the policy's samples) and the policy's held-out bits/char on the whole test split
(the language model's own metric). The derivation: ``python -m theory_jax policy_gradient``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.policy_gradient.fine_tuning import (
    FINE_TUNING,
    GPU_TRAINING,
    HEADLINE,
    check,
    draw_noise,
    fine_tuning_metrics,
    returns_of,
    sample,
)
from practice_torch.policy_gradient.functions import leave_one_out_baseline, reinforce_loss
from practice_torch.policy_gradient.judges import JUDGES
from practice_torch.policy_gradient.policy import (
    BUILDS_ON,
    LM_ARCHITECTURE,
    LM_RANGES,
    LanguageSettings,
    PolicyAndReference,
    build_pair,
    episode_logits,
    inherit,
    prompts_of,
    response_log_prob,
    sample_responses,
)


@dataclass
class Config(LanguageSettings):
    """REINFORCE's settings: the run's ``model.*`` keys (``--set model.reference=runs/lm``)."""

    judge: str = "letter"  # judges.JUDGES
    letters: str = "e"  # the letter judge's letters
    samples_per_prompt: int = 4  # K: the leave-one-out baseline needs K >= 2
    kl_coef: float = 0.03  # beta: return = judge's reward - beta (log pi(y) - log pi_ref(y))
    eval_prompts: int = 256  # held-out prompts eval draws one response for, from the policy and the reference


# The optimiser settings every fine-tuning of the language model shares (policy_gradient, ppo, dpo, reward_model):
# AdamW with beta2 0.99 as the language model trains, no weight decay toward zero (the weights start trained), clipping.


# quick: 16 prompts x 4 responses of 32 characters per step, about 0.7 s a step on one CPU thread; lr 3e-4 and beta
# 0.03: the reward rises by 1.6 of the reference's sds while the held-out bits/char worsen by 0.06 (at beta 0.02:
# 2.7 sds and 0.13; at 0.05: 0.9 sds and 0.03). full: 64 prompts x 8 responses of 64 characters from a full-preset
# language model (context 256).
PRESETS = {
    "quick": {"shakespeare": Preset(
        Config(),
        TrainConfig(steps=400, batch_size=16, lr=3e-4, warmup_steps=20,
                    checkpoint_every=100, log_every=20, samples=8, threads=1, **FINE_TUNING))},
    "full": {"shakespeare": Preset(
        Config(prompt_length=64, response_length=64, samples_per_prompt=8, eval_prompts=1024),
        TrainConfig(steps=2000, batch_size=64, lr=5e-5, warmup_steps=50,
                    checkpoint_every=500, samples=16, **FINE_TUNING, **GPU_TRAINING))},
}
default_config = preset_config("policy_gradient", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = LM_ARCHITECTURE
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("judge", "letters", "eval_prompts", "prompt_length", "response_length")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**LM_RANGES, "samples_per_prompt": "at least 2", "kl_coef": "at least 0", "eval_prompts": "positive"}




def build(config: Config, data, parents: dict) -> PolicyAndReference:
    """The policy and the frozen reference, both the reference run's language model at first."""
    check(config)
    lm = build_pair(config, data, parents)
    return PolicyAndReference(lm)






def loss(net: PolicyAndReference, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """REINFORCE with the leave-one-out baseline on the batch's prompts (x (B, 256) windows); terms: the judge's
    mean reward, the mean k1 estimate of KL(pi || pi_ref) per response, the mean return."""
    prompts = prompts_of(batch[0], config.prompt_length)
    u = noise["u"].to(prompts.device)
    b, k, length = u.shape
    responses = sample_responses(net.policy, prompts, u).reshape(b * k, length)
    rows = prompts.repeat_interleave(k, dim=0)
    tokens, logits = episode_logits(net.policy, rows, responses)
    log_pi = response_log_prob(logits, tokens, config.prompt_length)
    with torch.no_grad():
        log_ref = response_log_prob(episode_logits(net.reference, rows, responses)[1], tokens, config.prompt_length)
    rewards, returns = returns_of(config, responses, log_pi, log_ref)
    baseline = leave_one_out_baseline(returns.reshape(b, k)).reshape(-1)
    surrogate = reinforce_loss(log_pi, returns, baseline)
    return surrogate, {"reward": rewards.mean(), "kl_k1": (log_pi - log_ref).detach().mean(), "return": returns.mean()}


# Evaluation and samples ------------------------------------------------------------------------------------------












def evaluate(net: PolicyAndReference, config: Config, dataset: Dataset, generator: torch.Generator
             ) -> dict[str, float]:
    """``fine_tuning_metrics`` of the REINFORCE policy."""
    return fine_tuning_metrics(net, config, dataset, generator)








__all__ = ["BUILDS_ON", "HEADLINE", "JUDGES", "Config", "build", "default_config", "draw_noise", "evaluate", "inherit",
           "loss", "sample"]
