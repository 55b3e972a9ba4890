"""What every topic that fine-tunes the character language model shares (policy_gradient, ppo, trpo, reward_model,
dpo): the optimiser settings and the results figure, the checks of a REINFORCE-style config, the responses' uniforms
and returns, the held-out prompts, and the metrics and samples of a fine-tuned policy beside its reference. A
library module: the adapters import it, it imports no adapter."""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, Dataset

from practice_torch.engine.interface import Artefact
from practice_torch.language_model.text import held_out_bits
from practice_torch.policy_gradient.judges import judge, score
from practice_torch.policy_gradient.policy import (
    PolicyAndReference,
    decode,
    episode_logits,
    prompts_of,
    sample_responses,
    token_kl,
)

FINE_TUNING = {"betas": (0.9, 0.99), "grad_clip": 1.0, "weight_decay": 0.0}


GPU_TRAINING = {"precision": "bf16", "log_every": 50}


HEADLINE = (("reward_gain_in_sd", "judge's mean reward over the reference's", "reference SDs"),
            ("reward", "judge's mean reward", ""))


def check(config) -> None:
    """One line (ValueError) per setting out of range."""
    judge(config.judge, config.letters)
    if config.samples_per_prompt < 2:
        raise ValueError(f"model.samples_per_prompt must be at least 2 (the leave-one-out baseline averages the "
                         f"other samples of a prompt), got {config.samples_per_prompt}")
    if config.kl_coef < 0 or config.eval_prompts < 1:
        raise ValueError(f"model.kl_coef must not be negative and model.eval_prompts must be positive, got "
                         f"{config.kl_coef} and {config.eval_prompts}")


def draw_noise(net: PolicyAndReference, config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The uniforms of n prompts' K responses (inverse-CDF draws): (n, K, L), drawn in float64 and rounded, as the
    language model's sampler does."""
    k = config.samples_per_prompt
    return {"u": torch.rand((n, k, config.response_length), generator=generator, dtype=torch.float64).float()}


def returns_of(config, responses: torch.Tensor, log_pi: torch.Tensor, log_ref: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(the judge's rewards, the returns r - beta (log pi - log pi_ref)), both (N,), for responses (N, L)."""
    rewards = torch.tensor(score(judge(config.judge, config.letters), decode(responses)), device=log_pi.device)
    return rewards, rewards - config.kl_coef * (log_pi - log_ref).detach()


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
    u = torch.rand((len(prompts), 1, config.response_length), generator=generator, dtype=torch.float64).float()
    responses = sample_responses(lm, prompts.to(_device(net)), u.to(_device(net)))[:, 0]
    return responses, torch.tensor(score(judge(config.judge, config.letters), decode(responses)), dtype=torch.float64)


@torch.no_grad()
def exact_kl(net: PolicyAndReference, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """KL(pi(y | prompt) || pi_ref(y | prompt)) estimated on the policy's responses with the exact per-character
    KL at each visited prefix (Rao-Blackwellised: sum_t KL_t, unbiased, lower variance than log pi - log pi_ref).
    prompts: (N, P), responses: (N, L) -> (N,) nats."""
    p = prompts.shape[1]
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
    prompts = held_out_prompts(dataset, config.eval_prompts, config.prompt_length).to(_device(net))
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
def sample(net: PolicyAndReference, config, n: int, generator: torch.Generator, examples=None
           ) -> list[Artefact]:
    """'samples': n responses of the policy to held-out prompts (the first windows of the validation split), prompt
    included; 'versus_reference': each prompt with the policy's and the reference's responses and their rewards."""
    prompts = validation_prompts(n, config.prompt_length).to(_device(net))
    responses, _ = responses_and_rewards(net, config, net.policy, prompts, generator)
    samples = [p + y for p, y in zip(decode(prompts), decode(responses))]
    return [Artefact("samples", "text", samples), Artefact("versus_reference", "text",
                                                           side_by_side(net, config, prompts, generator))]
