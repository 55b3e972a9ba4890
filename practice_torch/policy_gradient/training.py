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

import math
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.models import Artefact
from practice_torch.policy_gradient.functions import leave_one_out_baseline, reinforce_loss
from practice_torch.policy_gradient.judges import JUDGES, judge, score
from practice_torch.policy_gradient.policy import (
    LanguageSettings,
    PolicyAndReference,
    build_pair,
    decode,
    episode_logits,
    prompts_of,
    response_log_prob,
    sample_responses,
    token_kl,
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
FINE_TUNING = {"betas": (0.9, 0.99), "grad_clip": 1.0, "weight_decay": 0.0}
GPU_TRAINING = {"precision": "bf16", "log_every": 50}

HEADLINE = (("reward_gain_in_sd", "judge's mean reward over the reference's", "reference SDs"),
            ("reward", "judge's mean reward", ""))

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


def check(config: Config) -> None:
    """One line (ValueError) per setting out of range."""
    judge(config.judge, config.letters)
    if config.samples_per_prompt < 2:
        raise ValueError(f"model.samples_per_prompt must be at least 2 (the leave-one-out baseline averages the "
                         f"other samples of a prompt), got {config.samples_per_prompt}")
    if config.kl_coef < 0 or config.eval_prompts < 1:
        raise ValueError(f"model.kl_coef must not be negative and model.eval_prompts must be positive, got "
                         f"{config.kl_coef} and {config.eval_prompts}")


def build(config: Config, data) -> PolicyAndReference:
    """The policy and the frozen reference, both the reference run's language model at first."""
    check(config)
    lm, _ = build_pair(config, data)
    return PolicyAndReference(lm, config)


def draw_noise(net: PolicyAndReference, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The uniforms of n prompts' K responses (inverse-CDF draws): (n, K, L), drawn in float64 and rounded, as the
    language model's sampler does."""
    k = config.samples_per_prompt
    return {"u": torch.rand((n, k, net.response_length), generator=generator, dtype=torch.float64).float()}


def returns_of(config, responses: torch.Tensor, log_pi: torch.Tensor, log_ref: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(the judge's rewards, the returns r - beta (log pi - log pi_ref)), both (N,), for responses (N, L)."""
    rewards = torch.tensor(score(judge(config.judge, config.letters), decode(responses)), device=log_pi.device)
    return rewards, rewards - config.kl_coef * (log_pi - log_ref).detach()


def loss(net: PolicyAndReference, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """REINFORCE with the leave-one-out baseline on the batch's prompts (x (B, 256) windows); terms: the judge's
    mean reward, the mean k1 estimate of KL(pi || pi_ref) per response, the mean return."""
    prompts = prompts_of(batch[0], net.prompt_length)
    u = noise["u"].to(prompts.device)
    b, k, length = u.shape
    responses = sample_responses(net.policy, prompts, u).reshape(b * k, length)
    rows = prompts.repeat_interleave(k, dim=0)
    tokens, logits = episode_logits(net.policy, rows, responses)
    log_pi = response_log_prob(logits, tokens, net.prompt_length)
    with torch.no_grad():
        log_ref = response_log_prob(episode_logits(net.reference, rows, responses)[1], tokens, net.prompt_length)
    rewards, returns = returns_of(config, responses, log_pi, log_ref)
    baseline = leave_one_out_baseline(returns.reshape(b, k)).reshape(-1)
    surrogate = reinforce_loss(log_pi, returns, baseline)
    return surrogate, {"reward": rewards.mean(), "kl_k1": (log_pi - log_ref).detach().mean(), "return": returns.mean()}


# Evaluation and samples ------------------------------------------------------------------------------------------
def _device(net) -> torch.device:
    return next(net.policy.parameters()).device


def held_out_prompts(dataset: Dataset, n: int, prompt_length: int) -> torch.Tensor:
    """The first ``prompt_length`` characters of the first n windows of ``dataset``: (n, P)."""
    x = next(iter(DataLoader(dataset, batch_size=min(n, len(dataset)))))[0]
    return prompts_of(x, prompt_length)


@torch.no_grad()
def responses_and_rewards(net: PolicyAndReference, config, lm, prompts: torch.Tensor, generator: torch.Generator
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """One response per prompt from ``lm`` and the judge's rewards: ((N, L) int64, (N,) float64)."""
    u = torch.rand((len(prompts), 1, net.response_length), generator=generator, dtype=torch.float64).float()
    responses = sample_responses(lm, prompts.to(_device(net)), u.to(_device(net)))[:, 0]
    return responses, torch.tensor(score(judge(config.judge, config.letters), decode(responses)), dtype=torch.float64)


@torch.no_grad()
def exact_kl(net: PolicyAndReference, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """KL(pi(y | prompt) || pi_ref(y | prompt)) estimated on the policy's responses with the exact per-character
    KL at each visited prefix (Rao-Blackwellised: sum_t KL_t, unbiased, lower variance than log pi - log pi_ref).
    prompts: (N, P), responses: (N, L) -> (N,) nats."""
    p = net.prompt_length
    logits = episode_logits(net.policy, prompts, responses)[1][:, p - 1:]
    ref_logits = episode_logits(net.reference, prompts, responses)[1][:, p - 1:]
    return token_kl(logits, ref_logits).sum(-1).double()


def _stats(prefix: str, values: torch.Tensor) -> dict[str, float]:
    n = len(values)
    sd = float(values.std(correction=1)) if n > 1 else 0.0
    return {prefix: float(values.mean()), f"{prefix}_sd": sd, f"{prefix}_se": sd / math.sqrt(n)}


def fine_tuning_metrics(net: PolicyAndReference, config, dataset: Dataset, generator: torch.Generator
                        ) -> dict[str, float]:
    """The judge's reward of the policy and the reference on held-out prompts (mean, sd, se), the gain in the
    reference's sds, the KL to the reference (nats per response) and the policy's test bits/char."""
    from practice_torch.language_model.text import held_out_bits

    prompts = held_out_prompts(dataset, config.eval_prompts, net.prompt_length).to(_device(net))
    policy_y, policy_r = responses_and_rewards(net, config, net.policy, prompts, generator)
    _, ref_r = responses_and_rewards(net, config, net.reference, prompts, generator)
    kl = exact_kl(net, prompts, policy_y)
    metrics = {"prompts": len(prompts), **_stats("reward", policy_r), **_stats("reference_reward", ref_r),
               **_stats("kl_to_reference", kl)}
    metrics["reward_gain_in_sd"] = (metrics["reward"] - metrics["reference_reward"]) / max(
        metrics["reference_reward_sd"], 1e-12)
    held_out = held_out_bits(net.policy, config.context, dataset)
    metrics.update({"bits_per_char": held_out["bits_per_char"], "loss": held_out["loss"]})
    return metrics


def evaluate(net: PolicyAndReference, config: Config, dataset: Dataset, generator: torch.Generator
             ) -> dict[str, float]:
    """``fine_tuning_metrics`` of the REINFORCE policy."""
    return fine_tuning_metrics(net, config, dataset, generator)


@torch.no_grad()
def side_by_side(net: PolicyAndReference, config, prompts: torch.Tensor, generator: torch.Generator) -> list[str]:
    """For each prompt (N, P): the prompt, the policy's response and the reference's, each with its reward."""
    policy_y, policy_r = responses_and_rewards(net, config, net.policy, prompts, generator)
    ref_y, ref_r = responses_and_rewards(net, config, net.reference, prompts, generator)
    rows = []
    for prompt, y, r, y0, r0 in zip(decode(prompts), decode(policy_y), policy_r, decode(ref_y), ref_r):
        rows.append(f"prompt:    {prompt!r}\npolicy:    {y!r}  reward {r:.3f}\nreference: {y0!r}  reward {r0:.3f}")
    return rows


def validation_prompts(n: int, prompt_length: int) -> torch.Tensor:
    """The first ``prompt_length`` characters of the validation split's first n windows: (n, P). (The engine's
    held-out examples are cut to n characters for text, too few for one window.)"""
    from practice_torch.data.text import load_shakespeare

    return held_out_prompts(load_shakespeare("val", limit=(n + 1) * 256), n, prompt_length)


@torch.no_grad()
def sample(net: PolicyAndReference, config: Config, n: int, generator: torch.Generator, examples=None
           ) -> list[Artefact]:
    """'samples': n responses of the policy to held-out prompts (the first windows of the validation split), prompt
    included; 'versus_reference': each prompt with the policy's and the reference's responses and their rewards."""
    prompts = validation_prompts(n, net.prompt_length).to(_device(net))
    responses, _ = responses_and_rewards(net, config, net.policy, prompts, generator)
    samples = [p + y for p, y in zip(decode(prompts), decode(responses))]
    return [Artefact("samples", "text", samples), Artefact("versus_reference", "text",
                                                           side_by_side(net, config, prompts, generator))]


__all__ = ["HEADLINE", "JUDGES", "Config", "build", "default_config", "draw_noise", "evaluate", "loss", "sample"]
