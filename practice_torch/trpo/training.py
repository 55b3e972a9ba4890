"""TRPO's training adapter for the character language model (``practice_torch.models``):
``python -m practice_torch train trpo --set model.reference=RUN_DIR``.

The policy and the frozen reference are REINFORCE's (``policy_gradient.policy``): B prompts per step, K responses
each from the current policy, returns = the judge's reward - ``model.kl_coef`` (log pi(y) - log pi_ref(y)), and the
leave-one-out baseline of the prompt's other K - 1 returns as the advantage A of every character of a response.
Instead of Adam, each step is TRPO's natural-gradient update (``natural.natural_step``; the engine's closed-form
``update``): the surrogate L(theta) = mean over the responses' characters of pi_theta(y_t)/pi_old(y_t) A (eq. 14),
the constraint the mean over the visited prefixes of the exact KL(pi_old(. | s_t) || pi_theta(. | s_t)) <=
``model.max_kl``, conjugate gradient on its Fisher-vector products, and a backtracking line search. One process
only: TRPO's products would each need an all-reduce under torchrun.

``eval`` reports what REINFORCE's does (``policy_gradient.training.fine_tuning_metrics``). The derivation:
``python -m theory_jax trpo``; TRPO on CartPole-v1: ``practice_torch.trpo.control``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.policy_gradient import fine_tuning as pg
from practice_torch.policy_gradient.functions import action_log_probs, leave_one_out_baseline
from practice_torch.policy_gradient.policy import (
    LanguageSettings,
    PolicyAndReference,
    build_pair,
    episode_logits,
    prompts_of,
    response_log_prob,
    sample_responses,
)
from practice_torch.trpo.natural import natural_step


@dataclass
class Config(LanguageSettings):
    """TRPO's settings: the run's ``model.*`` keys (``--set model.reference=runs/lm``)."""

    judge: str = "letter"
    letters: str = "e"
    samples_per_prompt: int = 4  # K: the leave-one-out baseline needs K >= 2
    kl_coef: float = 0.02  # beta of the k1 penalty in the return
    max_kl: float = 0.01  # delta: the trust region, mean KL per visited prefix (nats)
    cg_iterations: int = 10
    damping: float = 0.1
    backtracks: int = 10
    fisher_fraction: float = 0.25  # the share of the batch's responses the Fisher-vector products are taken on
    eval_prompts: int = 256


HEADLINE = pg.HEADLINE

# quick: REINFORCE's batches (16 prompts x 4 responses of 32 characters), 150 natural-gradient steps on one thread,
# the Fisher-vector products on a quarter of the responses (about 3 s a step; on all of them, 10 s); full: a GPU,
# 64 prompts x 8 responses of 64 characters.
PRESETS = {
    "quick": {"shakespeare": Preset(
        Config(),
        TrainConfig(steps=150, batch_size=16, checkpoint_every=50, log_every=10, samples=8, threads=1))},
    "full": {"shakespeare": Preset(
        Config(prompt_length=64, response_length=64, samples_per_prompt=8, eval_prompts=1024),
        TrainConfig(steps=1000, batch_size=64, checkpoint_every=250, log_every=50, samples=16))},
}
default_config = preset_config("trpo", PRESETS)


def check(config: Config) -> None:
    pg.check(config)
    if config.max_kl <= 0 or config.cg_iterations < 1 or config.damping < 0 or config.backtracks < 1:
        raise ValueError(f"model.max_kl must be positive, model.cg_iterations and model.backtracks at least 1, "
                         f"model.damping not negative; got {config.max_kl}, {config.cg_iterations}, "
                         f"{config.backtracks}, {config.damping}")
    if not 0 < config.fisher_fraction <= 1:
        raise ValueError(f"model.fisher_fraction must be in (0, 1], got {config.fisher_fraction}")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise ValueError("trpo trains in one process (each Fisher-vector product would need an all-reduce): run it "
                         "without torchrun")


def build(config: Config, data) -> PolicyAndReference:
    check(config)
    lm, _ = build_pair(config, data)
    return PolicyAndReference(lm, config)


draw_noise = pg.draw_noise


def loss(net, config, batch, noise, step):  # the engine calls ``update`` instead; the interface asks for a loss
    raise NotImplementedError("trpo steps by its closed-form update")


def update(net: PolicyAndReference, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """One TRPO step on fresh responses to the batch's prompts (x (B, 256) windows); (the negated surrogate after
    the step, terms: the judge's mean reward, k1 per response, the step's fraction and measured KL)."""
    prompts = prompts_of(batch[0], net.prompt_length)
    u = noise["u"].to(prompts.device)
    b, k, length = u.shape
    responses = sample_responses(net.policy, prompts, u).reshape(b * k, length)
    rows = prompts.repeat_interleave(k, dim=0)
    p = net.prompt_length
    tokens, old_logits = episode_logits(net.policy, rows, responses)
    log_ref = response_log_prob(episode_logits(net.reference, rows, responses)[1], tokens, p)
    log_old = response_log_prob(old_logits, tokens, p)
    rewards, returns = pg.returns_of(config, responses, log_old, log_ref)
    advantages = (returns.reshape(b, k) - leave_one_out_baseline(returns.reshape(b, k))).reshape(-1, 1)
    old_logp = torch.log_softmax(old_logits[:, p - 1:], -1)  # (N, L, V): pi_old at each visited prefix
    old_token = action_log_probs(old_logits[:, p - 1:], responses)

    def new_logits(rows=slice(None)):
        return net.policy(tokens[rows, :-1]).float()[:, p - 1:]

    def surrogate():  # eq. 14, per character: mean pi/pi_old A
        return torch.mean(torch.exp(action_log_probs(new_logits(), responses) - old_token) * advantages)

    def mean_kl(rows=slice(None)):  # mean over the visited prefixes of KL(pi_old || pi_theta), exact over the vocabulary
        old = old_logp[rows]
        return torch.mean(torch.sum(old.exp() * (old - torch.log_softmax(new_logits(rows), -1)), -1))

    every = max(1, round(1 / config.fisher_fraction))  # every k-th response (K = 4, a quarter: one per prompt)
    params = [q for q in net.policy.parameters() if q.requires_grad]
    trust = {"max_kl": config.max_kl, "cg_iterations": config.cg_iterations, "damping": config.damping,
             "backtracks": config.backtracks}
    move = natural_step(params, surrogate, mean_kl, **trust, fisher_kl=lambda: mean_kl(slice(None, None, every)))
    terms = {"reward": rewards.mean(), "kl_k1": (log_old - log_ref).mean(),
             "step_fraction": torch.tensor(move["step_fraction"]), "trust_kl": torch.tensor(move["kl"])}
    return torch.tensor(-move["surrogate_after"]), terms


def evaluate(net: PolicyAndReference, config: Config, dataset, generator: torch.Generator) -> dict[str, float]:
    """``policy_gradient.training.fine_tuning_metrics`` of the TRPO policy."""
    return pg.fine_tuning_metrics(net, config, dataset, generator)


def sample(net: PolicyAndReference, config: Config, n: int, generator: torch.Generator, examples=None):
    """As REINFORCE's: the policy's responses, and side by side with the reference's."""
    return pg.sample(net, config, n, generator, examples)


__all__ = ["HEADLINE", "Config", "build", "default_config", "draw_noise", "evaluate", "loss", "sample", "update"]
