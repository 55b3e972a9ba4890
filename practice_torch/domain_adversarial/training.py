"""DANN's training adapter (``practice_torch.models``): ``python -m practice_torch train domain_adversarial``.

Unsupervised domain adaptation (Ganin & Lempitsky 2015; Ganin et al. 2016): the labelled source domain is the run's
data set (Fashion-MNIST by default), the unlabelled target domain a deterministic shift of the same images
(``model.target``: ``galaxies``, MNIST-M's blend over GalSim galaxies, by default; see
``practice_torch.domain_adversarial.domains``). The target domain's training images are the shifted images of the
training split the engine loaded (``domains``); the engine draws each step's target batch from them (with
replacement, from its generator, so a resumed run repeats the same batches) and appends it to the source batch:
(x, y, x_target). The target's labels are never read in training. ``--set model.adversarial=false`` trains the
source-only baseline: the same network, steps and batches with lambda = 0; ``--set model.train_on=target`` the
train-on-target bound (Ganin et al. 2016, Table 2's last row): the label classifier on the target's labelled training
images, lambda = 0. The share of the gap DANN closes is (DANN - source only) / (train on target - source only).

``eval`` reports the source and target test accuracies, the domain classifier's accuracy on the two test sets (about
0.5 when the features are aligned) and the proxy A-distance 2 (1 - 2 err) of a linear classifier trained to tell the
features apart (Ben-David et al. 2007; Ganin et al. 2016, sec. 5.1.4). ``sample`` writes a grid of test examples,
source rows over target rows, framed green where the label classifier is right and red where it is wrong, and the
predicted class names. The derivation: ``python -m theory_jax domain_adversarial``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from practice_torch.data import stacked
from practice_torch.domain_adversarial.domains import SHIFTS, target_domain
from practice_torch.domain_adversarial.functions import lambda_schedule
from practice_torch.domain_adversarial.networks import DANN, dann_loss
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.models import Artefact


@dataclass
class Config:
    """DANN's hyperparameters: the run's ``model.*`` keys (``--set model.adversarial=false``)."""

    target: str = "galaxies"  # the target domain's shift of the source images: galaxies, patches or inverted
    adversarial: bool = True  # false: the source-only baseline (lambda = 0; the domain classifier trains alone)
    train_on: Literal["source", "target"] = "source"  # target: the bound, labels of the target's images (lambda = 0)
    lam: float = 1.0  # the final lambda, the ceiling of lambda_p
    gamma: float = 10.0  # lambda_p = lam (2 / (1 + exp(-gamma p)) - 1), sec. 5.2.2
    ramp_steps: int = 3000  # the steps over which p goes from 0 to 1: set it to train.steps
    channels: tuple[int, ...] = (32, 64)  # the feature extractor's strided convs
    hidden: tuple[int, ...] = (128,)  # the label classifier's hidden widths
    domain_hidden: tuple[int, ...] = (128,)  # the domain classifier's hidden widths
    groups: int = 8  # GroupNorm groups of the extractor
    pad_examples: int = 2000  # eval: examples per domain for the proxy A-distance (half fit, half scored); 0: none


GPU_TRAINING = {"ema_decay": 0.999, "precision": "bf16", "log_every": 100}

# quick: a few minutes on 2 CPU cores, on one thread (small convs run slower on two threads that share the cores);
# full: one GPU. A step sees a source batch and a target batch of the same size.
HEADLINE = (("target_accuracy", "target test accuracy", "share"),)

PRESETS = {
    "quick": {
        **dict.fromkeys(("fashion_mnist", "image"), Preset(
            Config(ramp_steps=3000),
            TrainConfig(steps=3000, batch_size=64, lr=1e-3, warmup_steps=100, checkpoint_every=1000, log_every=50,
                        samples=32, threads=1))),
    },
    "full": {
        **dict.fromkeys(("fashion_mnist", "image"), Preset(
            Config(ramp_steps=30_000, channels=(64, 128), hidden=(256,), domain_hidden=(512, 512)),
            TrainConfig(steps=30_000, batch_size=256, lr=5e-4, warmup_steps=500, checkpoint_every=5000, samples=32,
                        **GPU_TRAINING))),
    },
}
default_config = preset_config("domain_adversarial", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("target", "channels", "hidden", "domain_hidden", "groups")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("pad_examples",)
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("gamma", "ramp_steps", "channels", "hidden", "domain_hidden", "groups"), "positive"),
          **dict.fromkeys(("lam", "pad_examples"), "at least 0")}
CHECKPOINT_VERSIONS = {1: "a step counter in the weights (lambda's schedule)",
                       2: "no step counter: lambda's schedule reads the engine's step number"}


def build(config: Config, data) -> DANN:
    """DANN for a labelled image set; one-line ValueError otherwise."""
    if data.modality != "image" or len(data.shape) != 3:
        raise ValueError(f"DANN adapts an image classifier; {data.name} is {data.modality} data of shape {data.shape}")
    if not data.num_classes:
        raise ValueError(f"DANN needs a labelled source domain, and {data.name} has no class labels")
    if config.target not in SHIFTS:
        raise ValueError(f"unknown model.target {config.target!r}; choose from {', '.join(SHIFTS)}")
    if config.lam < 0:
        raise ValueError(f"model.lam must be 0 or more (0: source-only), got {config.lam}")
    if config.ramp_steps < 1:
        raise ValueError(f"model.ramp_steps must be positive (set it to train.steps), got {config.ramp_steps}")
    if config.train_on not in ("source", "target"):
        raise ValueError(f"model.train_on is source (DANN, or source only) or target (the bound), got "
                         f"{config.train_on!r}")
    return DANN(data.shape, data.num_classes, config.channels, config.hidden, config.domain_hidden, config.groups)


def domains(config: Config, train_set) -> dict[str, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """The target domain's training images (N, C, H, W): the training split's images, shifted (``model.target``);
    the engine appends a batch of them to each source batch. The train-on-target bound's are labelled: (images,
    labels (N,)), drawn with the same rows."""
    x, y = stacked(train_set)
    images, labels = target_domain(x.cpu(), y.cpu(), config.target, "train").tensors
    return {"target": (images, labels) if config.train_on == "target" else images}


def draw_noise(net: DANN, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """None: the step's randomness is its target batch's rows, which the engine draws."""
    return {}


def scheduled_lambda(config: Config, step: int) -> float:
    """lambda_p = lam (2 / (1 + exp(-gamma p)) - 1) at p = min(step / ramp_steps, 1) (sec. 5.2.2), from the steps
    taken before this one; 0 for the source-only baseline."""
    if not config.adversarial or config.train_on == "target":
        return 0.0
    progress = torch.tensor(min(step / config.ramp_steps, 1.0), dtype=torch.float64)
    return config.lam * float(lambda_schedule(progress, config.gamma))


def loss(net: DANN, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """``dann_loss`` on the source batch and the target batch, batch = (x (B, C, H, W), y (B,), x_target (B, C, H,
    W)), with this step's lambda_p (a Python float: under train.compile each new value is compiled anew); the
    train-on-target bound's target batch is (x_target, y_target)."""
    x, y, target = batch
    if config.train_on == "target":  # the bound: the target's labelled images, (x_target, y_target)
        return dann_loss(net, x, y, target[0], 0.0, y_target=target[1])
    return dann_loss(net, x, y, target, scheduled_lambda(config, step))


# Evaluation -------------------------------------------------------------------------------------------------------
def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def predict(net: DANN, x, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(class predictions (N,), domain logits (N,), features (N, F)) of images x (N, C, H, W), on the CPU."""
    device, preds, domains, feats = _device(net), [], [], []
    for chunk in x.split(batch):
        f = net.features(chunk.to(device)).float()
        preds.append(net.classifier(f).argmax(1).cpu())
        domains.append(net.discriminator(f)[:, 0].cpu())
        feats.append(f.cpu())
    return torch.cat(preds), torch.cat(domains), torch.cat(feats)


def proxy_a_distance(source_features, target_features, generator: torch.Generator) -> float:
    """d_A = 2 (1 - 2 err) (Ben-David et al. 2007; Ganin et al. 2016, sec. 5.1.4): err, the held-out error of a
    linear classifier (logistic regression) trained to tell source features from target ones on half of each set,
    scored on the other half. source_features, target_features: (N, F), N >= 4 -> a float in [-2, 2]; 2: the
    domains are linearly separable, 0: not at all."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    n = min(len(source_features), len(target_features))
    x = torch.cat([source_features[:n], target_features[:n]]).double()
    y = torch.cat([torch.zeros(n), torch.ones(n)])
    order = torch.randperm(2 * n, generator=generator)
    fit, scored = order[:n], order[n:]
    scaler = StandardScaler().fit(x[fit].numpy())
    clf = LogisticRegression(max_iter=500).fit(scaler.transform(x[fit].numpy()), y[fit].numpy())
    err = 1.0 - clf.score(scaler.transform(x[scored].numpy()), y[scored].numpy())
    return 2.0 * (1.0 - 2.0 * err)


@torch.no_grad()
def evaluate(net: DANN, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """On the held-out split (source) and its shifted twin (target, labels read here only): both accuracies, the
    domain classifier's balanced accuracy, and the proxy A-distance of the extractor's features."""
    x, y = stacked(dataset)
    x_target = target_domain(x, y, config.target, "test").tensors[0]
    pred_s, dom_s, feat_s = predict(net, x)
    pred_t, dom_t, feat_t = predict(net, x_target)
    metrics = {"source_accuracy": float((pred_s == y).float().mean()),
               "target_accuracy": float((pred_t == y).float().mean()),
               "domain_accuracy": 0.5 * float((dom_s < 0).float().mean() + (dom_t > 0).float().mean()),
               "examples": len(y)}
    n = min(config.pad_examples, len(y))
    if n >= 4:
        metrics["proxy_a_distance"] = proxy_a_distance(feat_s[:n], feat_t[:n], generator)
    return metrics


# Samples ----------------------------------------------------------------------------------------------------------
def framed(x, correct, width: int = 2):
    """Grey images x (N, 1 or 3, H, W) as RGB with a frame of ``width`` pixels, green where ``correct`` (N,) bool,
    red elsewhere -> (N, 3, H + 2 width, W + 2 width)."""
    rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    colour = torch.where(correct[:, None], torch.tensor([0.1, 0.8, 0.1]), torch.tensor([0.9, 0.1, 0.1]))
    out = colour[:, :, None, None].expand(-1, -1, x.shape[2] + 2 * width, x.shape[3] + 2 * width).clone()
    out[:, :, width:-width, width:-width] = rgb
    return out


@torch.no_grad()
def sample(net: DANN, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """A classifier draws no samples: it pictures n held-out ``examples`` (without them, nothing): 'predictions', a
    grid of rows of source images over the rows of their target twins, framed green (right) or red (wrong); and
    'predicted_labels', the predicted class indices row by row."""
    cols = 8
    if examples is None:
        return []
    x, y = examples[0][: max(cols, n // cols * cols)], examples[1][: max(cols, n // cols * cols)]
    x_target = target_domain(x, y, config.target, "test").tensors[0]
    pred_s, pred_t = predict(net, x)[0], predict(net, x_target)[0]
    rows, lines = [], []
    for s in range(0, len(x), cols):
        part = slice(s, s + cols)
        rows += [framed(x[part], pred_s[part] == y[part]), framed(x_target[part], pred_t[part] == y[part])]
        lines += [f"source: {pred_s[part].tolist()}  true: {y[part].tolist()}",
                  f"target: {pred_t[part].tolist()}  true: {y[part].tolist()}"]
    return [Artefact("predictions", "images", torch.cat(rows), nrow=cols),
            Artefact("predicted_labels", "text", ["\n".join(lines)])]
