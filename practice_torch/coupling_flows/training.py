"""The coupling flow's training interface (``practice_torch.models``): ``python -m practice_torch train coupling_flows``.

Images (Fashion-MNIST by default; digits for tests): 8-bit pixels k = 0..levels-1 are dequantised, y = (k + u) /
levels with u ~ U[0, 1)^D drawn by ``draw_noise`` (eq. 13), taken to R^D by the logit transform (eq. 10-11, alpha =
0.05) and mapped to N(0, I) latents by the multi-scale RealNVP/Glow flow (``layers.MultiScaleFlow``). The loss is
-log p(y) on the level scale in bits/dim, which bounds the discrete model's -log P(k) from above (the dequantisation
bound, eq. 14), so the test bits/dim of ``eval`` are an honest upper bound. 2-D sets (moons, ...): RealNVP on the raw
coordinates (``layers.VectorFlow``), density plots, held-out NLL in nats. ``sample`` draws z ~ N(0, T^2 I) at each
of ``temperatures`` (Kingma & Dhariwal 2018, section 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from practice_torch.coupling_flows.functions import (
    bits_per_dim_from_log_prob,
    logit_inverse,
    logit_transform,
    standard_normal_log_prob,
)
from practice_torch.coupling_flows.layers import MultiScaleFlow, VectorFlow
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.models import Artefact
from practice_torch.progress import progress

TOY_SETS = ("moons", "gaussians", "rings")


@dataclass
class Config:
    """The flow's hyperparameters: the run's ``model.*`` keys (``--set model.hidden=128``)."""

    coupling: Literal["affine", "additive"] = "affine"  # RealNVP (affine) or NICE (additive, volume-preserving)
    glow: bool = True  # Glow steps: actnorm before every coupling, an LU 1x1 convolution before channel couplings
    scales: int = 3  # images: multi-scale levels (squeeze + factor-out between consecutive ones)
    checker_steps: int = 3  # checkerboard couplings per scale (the last scale gets one more)
    channel_steps: int = 3  # channel couplings per scale after the squeeze
    hidden: int = 64  # conditioner width (conv channels or MLP units)
    blocks: int = 0  # residual 3x3 blocks per image conditioner; vectors: MLP hidden layers (at least 1)
    layers: int = 8  # vectors: coupling steps
    alpha: float = 0.05  # logit transform y = logit(alpha + (1 - 2 alpha) x) (RealNVP)
    levels: int = 256  # pixel levels of the data (x = k / (levels - 1)); digits: 17
    temperatures: tuple[float, ...] = (0.5, 0.7, 0.85, 1.0)  # sample grids at z ~ N(0, T^2 I)
    temperature: float = 1.0  # the temperature of 'samples' (the grid eval's FID/KID sees)
    eval_examples: int = 10_000  # held-out examples in ``evaluate``
    eval_draws: int = 4  # dequantisation draws u per held-out example


GPU_TRAINING = {"ema_decay": 0.999, "precision": "fp32", "compile": False, "log_every": 100}


# quick (one CPU thread, about 5 minutes idle): fashion_mnist with 3 scales, 3 + 3 steps each, 64-channel conditioners,
# 600 steps of 64, lr 2e-3 (test bits/dim < 4.5 from about step 120 on); moons and the other toy sets: 8 steps of 128
# units, 2000 steps of 256; digits (8x8, 17 levels): a small flow for tests (the same in both presets).
# full (one GPU; not run here): Glow-sized, 3 scales of 4 + 8 steps with 256-channel conditioners of 2 residual blocks,
# batch 64, lr 1e-3, 100k steps, EMA: target test bits/dim near 3.0 or below on Fashion-MNIST.
DIGITS_PRESET = Preset(  # 8x8 images on 17 levels: the test-sized configuration
    Config(scales=2, checker_steps=2, channel_steps=2, hidden=32, levels=17, eval_examples=270),
    TrainConfig(steps=300, batch_size=64, lr=2e-3, warmup_steps=20, grad_clip=50.0, checkpoint_every=100,
                log_every=20, samples=64))
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("bits_per_dim", "test NLL (dequantised)", "bits/dim"), ("nll", "test NLL", "nats/example"))

PRESETS = {
    "quick": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(eval_draws=2),
            TrainConfig(steps=600, batch_size=64, lr=2e-3, warmup_steps=50, grad_clip=50.0, checkpoint_every=200,
                        log_every=25, samples=64, threads=1))),
        **dict.fromkeys(TOY_SETS, Preset(
            Config(hidden=128, blocks=2, layers=8),
            TrainConfig(steps=2000, batch_size=256, lr=2e-3, warmup_steps=100, grad_clip=10.0, checkpoint_every=1000,
                        log_every=100, samples=2000, threads=1))),
        "digits": DIGITS_PRESET,
    },
    "full": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(checker_steps=4, channel_steps=8, hidden=256, blocks=2, eval_draws=8),
            TrainConfig(steps=100_000, batch_size=64, lr=1e-3, warmup_steps=2000, grad_clip=50.0,
                        checkpoint_every=5000, samples=100, **GPU_TRAINING))),
        **dict.fromkeys(TOY_SETS, Preset(
            Config(hidden=256, blocks=2, layers=16),
            TrainConfig(steps=20_000, batch_size=512, lr=1e-3, warmup_steps=500, grad_clip=10.0, checkpoint_every=5000,
                        log_every=200, samples=5000, ema_decay=0.999))),
        "digits": DIGITS_PRESET,
    },
}
default_config = preset_config("coupling_flows", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("coupling", "glow", "scales", "checker_steps", "channel_steps", "hidden", "blocks", "layers",
                "alpha", "levels")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("temperatures", "temperature", "eval_examples", "eval_draws")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("scales", "checker_steps", "hidden", "layers", "temperatures", "temperature", "eval_examples",
                           "eval_draws"), "positive"),
          **dict.fromkeys(("channel_steps", "blocks"), "at least 0"), "levels": "at least 2", "alpha": "in (0, 0.5)"}


class Flow(nn.Module):
    """The bijection with what the loss, sampling and evaluation need: images are dequantised and logit-transformed
    first (``images``), vectors enter as they are. ``log_prob(y)`` is the density of the flow's input space
    ([0, 1]^D for images) by eq. 12: log N(z) + log |det dz/dy|."""

    def __init__(self, body: nn.Module, shape: tuple[int, ...], images: bool, alpha: float, levels: int):
        super().__init__()
        self.body, self.shape, self.images, self.alpha, self.levels = body, tuple(shape), images, alpha, levels

    def forward(self, y):
        """y: (B, *shape) -> ([z per scale], log |det dz/dy| (B,)), the logit transform included for images."""
        log_det = y.new_zeros(y.shape[0])
        if self.images:
            y, log_det = logit_transform(y, self.alpha)
        zs, body_log_det = self.body(y)
        return zs, log_det + body_log_det

    def log_prob(self, y):
        zs, log_det = self(y)
        return sum(standard_normal_log_prob(z) for z in zs) + log_det

    def dequantize(self, x, u):
        """y = (k + u) / levels with k = round(x (levels - 1)): the 8-bit image x in [0, 1] -> [0, 1)^D (eq. 13)."""
        from practice_torch.evaluation import dequantize

        return dequantize(torch.round(x * (self.levels - 1)), u, self.levels)

    @torch.no_grad()
    def generate(self, n: int, temperature: float, generator: torch.Generator) -> torch.Tensor:
        """x = f^{-1}(z), z ~ N(0, T^2 I): images back through the logit to [0, 1] (clamped), vectors as they are."""
        device = next(self.parameters()).device
        zs = [temperature * torch.randn((n, *s), generator=generator).to(device) for s in self.body.latent_shapes]
        x = self.body.inverse(zs)
        return logit_inverse(x, self.alpha)[0].clamp(0, 1) if self.images else x


def build(config: Config, data) -> Flow:
    """The multi-scale flow for (C, H, W) images, RealNVP on vectors (D,) for the 2-D sets."""
    if not 0 < config.alpha < 0.5:
        raise ValueError(f"model.alpha must be in (0, 0.5), got {config.alpha}")
    if config.levels < 2 or config.hidden < 1 or config.eval_draws < 1:
        raise ValueError("model.levels must be >= 2 and model.hidden, model.eval_draws positive")
    if not config.temperatures or min(config.temperatures) <= 0 or config.temperature <= 0:
        raise ValueError(f"model.temperatures must be positive, got {config.temperatures}")
    if len(data.shape) == 3:
        body = MultiScaleFlow(data.shape, config.scales, config.checker_steps, config.channel_steps, config.hidden,
                              config.blocks, config.coupling, config.glow)
        return Flow(body, data.shape, True, config.alpha, config.levels)
    if len(data.shape) == 1:
        return Flow(VectorFlow(data.shape[0], config.layers, config.hidden, max(config.blocks, 1), config.coupling,
                               config.glow),
                    data.shape, False, config.alpha, config.levels)
    raise ValueError(f"a coupling flow models (C, H, W) images or (D,) vectors; {data.name} examples have shape "
                     f"{tuple(data.shape)}")


def draw_noise(net: Flow, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Images: the dequantisation noise u ~ U[0, 1)^D (n, C, H, W); vectors: nothing (the loss is exact)."""
    return {"u": torch.rand((n, *net.shape), generator=generator)} if net.images else {}


def loss(net: Flow, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """Images: -log p((k + u) / levels) on the level scale in bits/dim (eq. 13-14), per-example mean; vectors: the
    NLL in nats. Terms: the base term -log N(z) and -log |det| in the same units."""
    x = batch[0]
    y = net.dequantize(x, noise["u"]) if net.images else x
    zs, log_det = net(y)
    base = sum(standard_normal_log_prob(z) for z in zs)
    if not net.images:
        return -(base + log_det).mean(), {"base_nll": -base.mean(), "neg_log_det": -log_det.mean()}
    dims = math.prod(net.shape)
    bpd = bits_per_dim_from_log_prob(base + log_det, dims, net.levels)
    to_bits = 1 / (dims * math.log(2))
    return bpd.mean(), {"base_bits": -base.mean() * to_bits, "neg_log_det_bits": -log_det.mean() * to_bits}


# Samples and evaluation --------------------------------------------------------------------------------------
@torch.no_grad()
def sample(net: Flow, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """Images: 'samples' at ``temperature``, then one grid per temperature of ``temperatures`` (the same z scaled:
    'samples_T0.7', ...). 2-D: samples beside the data and the model density on a grid (``plots``)."""
    if not net.images:
        from practice_torch.plots import density_figure_2d, scatter_figure_2d

        x = net.generate(n, config.temperature, generator).cpu()
        device = next(net.parameters()).device
        data = examples[0].cpu() if examples is not None else x
        if net.shape[0] != 2:
            return [Artefact("samples", "text", [" ".join(f"{v:.4f}" for v in row) for row in x.tolist()])]
        return [scatter_figure_2d("samples", x, data, title="RealNVP samples"),
                density_figure_2d("density", lambda p: net.log_prob(p.to(device)).cpu(), data, samples=x)]
    per_row = math.ceil(math.sqrt(n))
    figures = [Artefact("samples", "images", net.generate(n, config.temperature, generator).cpu(), nrow=per_row)]
    state = generator.get_state()
    for t in config.temperatures:  # the same z at every temperature: the rows differ only by T
        generator.set_state(state)
        figures.append(Artefact(f"samples_T{t:g}", "images", net.generate(n, t, generator).cpu(), nrow=per_row))
    return figures


@torch.no_grad()
def evaluate(net: Flow, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """Images: test bits/dim of the first ``eval_examples`` held-out images, -log p((k + u) / levels) on the level
    scale averaged over ``eval_draws`` draws of u per image (the dequantisation bound E_u, eq. 14), its standard
    error over images, and the tighter importance-weighted bound -log mean_u p (same draws; Ho et al. 2019).
    Vectors: held-out NLL in nats per example and per dimension (exact)."""
    device = next(net.parameters()).device
    m = min(config.eval_examples, len(dataset))
    loader = DataLoader(Subset(dataset, range(m)), batch_size=500)
    if not net.images:
        nll = torch.cat([-net.log_prob(x.to(device)).double().cpu() for x, _ in loader])
        return {"nll": nll.mean().item(), "nll_per_dim": nll.mean().item() / net.shape[0], "examples": m}
    dims, k = math.prod(net.shape), config.eval_draws
    mean_bits, iw_bits = [], []
    for x, _ in progress(loader, desc="test bits/dim", leave=False):
        x = x.to(device)
        logs = torch.stack([net.log_prob(net.dequantize(x, torch.rand(x.shape, generator=generator).to(device)))
                            for _ in range(k)]).double().cpu()  # (K, B)
        mean_bits.append(bits_per_dim_from_log_prob(logs, dims, net.levels).mean(0))
        iw = torch.logsumexp(logs, 0) - math.log(k)
        iw_bits.append(bits_per_dim_from_log_prob(iw, dims, net.levels))
    bits, iw = torch.cat(mean_bits), torch.cat(iw_bits)
    return {"bits_per_dim": bits.mean().item(), "bits_per_dim_stderr": (bits.std() / math.sqrt(m)).item() if m > 1
            else math.nan, "bits_per_dim_iw": iw.mean().item(), "eval_examples": m, "eval_draws": k,
            "data": f"{config.levels}-level images, uniform dequantisation, logit alpha = {config.alpha}"}
