"""The NCSN's training interface (``practice_torch.models``): config, presets, DSM loss on a batch, samples, eval.

``python -m practice_torch train score`` trains on two moons (an MLP); ``--dataset fashion_mnist`` on images (the
project U-Net). Samples come from annealed Langevin dynamics; ``--set model.steps_per_level=2`` or
``model.sample_levels=10`` make ``sample``/``eval`` cheaper. ``eval`` reports the held-out DSM loss, and on 2-D data
the exact 2-Wasserstein distance of samples to held-out points (beside the same distance between two halves of the
held-out set, the floor); images get FID/KID from the engine's sample metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.evaluation.metrics import wasserstein2
from practice_torch.models import Artefact
from practice_torch.nets import MLPDenoiser
from practice_torch.plots import data_limits, figure_artefact, new_figure
from practice_torch.score.functions import dsm_loss, geometric_sigmas, perturb
from practice_torch.score.ncsn import NCSN, annealed_langevin_sampling, initial_state, level_subset


@dataclass
class Config:
    """The NCSN's hyperparameters: the run's ``model.*`` keys (``--set model.steps_per_level=5``)."""

    architecture: Literal["mlp", "unet"] = "mlp"
    sigma_max: float = 5.0  # sigma_1, about the largest distance between training points (NCSNv2 technique 1)
    sigma_min: float = 0.01  # sigma_L
    num_levels: int = 10  # L, geometric between sigma_max and sigma_min
    hidden: int = 128  # MLP width (practice_torch.nets.MLPDenoiser)
    depth: int = 3  # MLP residual blocks
    channels: int = 32  # U-Net base width (practice_torch.nets.UNetConfig)
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (2,)
    dropout: float = 0.0
    steps_per_level: int = 50  # T of Algorithm 1
    step_lr: float = 1e-4  # epsilon of Algorithm 1: alpha_i = epsilon sigma_i^2 / sigma_L^2
    sample_levels: int = 0  # sample with this many of the L levels, evenly spread (0: all): cheaper eval
    final_denoise: bool = True  # x + sigma_L^2 s(x, sigma_L) after the last level
    eval_examples: int = 2000  # held-out examples for the DSM loss (2-D: 10x as many) and the W2 distance (2-D)


GPU_TRAINING = {"ema_decay": 0.999, "log_every": 100}


# quick: about a minute on moons, about 10 minutes on Fashion-MNIST (2 CPU cores); full: GPU scale with EMA.
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("w2", "W2 of samples to test points", "W2"), ("dsm", "test denoising score matching loss", "DSM"))

PRESETS = {
    "quick": {
        **dict.fromkeys(("moons", "*"), Preset(
            Config(),
            TrainConfig(steps=2000, batch_size=256, lr=2e-3, warmup_steps=100, grad_clip=1.0, ema_decay=0.99,
                        checkpoint_every=1000, samples=2000, threads=1))),
        "image": Preset(
            Config(architecture="unet", sigma_max=20.0, num_levels=20, steps_per_level=15, step_lr=2e-4, channels=32,
                   channel_mults=(1, 2, 2)),
            TrainConfig(steps=1500, batch_size=64, lr=1e-3, warmup_steps=100, grad_clip=1.0, ema_decay=0.995,
                        checkpoint_every=500, samples=64, threads=1)),
    },
    "full": {
        # compiled under CUDA graphs: the MLP's step is bound by kernel launches (on an H200 4.0 ms against 6.3 eager)
        **dict.fromkeys(("moons", "*"), Preset(
            Config(hidden=256, depth=4, num_levels=50),
            TrainConfig(steps=30_000, batch_size=1024, lr=1e-3, warmup_steps=500, grad_clip=1.0,
                        checkpoint_every=5000, samples=5000, compile=True, compile_mode="reduce-overhead",
                        **GPU_TRAINING))),
        "image": Preset(
            Config(architecture="unet", sigma_max=20.0, num_levels=100, steps_per_level=5, step_lr=5e-5, channels=64,
                   channel_mults=(1, 2, 2), num_res_blocks=2, dropout=0.1),
            TrainConfig(steps=100_000, batch_size=128, lr=2e-4, warmup_steps=1000, grad_clip=1.0,
                        checkpoint_every=10_000, samples=100, precision="bf16", **GPU_TRAINING)),
    },
}
default_config = preset_config("score", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("architecture", "sigma_max", "sigma_min", "num_levels", "hidden", "depth", "channels",
                "channel_mults", "num_res_blocks", "attention_levels")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("steps_per_level", "step_lr", "sample_levels", "final_denoise", "eval_examples")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("sigma_max", "sigma_min", "hidden", "depth", "channels", "channel_mults", "num_res_blocks",
                           "steps_per_level", "step_lr", "eval_examples"), "positive"),
          **dict.fromkeys(("attention_levels", "sample_levels"), "at least 0"), "num_levels": "at least 2",
          "dropout": "in [0, 1)"}


def build(config: Config, data) -> NCSN:
    """The NCSN for vectors (D,) or images (C, H, W); one-line ValueError for other data or a bad noise schedule."""
    if data.modality not in ("2-D", "image"):
        raise ValueError(f"the score model takes vectors or images; {data.name} is {data.modality} data")
    if not 0 < config.sigma_min < config.sigma_max or config.num_levels < 2:
        raise ValueError(f"the noise levels need 0 < model.sigma_min < model.sigma_max and model.num_levels >= 2, "
                         f"got {config.sigma_min}, {config.sigma_max}, {config.num_levels}")
    sigmas = geometric_sigmas(torch.tensor(config.sigma_max, dtype=torch.float64), config.sigma_min, config.num_levels)
    if config.architecture == "unet":
        if len(data.shape) != 3:
            raise ValueError(f"model.architecture=unet needs images; {data.name} examples have shape {data.shape} "
                             "(use model.architecture=mlp)")
        from practice_torch.nets import UNet, UNetConfig

        unet = UNet(UNetConfig(in_channels=data.shape[0], out_channels=data.shape[0], channels=config.channels,
                               channel_mults=config.channel_mults, num_res_blocks=config.num_res_blocks,
                               attention_levels=config.attention_levels, dropout=config.dropout))
        return NCSN(data.shape, sigmas, unet)
    return NCSN(data.shape, sigmas, MLPDenoiser(math.prod(data.shape), config.hidden, config.depth),
                flatten=len(data.shape) > 1)


def draw_noise(net: NCSN, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Level indices i ~ U{0..L-1} (n,) and z ~ N(0, I) (n, *shape): x~ = x + sigma_i z."""
    return {"levels": torch.randint(0, net.num_levels, (n,), generator=generator),
            "z": torch.randn((n, *net.shape), generator=generator)}


def loss(net: NCSN, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """Eq. 6 of Song & Ermon 2019 by sampling: ``dsm_loss`` at sigma_i for a uniform level i per example; also the
    loss on the lower half of the levels (the fine detail). batch: (x (B, ...), y)."""
    x, z = batch[0], noise["z"].to(batch[0].device)
    sigma = net.sigmas[noise["levels"].to(x.device)]
    score = net(perturb(x, sigma, z), sigma)
    total = dsm_loss(score, z, sigma)
    # the loss on the fine levels, without picking their rows (a data-dependent shape, read by the host on a GPU):
    # zeroing score and z zeroes an example's term, so dsm_loss of the masked batch is sum_fine / B
    fine = (noise["levels"].to(x.device) >= net.num_levels // 2).to(z.dtype)
    mask = fine.reshape(-1, *(1,) * (z.ndim - 1))
    with torch.no_grad():
        fine_mean = dsm_loss(score * mask, z * mask, sigma) * len(fine) / fine.sum().clamp(min=1)
    return total, {"dsm_fine": fine_mean}


def _device(net: NCSN) -> torch.device:
    return net.sigmas.device


def draw_samples(net: NCSN, config: Config, n: int, generator: torch.Generator, snapshots: int = 0):
    """n samples by annealed Langevin over ``config.sample_levels`` of the levels -> ((n, *shape), trail or None)."""
    sigmas = net.sigmas[level_subset(net.num_levels, config.sample_levels).to(net.sigmas.device)]
    center = 0.5 if len(net.shape) == 3 else 0.0  # images live in [0, 1]
    x = initial_state(n, net.shape, float(sigmas[0]), generator, center).to(_device(net))
    return annealed_langevin_sampling(net, sigmas, x, config.steps_per_level, config.step_lr, generator,
                                      config.final_denoise, snapshots)


@torch.no_grad()
def sample(net: NCSN, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """Images: a grid of n samples (clamped to [0, 1]) and the annealing of 8 chains level by level. 2-D: the
    samples beside the held-out ``examples`` and the learned score field at a large and a small sigma."""
    images = len(net.shape) == 3
    x, trail = draw_samples(net, config, n, generator, snapshots=8 if images else 0)
    if images:
        steps = trail[torch.unique(torch.round(torch.linspace(0, len(trail) - 1, 10)).long())]
        return [Artefact("samples", "images", x.clamp(0, 1).cpu(), nrow=math.ceil(math.sqrt(n))),
                Artefact("annealing", "images", steps.transpose(0, 1).reshape(-1, *net.shape).clamp(0, 1),
                         nrow=len(steps))]
    return [score_field_figure(net, x.cpu(), None if examples is None else examples[0])]


@torch.no_grad()
def score_field_figure(net: NCSN, samples: torch.Tensor, data: torch.Tensor | None, grid: int = 25) -> Artefact:
    """2-D: the learned score s(x, sigma) as arrows at a large sigma and as streamlines at a small one, over the
    data (when given), and the samples."""
    box = data if data is not None else samples
    (x0, x1), (y0, y1) = data_limits(box.numpy())
    xs, ys = torch.linspace(x0, x1, grid), torch.linspace(y0, y1, grid)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1).to(_device(net))
    fig, axes = new_figure(3)
    for ax, level in ((axes[0], net.num_levels // 4), (axes[1], net.num_levels - 1)):
        sigma = net.sigmas[level]
        field = net(points, sigma.expand(len(points))).cpu().reshape(grid, grid, 2)
        if data is not None:
            ax.scatter(data[:, 0], data[:, 1], s=1, alpha=0.3, color="tab:gray")
        if ax is axes[0]:
            ax.quiver(gx, gy, field[..., 0], field[..., 1], color="tab:blue")
        else:
            ax.streamplot(xs.numpy(), ys.numpy(), field[..., 0].numpy(), field[..., 1].numpy(), density=1.2,
                          color=torch.log1p(field.norm(dim=-1)).numpy(), cmap="viridis")
        ax.set(xlim=(x0, x1), ylim=(y0, y1), title=f"score s(x, sigma={float(sigma):.3g})")
    axes[2].scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.5)
    axes[2].set(xlim=(x0, x1), ylim=(y0, y1), title=f"annealed Langevin samples ({len(samples)})")
    return figure_artefact("samples", fig)


@torch.no_grad()
def evaluate(net: NCSN, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """The held-out DSM loss (eq. 6, one level and one z per example, on eval_examples images or 10x as many 2-D
    points), the loss at sigma_1 and sigma_L, and on 2-D data the exact W2 distance of eval_examples/2 samples to
    as many held-out points, beside the W2 between two halves of eval_examples held-out points (the floor)."""
    device = _device(net)
    m = min(len(dataset), config.eval_examples * (10 if len(net.shape) == 1 else 1))
    sums = {"dsm": 0.0, "dsm_sigma_max": 0.0, "dsm_sigma_min": 0.0}
    points = []
    for x, _ in DataLoader(torch.utils.data.Subset(dataset, range(m)), batch_size=500):
        x = x.to(device)
        noise = {k: v.to(device) for k, v in draw_noise(net, config, len(x), generator).items()}
        sums["dsm"] += loss(net, config, (x, None), noise, 0)[0].item() * len(x)
        for key, level in (("dsm_sigma_max", 0), ("dsm_sigma_min", net.num_levels - 1)):
            sigma = net.sigmas[level].expand(len(x))
            sums[key] += dsm_loss(net(perturb(x, sigma, noise["z"]), sigma), noise["z"], sigma).item() * len(x)
        if len(net.shape) == 1 and sum(len(p) for p in points) < config.eval_examples:
            points.append(x.cpu())
    metrics = {k: v / m for k, v in sums.items()} | {"examples": m, "levels": net.num_levels}
    if points:
        held = torch.cat(points)[: config.eval_examples]
        half = len(held) // 2
        samples = draw_samples(net, config, half, generator)[0].cpu()
        metrics |= {"w2": wasserstein2(samples, held[:half]), "w2_held_out_halves": wasserstein2(held[half:2 * half],
                                                                                               held[:half]),
                    "w2_samples": half}
    return metrics
