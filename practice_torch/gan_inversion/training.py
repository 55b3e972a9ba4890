"""GAN inversion's training adapter (``practice_torch.models``):
``python -m practice_torch train gan_inversion --set model.generator=RUN_DIR``.

The run trains an encoder E(x) -> z against the generator of a trained, unconditional ``gan`` run on images, which is
frozen (requires_grad off, always in eval mode). Its objective is latent regression on the generator's own samples,
||E(G(z)) - z||^2 with z ~ N(0, I) (Zhu et al. 2016, eq. 2; ``functions.latent_regression_loss``), plus
``model.reconstruction_weight`` times the reconstruction error of the real training images, ||G(E(x)) - x||^2 / D
(Bau et al. 2019; 100 in the presets, where it halves the encoder's test MSE and leaves its latent regression as it
was; 0 is Zhu et al.'s encoder alone). The run builds on the gan run (``BUILDS_ON``): the engine records it in
builds_on.json and the generator's settings in this run's config (``inherit``); the run's checkpoints hold the
generator's weights, so ``sample``, ``eval`` and ``--resume`` never read the gan run again.

``eval`` inverts the first ``model.eval_examples`` held-out real images three ways: (a) optimisation of Zhu et al.'s
eq. 1 by Adam for ``model.inversion_steps`` steps from z = 0 or a random z (``model.start``), (b) the encoder alone,
(c) the hybrid: the same optimisation from E(x). For each: the reconstruction MSE, the distance of G(z*) to x in the
feature space of the project's classifier (``practice_torch.evaluation.features``) and how often it keeps x's
class, and the wall time per image. On as many of the generator's samples, where the true z is known, it reports
how far each method's z* lies from it. ``sample`` writes the generator's samples, then rows of held-out images
over their encoder, optimisation and hybrid reconstructions. The derivation: ``python -m theory_jax gan_inversion``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from practice_torch.autoencoder.functions import reconstruction_mse
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.engine.runs import inherited_keys
from practice_torch.gan.networks import Adversarial
from practice_torch.gan_inversion.networks import (
    Encoder,
    Inverter,
    encoder_loss,
    feature_distance,
    grid_side,
    invert,
    latent_error,
)
from practice_torch.models import Artefact


@dataclass
class Config:
    """The inversion's settings: the run's ``model.*`` keys (``--set model.generator=runs/gan``)."""

    generator: str = ""  # a trained, unconditional gan run on images: the generator to invert
    # the generator (inherited from the gan run)
    architecture: str = "conv"
    latent_dim: int = 64
    hidden: tuple[int, ...] = (128, 128, 128)
    channels: tuple[int, ...] = (32, 64)
    fc: int = 512
    # the encoder
    encoder_channels: tuple[int, ...] = (32, 64)  # conv widths, each halving the image
    encoder_fc: int = 256
    groups: int = 8
    reconstruction_weight: float = 0.0  # weight of ||G(E(x)) - x||^2 / D on real images (0: latent regression only)
    # inversion by optimisation (eval and sample; --set model.inversion_steps=... at eval)
    inversion_steps: int = 200  # Adam steps on z, for optimisation and hybrid alike
    inversion_lr: float = 0.1
    prior_weight: float = 1e-4  # lambda of eq. 1 (||z||^2 is about d = 64: 0.006, below the MSE reached)
    start: Literal["zero", "random"] = "random"  # the optimisation's start: z = 0 or z ~ N(0, I)
    eval_examples: int = 200  # held-out images (and generator samples) eval inverts
    eval_features: bool = True  # eval also compares G(z*) and x through the project's feature network


GAN_KEYS = ("architecture", "latent_dim", "hidden", "channels", "fc")  # what the run inherits from its gan run
BUILDS_ON = {"generator": "gan"}  # the GAN it inverts (engine.runs.Parent)
GPU_TRAINING = {"ema_decay": 0.999, "precision": "bf16", "log_every": 100}

# quick: a few minutes on 2 CPU cores, on one thread (small convs run slower on two threads that share the cores);
# full: GPU scale. Both invert whatever gan run model.generator names (a DCGAN of the gan's presets on images).
HEADLINE = (("mse_hybrid", "test reconstruction MSE, encoder then optimisation", "per pixel"),
            ("mse_encoder", "test reconstruction MSE, encoder", "per pixel"))

PRESETS = {
    "quick": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(reconstruction_weight=100.0),
            TrainConfig(steps=2000, batch_size=64, lr=1e-3, warmup_steps=100, checkpoint_every=500, log_every=50,
                        val_batch=256, samples=64, threads=1))),
    },
    "full": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(reconstruction_weight=100.0, encoder_channels=(64, 128), encoder_fc=1024, inversion_steps=500,
                   eval_examples=1000),
            TrainConfig(steps=20_000, batch_size=256, lr=5e-4, warmup_steps=500, checkpoint_every=5000,
                        val_batch=1000, samples=64, **GPU_TRAINING))),
    },
}
default_config = preset_config("gan_inversion", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("generator", *GAN_KEYS, "encoder_channels", "encoder_fc", "groups")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("inversion_steps", "inversion_lr", "prior_weight", "start", "eval_examples", "eval_features")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("latent_dim", "hidden", "channels", "fc", "encoder_channels", "encoder_fc", "groups",
                           "inversion_lr", "eval_examples"), "positive"),
          **dict.fromkeys(("reconstruction_weight", "inversion_steps", "prior_weight"), "at least 0")}


# Building: the frozen generator of a gan run and the encoder -----------------------------------------------------
def inherit(config: Config, parents: dict) -> Config:
    """The config with its gan run's generator settings (``GAN_KEYS``): what the engine records before the first
    build (``practice_torch.models.inherited``)."""
    return inherited_keys(config, parents.get("generator"), GAN_KEYS)


def check_gan(parent, data) -> None:
    """ValueError, one line, unless the gan run is unconditional, on this data set and of its examples' shape."""
    if parent.config.model.conditional:
        raise ValueError(f"model.generator={parent.run} is a conditional GAN; inversion needs an unconditional one "
                         "(its generator takes z alone)")
    if parent.config.data.name != data.name:
        raise ValueError(f"model.generator={parent.run} was trained on {parent.config.data.name}; this run is on "
                         f"{data.name} (use --dataset {parent.config.data.name})")
    if tuple(parent.net.shape) != tuple(data.shape):
        raise ValueError(f"model.generator={parent.run} makes {tuple(parent.net.shape)} examples; this run's "
                         f"{data.name} examples are {tuple(data.shape)}")


def build(config: Config, data, parents: dict) -> Inverter:
    """The frozen generator of the gan run it builds on (``parents['generator']``: its weights copied the first
    time, from this run's checkpoint afterwards) and the encoder, for (C, H, W) images."""
    if data.modality != "image" or len(data.shape) != 3:
        raise ValueError(f"GAN inversion inverts image generators; {data.name} is {data.modality} data")
    if config.eval_examples <= 0 or config.inversion_steps < 0 or config.inversion_lr <= 0:
        raise ValueError(f"model.eval_examples and model.inversion_lr must be positive and model.inversion_steps not "
                         f"negative, got {config.eval_examples}, {config.inversion_lr} and {config.inversion_steps}")
    if config.reconstruction_weight < 0 or config.prior_weight < 0:
        raise ValueError(f"model.reconstruction_weight and model.prior_weight must not be negative, got "
                         f"{config.reconstruction_weight} and {config.prior_weight}")
    parent = parents.get("generator")
    if parent is None:
        raise ValueError("gan_inversion needs the trained GAN to invert: --set model.generator=RUN_DIR (an "
                         "unconditional gan run on this data set)")
    # the whole GAN, as the gan adapter builds it (the encoder's initialisation then draws the same numbers)
    gan = Adversarial(data.shape, config.architecture, config.latent_dim, config.hidden, config.channels, config.fc,
                      0, unit_interval=True)
    if parent.net is not None:  # the first build: the gan run's weights
        check_gan(parent, data)
        gan.load_state_dict(parent.net.state_dict())
    encoder = Encoder(data.shape, config.latent_dim, config.encoder_channels, config.encoder_fc, config.groups)
    net = Inverter(gan.generator, encoder, config.latent_dim, data.shape)
    return net


# Training --------------------------------------------------------------------------------------------------------
def draw_noise(net: Inverter, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """z ~ N(0, I), (n, d): the codes of the generator's samples the encoder learns to invert."""
    return {"z": torch.randn((n, net.latent_dim), generator=generator)}


def loss(net: Inverter, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """``encoder_loss``: latent regression on G(z) (+ the weighted reconstruction of the batch's real images).
    batch: (x (B, C, H, W), y (B,))."""
    x = batch[0]
    return encoder_loss(net, x, noise["z"].to(x.device), config.reconstruction_weight)


def validate(net: Inverter, config: Config, batch) -> dict[str, torch.Tensor]:
    """val_reconstruction: the per-pixel MSE of G(E(x)) on held-out real images."""
    x = batch[0]
    return {"val_reconstruction": reconstruction_mse(x, net(net.encode(x))).mean()}


# The three inverters -------------------------------------------------------------------------------------------
def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def _timed(fn, device: torch.device):
    """(fn(), its wall time in seconds), the GPU's queue drained before the clock stops."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def checkpoints(config: Config) -> tuple[int, ...]:
    """The step counts at which eval also reports the optimisations' MSE: a tenth and half of the steps."""
    k = config.inversion_steps
    return tuple(sorted({s for s in (k // 10, k // 2) if 0 < s < k}))


def start_codes(config: Config, n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """The optimisation's start, (n, d): zeros, or z ~ N(0, I) drawn from ``generator``."""
    return torch.zeros(n, d) if config.start == "zero" else torch.randn((n, d), generator=generator)


@torch.no_grad()
def invert_three_ways(net: Inverter, config: Config, x, generator: torch.Generator) -> dict[str, dict]:
    """x (B, C, H, W) inverted by optimisation, the encoder and the hybrid: method -> {"z": (B, d), "x_hat":
    G(z) (B, C, H, W), "seconds": wall time of the whole batch, "trace": {k: MSE per example after k steps}}."""
    device = _device(net)
    x = x.to(device)
    z0 = start_codes(config, len(x), net.latent_dim, generator).to(device)
    args = (config.inversion_steps, config.inversion_lr, config.prior_weight, checkpoints(config))
    invert(net, x[:2], net.encode(x[:2]), min(config.inversion_steps, 2), *args[1:])  # warm-up, left out of the times
    z_enc, t_enc = _timed(lambda: net.encode(x), device)
    (z_opt, trace_opt), t_opt = _timed(lambda: invert(net, x, z0, *args), device)
    (z_hyb, trace_hyb), t_hyb = _timed(lambda: invert(net, x, net.encode(x), *args), device)
    found = {"optimisation": (z_opt, t_opt, trace_opt), "encoder": (z_enc, t_enc, {}),
             "hybrid": (z_hyb, t_hyb, trace_hyb)}
    return {method: {"z": z, "x_hat": net(z), "seconds": t, "trace": trace} for method, (z, t, trace) in found.items()}


def _features(net: Inverter, config: Config, dataset: Dataset):
    """The project's feature network of the data set of ``dataset`` (a split of the run's) on the net's device, or
    None (one line says why)."""
    if not config.eval_features:
        return None
    from practice_torch.evaluation.features import FeatureNetworkError, feature_network

    try:
        return feature_network(dataset.run_data.name, device=_device(net))
    except FeatureNetworkError as exc:
        print(f"feature distances skipped: {exc}", file=sys.stderr)
        return None


@torch.no_grad()
def evaluate(net: Inverter, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """On the first ``model.eval_examples`` held-out images, per method (optimisation, encoder, hybrid): the
    reconstruction MSE per pixel, seconds per image (the batch's wall time over its size), the MSE after a tenth and
    half of the optimisation's steps, and through the feature network the mean feature distance of G(z*) to x
    (beside the distance between two different held-out images) and the share of G(z*) classified as x is. On as
    many generator samples x = G(z): each method's latent error ||z* - z||^2 / d (against 1 for z* = 0) and MSE."""
    device = _device(net)
    x = next(iter(DataLoader(dataset, batch_size=min(config.eval_examples, len(dataset)))))[0].to(device)
    n, d = len(x), net.latent_dim
    real = invert_three_ways(net, config, x, generator)
    metrics: dict[str, float] = {"examples": n, "inversion_steps": config.inversion_steps,
                                 "prior_weight": config.prior_weight}
    for method, found in real.items():
        metrics[f"mse_{method}"] = float(reconstruction_mse(x, found["x_hat"]).mean())
        metrics[f"seconds_per_image_{method}"] = found["seconds"] / n
        metrics.update({f"mse_{method}_at_{k}": float(mse.mean()) for k, mse in found["trace"].items()})
    random = torch.randn((n, d), generator=generator).to(device)
    metrics["mse_random_code"] = float(reconstruction_mse(x, net(random)).mean())  # no inversion at all
    features = _features(net, config, dataset)
    if features is not None:
        metrics["feature_distance_other_image"] = float(feature_distance(features.features, x, x.roll(1, 0)).mean())
        label = features(x).argmax(-1)
        for method, found in real.items():
            metrics[f"feature_distance_{method}"] = float(feature_distance(features.features, x, found["x_hat"]).mean())
            metrics[f"class_kept_{method}"] = float((features(found["x_hat"].clamp(0, 1)).argmax(-1) == label)
                                                    .double().mean())
    z_true = torch.randn((n, d), generator=generator).to(device)
    fake = net(z_true)
    metrics["latent_error_zero"] = float(latent_error(torch.zeros_like(z_true), z_true).mean())
    for method, found in invert_three_ways(net, config, fake, generator).items():
        metrics[f"latent_error_{method}"] = float(latent_error(found["z"], z_true).mean())
        metrics[f"samples_mse_{method}"] = float(reconstruction_mse(fake, found["x_hat"]).mean())
    return metrics


# Pictures ------------------------------------------------------------------------------------------------------
def inversion_rows(net: Inverter, config: Config, x, generator: torch.Generator) -> torch.Tensor:
    """Rows of x (B, C, H, W), then its encoder, optimisation and hybrid reconstructions: (4 B, C, H, W)."""
    found = invert_three_ways(net, config, x, generator)
    rows = [x.to(_device(net))] + [found[m]["x_hat"] for m in ("encoder", "optimisation", "hybrid")]
    return torch.cat(rows).clamp(0, 1).cpu()


@torch.no_grad()
def sample(net: Inverter, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """'samples': n samples G(z) of the frozen generator, first. With held-out ``examples`` (x, y): 'inversions',
    eight of them (a row) over their encoder, optimisation and hybrid reconstructions (a row each), and
    'sample_inversions', the same for eight of the generator's samples."""
    device = _device(net)
    z = torch.randn((n, net.latent_dim), generator=generator).to(device)
    samples = net(z).cpu()
    artefacts = [Artefact("samples", "images", samples, nrow=grid_side(n))]
    if examples is None:
        return artefacts
    x = examples[0][:8]
    artefacts.append(Artefact("inversions", "images", inversion_rows(net, config, x, generator), nrow=len(x)))
    fake = samples[:8]
    artefacts.append(Artefact("sample_inversions", "images", inversion_rows(net, config, fake, generator),
                              nrow=len(fake)))
    return artefacts
