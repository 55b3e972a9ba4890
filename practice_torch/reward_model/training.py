"""The reward model's training adapter (``practice_torch.models``):
``python -m practice_torch train reward_model --set model.reference=RUN_DIR``.

The reward model is the trunk of a trained ``language_model`` run (``model.reference``) with a scalar head read at
the last token of prompt + response (``networks.RewardModel``, ``last_token_reward``). Each step takes B data
windows as prompts, draws two responses per prompt from the frozen reference LM with the engine's uniforms, labels
the pair by the judge (``pairs.py``: chosen = the higher reward; ties masked out) and takes one optimizer step on
the Bradley-Terry loss -mean log sigmoid(r(y_w) - r(y_l)) (Christiano et al. 2017, eq. 1; ``preference_loss``).

``eval`` draws ``model.eval_pairs`` pairs on held-out prompts (the test split's windows) and reports the pair
accuracy on the untied pairs (overall and by the judge's reward gap, in units of 1/L: one character of the letter
judge), the mean Bradley-Terry loss, the calibration of preference_prob (10 bins, the expected calibration error)
and the Pearson correlation of r with the judge's reward over the single responses. ``sample`` shows responses
with both rewards and draws the reliability diagram (``calibration.png``). The derivation:
``python -m theory_jax reward_model``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.models import Artefact
from practice_torch.policy_gradient.fine_tuning import (
    FINE_TUNING,
    GPU_TRAINING,
    held_out_prompts,
    validation_prompts,
)
from practice_torch.policy_gradient.judges import judge
from practice_torch.policy_gradient.policy import (
    BUILDS_ON,
    LM_ARCHITECTURE,
    LM_RANGES,
    LanguageSettings,
    build_pair,
    decode,
    inherit,
    prompts_of,
)
from practice_torch.reward_model.functions import preference_loss, preference_prob
from practice_torch.reward_model.networks import RewardModel
from practice_torch.reward_model.pairs import PreferencePairs, draw_pair_noise, preference_pairs, untied_mean


@dataclass
class Config(LanguageSettings):
    """The reward model's settings: the run's ``model.*`` keys (``--set model.reference=runs/lm``)."""

    judge: str = "letter"  # policy_gradient.judges.JUDGES: the labeller of the pairs
    letters: str = "e"  # the letter judge's letters
    eval_pairs: int = 1000  # held-out pairs (test prompts) eval draws; sample's reliability diagram uses as many


HEADLINE = (("pair_accuracy", "held-out pair accuracy (untied pairs)", ""),
            ("reward_correlation", "correlation of r with the judge's reward", ""))

# quick: 32 pairs of 32-character responses per step (about a fifth of them tied and masked out) on the quick-preset
# language model, the whole trunk fine-tuned. full: 128 pairs of 64 characters from a full-preset LM (context 256).
PRESETS = {
    "quick": {"shakespeare": Preset(
        Config(),
        TrainConfig(steps=600, batch_size=32, lr=3e-4, warmup_steps=30,
                    checkpoint_every=200, log_every=20, samples=8, threads=1, **FINE_TUNING))},
    "full": {"shakespeare": Preset(
        Config(prompt_length=64, response_length=64, eval_pairs=1000),
        TrainConfig(steps=3000, batch_size=128, lr=1e-4, warmup_steps=100,
                    checkpoint_every=500, samples=16, **FINE_TUNING, **GPU_TRAINING))},
}
default_config = preset_config("reward_model", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = LM_ARCHITECTURE
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("judge", "letters", "eval_pairs", "prompt_length", "response_length")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**LM_RANGES, "eval_pairs": "at least 2"}


def check(config: Config) -> None:
    """One line (ValueError) per setting out of range."""
    judge(config.judge, config.letters)
    if config.eval_pairs < 2:
        raise ValueError(f"model.eval_pairs must be at least 2, got {config.eval_pairs}")


def build(config: Config, data, parents: dict) -> RewardModel:
    """The reward model on the reference run's trunk, and the frozen reference LM that draws the pairs."""
    check(config)
    lm = build_pair(config, data, parents)
    net = RewardModel(lm)
    return net


def draw_noise(net: RewardModel, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The uniforms of n prompts' two responses: (n, 2, L) (``pairs.draw_pair_noise``, shared with dpo)."""
    return draw_pair_noise(n, config.response_length, generator)


def chosen_and_rejected_rewards(net: RewardModel, pairs: PreferencePairs) -> tuple[torch.Tensor, torch.Tensor]:
    """(r(y_w), r(y_l)), each (B,), in one pass of the trunk over the 2B episodes."""
    r = net(pairs.prompts.repeat(2, 1), torch.cat([pairs.chosen, pairs.rejected]))
    return r.chunk(2)


def masked_share(flags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The share of ``flags`` that hold among the masked-in pairs (0 when none is). flags, mask: (B,) bool -> ()."""
    mask = mask.to(flags.device)
    return (flags & mask).sum().float() / mask.sum().clamp(min=1).float()


def loss(net: RewardModel, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """The Bradley-Terry loss on the batch's untied pairs (x (B, 256) windows as prompts); terms: the pair accuracy
    and the mean margin r(y_w) - r(y_l) on the untied pairs, the share of tied pairs."""
    pairs = preference_pairs(net.reference, prompts_of(batch[0], config.prompt_length), noise["u"],
                             judge(config.judge, config.letters))
    r_w, r_l = chosen_and_rejected_rewards(net, pairs)
    bt = untied_mean(preference_loss, pairs.untied, r_w, r_l)
    margin = (r_w - r_l).detach()
    untied = pairs.untied.to(margin.device)
    return bt, {"accuracy": masked_share(margin > 0, untied),
                "margin": (margin * untied).sum() / untied.sum().clamp(min=1),
                "tied": pairs.tied.float().mean()}


# Evaluation and samples ------------------------------------------------------------------------------------------
def _device(net: RewardModel) -> torch.device:
    return next(net.trunk.parameters()).device


@torch.no_grad()
def rewards_of(net: RewardModel, prompts: torch.Tensor, responses: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """r of each episode, ``chunk`` at a time, in eval mode. prompts: (N, P), responses: (N, L) -> (N,) float64."""
    was_training = net.training
    net.eval()
    r = torch.cat([net(prompts[i:i + chunk], responses[i:i + chunk]) for i in range(0, len(prompts), chunk)])
    net.train(was_training)
    return r.double().cpu()


@torch.no_grad()
def pairs_and_rewards(net: RewardModel, config, prompts: torch.Tensor, generator: torch.Generator
                      ) -> tuple[PreferencePairs, torch.Tensor]:
    """Labelled pairs on the given prompts (N, P), and the model's rewards of both responses in drawn order:
    (N, 2) float64."""
    u = draw_pair_noise(len(prompts), config.response_length, generator)["u"]
    pairs = preference_pairs(net.reference, prompts.to(_device(net)), u, judge(config.judge, config.letters))
    r = rewards_of(net, pairs.prompts.repeat(2, 1), torch.cat([pairs.responses[:, 0], pairs.responses[:, 1]]))
    return pairs, torch.stack(r.chunk(2), dim=1)


def calibration_bins(p: np.ndarray, outcome: np.ndarray, bins: int = 10
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Reliability of predicted probabilities p (N,) against outcomes (N,) in {0, 1}, in ``bins`` equal-width bins
    of [0, 1]: (count, mean p, observed frequency) per bin, each (bins,) (NaN where a bin is empty), and the
    expected calibration error sum_b n_b/N |mean p_b - frequency_b| (Guo et al. 2017, eq. 3)."""
    index = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins).astype(float)
    with np.errstate(invalid="ignore"):
        mean_p = np.bincount(index, weights=p, minlength=bins) / count
        freq = np.bincount(index, weights=outcome, minlength=bins) / count
    filled = count > 0
    ece = float(np.sum(count[filled] / count.sum() * np.abs(mean_p[filled] - freq[filled])))
    return count, mean_p, freq, ece


GAP_BINS = ((1, "gap1"), (2, "gap2"), (float("inf"), "gap3plus"))  # the judge's gap in units of 1/L, at most


def pair_metrics(r: torch.Tensor, pairs: PreferencePairs, response_length: int) -> dict[str, float]:
    """Held-out metrics of model rewards r (N, 2) (both responses in drawn order) on labelled pairs: the pair
    accuracy and Bradley-Terry loss on the untied pairs, the accuracy by the judge's reward gap, calibration (ECE
    and 10 bins of P(first wins) = preference_prob(r_1, r_2)) and the correlation of r with the judge's reward."""
    untied = pairs.untied.cpu()
    first_wins = pairs.first_wins.cpu()
    r_w = torch.where(first_wins, r[:, 0], r[:, 1])[untied]
    r_l = torch.where(first_wins, r[:, 1], r[:, 0])[untied]
    correct = (r_w > r_l).double()
    gap = pairs.reward_gap().cpu()[untied] * response_length
    metrics = {"pairs": len(r), "untied_pairs": int(untied.sum()), "tied_share": float(pairs.tied.double().mean()),
               "pair_accuracy": float(correct.mean()), "bt_loss": float(preference_loss(r_w, r_l)),
               "margin": float((r_w - r_l).mean())}
    low = 0.0
    for high, name in GAP_BINS:
        inside = (gap > low + 1e-9) & (gap <= high + 1e-9)
        metrics[f"pair_accuracy_{name}"] = float(correct[inside].mean()) if inside.any() else float("nan")
        metrics[f"pairs_{name}"] = int(inside.sum())
        low = high
    p = preference_prob(r[:, 0], r[:, 1])[untied].numpy()
    count, mean_p, freq, ece = calibration_bins(p, first_wins[untied].double().numpy())
    metrics["calibration_error"] = ece
    for i in np.flatnonzero(count):
        metrics[f"calibration_bin{i}_predicted"] = float(mean_p[i])
        metrics[f"calibration_bin{i}_observed"] = float(freq[i])
        metrics[f"calibration_bin{i}_pairs"] = int(count[i])
    metrics["reward_correlation"] = float(np.corrcoef(r.reshape(-1).numpy(), pairs.rewards.reshape(-1).numpy())[0, 1])
    return metrics


def evaluate(net: RewardModel, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """``pair_metrics`` on ``model.eval_pairs`` pairs drawn for held-out prompts (the split's first windows)."""
    prompts = held_out_prompts(dataset, config.eval_pairs, config.prompt_length)
    pairs, r = pairs_and_rewards(net, config, prompts, generator)
    return pair_metrics(r, pairs, config.response_length)


def reliability_figure(p: np.ndarray, outcome: np.ndarray) -> Artefact:
    """'calibration': the reliability diagram of P(first wins) on held-out pairs (observed frequency against the
    mean predicted probability per bin, the diagonal for reference, the bins' counts beneath)."""
    from practice_torch.plots import figure_artefact, new_figure

    count, mean_p, freq, ece = calibration_bins(p, outcome)
    fig, (ax,) = new_figure(1)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1)
    filled = count > 0
    ax.plot(mean_p[filled], freq[filled], "o-", color="C0")
    ax.bar((np.arange(10) + 0.5) / 10, count / max(count.sum(), 1), width=0.1, alpha=0.25, color="C1")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted P(first wins)", ylabel="observed frequency",
           title=f"{int(count.sum())} untied pairs, ECE {ece:.3f}")
    fig.tight_layout()
    return figure_artefact("calibration", fig)


@torch.no_grad()
def sample(net: RewardModel, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """'samples': n reference responses to validation prompts with the model's reward r and the judge's;
    'calibration': the reliability diagram on ``model.eval_pairs`` validation pairs."""
    prompts = validation_prompts(max(n, config.eval_pairs), config.prompt_length)
    pairs, r = pairs_and_rewards(net, config, prompts, generator)
    rows = [f"prompt:   {p!r}\nresponse: {y!r}  r {ri:+.3f}  judge {ji:.3f}" for p, y, ri, ji in
            zip(decode(pairs.prompts[:n]), decode(pairs.responses[:n, 0]), r[:n, 0], pairs.rewards[:n, 0])]
    untied = pairs.untied.cpu()
    p = preference_prob(r[:, 0], r[:, 1])[untied].numpy()
    return [Artefact("samples", "text", rows),
            reliability_figure(p, pairs.first_wins.cpu()[untied].double().numpy())]


__all__ = ["BUILDS_ON", "HEADLINE", "Config", "build", "default_config", "draw_noise", "evaluate", "inherit",
           "loss", "sample"]
