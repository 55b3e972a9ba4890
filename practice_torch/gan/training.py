"""The GAN's training interface (``practice_torch.models``): config, presets, loss on a batch, samples, eval.

``python -m practice_torch train gan`` trains an MLP GAN on the 2-D mixture of eight Gaussians;
``--dataset fashion_mnist`` a DCGAN; ``--set model.conditional=true`` a class-conditional GAN (the label into both
players); ``--set model.generator_loss=saturating`` the minimax generator loss of eq. 1; the stability remedies
``model.r1``, ``model.spectral_norm``, ``model.minibatch_std``, ``model.unrolled_steps`` and PacGAN's
``model.pack`` (with its toy players, ``model.architecture=pacgan``). Each player has its own
AdamW; a training step (``train_step``) is one round of the game: ``model.discriminator_steps`` updates of the discriminator,
then one of the generator, so ``train.steps`` counts generator updates.
``eval`` reports, on 2-D data, the modes covered and the share of samples within 3 standard deviations of a mode;
on images, the FID of the samples beside an untrained generator's and the training images' (the floor), the
feature network's class shares of the samples and, for a conditional GAN, how often it names the asked-for class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.players import Player
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.gan.functions import discriminator_loss, growth
from practice_torch.gan.networks import (
    GENERATOR_LOSSES,
    Adversarial,
    discriminator_objective,
    generated,
    generator_objective,
    unrolled_generator_objective,
)
from practice_torch.gan.progressive import ProgressiveAdversarial
from practice_torch.gan.quality import REFERENCE_NOTES
from practice_torch.gan.sampling import class_rows, generate, mel_artefacts, references
from practice_torch.models import Artefact
from practice_torch.plots import scatter_figure_2d


@dataclass
class Config:
    """The GAN's hyperparameters: the run's ``model.*`` keys (``--set model.conditional=true``)."""

    architecture: Literal["mlp", "conv", "pacgan"] = "mlp"  # pacgan: the toy players as PacGAN's code builds them
    generator_loss: Literal["non_saturating", "saturating"] = "non_saturating"
    conditional: bool = False  # cGAN: the one-hot label into the generator, a projection term in the discriminator
    latent_dim: int = 8
    hidden: tuple[int, ...] = (128, 128, 128)  # MLP widths (generator and discriminator; pacgan: the generator's)
    discriminator_hidden: tuple[int, ...] = (200, 200, 200)  # pacgan: the maxout discriminator's units
    pieces: int = 5  # pacgan: the linear pieces of each maxout unit
    channels: tuple[int, ...] = (64, 128)  # conv widths (two stride-2 layers each way)
    fc: int = 1024  # conv: width of the fully connected layer in generator and discriminator
    discriminator_steps: int = 1  # discriminator updates per generator update; 0 = both players at once (simultaneous)
    discriminator_lr: float | None = None  # the discriminator's Adam lr; None: the run's train.lr (the generator's)
    r1: float = 0.0  # weight of the R1 penalty on the discriminator (Mescheder et al. 2018); 0 = the plain game
    spectral_norm: bool = False  # every discriminator layer's weight divided by its largest singular value (SN-GAN)
    minibatch_std: bool = False  # the discriminator's last layer also reads the batch's feature spread (Karras et al.)
    unrolled_steps: int = 0  # the generator plays against the discriminator this many gradient steps ahead (Metz et al.)
    unroll_lr: float = 1e-3  # the learning rate of those look-ahead steps (plain gradient descent; 3e-3 hurt here)
    unroll_optimizer: Literal["sgd", "adam"] = "sgd"  # adam: the discriminator's own AdamW steps (its moments, its lr)
    pack: int = 1  # the discriminator judges this many samples at once, concatenated (PacGAN, Lin et al. 2018)
    progressive: bool = False  # progressive growing (Karras et al. 2018): both players grown from a quarter of the side
    stages: int = 3  # progressive: resolutions, each doubling the last (7 -> 14 -> 28 on 28 x 28 images)
    width: int = 32  # progressive: the channels of every block
    phase_steps: int = 600  # progressive: the first resolution's steps, then each doubling's fade-in's and its hold's
    eval_references: bool = True  # images: eval also scores an untrained generator and the training images
    mel: bool = False  # spoken_digits log-mels (data.view=mel) in [-1, 1]: shown as spectrograms, written as WAV


GPU_TRAINING = {"ema_decay": 0.999, "precision": "bf16", "log_every": 100}
R1_IMAGES = 10.0  # the f-GAN's image weight: without it the quick DCGAN collapsed onto shirts, coats and bags
DCGAN = {"betas": (0.5, 0.999), "warmup_steps": 25, "grad_clip": 0.0}  # Radford et al.: Adam(2e-4, beta1 = 0.5)

# quick: 2 CPU cores, minutes; full: GPU scale. Steps count generator updates (each after discriminator_steps = 1 of the
# discriminator's: two batches a step).
HEADLINE = (("class_accuracy", "samples classified as their class", "share"), ("fid", "FID (project features)", "FID"),
            ("fid_samples", "FID (project features)", "FID"), ("modes_covered", "modes covered", "modes"))
METRIC_NOTES = REFERENCE_NOTES  # what eval prints beside fid_samples, fid_untrained and fid_floor

PRESETS = {
    "quick": {
        **dict.fromkeys(("gaussians", "*"), Preset(
            Config(),
            TrainConfig(steps=4000, batch_size=256, lr=2e-4, checkpoint_every=1000, samples=2000, **DCGAN))),
        "image": Preset(
            Config(architecture="conv", latent_dim=64, channels=(32, 64), fc=512, r1=R1_IMAGES),
            TrainConfig(steps=3000, batch_size=64, lr=2e-4, checkpoint_every=750, samples=100, **DCGAN)),
        "audio": Preset(
            Config(architecture="conv", latent_dim=64, channels=(16, 32), fc=256, r1=R1_IMAGES, mel=True),
            TrainConfig(steps=1000, batch_size=64, lr=2e-4, checkpoint_every=250, samples=20, **DCGAN), view="mel"),
    },
    "full": {
        **dict.fromkeys(("gaussians", "*"), Preset(
            Config(),
            TrainConfig(steps=20_000, batch_size=512, lr=2e-4, checkpoint_every=5000, samples=5000,
                        **DCGAN, **GPU_TRAINING))),
        "image": Preset(
            Config(architecture="conv", latent_dim=100, channels=(64, 128), fc=1024, r1=R1_IMAGES),
            TrainConfig(steps=30_000, batch_size=128, lr=2e-4, checkpoint_every=5000, samples=100,
                        **DCGAN, **GPU_TRAINING)),
        "audio": Preset(
            Config(architecture="conv", latent_dim=100, channels=(64, 128), fc=1024, r1=R1_IMAGES, mel=True),
            TrainConfig(steps=15_000, batch_size=128, lr=2e-4, checkpoint_every=2500, samples=20,
                        **DCGAN, **GPU_TRAINING), view="mel"),
    },
}
default_config = preset_config("gan", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("architecture", "conditional", "latent_dim", "hidden", "discriminator_hidden", "pieces", "channels", "fc",
                "mel", "spectral_norm", "minibatch_std", "pack", "progressive", "stages", "width")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("eval_references",)
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("latent_dim", "hidden", "discriminator_hidden", "pieces", "channels", "fc", "discriminator_lr",
                           "unroll_lr", "pack", "width", "phase_steps"), "positive"),
          **dict.fromkeys(("discriminator_steps", "r1", "unrolled_steps"), "at least 0"), "stages": "at least 2"}
# What changed at each version of the checkpoint (the engine refuses, in one line, a run of another version)
CHECKPOINT_VERSIONS = {1: "the players took turns on one optimizer, a step counter in the weights",
                       2: "each player has its own optimizer, no step counter in the weights",
                       3: "the discriminator's weights are named discriminator, not critic"}


def build(config: Config, data) -> Adversarial:
    """The GAN for a data set of vectors (D,) or images (C, H, W) in [0, 1]; one-line ValueError otherwise."""
    if data.modality not in ("2-D", "image", "audio") or (data.modality == "audio" and len(data.shape) != 3):
        hint = " (use --set data.view=mel for its log-mel spectrograms)" if data.modality == "audio" else ""
        raise ValueError(f"the GAN models vectors, images or log-mel spectrograms; {data.name} is {data.modality} "
                         f"data of shape {tuple(data.shape)}{hint}")
    if config.mel != (data.modality == "audio"):
        raise ValueError(f"model.mel={str(config.mel).lower()} does not fit {data.name} ({data.modality} data): "
                         "mel is true exactly for spoken digits' mel view (data.view=mel)")
    if config.architecture == "conv" and len(data.shape) != 3:
        raise ValueError(f"model.architecture=conv needs images; {data.name} examples have shape {data.shape} "
                         "(use model.architecture=mlp)")
    if config.generator_loss not in GENERATOR_LOSSES:
        raise ValueError(f"unknown model.generator_loss {config.generator_loss!r}; choose from "
                         f"{', '.join(GENERATOR_LOSSES)}")
    if config.discriminator_steps < 0:
        raise ValueError("model.discriminator_steps must be 0 (simultaneous updates) or more, "
                         f"got {config.discriminator_steps}")
    if config.discriminator_lr is not None and config.discriminator_lr <= 0:
        raise ValueError(f"model.discriminator_lr must be > 0 (or none: the run's train.lr), got {config.discriminator_lr}")
    if config.unrolled_steps < 0 or (config.unrolled_steps and config.unroll_lr <= 0):
        raise ValueError(f"model.unrolled_steps must be >= 0 and model.unroll_lr > 0, got {config.unrolled_steps} and "
                         f"{config.unroll_lr}")
    if config.unrolled_steps and config.spectral_norm:
        raise ValueError("model.unrolled_steps does not combine with model.spectral_norm=true (the look-ahead steps "
                         "would move the power iteration's vectors): choose one")
    if config.pack < 1 or (config.pack > 1 and config.conditional):
        raise ValueError(f"model.pack is the number of samples the discriminator judges at once, at least 1 and 1 for "
                         f"a conditional GAN (one label per sample); got {config.pack}"
                         f"{' with model.conditional=true' if config.conditional else ''}")
    if config.conditional and not data.num_classes:
        raise ValueError(f"model.conditional=true needs class labels, and {data.name} has none")
    if config.r1 < 0:
        raise ValueError(f"model.r1 is the weight of a penalty and must be >= 0, got {config.r1}")
    if config.progressive:
        return build_progressive(config, data)
    net = Adversarial(data.shape, config.architecture, config.latent_dim, config.hidden, config.channels, config.fc,
                      data.num_classes if config.conditional else 0,
                      unit_interval=data.unit_images, spectral_norm=config.spectral_norm,
                      minibatch_std=config.minibatch_std, pack=config.pack,
                      discriminator_hidden=config.discriminator_hidden, pieces=config.pieces)
    return net


def build_progressive(config: Config, data) -> ProgressiveAdversarial:
    """The progressive GAN (``model.progressive=true``) for square images; one-line ValueError for a setting it does
    not take (its discriminator reads the minibatch standard deviation already)."""
    others = [key for key, value in (("conditional", config.conditional), ("spectral_norm", config.spectral_norm),
                                     ("minibatch_std", config.minibatch_std), ("unrolled_steps", config.unrolled_steps),
                                     ("pack", config.pack > 1)) if value]
    if others or len(data.shape) != 3:
        raise ValueError(f"model.progressive=true grows unconditional players on images, without model.{others[0]}"
                         if others else f"model.progressive=true grows players on images; {data.name} is not")
    if config.stages < 2 or config.phase_steps < 1 or config.width < 1:
        raise ValueError(f"model.stages (at least 2), model.phase_steps and model.width (at least 1) got "
                         f"{config.stages}, {config.phase_steps} and {config.width}")
    return ProgressiveAdversarial(data.shape, config.latent_dim, config.width, config.stages, data.unit_images)


def growing(net, config: Config, step: int):
    """(the players as this step sees them, the real images as they see them, what to log): the network and its
    batch as they are; for progressive growing, the players at this step's (stage, alpha) of ``growth`` and the
    batch pooled and faded to match (``real_at``), with the stage and alpha logged."""
    if not config.progressive:
        return net, lambda x: x, {}
    stage, alpha = growth(step, config.phase_steps, net.stages)
    return (net.at(stage, alpha), lambda x: net.real_at(x, stage, alpha),
            {"stage": torch.tensor(float(stage)), "alpha": torch.tensor(alpha)})


def draw_noise(net: Adversarial, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """z ~ N(0, I), (n, d): the generator's latents for one batch (``run.next_batch`` draws them with each batch)."""
    return {"z": torch.randn((n, net.latent_dim), generator=generator)}


def players(net: Adversarial, config: Config) -> dict[str, Player]:
    """One AdamW each (the run's betas): the discriminator (with the projection's class vectors) at
    ``model.discriminator_lr`` (None: the run's lr; Metz et al.'s toy code trains it at 1e-4 against the generator's
    1e-3, and its look-ahead takes the discriminator's own steps), the generator at the run's lr."""
    return {"discriminator": Player(net.discriminator_parameters(), config.discriminator_lr),
            "generator": Player(net.generator_parameters())}


def train_step(net: Adversarial, config: Config, step: int, run):
    """One round of the game (Goodfellow et al. 2014, Algorithm 1 with k = ``model.discriminator_steps``): k updates of the
    discriminator, each on a fresh batch and fresh z, then one update of the generator on fresh z (a conditional GAN
    draws its fakes for the batch's labels). ``model.discriminator_steps = 0``: both players at once on one batch
    (simultaneous gradient steps). ``model.unrolled_steps = k > 0``: the generator's loss is taken against the
    discriminator k look-ahead steps on from the generator's batch (``unrolled_generator_objective``; with
    ``model.unroll_optimizer=adam`` its optimizer's own steps, ``run.adam_state``).
    ``model.progressive``: the players and the real images at the step's resolution and fade (``growing``).
    -> (the discriminator's loss + the generator's, the players' terms)."""
    terms, (players_now, seen, grown) = {}, growing(net, config, step)
    for _ in range(config.discriminator_steps):
        (x, y), noise = run.next_batch()
        x, y = seen(x), y if net.num_classes else None
        with run.autocast():
            fake = generated(players_now, noise["z"], y, with_grad=False)
            d_loss, terms = discriminator_objective(players_now, x, fake, y, config.r1)
        run.update(discriminator=d_loss)
    (x, y), noise = run.next_batch()
    x, y = seen(x), y if net.num_classes else None
    with run.autocast():
        fake = players_now(noise["z"], y)
        if config.unrolled_steps:
            adam = run.adam_state("discriminator") if config.unroll_optimizer == "adam" else None
            g_loss = unrolled_generator_objective(net, x, fake, y, config.unrolled_steps, config.unroll_lr,
                                                  config.generator_loss, adam)
        else:
            g_loss = generator_objective(players_now, fake, y, config.generator_loss)
        if config.discriminator_steps == 0:
            d_loss, terms = discriminator_objective(players_now, x, fake, y, config.r1)
    if config.discriminator_steps == 0:
        run.update(discriminator=d_loss, generator=g_loss)
    else:
        run.update(generator=g_loss)
    return terms["discriminator_loss"] + g_loss.detach(), {**terms, "generator_loss": g_loss.detach(), **grown}


@torch.no_grad()
def sample(net: Adversarial, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """Images: a grid of about n samples (a conditional GAN: one row per class, ``labels`` set). 2-D: a scatter of n
    samples beside the held-out ``examples``."""
    y, per_row = class_rows(net, n)
    samples = generate(net, n if y is None else len(y), generator, y)
    if config.mel:
        return mel_artefacts(samples, per_row, y)
    if len(net.shape) == 3:
        return [Artefact("samples", "images", samples, nrow=per_row, labels=y)]
    data = samples if examples is None else examples[0]
    return [scatter_figure_2d("samples", samples, data, title=f"GAN samples ({config.generator_loss})")]


@torch.no_grad()
def evaluate(net: Adversarial, config: Config, dataset: Dataset, generator: torch.Generator,
             samples: int | None = None) -> dict[str, float]:
    """The discriminator's loss (eq. 1, negated: log 4 at D = 1/2) on the held-out set and as many samples; on
    labelled 2-D data the mode statistics; on images (``model.eval_references``) the reference FIDs and the class
    shares of ``quality.image_references``, of at most ``samples`` images (eval's ``--samples``)."""
    device = next(net.parameters()).device
    total, reals, labels, n = 0.0, [], [], len(dataset)
    for x, y in DataLoader(dataset, batch_size=1000):
        y_fake = y if net.num_classes else None
        fake = generate(net, len(x), generator, y_fake).to(device)
        y_dev = y.to(device) if net.num_classes else None
        total += float(discriminator_loss(net.logit(x.to(device), y_dev), net.logit(fake, y_dev))) * len(x)
        if len(net.shape) == 1:
            reals.append(x)
            labels.append(y)
    metrics = {"discriminator_loss": total / n, "examples": n}
    if len(net.shape) == 1 and labels and labels[0].dtype == torch.int64:
        from practice_torch.gan.quality import mode_statistics

        metrics.update(mode_statistics(generate(net, n, generator), torch.cat(reals), torch.cat(labels)))
    elif len(net.shape) == 3 and config.eval_references:
        metrics.update(references(net, dataset, generator, samples))
    return metrics


