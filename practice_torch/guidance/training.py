"""The noise-aware classifier's training interface (``practice_torch.models``): ``python -m practice_torch train
guidance``.

The guide of classifier guidance is trained on its own, on the noised images of the DDPM run it will guide: same
schedule, same T, same scaling of images to [-1, 1] (``practice_torch.ddpm``). One step draws t ~ U{0..T-1} and eps,
forms x_t = q_sample(x_0, alpha_bar_t, eps) and minimises the cross-entropy of p_phi(y | x_t, t). ``eval`` reports
held-out accuracy and cross-entropy per bucket of t (accuracy falls to chance as x_t becomes noise); ``sample``
shows noised held-out images with the classifier's predictions. Guided samples: ``guided_sample`` (``sampling.py``)
and ``python -m benchmarks guidance_sweep``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from practice_torch.diffusion import Schedule, q_sample
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.guidance.classifier import NoisyClassifier
from practice_torch.guidance.functions import class_log_prob, noisy_classifier_loss
from practice_torch.models import Artefact


@dataclass
class Config:
    """The noise-aware classifier's hyperparameters: the run's ``model.*`` keys. ``schedule`` and ``T`` must be those
    of the DDPM run it guides (``guided_sample`` checks)."""

    schedule: Literal["linear", "cosine"] = "cosine"
    T: int = 1000
    channels: int = 32  # base width, as the U-Net's
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = ()
    heads: int = 1
    dropout: float = 0.0
    eval_buckets: int = 5  # held-out accuracy in this many equal ranges of t
    eval_examples: int = 2000  # held-out examples per bucket (each at a fresh t and eps)
    sample_levels: int = 8  # rows of the ``sample`` figure: x_t at evenly spaced t


GPU_TRAINING = {"ema_decay": 0.999, "precision": "bf16", "compile": True, "channels_last": True, "log_every": 100}


# quick (2 CPU cores, a few minutes): fashion_mnist with widths 32/64/64 and 1500 steps; digits (8x8, tests): widths
# 16/32 (the same in both presets). full (one GPU): Dhariwal & Nichol's guide scaled to 28x28 (C = 128, 2 res blocks,
# attention at 7x7, 50k steps).
DIGITS_PRESET = Preset(
    Config(channels=16, channel_mults=(1, 2), eval_examples=500),
    TrainConfig(steps=600, batch_size=64, lr=2e-3, warmup_steps=50, ema_decay=0.99, log_every=50,
                checkpoint_every=300, samples=8))
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("accuracy", "noisy-image classifier accuracy, t ~ U", "fraction"),)

PRESETS = {
    "quick": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(),
            TrainConfig(steps=1500, batch_size=128, lr=2e-3, warmup_steps=100, ema_decay=0.995, log_every=50,
                        checkpoint_every=500, samples=8))),
        "digits": DIGITS_PRESET,
    },
    "full": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(channels=128, num_res_blocks=2, attention_levels=(2,), dropout=0.1, eval_examples=10_000),
            TrainConfig(steps=50_000, batch_size=256, lr=3e-4, warmup_steps=1000, weight_decay=0.05,
                        checkpoint_every=5000, samples=8, **GPU_TRAINING))),
        "digits": DIGITS_PRESET,
    },
}
default_config = preset_config("guidance", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("schedule", "T", "channels", "channel_mults", "num_res_blocks", "attention_levels", "heads",
                "dropout")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("eval_buckets", "eval_examples", "sample_levels")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("T", "channels", "channel_mults", "num_res_blocks", "heads", "eval_buckets", "eval_examples",
                           "sample_levels"), "positive"),
          "attention_levels": "at least 0", "dropout": "in [0, 1)"}


class Guide(nn.Module):
    """The classifier with what training and guidance need: its schedule and whether examples are [0, 1] images
    (modelled as 2x - 1, as the DDPM does) or real values taken as they are."""

    def __init__(self, classifier: NoisyClassifier, schedule: Schedule, images: bool):
        super().__init__()
        self.classifier, self.schedule, self.images = classifier, schedule, images
        self.shape, self.num_classes = classifier.image_shape, classifier.num_classes
        self.register_buffer("alpha_bars", schedule.alpha_bars.clone(), persistent=False)  # on the net's device

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """logits (B, K) of p_phi(y | x_t, t): x_t (B, C, H, W) in model space, t (B,) original indices."""
        return self.classifier(x_t, t)

    def to_model(self, x: Tensor) -> Tensor:
        return 2 * x - 1 if self.images else x

    def from_model(self, x: Tensor) -> Tensor:
        return ((x + 1) / 2).clamp(0, 1) if self.images else x


def build(config: Config, data) -> Guide:
    """The classifier of (C, H, W) examples with labels."""
    if len(data.shape) != 3:
        hint = " (use --set data.view=mel)" if data.modality == "audio" else ""
        raise ValueError(f"the noise-aware classifier takes (C, H, W) images; {data.name} examples have shape "
                         f"{data.shape}{hint}")
    if not data.num_classes:
        raise ValueError(f"a classifier needs labels, and {data.name} has none")
    if config.eval_buckets < 1 or config.eval_buckets > config.T:
        raise ValueError(f"model.eval_buckets must be in 1..T={config.T}, got {config.eval_buckets}")
    classifier = NoisyClassifier(data.shape, data.num_classes, config.channels, config.channel_mults,
                                 config.num_res_blocks, config.attention_levels, config.heads, dropout=config.dropout)
    return Guide(classifier, Schedule.make(config.schedule, config.T), data.unit_images)


def draw_noise(net: Guide, config: Config, n: int, generator: torch.Generator) -> dict[str, Tensor]:
    """t ~ U{0..T-1} (n,) and eps ~ N(0, I) (n, C, H, W): the noising of each example."""
    return {"t": torch.randint(0, len(net.schedule), (n,), generator=generator),
            "eps": torch.randn((n, *net.shape), generator=generator)}


def noised_logits(net: Guide, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """logits at x_t = q_sample(to_model(x), alpha_bar_t, eps). x, eps: (B, C, H, W) (x as the data set gives it)."""
    x0 = net.to_model(x)
    return net(q_sample(x0, net.alpha_bars[t], eps), t)


def loss(net: Guide, config: Config, batch, noise: dict[str, Tensor], step: int):
    """The cross-entropy of p_phi(y | x_t, t) at random t (``noisy_classifier_loss``) and the batch accuracy."""
    x, y = batch[0], batch[1].long()
    logits = noised_logits(net, x, noise["t"].to(x.device), noise["eps"].to(x.device))
    return noisy_classifier_loss(logits, y), {"accuracy": (logits.argmax(-1) == y).float().mean()}


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def bucket_edges(T: int, buckets: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of t splitting 0..T-1 into ``buckets`` near-equal parts."""
    edges = [round(i * T / buckets) for i in range(buckets + 1)]
    return list(zip(edges[:-1], edges[1:]))


@torch.no_grad()
def evaluate(net: Guide, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """Held-out accuracy and cross-entropy of p_phi(y | x_t, t) in ``eval_buckets`` ranges of t (t uniform in each,
    fresh eps), on the first ``eval_examples`` examples, and their means over the buckets (= t ~ U{0..T-1})."""
    device = _device(net)
    m = min(config.eval_examples, len(dataset))
    metrics: dict[str, float] = {}
    accuracies, losses = [], []
    for lo, hi in bucket_edges(len(net.schedule), config.eval_buckets):
        correct, nll = 0.0, 0.0
        for x, y in DataLoader(Subset(dataset, range(m)), batch_size=500):
            x, y = x.to(device), y.long().to(device)
            t = torch.randint(lo, hi, (len(x),), generator=generator).to(device)
            eps = torch.randn(x.shape, generator=generator).to(device)
            logits = noised_logits(net, x, t, eps)
            correct += (logits.argmax(-1) == y).sum().item()
            nll -= class_log_prob(logits, y).sum().item()
        accuracies.append(correct / m)
        losses.append(nll / m)
        metrics[f"accuracy_t{lo}-{hi - 1}"] = correct / m
        metrics[f"cross_entropy_t{lo}-{hi - 1}"] = nll / m
    return {"accuracy": sum(accuracies) / len(accuracies), "cross_entropy": sum(losses) / len(losses), **metrics,
            "chance_accuracy": 1 / net.num_classes, "eval_examples": m}


@torch.no_grad()
def sample(net: Guide, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """A classifier draws no samples: it shows up to 8 held-out images noised at ``sample_levels`` evenly spaced t
    (one row per t, from t = 0 down to t = T - 1), with a text of its predictions and their probabilities."""
    if examples is None:
        return [Artefact("predictions", "text", ["no held-out examples on this machine to classify"])]
    device = _device(net)
    x, y = examples[0][:min(8, n)].to(device), examples[1][:min(8, n)].long().to(device)
    levels = torch.linspace(0, len(net.schedule) - 1, config.sample_levels).round().long()
    eps = torch.randn((len(x), *net.shape), generator=generator).to(device)  # one noise per image, scaled per row
    rows, lines = [], []
    for t in levels.tolist():
        tt = torch.full((len(x),), t, device=device, dtype=torch.long)
        x_t = q_sample(net.to_model(x), net.alpha_bars[tt], eps)
        probs = torch.softmax(net(x_t, tt), dim=-1)
        rows.append(net.from_model(x_t.clamp(-1, 1)).cpu() if net.images else x_t.cpu())
        guesses = ", ".join(f"{int(p.argmax())}:{p.max():.2f}" for p in probs)
        lines.append(f"t = {t:4d}  labels {y.tolist()}  predicted (label:probability) {guesses}")
    return [Artefact("noised_inputs", "images", torch.cat(rows), nrow=len(x)),
            Artefact("predictions", "text", lines)]
