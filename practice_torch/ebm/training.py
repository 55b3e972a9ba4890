"""The EBM's training interface (``practice_torch.models``): config, presets, contrastive divergence on a batch, samples
from the replay buffer and from fresh chains, out-of-distribution detection by energy.

``python -m practice_torch train ebm`` trains an MLP energy on two moons; ``--dataset fashion_mnist`` a conv energy
on all classes, ``--set data.classes=1`` on one (trousers). Each step takes a batch of persistent chains from the
replay buffer (5% of them replaced by uniform noise), runs K Langevin steps, writes them back and minimises
``cd_loss`` (IGEBM, Du & Mordatch 2019). Held-out criterion at every log step (``validate``): on 2-D data the exact
negative log-likelihood, Z by quadrature over the chains' box (``val_nll``); on images the held-out contrastive
divergence mean E(x_val) - mean E(buffer) (``val_cd``); ``train.early_stop`` stops the run when it stalls.
``eval`` reports the energies of test examples, uniform noise, other data sets and the other classes, and the AUROC
of telling them apart by energy (sklearn); 2-D data also get the test NLL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from practice_torch.data import DatasetMissing, get_dataset, stacked
from practice_torch.ebm.functions import cd_loss
from practice_torch.ebm.networks import EBM, ConvEnergy, Langevin, MLPEnergy
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.engine.runs import sibling_split
from practice_torch.models import Artefact
from practice_torch.plots import figure_artefact, new_figure


@dataclass
class Config:
    """The EBM's hyperparameters: the run's ``model.*`` keys (``--set model.langevin_steps=20``)."""

    architecture: Literal["mlp", "conv"] = "mlp"
    mlp_hidden: tuple[int, ...] = (128, 128)  # MLPEnergy widths (points)
    conv_channels: tuple[int, ...] = (16, 32, 64)  # ConvEnergy stride-2 convs (images)
    conv_hidden: int = 64
    alpha: float = 0.1  # the L2 energy regulariser alpha (E(x+)^2 + E(x-)^2)
    buffer_size: int = 8192  # persistent chains in the replay buffer
    refresh: float = 0.05  # share of the chains of a step restarted from uniform noise
    langevin_steps: int = 40  # K, per training step
    step_size: float = 0.01  # a of x' = x - a grad E + sqrt(2 a T) z
    temperature: float = 1.0  # T: 1 samples exp(-E); the course's images sampler (a = 10, sigma = 0.005) is 1.25e-6
    grad_clip: float = 0.0  # clamp each element of grad_x E in the chains (0: none)
    box: float = 3.0  # points: the chains live in [-box, box]^D (images: [0, 1])
    sample_steps: int = 400  # Langevin steps of the fresh chains of ``sample``
    ood: tuple[str, ...] = ("digits", "galaxies")  # other image sets for eval's AUROC (resized), beside noise
    eval_examples: int = 2000  # test examples (and as many of each other set) scored by ``eval``


# quick: about a minute on moons, a few minutes on Fashion-MNIST (2 CPU cores); full: one GPU.
HEADLINE = (("nll", "test NLL (Z by quadrature)", "nats"), ("auroc_noise", "AUROC test vs noise by energy", "AUROC"))
IMAGES = {"architecture": "conv", "step_size": 10.0, "temperature": 1.25e-6, "grad_clip": 0.03, "sample_steps": 256}
PRESETS = {
    "quick": {
        **dict.fromkeys(("moons", "*"), Preset(
            Config(step_size=0.003, langevin_steps=60),
            TrainConfig(steps=2000, batch_size=128, lr=3e-3, betas=(0.0, 0.999), warmup_steps=50, grad_clip=1.0,
                        log_every=50, val_batch=2000, early_stop="val_nll", patience=8, checkpoint_every=500,
                        samples=2000, threads=1))),
        "image": Preset(
            Config(**IMAGES, conv_channels=(8, 16, 32), langevin_steps=20),
            TrainConfig(steps=1200, batch_size=64, lr=5e-4, betas=(0.0, 0.999), warmup_steps=50, grad_clip=1.0,
                        log_every=50, val_batch=256, early_stop="val_cd", patience=20, checkpoint_every=400,
                        samples=64, threads=1)),
    },
    "full": {
        **dict.fromkeys(("moons", "*"), Preset(
            Config(mlp_hidden=(256, 256, 256), step_size=0.001, langevin_steps=100),
            TrainConfig(steps=20_000, batch_size=512, lr=5e-4, betas=(0.0, 0.999), warmup_steps=200, log_every=100,
                        val_batch=2000, early_stop="val_nll", patience=20, checkpoint_every=5000, samples=5000))),
        "image": Preset(
            Config(**IMAGES, conv_channels=(32, 64, 128, 256), conv_hidden=256, langevin_steps=60, buffer_size=16384),
            TrainConfig(steps=30_000, batch_size=128, lr=1e-4, betas=(0.0, 0.999), warmup_steps=500, log_every=100,
                        val_batch=1000, early_stop="val_cd", patience=30, checkpoint_every=5000, samples=100)),
    },
}
default_config = preset_config("ebm", PRESETS)
# What changed at each version of the checkpoint (the engine refuses, in one line, a run of another version)
CHECKPOINT_VERSIONS = {1: "the rows of the latest step were not saved (a resumed run's val_cd used other negatives)",
                       2: "the replay buffer marks the rows of the latest step (latest), so val_cd resumes as it ran"}
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("architecture", "mlp_hidden", "conv_channels", "conv_hidden", "buffer_size")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("sample_steps", "step_size", "temperature", "ood", "eval_examples")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("mlp_hidden", "conv_channels", "conv_hidden", "buffer_size", "langevin_steps", "step_size", "box",
                           "sample_steps", "eval_examples"), "positive"),
          # temperature 0: noiseless gradient descent on E (it multiplies the noise, it divides nothing)
          **dict.fromkeys(("alpha", "temperature", "grad_clip"), "at least 0"), "refresh": "in [0, 1]"}


def build(config: Config, data) -> EBM:
    """The EBM for points (D,) (MLP energy) or images (C, H, W) in [0, 1] (conv energy)."""
    if data.modality not in ("2-D", "1-D", "image"):
        raise ValueError(f"the EBM takes points or images; {data.name} is {data.modality} data")
    if not 0 <= config.refresh <= 1 or config.langevin_steps < 1 or config.step_size <= 0 or config.temperature < 0:
        raise ValueError("model.refresh must be in [0, 1], model.langevin_steps >= 1, model.step_size > 0 and "
                         "model.temperature >= 0")
    images = len(data.shape) == 3
    if config.architecture == "conv":
        if not images:
            raise ValueError(f"model.architecture=conv needs images; {data.name} examples have shape {data.shape}")
        energy = ConvEnergy(config.conv_channels, config.conv_hidden, in_channels=data.shape[0])
    else:
        energy = MLPEnergy(math.prod(data.shape), config.mlp_hidden)
        if images:
            raise ValueError("model.architecture=mlp takes points; use model.architecture=conv for images")
    low, high = (0.0, 1.0) if images else (-config.box, config.box)
    return EBM(energy, data.shape, low, high, config.buffer_size)


def sampler(config: Config) -> Langevin:
    """The Langevin sampler of the run's ``model.step_size``, ``model.temperature`` and ``model.grad_clip``."""
    return Langevin(config.step_size, config.temperature, config.grad_clip)


def draw_noise(net: EBM, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Buffer rows (n,) (distinct while n <= buffer size), refresh masks (n,) ~ Bernoulli(refresh), their fresh
    uniforms (n, *shape) and the Langevin noise (n, K, *shape)."""
    size = len(net.replay)
    index = torch.randperm(size, generator=generator)[:n] if n <= size else torch.randint(size, (n,), generator=generator)
    return {"index": index, "refresh": (torch.rand(n, generator=generator) < config.refresh).float(),
            "u": torch.rand((n, *net.shape), generator=generator),
            "z": torch.randn((n, config.langevin_steps, *net.shape), generator=generator)}


def loss(net: EBM, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """Persistent contrastive divergence: negatives from the refreshed buffer rows after K Langevin steps (written
    back), then ``cd_loss`` with the L2 regulariser. batch: (x (B, ...), y)."""
    x = batch[0]
    device = x.device
    negatives = net.negatives(noise["index"].to(device), noise["refresh"].to(device), noise["u"].to(device),
                              noise["z"].to(device), sampler(config))
    e_pos, e_neg = net(x), net(negatives)
    return cd_loss(e_pos, e_neg, config.alpha), {"energy_data": e_pos.mean().detach(),
                                              "energy_samples": e_neg.mean().detach()}


def _grid(net: EBM, size: int):
    """The size x size lattice over the 2-D box (size^2, 2) and its cell area."""
    axis = torch.linspace(net.low, net.high, size, device=net.replay.device)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1), float(axis[1] - axis[0]) ** 2


def log_partition(net: EBM, size: int = 300) -> float:
    """log Z = log int_box exp(-E) by the midpoint rule on a size x size lattice (2-D points only)."""
    points, area = _grid(net, size)
    return float(torch.logsumexp(-net(points), 0)) + math.log(area)


def validate(net: EBM, config: Config, batch) -> dict[str, torch.Tensor]:
    """The held-out criterion: val_cd = mean E(x_val) - mean E(x-), the contrast of ``cd_loss`` on held-out data
    against the latest training step's negatives (every data set) and, for 2-D points, the exact
    val_nll = mean E(x_val) + log Z."""
    x = batch[0]
    e = net(x)
    negatives = net.replay[net.latest] if bool(net.latest.any()) else net.replay[: len(x)]
    terms = {"val_cd": e.mean() - net(negatives).mean()}
    if net.shape == (2,):
        terms["val_nll"] = e.mean() + log_partition(net)
    return terms


def fresh_chains(net: EBM, config: Config, n: int, steps: int, generator: torch.Generator, snapshots: int = 0):
    """n chains from uniform noise, ``steps`` Langevin steps of the run's sampler -> ((n, *shape), trail
    (snapshots + 1, n, ...) or None)."""
    x = net.uniform(torch.rand((n, *net.shape), generator=generator).to(net.replay.device))
    trail, every = [x], max(1, steps // max(snapshots, 1))
    for start in range(0, steps, every):
        k = min(every, steps - start)
        x = net.langevin(x, torch.randn((n, k, *net.shape), generator=generator).to(x.device), sampler(config))
        trail.append(x)
    return x, (torch.stack(trail) if snapshots else None)


def buffer_samples(net: EBM, n: int, generator: torch.Generator) -> torch.Tensor:
    return net.replay[torch.randperm(len(net.replay), generator=generator)[:n].to(net.replay.device)]


@torch.no_grad()
def energies(net: EBM, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    device = net.replay.device
    return torch.cat([net(x[i:i + batch].to(device)).cpu() for i in range(0, len(x), batch)])


def _as_images(x: torch.Tensor, shape) -> torch.Tensor:
    """Images of another set as the model's: channels averaged (or repeated), resized, clamped to [0, 1]."""
    x = x.float()
    if x.shape[1] != shape[0]:
        x = x.mean(1, keepdim=True).expand(-1, shape[0], -1, -1)
    if tuple(x.shape[2:]) != tuple(shape[1:]):
        x = F.interpolate(x, size=tuple(shape[1:]), mode="bilinear", align_corners=False,
                          antialias=x.shape[2] > shape[1])
    return x.clamp(0, 1)


def ood_sets(net: EBM, config: Config, held_out, labels: torch.Tensor, n: int, generator: torch.Generator):
    """The sets to tell from the held-out data by energy, n examples each: uniform noise; for images also the other
    classes of the run's data set (when it trained on some classes only: its test split loaded as ``held_out``, a
    split or ``HeldOut`` examples, was, every class kept) and the test split of each ``config.ood`` set present on
    this machine."""
    sets = {"noise": net.uniform(torch.rand((n, *net.shape), generator=generator))}
    if len(net.shape) != 3:
        return sets
    try:
        full = sibling_split(held_out, "test", classes=None)
        xs, ys = stacked(full)[:2]
        other = ~torch.isin(ys, labels.unique())
        if bool(other.any()):
            sets["other_classes"] = xs[other][:n]
    except (DatasetMissing, TypeError, RuntimeError):
        pass
    for name in config.ood:
        if name == held_out.run_data.name:
            continue
        try:
            ds = get_dataset(name, "test")
        except DatasetMissing:
            continue
        sets[name] = _as_images(stacked(ds, n)[0], net.shape)
    return sets


def auroc(e_in: torch.Tensor, e_out: torch.Tensor) -> float:
    """AUROC of telling in-distribution (low energy) from out-of-distribution by the score -E (sklearn)."""
    from sklearn.metrics import roc_auc_score

    labels = torch.cat([torch.ones(len(e_in)), torch.zeros(len(e_out))]).numpy()
    return float(roc_auc_score(labels, -torch.cat([e_in, e_out]).numpy()))


@torch.no_grad()
def sample(net: EBM, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """Images: buffer samples, fresh chains from noise (and 8 chains step by step), and the energies of held-out
    ``examples`` against noise and other sets with their ROC curves. Points: one figure of the data, the density
    exp(-E)/Z, buffer samples and fresh-chain samples."""
    images = len(net.shape) == 3
    fresh, trail = fresh_chains(net, config, n, config.sample_steps, generator, snapshots=8 if images else 0)
    buffered = buffer_samples(net, n, generator)
    if not images:
        return [density_figure(net, buffered.cpu(), fresh.cpu(), None if examples is None else examples[0])]
    nrow = math.ceil(math.sqrt(n))
    out = [Artefact("samples", "images", buffered.cpu(), nrow=nrow),
           Artefact("fresh_chains", "images", fresh.cpu(), nrow=nrow),
           Artefact("chains", "images", trail[:, :8].transpose(0, 1).reshape(-1, *net.shape).cpu(), nrow=len(trail))]
    if examples is not None:
        out.append(ood_figure(net, config, examples, generator))
    return out


def density_figure(net: EBM, buffered, fresh, data, size: int = 200) -> Artefact:
    """2-D: the data, the model density exp(-E)/Z on the box, buffer samples and fresh-chain samples."""
    points, area = _grid(net, size)
    logp = -energies(net, points) - log_partition(net)
    fig, axes = new_figure(4)
    extent = (net.low, net.high, net.low, net.high)
    panels = [(axes[0], data, "held-out data"), (axes[2], buffered, "replay buffer"),
              (axes[3], fresh, "fresh Langevin chains")]
    for ax, pts, title in panels:
        if pts is not None:
            ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4)
            ax.set(xlim=extent[:2], ylim=extent[2:], title=f"{title} ({len(pts)})")
    axes[1].imshow(logp.exp().reshape(size, size).numpy(), origin="lower", extent=extent, cmap="viridis")
    axes[1].set_title("model density exp(-E)/Z")
    return figure_artefact("samples", fig)


def ood_figure(net: EBM, config: Config, examples, generator: torch.Generator) -> Artefact:
    """Histograms of the energies of held-out examples and of each other set, and their ROC curves."""
    from sklearn.metrics import roc_curve

    e_in = energies(net, examples[0])
    others = {name: energies(net, x)
              for name, x in ood_sets(net, config, examples, examples[1], len(e_in), generator).items()}
    everything = torch.cat([e_in, *others.values()])
    bins = torch.linspace(float(everything.min()), float(everything.max()), 60).numpy()
    fig, axes = new_figure(2, size=5.0)
    axes[0].hist(e_in.numpy(), bins=bins, alpha=0.5, label="held-out data")
    for name, e_out in others.items():
        axes[0].hist(e_out.numpy(), bins=bins, alpha=0.5, label=name)
        labels = torch.cat([torch.ones(len(e_in)), torch.zeros(len(e_out))]).numpy()
        fpr, tpr, _ = roc_curve(labels, -torch.cat([e_in, e_out]).numpy())
        axes[1].plot(fpr, tpr, label=f"{name} (AUROC {auroc(e_in, e_out):.3f})")
    axes[0].set(xlabel="energy E(x)", ylabel="count", yscale="log", title=f"energies ({len(e_in)} of each)")
    axes[0].legend()
    axes[1].plot([0, 1], [0, 1], ls=":", color="gray")
    axes[1].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC: data vs other, score -E(x)")
    axes[1].legend()
    return figure_artefact("ood", fig)


@torch.no_grad()
def evaluate(net: EBM, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """Energies of up to eval_examples test examples and of as many from each other set (noise, other classes,
    other data sets), the AUROC of each comparison, and on 2-D points the test NLL (Z by quadrature)."""
    m = min(len(dataset), config.eval_examples)
    x, y = stacked(dataset, m)[:2]
    e_in = energies(net, x)
    metrics: dict[str, float] = {"examples": m, "energy_test": float(e_in.mean()),
                                 "sampler_temperature": sampler(config).sampler_temperature}
    if net.shape == (2,):
        metrics["nll"] = float(e_in.mean()) + log_partition(net)
    for name, other in ood_sets(net, config, dataset, y, m, generator).items():
        e_out = energies(net, other)
        metrics[f"energy_{name}"] = float(e_out.mean())
        metrics[f"auroc_{name}"] = auroc(e_in, e_out)
    return metrics
