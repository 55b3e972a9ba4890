"""The autoencoder's training adapter (``practice_torch.models``): ``python -m practice_torch train autoencoder``.

Config, presets, the loss on a batch, pictures and evaluation. One class (``model.holdout_class``) is held out of
training: its examples get no weight in the loss, so ``eval`` can score anomaly detection by reconstruction error
against it and against noise images (AUROC). ``eval`` also reports the test MSE of the autoencoder and of PCA
with as many components as the code (fitted on the training split, held-out class excluded), and the denoising
PSNR. ``sample`` writes reconstructions, denoised examples, the ROC curves and, for log-mels, WAV files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from practice_torch.autoencoder.functions import corrupt, pca_components, pca_reconstruct, reconstruction_mse
from practice_torch.autoencoder.networks import Autoencoder, bounded_outputs, check_objective
from practice_torch.data import DatasetMissing, stacked
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.engine.runs import sibling_split
from practice_torch.evaluation.probe import probe_against_pixels
from practice_torch.models import Artefact


@dataclass
class Config:
    """The autoencoder's hyperparameters: the run's ``model.*`` keys (``--set model.noise_std=0.5``)."""

    architecture: Literal["mlp", "conv"] = "conv"
    code_dim: int = 16
    hidden: tuple[int, ...] = (512, 256)  # MLP widths
    channels: tuple[int, ...] = (32, 64)  # conv widths, each conv halving the image
    objective: Literal["mse", "bce"] = "mse"
    noise_std: float = 0.0  # > 0: a denoising autoencoder, trained on x + noise_std * eps
    holdout_class: int = 9  # this label gets no weight in training: the anomalies of eval (-1: none held out)
    eval_noise_std: float = 0.5  # the corruption of eval's denoising PSNR when noise_std is 0
    noise_examples: int = 1000  # uniform-noise images scored against the test set (AUROC)
    probe_examples: int = 5000  # training images eval's linear probe of the code is fitted on (0: no probe)
    mel: bool = False  # spoken_digits log-mels (data.view=mel) in [-1, 1]: shown as spectrograms, written as WAV


GPU_TRAINING = {"precision": "bf16", "compile": True, "compile_mode": "reduce-overhead", "channels_last": True,
                "log_every": 100}

# quick: a few minutes on 2 CPU cores, on one thread (these small convs run several times slower when two threads
# share the cores with other work); full: GPU scale. Fashion-MNIST (the default): a conv autoencoder with
# a 16-dimensional code and ankle boots (9) held out. spoken_digits: an MLP autoencoder on 64x64 log-mels, "nine"
# held out.
HEADLINE = (("mse", "test MSE (classes seen in training)", "per pixel"),)

PRESETS = {
    "quick": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(), TrainConfig(steps=1500, batch_size=128, lr=2e-3, checkpoint_every=500, samples=64, threads=1))),
        "spoken_digits": Preset(
            Config(architecture="mlp", code_dim=32, mel=True, noise_examples=200),
            TrainConfig(steps=1500, batch_size=64, lr=1e-3, checkpoint_every=500, samples=16, threads=1), view="mel"),
    },
    "full": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(channels=(64, 128)),
            TrainConfig(steps=30_000, batch_size=256, lr=1e-3, warmup_steps=500, checkpoint_every=5000, samples=64,
                        **GPU_TRAINING))),
        "spoken_digits": Preset(
            Config(architecture="mlp", code_dim=32, hidden=(1024, 512), mel=True, noise_examples=200),
            TrainConfig(steps=10_000, batch_size=128, lr=1e-3, warmup_steps=500, checkpoint_every=2000, samples=16,
                        **GPU_TRAINING), view="mel"),
    },
}
default_config = preset_config("autoencoder", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("architecture", "code_dim", "hidden", "channels", "objective", "holdout_class", "mel")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("eval_noise_std", "noise_examples", "probe_examples")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("code_dim", "hidden", "channels", "eval_noise_std", "noise_examples"), "positive"),
          **dict.fromkeys(("noise_std", "probe_examples"), "at least 0"), "holdout_class": "at least -1"}


def build(config: Config, data) -> Autoencoder:
    """The autoencoder for a data set of (C, H, W) examples: sigmoid outputs for [0, 1] images, linear ones for
    log-mels."""
    bounded = bounded_outputs(data, config.objective, "the autoencoder")
    check_objective(config.objective, bounded)  # the loss's own check, before training rather than at its first step
    if config.holdout_class >= 0 and config.holdout_class >= max(data.num_classes, 1):
        raise ValueError(f"model.holdout_class={config.holdout_class}: {data.name} has "
                         f"{'labels 0..' + str(data.num_classes - 1) if data.num_classes else 'no labels'} "
                         "(-1 holds none out)")
    return Autoencoder(data.shape, config.code_dim, config.architecture, config.hidden, config.channels,
                       bounded=bounded)


def draw_noise(net: Autoencoder, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """eps ~ N(0, I), (n, C, H, W): the corruption of the denoising autoencoder (unused when noise_std = 0)."""
    return {"eps": torch.randn((n, *net.image_shape), generator=generator)}


def kept(y, holdout_class: int):
    """1 for the examples training sees, 0 for the held-out class (none when it is negative). y: (B, ...) -> (B,)."""
    if holdout_class < 0:
        return torch.ones(len(y), device=y.device)
    return (y != holdout_class).float()


def loss(net: Autoencoder, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """The reconstruction loss (MSE or BCE, from x~ for a denoising autoencoder), a mean over the batch's examples
    outside the held-out class (``config.holdout_class``); the objective and the corruption are the config's
    (``model.objective``, ``model.noise_std``). batch: (x (B, C, H, W), y (B,))."""
    x, y = batch
    per_example = net.per_example_loss(x, noise["eps"].to(x.device, x.dtype), objective=config.objective,
                                       noise_std=config.noise_std)
    weight = kept(y, config.holdout_class).to(per_example.device, per_example.dtype)
    return (per_example * weight).sum() / weight.sum().clamp(min=1.0), {"kept": weight.mean()}


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def reconstruction_errors(net: Autoencoder, x, noise_std: float = 0.0, eps=None, batch_size: int = 500):
    """Per-example MSE of the (denoised) reconstruction against x, and of the corrupted input. x: (N, ...) -> (N,)."""
    device, errors, noisy_errors = _device(net), [], []
    for i in range(0, len(x), batch_size):
        clean = x[i:i + batch_size].to(device)
        inputs = clean if eps is None else corrupt(clean, eps[i:i + batch_size].to(device), noise_std)
        errors.append(reconstruction_mse(clean, net.reconstruct(inputs)).cpu())
        noisy_errors.append(reconstruction_mse(clean, inputs).cpu())
    return torch.cat(errors), torch.cat(noisy_errors)


def psnr(mse: float, value_range: float) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(range^2 / MSE)."""
    return 10 * math.log10(value_range**2 / mse)


def noise_images(net: Autoencoder, n: int, generator: torch.Generator):
    """Uniform noise over the data's range ([0, 1] images, [-1, 1] log-mels): the obvious anomalies. (n, C, H, W)."""
    u = torch.rand((n, *net.image_shape), generator=generator)
    return u if net.bounded else 2 * u - 1


def anomaly_scores(net: Autoencoder, config: Config, x, y, generator: torch.Generator):
    """Reconstruction errors of the seen classes, the held-out class (empty when none) and noise images."""
    errors = reconstruction_errors(net, x)[0]
    seen = kept(y, config.holdout_class).bool()
    return errors[seen], errors[~seen], reconstruction_errors(net, noise_images(net, config.noise_examples, generator))[0]


def auroc(normal, anomalous) -> tuple[float, np.ndarray, np.ndarray]:
    """The area under the ROC curve of scoring anomalies by reconstruction error (sklearn), and the curve."""
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.concatenate([np.zeros(len(normal)), np.ones(len(anomalous))])
    scores = np.concatenate([normal.numpy(), anomalous.numpy()])
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(roc_auc_score(labels, scores)), fpr, tpr


def fit_pca(train: Dataset, config: Config, k: int):
    """PCA with k components of the training split ``train`` without the held-out class: (mean (D,), components
    (k, D))."""
    x, y = stacked(train)[:2]
    x = torch.flatten(x[kept(y, config.holdout_class).bool()], 1).double()
    return pca_components(x, k)


@torch.no_grad()
def evaluate(net: Autoencoder, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """Test MSE per pixel of the autoencoder and of PCA with ``code_dim`` components (on the classes seen in
    training); the denoising PSNR of the output and of the noisy input; AUROC of the reconstruction error against
    the held-out class and against uniform-noise images; with class labels, the linear probe of the code beside the
    pixels' (``evaluation.probe``, the probe BiGAN's encoder is read by)."""
    x, y = stacked(dataset)[:2]
    seen = kept(y, config.holdout_class).bool()
    value_range = 1.0 if net.bounded else 2.0
    metrics: dict[str, float] = {"examples": int(seen.sum()), "code_dim": net.code_dim}
    normal, held_out, noise = anomaly_scores(net, config, x, y, generator)
    metrics["mse"] = float(normal.mean())
    mean, components = fit_pca(sibling_split(dataset, "train"), config, net.code_dim)
    flat = torch.flatten(x[seen], 1).double()
    metrics["pca_mse"] = float(reconstruction_mse(flat, pca_reconstruct(flat, mean, components)).mean())
    sigma = config.noise_std or config.eval_noise_std
    eps = torch.randn(x[seen].shape, generator=generator)
    denoised, noisy = reconstruction_errors(net, x[seen], sigma, eps)
    metrics.update({"denoise_noise_std": sigma, "psnr_noisy_db": psnr(float(noisy.mean()), value_range),
                    "psnr_output_db": psnr(float(denoised.mean()), value_range)})
    metrics["psnr_gain_db"] = metrics["psnr_output_db"] - metrics["psnr_noisy_db"]
    if len(held_out):
        metrics.update({"holdout_class": config.holdout_class, "holdout_mse": float(held_out.mean()),
                        "auroc_holdout": auroc(normal, held_out)[0]})
    metrics["auroc_noise"] = auroc(normal, noise)[0]
    if config.probe_examples and y.dtype == torch.int64:
        train = stacked(sibling_split(dataset, "train", limit=config.probe_examples))
        metrics.update(probe_against_pixels(net.encode, (train[0], torch.as_tensor(train[1])), (x, y),
                                            next(net.parameters()).device))
    return metrics


def _pairs(name: str, rows_of: list, cols: int) -> Artefact:
    """Rows of ``cols`` images: for each block of examples, one row per stage (original, corrupted, output, ...)."""
    rows = torch.stack([r.reshape(-1, cols, *r.shape[1:]) for r in rows_of], dim=1)
    return Artefact(name, "images", rows.reshape(-1, *rows_of[0].shape[1:]).cpu(), nrow=cols)


def roc_figure(net: Autoencoder, config: Config, test: Dataset, generator: torch.Generator) -> Artefact:
    """ROC curves of anomaly detection by reconstruction error on the test split ``test``: held-out class and
    noise."""
    from practice_torch.plots import figure_artefact, new_figure

    x, y = stacked(test)[:2]
    normal, held_out, noise = anomaly_scores(net, config, x, y, generator)
    fig, (ax,) = new_figure(1, 4.5)
    for name, anomalous in ((f"held-out class {config.holdout_class}", held_out), ("uniform noise", noise)):
        if len(anomalous):
            area, fpr, tpr = auroc(normal, anomalous)
            ax.plot(fpr, tpr, label=f"{name} (AUROC {area:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="anomalies by reconstruction error")
    ax.legend(loc="lower right")
    return figure_artefact("roc", fig)


@torch.no_grad()
def sample(net: Autoencoder, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """An autoencoder draws no samples: it pictures the held-out ``examples`` (``engine.runs.HeldOut``; without
    them, nothing): rows of originals over rows of reconstructions; the denoising grid (original, noisy, denoised);
    the ROC curves on the test split. Log-mel spectrograms are shown as images and, through Griffin-Lim, written as
    WAV files too."""
    device, cols = _device(net), 8
    if examples is None:
        return []
    x = examples[0][: max(cols, n // cols * cols)].to(device)
    sigma = config.noise_std or config.eval_noise_std
    noisy = corrupt(x, torch.randn(x.shape, generator=generator).to(device), sigma)
    shown = (lambda t: t.clamp(0, 1)) if net.bounded else (lambda t: t)
    figures = [_pairs("reconstructions", [x, net.reconstruct(x)], cols),
               _pairs("denoising", [x, shown(noisy), net.reconstruct(noisy)], cols)]
    try:
        figures.append(roc_figure(net, config, sibling_split(examples, "test"), generator))
    except DatasetMissing as exc:  # the pictures go on without the test split
        print(f"ROC figure skipped: {exc}")
    if not config.mel:
        return figures
    from practice_torch.data.audio import mel_picture, mel_to_waveform

    pictures = [replace(a, data=mel_picture(a.data)) if a.name != "roc" else a for a in figures]
    clips = x[:8]
    return pictures + [Artefact("originals_audio", "audio", mel_to_waveform(clips[:, 0].cpu())),
                       Artefact("reconstructions_audio", "audio", mel_to_waveform(net.reconstruct(clips)[:, 0].cpu()))]
