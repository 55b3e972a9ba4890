"""DPO's training adapter (``practice_torch.models``):
``python -m practice_torch train dpo --set model.reference=RUN_DIR``.

The policy is the character language model of a trained ``language_model`` run (``model.reference``), beside a
frozen copy, the reference pi_ref (``PolicyAndReference``). Each step takes B data windows as prompts, draws two
responses per prompt from the frozen reference with the engine's uniforms and labels them by the judge
(``reward_model/pairs.py``, the reward model's pairs: the same seed and batch size give the same pairs; ties masked
out), and takes one optimizer step on DPO's loss (Rafailov et al. 2023, eq. 7; ``dpo_loss``)

    -mean log sigmoid(beta log pi(y_w)/pi_ref(y_w) - beta log pi(y_l)/pi_ref(y_l)),

with beta = ``model.beta`` and log pi(y | prompt) summed over the response's characters, the prompt masked out
(``response_log_prob``). No reward model and no sampling from the policy during training.

``eval`` reports what REINFORCE's does (``policy_gradient.training.fine_tuning_metrics``: the judge's mean reward
of policy and reference on held-out prompts, the gain in the reference's sds, the exact KL to the reference and the
held-out bits/char) and DPO's own terms on ``model.eval_pairs`` held-out pairs: the loss, the implicit reward margin
beta log pi/pi_ref (chosen minus rejected) and the share of pairs it orders as the judge does. The derivation:
``python -m theory_jax dpo``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from practice_torch.dpo.functions import dpo_loss, implicit_reward
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.policy_gradient import fine_tuning as pg
from practice_torch.policy_gradient.judges import judge
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
)
from practice_torch.reward_model.pairs import PreferencePairs, draw_pair_noise, preference_pairs, untied_mean


@dataclass
class Config(LanguageSettings):
    """DPO's settings: the run's ``model.*`` keys (``--set model.reference=runs/lm``)."""

    judge: str = "letter"  # policy_gradient.judges.JUDGES: the labeller of the pairs
    letters: str = "e"  # the letter judge's letters
    beta: float = 0.1  # DPO's beta: the strength of the implicit KL penalty to the reference
    eval_prompts: int = 256  # held-out prompts of fine_tuning_metrics (policy against reference)
    eval_pairs: int = 256  # held-out pairs of DPO's own loss, margin and accuracy


HEADLINE = pg.HEADLINE
GPU_TRAINING = pg.GPU_TRAINING

# quick: 100 steps of 32 pairs of 32-character responses from the quick-preset language model (about a fifth tied
# and masked out) at lr 3e-5: the reward rises by 1.2 of the reference's sds with the test bits/char 0.05 worse (at
# 150 steps: 2.2 sds, 0.12 worse). Longer, the policy keeps drifting: the judge's labels are deterministic and DPO pushes
# the margins on without bound (400 steps at 3e-5 or 1e-4 gave KLs of tens of nats per response; docs/topics/dpo.md).
# full: 128 pairs of 64 characters from a full-preset LM (context 256).
PRESETS = {
    "quick": {"shakespeare": Preset(
        Config(),
        TrainConfig(steps=100, batch_size=32, lr=3e-5, warmup_steps=20,
                    checkpoint_every=50, log_every=10, samples=8, threads=1, **pg.FINE_TUNING))},
    "full": {"shakespeare": Preset(
        Config(prompt_length=64, response_length=64, eval_prompts=1024, eval_pairs=1024),
        TrainConfig(steps=2000, batch_size=128, lr=3e-5, warmup_steps=50,
                    checkpoint_every=500, samples=16, **pg.FINE_TUNING, **GPU_TRAINING))},
}
default_config = preset_config("dpo", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = LM_ARCHITECTURE
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("judge", "letters", "beta", "eval_prompts", "eval_pairs", "prompt_length", "response_length")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**LM_RANGES, "beta": "positive", **dict.fromkeys(("eval_prompts", "eval_pairs"), "at least 2")}


def check(config: Config) -> None:
    """One line (ValueError) per setting out of range."""
    judge(config.judge, config.letters)
    if not config.beta > 0:
        raise ValueError(f"model.beta must be positive (DPO's implicit reward is beta log pi/pi_ref), got "
                         f"{config.beta}")
    if config.eval_prompts < 2 or config.eval_pairs < 2:
        raise ValueError(f"model.eval_prompts and model.eval_pairs must be at least 2, got {config.eval_prompts} "
                         f"and {config.eval_pairs}")


def build(config: Config, data, parents: dict) -> PolicyAndReference:
    """The policy and the frozen reference, both the reference run's language model at first."""
    check(config)
    lm = build_pair(config, data, parents)
    net = PolicyAndReference(lm)
    return net


def draw_noise(net: PolicyAndReference, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The uniforms of n prompts' two responses: (n, 2, L) (``pairs.draw_pair_noise``, the reward model's)."""
    return draw_pair_noise(n, config.response_length, generator)


def pair_log_probs(lm, pairs: PreferencePairs, prompt_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log lm(y_w | prompt), log lm(y_l | prompt)), each (B,): one pass over the 2B episodes, the prompt's
    characters masked out of the sum (``response_log_prob``)."""
    tokens, logits = episode_logits(lm, pairs.prompts.repeat(2, 1), torch.cat([pairs.chosen, pairs.rejected]))
    return response_log_prob(logits, tokens, prompt_length).chunk(2)


def dpo_terms(net: PolicyAndReference, beta: float, pairs: PreferencePairs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DPO's loss on the untied pairs and its terms there: the implicit reward margin r_hat_w - r_hat_l (eq. 5's
    beta log pi/pi_ref), the share of pairs with a positive margin, the implicit rewards of chosen and rejected.
    The prompt's length is the pairs' own."""
    prompt_length = pairs.prompts.shape[1]
    pi_w, pi_l = pair_log_probs(net.policy, pairs, prompt_length)
    with torch.no_grad():
        ref_w, ref_l = pair_log_probs(net.reference, pairs, prompt_length)
    loss = untied_mean(lambda a, b, c, d: dpo_loss(a, b, c, d, beta), pairs.untied, pi_w, pi_l, ref_w, ref_l)
    r_w, r_l = implicit_reward(pi_w.detach(), ref_w, beta), implicit_reward(pi_l.detach(), ref_l, beta)
    untied = pairs.untied.to(r_w.device).float()
    n = untied.sum().clamp(min=1)
    return loss, {"margin": ((r_w - r_l) * untied).sum() / n, "accuracy": ((r_w > r_l).float() * untied).sum() / n,
                  "chosen_reward": (r_w * untied).sum() / n, "rejected_reward": (r_l * untied).sum() / n,
                  "tied": pairs.tied.float().mean()}


def loss(net: PolicyAndReference, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """DPO on the batch's pairs (x (B, 256) windows as prompts, two reference responses each); terms: the implicit
    reward margin and accuracy on the untied pairs, the implicit rewards, the share of tied pairs."""
    pairs = preference_pairs(net.reference, prompts_of(batch[0], config.prompt_length), noise["u"],
                             judge(config.judge, config.letters))
    return dpo_terms(net, config.beta, pairs)


# Evaluation and samples ------------------------------------------------------------------------------------------
@torch.no_grad()
def held_out_dpo(net: PolicyAndReference, config: Config, dataset: Dataset, generator: torch.Generator
                 ) -> dict[str, float]:
    """DPO's loss, implicit margin and accuracy on ``model.eval_pairs`` pairs drawn for the split's first windows."""
    prompts = pg.held_out_prompts(dataset, config.eval_pairs, config.prompt_length).to(next(net.policy.parameters()).device)
    u = draw_pair_noise(len(prompts), config.response_length, generator)["u"]
    was_training = net.training
    net.eval()
    loss, terms = dpo_terms(net, config.beta, preference_pairs(net.reference, prompts, u,
                                                               judge(config.judge, config.letters)))
    net.train(was_training)
    return {"dpo_loss": float(loss), "implicit_margin": float(terms["margin"]),
            "implicit_accuracy": float(terms["accuracy"]), "held_out_pairs": len(prompts)}


def evaluate(net: PolicyAndReference, config: Config, dataset: Dataset, generator: torch.Generator
             ) -> dict[str, float]:
    """``fine_tuning_metrics`` of the DPO policy against the reference, and ``held_out_dpo``."""
    return {**pg.fine_tuning_metrics(net, config, dataset, generator), **held_out_dpo(net, config, dataset, generator)}


def sample(net: PolicyAndReference, config: Config, n: int, generator: torch.Generator, examples=None):
    """REINFORCE's: 'samples' (the policy's responses to validation prompts) and 'versus_reference'."""
    return pg.sample(net, config, n, generator, examples)


__all__ = ["BUILDS_ON", "HEADLINE", "Config", "build", "default_config", "draw_noise", "evaluate", "inherit",
           "loss", "sample"]
