"""BiGAN's training interface (``practice_torch.models``): config, presets, loss on a batch, samples, eval.

``python -m practice_torch train bigan`` trains a BiGAN (Donahue et al. 2017) on Fashion-MNIST: a conv encoder
E(x) -> z, the f-GAN's DCGAN generator G(z) and a joint discriminator D(x, z) over pairs
(``practice_torch.bigan.networks``); ``--dataset gaussians`` (or moons, rings) the same with MLPs on 2-D points.
Two optimizers, as the GAN's: one for D, one for E and G together; a training step (``train_step``) is
``model.discriminator_steps`` updates of D, then one of E and G, so ``train.steps`` counts E and G's updates;
``model.r1`` adds R1 at the real pairs to D's loss.

``eval`` judges the encoder by a linear probe: a logistic regression fitted on E(x) of ``model.probe_examples``
training examples and scored on the held-out split, beside the same probe on an untrained encoder's E(x) and on
the raw inputs (the baselines); the reconstruction error |x - G(E(x))|^2 (G and E invert each other at the
optimum, Theorem 2) beside that of mismatched pairs x, G(E(x')); on images the FID of samples beside an untrained
generator's and the training images' (``practice_torch.gan.quality.image_references``). ``sample`` writes a grid of
G(z) and a grid of held-out images above their reconstructions G(E(x)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset

from practice_torch.bigan.networks import BiGAN, player_losses
from practice_torch.data import stacked
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.players import Player
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.engine.runs import sibling_split
from practice_torch.evaluation.probe import encoded, linear_probe, probe_against_pixels
from practice_torch.gan.functions import discriminator_loss
from practice_torch.gan.quality import REFERENCE_NOTES, untrained_copy
from practice_torch.models import Artefact
from practice_torch.plots import scatter_figure_2d


@dataclass
class Config:
    """BiGAN's hyperparameters: the run's ``model.*`` keys (``--set model.r1=1``)."""

    latent_dim: int = 2
    prior: Literal["normal", "uniform"] = "normal"  # p(z): N(0, I), or U[-1, 1]^d (the paper's "u-50"; E in the cube)
    hidden: tuple[int, ...] = (128, 128)  # 2-D: MLP widths of E, G and D's x-path
    width: int = 128  # features of the encoder's trunk and of each of D's paths (images: after the convs)
    joint: int = 256  # D's tanh units where the x-path and the z-path meet (``pair_logits``)
    channels: tuple[int, ...] = (32, 64)  # images: conv widths (two stride-2 layers each way)
    fc: int = 512  # images: the generator's fully connected width
    discriminator_steps: int = 1  # D updates per update of E and G; 0 = all three at once (simultaneous)
    r1: float = 0.0  # weight of R1 at the real pairs (Mescheder et al. 2018); 0 = the plain game
    probe_examples: int = 5000  # training examples the linear probe is fitted on
    eval_references: bool = True  # images: eval also scores an untrained generator and the training images


GPU_TRAINING = {"ema_decay": 0.999, "precision": "bf16", "log_every": 100}
DCGAN = {"betas": (0.5, 0.999), "warmup_steps": 25, "grad_clip": 0.0}  # Adam(2e-4, beta1 = 0.5), as BiGAN's
R1_IMAGES = 10.0  # the GAN's image weight: at r1 = 1 the quick preset's D won (loss 0.2) and G collapsed (FID 289)

# quick: 2 CPU cores, minutes; full: GPU scale. Steps count E and G's updates (each after discriminator_steps = 1 of D's: two
# batches a step).
HEADLINE = (("probe_accuracy", "linear probe of E(x), held-out accuracy", "share"),)
METRIC_NOTES = REFERENCE_NOTES  # what eval prints beside fid_samples, fid_untrained and fid_floor

IMAGE_QUICK = Preset(
    Config(latent_dim=32, width=256, joint=512, channels=(32, 64), fc=512, r1=R1_IMAGES),
    TrainConfig(steps=1500, batch_size=64, lr=2e-4, checkpoint_every=500, samples=64, **DCGAN))
IMAGE_FULL = Preset(
    Config(latent_dim=50, width=1024, joint=1024, channels=(64, 128), fc=1024, r1=R1_IMAGES,
           probe_examples=20_000),
    TrainConfig(steps=30_000, batch_size=128, lr=2e-4, checkpoint_every=5000, samples=64, **DCGAN, **GPU_TRAINING))
PRESETS = {  # the first row, fashion_mnist, is the default data set
    "quick": {"fashion_mnist": IMAGE_QUICK, "image": IMAGE_QUICK, "2-D": Preset(
        Config(),
        TrainConfig(steps=3000, batch_size=256, lr=2e-4, checkpoint_every=1000, samples=2000, **DCGAN))},
    "full": {"fashion_mnist": IMAGE_FULL, "image": IMAGE_FULL, "2-D": Preset(
        Config(hidden=(256, 256), width=256, joint=512),
        TrainConfig(steps=20_000, batch_size=512, lr=2e-4, checkpoint_every=5000, samples=5000,
                    **DCGAN, **GPU_TRAINING))},
}
default_config = preset_config("bigan", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("latent_dim", "prior", "hidden", "width", "joint", "channels", "fc")  # G's weights mean G on its prior
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("eval_references", "probe_examples")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("latent_dim", "hidden", "width", "joint", "channels", "fc", "probe_examples"), "positive"),
          **dict.fromkeys(("discriminator_steps", "r1"), "at least 0")}
CHECKPOINT_VERSIONS = {1: "the players took turns on one optimizer, a step counter in the weights",
                       2: "D, and E with G, each have their own optimizer; no step counter in the weights",
                       3: "the uniform prior's E(x) is squashed into the cube, 2 sigmoid(a) - 1, as the paper's code"}


def build(config: Config, data) -> BiGAN:
    """The BiGAN for a data set of vectors (D,) or images (C, H, W) in [0, 1]; one-line ValueError otherwise."""
    if data.modality not in ("2-D", "image"):
        raise ValueError(f"the BiGAN models vectors or images; {data.name} is {data.modality} data")
    if config.r1 < 0:
        raise ValueError(f"model.r1 is the weight of a penalty and must be >= 0, got {config.r1}")
    if config.latent_dim < 1 or config.width < 1 or config.joint < 1:
        raise ValueError(f"model.latent_dim, model.width and model.joint must be positive, got "
                         f"{config.latent_dim}, {config.width}, {config.joint}")
    if config.discriminator_steps < 0:
        raise ValueError("model.discriminator_steps must be 0 (simultaneous updates) or more, "
                         f"got {config.discriminator_steps}")
    net = BiGAN(data.shape, config.latent_dim, config.width, config.joint, config.channels, config.hidden, config.fc,
                unit_interval=data.unit_images, prior=config.prior)
    return net


def latents(prior: str, n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """z (n, d) from the prior p(z): N(0, I), or U[-1, 1]^d (``uniform``, Donahue et al.'s MNIST runs)."""
    if prior == "uniform":
        return 2 * torch.rand((n, d), generator=generator) - 1
    return torch.randn((n, d), generator=generator)


def draw_noise(net: BiGAN, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """z ~ p(z), (n, d): the generator's latents for one batch (``run.next_batch`` draws them with each batch)."""
    return {"z": latents(config.prior, n, net.latent_dim, generator)}


def players(net: BiGAN, config: Config) -> dict[str, Player]:
    """One AdamW each (the run's lr and betas): the discriminator, and the encoder with the generator."""
    return {"discriminator": Player(net.discriminator_parameters()),
            "encoder_generator": Player(net.encoder_generator_parameters())}


def train_step(net: BiGAN, config: Config, step: int, run):
    """One round of BiGAN's game: ``model.discriminator_steps`` updates of D, each on a fresh batch and fresh z, then
    one of E and G together on the next; ``model.discriminator_steps = 0``: all three at once on one batch. -> (D's
    loss + E and G's, the terms)."""
    terms = {}
    for _ in range(config.discriminator_steps):
        (x, _), noise = run.next_batch()
        with run.autocast():
            losses, terms = player_losses(net, x, noise["z"], (True, False), config.r1)
        run.update(**losses)
    (x, _), noise = run.next_batch()
    with run.autocast():
        losses, eg_terms = player_losses(net, x, noise["z"], (config.discriminator_steps == 0, True), config.r1)
    run.update(**losses)
    terms = {**eg_terms, **terms} if config.discriminator_steps else eg_terms
    return terms["discriminator_loss"] + terms["encoder_generator_loss"], terms


def _device(net) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def generate(net: BiGAN, n: int, generator: torch.Generator, prior: str) -> torch.Tensor:
    """n samples G(z) on the CPU, z ~ p(z) (``prior``, the run's ``model.prior``: no default, since G is trained on
    one prior only) drawn from ``generator``. -> (n, *shape)."""
    return net(latents(prior, n, net.latent_dim, generator).to(_device(net))).cpu()


@torch.no_grad()
def reconstruct(net: BiGAN, x, batch_size: int = 1000) -> torch.Tensor:
    """G(E(x)): x (N, *shape) -> (N, *shape) on the CPU."""
    device = _device(net)
    return torch.cat([net(net.encoder(chunk.to(device))).cpu() for chunk in x.split(batch_size)])


@torch.no_grad()
def sample(net: BiGAN, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """Images: a grid of about n samples G(z), and rows of held-out ``examples`` above rows of their reconstructions
    G(E(x)). 2-D: scatters of n samples and of the reconstructions beside the held-out points."""
    samples = generate(net, n, generator, config.prior)
    if len(net.shape) == 3:
        artefacts = [Artefact("samples", "images", samples, nrow=math.ceil(math.sqrt(n)))]
        if examples is not None:
            per_row = min(8, len(examples[0]))
            x = examples[0][:min(32, len(examples[0])) // per_row * per_row]
            pairs = torch.stack([x, reconstruct(net, x)], dim=1)  # (N, 2, C, H, W): image, reconstruction
            rows = pairs.unflatten(0, (-1, per_row)).transpose(1, 2)  # (R, 2, per_row, C, H, W)
            artefacts.append(Artefact("reconstructions", "images", rows.flatten(0, 2), nrow=per_row))
        return artefacts
    data = samples if examples is None else examples[0]
    artefacts = [scatter_figure_2d("samples", samples, data, title="BiGAN samples G(z)")]
    if examples is not None:
        artefacts.append(scatter_figure_2d("reconstructions", reconstruct(net, data), data, title="G(E(x))"))
    return artefacts


def probe_accuracies(net: BiGAN, train: tuple, test: tuple) -> dict[str, float]:
    """``evaluation.probe``'s linear probe on E(x) of this net's encoder and on the raw inputs x, and on E(x) of an
    untrained copy's encoder. train, test: (x (N, *shape), y (N,)) -> {"probe_accuracy", "probe_accuracy_inputs",
    "probe_examples", "probe_accuracy_untrained"}."""
    device, fresh = _device(net), untrained_copy(net).encoder
    untrained = linear_probe(encoded(fresh, train[0], device), train[1], encoded(fresh, test[0], device), test[1])
    return {**probe_against_pixels(net.encoder, train, test, device), "probe_accuracy_untrained": untrained}


def reconstruction_errors(net: BiGAN, x) -> dict[str, float]:
    """Mean squared error per dimension of G(E(x)) against x (N, *shape), and against the next example
    (x rolled by one): a BiGAN whose E and G invert each other has the first far below the second."""
    x_hat = reconstruct(net, x)
    return {"reconstruction_mse": float(torch.mean((x_hat - x) ** 2)),
            "reconstruction_mse_mismatched": float(torch.mean((x_hat - x.roll(1, dims=0)) ** 2))}


@torch.no_grad()
def evaluate(net: BiGAN, config: Config, dataset: Dataset, generator: torch.Generator,
             samples: int | None = None) -> dict[str, float]:
    """On the held-out set: D's cross-entropy on its pairs (x, E(x)) against as many generated pairs (G(z), z)
    (log 4 at D = 1/2, BiGAN's optimum), the reconstruction errors, with class labels the linear probes, on images
    (``model.eval_references``) the reference FIDs and class shares of ``gan.quality.image_references``, of at most
    ``samples`` images (eval's ``--samples``)."""
    device, total = _device(net), 0.0
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=1000):
        z = latents(config.prior, len(x), net.latent_dim, generator).to(device)
        x = x.to(device)
        real, fake = net.discriminator(x, net.encoder(x)), net.discriminator(net(z), z)
        total += float(discriminator_loss(real, fake)) * len(x)
        xs.append(x.cpu())
        ys.append(y)
    x, y = torch.cat(xs), torch.cat(ys)
    metrics = {"discriminator_loss": total / len(x), "examples": len(x), **reconstruction_errors(net, x)}
    if y.dtype == torch.int64:
        train = sibling_split(dataset, "train", limit=config.probe_examples)  # with the run's data options
        train_xy = stacked(train)
        metrics.update(probe_accuracies(net, (train_xy[0], torch.as_tensor(train_xy[1])), (x, y)))
    if len(net.shape) == 1 and y.dtype == torch.int64:
        from practice_torch.gan.quality import mode_statistics

        metrics.update(mode_statistics(generate(net, len(x), generator, config.prior), x, y))
    elif len(net.shape) == 3 and config.eval_references:
        metrics.update(references(net, dataset, generator, samples, config.prior))
    return metrics


def references(net: BiGAN, dataset: Dataset, generator: torch.Generator, samples: int | None = None,
               prior: str = "normal") -> dict[str, float]:
    """``quality.image_references`` for this net: its samples, an untrained copy's, the training images (loaded
    with the run's data options: ``engine.runs.sibling_split``), as many as the held-out images, at most ``samples``
    (default ``REFERENCE_SAMPLES``)."""
    from practice_torch.gan.quality import REFERENCE_SAMPLES, image_references

    n = min(len(dataset), samples or REFERENCE_SAMPLES)
    fresh = untrained_copy(net)
    return image_references(lambda m: generate(net, m, generator, prior), lambda m: generate(fresh, m, generator, prior),
                            dataset, sibling_split(dataset, "train"), dataset.run_data.name, n=n)
