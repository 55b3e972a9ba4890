"""The f-GAN's training interface (``practice_torch.models``): config, presets, loss on a batch, samples, eval.

``python -m practice_torch train f_divergence`` trains on the 2-D mixture of eight Gaussians (MLPs);
``--dataset fashion_mnist`` on images (DCGAN-style convolutions); ``--set model.divergence=kl`` picks the
divergence. ``eval`` reports the critic's variational estimate of D_f(data || model) on held-out data
(a lower bound up to sampling error) and, on labelled 2-D data, how many modes the samples cover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.players import Player
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.f_divergence.functions import conjugate_at_activation, density_ratio, output_activation
from practice_torch.f_divergence.networks import FGAN, player_losses
from practice_torch.models import Artefact
from practice_torch.plots import density_figure_2d, figure_artefact, scatter_figure_2d


@dataclass
class Config:
    """The f-GAN's hyperparameters: the run's ``model.*`` keys (``--set model.divergence=reverse_kl``)."""

    divergence: Literal["kl", "reverse_kl", "js", "tv", "pearson", "hellinger"] = "js"
    generator_objective: Literal["saddle", "non_saturating"] = "non_saturating"
    architecture: Literal["mlp", "conv"] = "mlp"
    latent_dim: int = 8
    hidden: tuple[int, ...] = (128, 128, 128)  # MLP widths (generator and critic)
    channels: tuple[int, ...] = (64, 128)  # conv widths (two stride-2 layers each way)
    fc: int = 1024  # conv: width of the fully connected layer in generator and critic
    r1: float = 0.1  # weight of the R1 gradient penalty on the critic (Mescheder et al. 2018); 0 = Algorithm 1 as is


GPU_TRAINING = {"ema_decay": 0.999, "precision": "bf16", "log_every": 100}


# quick: about a minute on the 2-D mixture, a few minutes on Fashion-MNIST (2 CPU cores); full: GPU scale. Vector data
# (the 2-D sets) get MLPs, images DCGAN-style convolutions.
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("fid", "FID (project features)", "FID"), ("modes_covered", "modes covered", "modes"),
            ("divergence_estimate", "critic estimate of D_f(data || model)", "nats"))

PRESETS = {
    "quick": {
        **dict.fromkeys(("gaussians", "*"), Preset(
            Config(),
            TrainConfig(steps=6000, batch_size=256, lr=5e-4, warmup_steps=50, grad_clip=10.0, checkpoint_every=2000,
                        samples=2000))),
        "image": Preset(
            Config(architecture="conv", latent_dim=64, r1=10.0, channels=(32, 64), fc=512),
            TrainConfig(steps=3000, batch_size=64, lr=5e-4, warmup_steps=50, grad_clip=10.0, checkpoint_every=1000,
                        samples=64)),
    },
    "full": {
        **dict.fromkeys(("gaussians", "*"), Preset(
            Config(),
            TrainConfig(steps=20_000, batch_size=512, lr=5e-4, warmup_steps=200, grad_clip=10.0,
                        checkpoint_every=5000, samples=5000, **GPU_TRAINING))),
        "image": Preset(
            Config(architecture="conv", latent_dim=64, r1=10.0, channels=(64, 128), fc=1024),
            TrainConfig(steps=30_000, batch_size=128, lr=2e-4, warmup_steps=500, grad_clip=10.0,
                        checkpoint_every=5000, samples=100, **GPU_TRAINING)),
    },
}
default_config = preset_config("f_divergence", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("divergence", "architecture", "latent_dim", "hidden", "channels", "fc")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ()
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("latent_dim", "hidden", "channels", "fc"), "positive"), "r1": "at least 0"}
CHECKPOINT_VERSIONS = {1: "one optimizer for both players, one gradient clip over both",
                       2: "the critic and the generator each have their own optimizer and clip"}


def build(config: Config, data) -> FGAN:
    """The f-GAN for a data set of vectors (D,) or images (C, H, W) in [0, 1]; one-line ValueError otherwise."""
    if data.modality not in ("2-D", "image"):
        raise ValueError(f"the f-GAN models vectors or images; {data.name} is {data.modality} data")
    if config.architecture == "conv" and len(data.shape) != 3:
        raise ValueError(f"model.architecture=conv needs images; {data.name} examples have shape {data.shape} "
                         "(use model.architecture=mlp)")
    return FGAN(data.shape, config.divergence, config.architecture, config.latent_dim, config.hidden, config.channels,
                config.fc, unit_interval=data.unit_images)


def draw_noise(net: FGAN, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """z ~ N(0, I), (n, d): the generator's latents for one batch."""
    return {"z": torch.randn((n, net.latent_dim), generator=generator)}


def players(net: FGAN, config: Config) -> dict[str, Player]:
    """One AdamW each (the run's lr): the critic V_omega and the generator G_theta."""
    return {"critic": Player(list(net.critic.parameters())), "generator": Player(list(net.generator.parameters()))}


def train_step(net: FGAN, config: Config, step: int, run):
    """Algorithm 1 of Nowozin et al. (single-step gradient method): on one batch and its z, the critic ascends F
    (+ R1) and the generator descends its objective, both from the same parameters (simultaneous updates), each on
    its own optimizer with its own gradient clip. -> (-F + the generator's loss, the terms)."""
    (x, _), noise = run.next_batch()
    with run.autocast():
        losses, terms = player_losses(net, x, noise["z"], config.r1, config.generator_objective)
    run.update(**losses)
    return sum(v.detach() for v in losses.values()), {k: v.detach() for k, v in terms.items()}


def _device(net: FGAN) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def sample(net: FGAN, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """Images: a grid of n samples. 2-D: a scatter of n samples beside the held-out ``examples`` and the
    critic's density ratio p_data/p_model = (f*)'(T(x)) over the plane (not for tv, whose critic is a sign)."""
    device = _device(net)
    samples = net(torch.randn((n, net.latent_dim), generator=generator).to(device)).cpu()
    if len(net.shape) == 3:
        return [Artefact("samples", "images", samples, nrow=math.ceil(math.sqrt(n)))]
    if examples is None:  # no data to compare with (``sample --out``): the samples alone
        return [figure_artefact("samples", _scatter(samples))]
    data = examples[0]
    figures = [scatter_figure_2d("samples", samples, data, title=f"f-GAN samples ({config.divergence})")]
    if config.divergence != "tv":
        def log_ratio(xy):
            t = net.critic_value(xy.to(device))
            return torch.log(density_ratio(t, config.divergence).clamp(1e-6, 4.0)).cpu()
        figures.append(density_figure_2d("density_ratio", log_ratio, data, samples,
                                         title="critic's p_data / p_model (clipped at 4)"))
    return figures


def _scatter(samples):
    """A figure of 2-D samples (N, 2) on their own."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.5)
    ax.set_title(f"samples ({len(samples)})")
    return fig


@torch.no_grad()
def evaluate(net: FGAN, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """The critic's estimate of D_f(data || model) = mean T(x_data) - mean f*(T(G(z))) on the held-out set and
    as many generated samples (with its standard error), and on labelled 2-D data the mode coverage."""
    device, div = _device(net), config.divergence
    sums = torch.zeros(4, dtype=torch.float64)  # sum T(real), sum T(real)^2, sum f*(T(fake)), its square
    fakes, reals, labels = [], [], []
    for x, y in DataLoader(dataset, batch_size=1000):
        x = x.to(device)
        fake = net(torch.randn((len(x), net.latent_dim), generator=generator).to(device))
        t_real = output_activation(net.critic(x), div).double()
        c_fake = conjugate_at_activation(net.critic(fake), div).double()
        sums += torch.stack([t_real.sum(), (t_real**2).sum(), c_fake.sum(), (c_fake**2).sum()]).cpu()
        if len(net.shape) == 1:
            fakes.append(fake.cpu())
            reals.append(x.cpu())
            labels.append(y)
    n = len(dataset)
    mean_real, mean_fake = sums[0] / n, sums[2] / n
    var = (sums[1] / n - mean_real**2) / n + (sums[3] / n - mean_fake**2) / n
    metrics = {"divergence_estimate": float(mean_real - mean_fake),
               "divergence_estimate_se": float(var.clamp(min=0).sqrt()), "mean_critic_data": float(mean_real),
               "mean_conjugate_model": float(mean_fake), "examples": n}
    if fakes:
        metrics.update(mode_coverage(torch.cat(fakes), torch.cat(reals), torch.cat(labels)))
    return metrics


def mode_coverage(samples, data, labels, min_share: float = 0.25) -> dict[str, float]:
    """Each sample (M, D) takes the label of its nearest held-out example (data (N, D), labels (N,)).

    modes_covered: labels that receive at least ``min_share`` of their share of the data;
    high_quality: the fraction of samples no farther from the data than 99% of held-out points are from
    their own nearest neighbour (a generic form of "within 3 std of a mode", Srivastava et al. 2017).
    """
    data, samples = data.double(), samples.double()
    dist, nearest = torch.cdist(samples, data).min(dim=1)
    own = torch.cdist(data, data).fill_diagonal_(math.inf).min(dim=1).values
    classes = labels.unique()
    data_share = torch.stack([(labels == c).double().mean() for c in classes])
    sample_share = torch.stack([(labels[nearest] == c).double().mean() for c in classes])
    return {"modes_covered": int((sample_share >= min_share * data_share).sum()), "modes": len(classes),
            "high_quality": float((dist <= torch.quantile(own, 0.99)).double().mean())}
