"""PixelCNN's training interface (``practice_torch.models``): ``python -m practice_torch train pixelcnn``.

Data: grey images (Fashion-MNIST by default; digits for tests) quantised to ``categories`` levels,
q = round(x (K - 1)): K = 2 is the binarised image (threshold 1/2, one Bernoulli logit per pixel), K = 256 the 8-bit
image (a 256-way softmax per pixel). ``categories`` is the one key that says how many values a pixel takes, so the
same model can later be the prior over VQ-VAE codes. Loss: the exact NLL of eq. 1 in nats per dimension (no noise:
``draw_noise`` is empty); logged also in bits/dim. ``eval``: the test NLL in nats per image and bits/dim over the
first ``eval_images`` images. ``sample``: pixel after pixel in raster order (H W network passes, each on the few rows
the next row depends on), with the uniforms of ``sample_pixel`` drawn from the engine's generator; with examples,
'completions': the bottom half of held-out images re-sampled from their top half.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.evaluation.metrics import bits_per_dim
from practice_torch.models import Artefact
from practice_torch.pixelcnn.functions import bernoulli_log_likelihood, categorical_log_likelihood, sample_pixel
from practice_torch.pixelcnn.networks import GatedPixelCNN, PlainPixelCNN


@dataclass
class Config:
    """PixelCNN's hyperparameters: the run's ``model.*`` keys."""

    architecture: Literal["gated", "plain"] = "gated"
    categories: int = 256  # values per pixel: 2 = binarised (Bernoulli), 256 = 8-bit (softmax); VQ-VAE: codebook size
    channels: int = 32
    layers: int = 5
    kernel: int = 3  # odd
    first_kernel: int = 7  # odd; the type-A first layer (one input channel: a wide kernel costs little)
    conditional: bool = False  # class-conditional (a label embedding added in every layer)
    eval_images: int = 1000  # test images scored by eval (0 = the whole split)


# quick: a gated PixelCNN of 5 layers x 32 channels on 8-bit Fashion-MNIST, 600 steps of 32 images on one thread
# (``--set model.categories=2``: binarised). full: 15 layers x 128 channels, kernel 5 (GPU).
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("bits_per_dim", "test NLL", "bits/dim"),)

PRESETS = {
    "quick": dict.fromkeys(("fashion_mnist", "*"), Preset(
        Config(),
        TrainConfig(steps=600, batch_size=32, lr=3e-3, warmup_steps=50, grad_clip=1.0, checkpoint_every=200,
                    log_every=25, samples=16, threads=1))),
    "full": dict.fromkeys(("fashion_mnist", "*"), Preset(
        Config(channels=128, layers=15, kernel=5, eval_images=0),
        TrainConfig(steps=20000, batch_size=64, lr=1e-3, warmup_steps=500, checkpoint_every=2000, log_every=100,
                    samples=64, precision="bf16"))),
}
default_config = preset_config("pixelcnn", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("architecture", "categories", "channels", "layers", "kernel", "first_kernel", "conditional")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("eval_images",)
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("channels", "layers", "kernel", "first_kernel"), "positive"), "categories": "at least 2",
          "eval_images": "at least 0"}


class PixelCNNModel(nn.Module):
    """The network with its pixel coding: images in [0, 1] -> categories -> network inputs in [-1, 1] -> logits."""

    def __init__(self, net: nn.Module, categories: int, shape: tuple[int, ...], num_classes: int, receptive_rows: int):
        super().__init__()
        self.net, self.categories, self.shape = net, categories, tuple(shape)
        self.num_classes, self.receptive_rows = num_classes, receptive_rows

    def quantise(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [0, 1] -> (B, H, W) int64 in 0..K-1: round(x (K - 1))."""
        return torch.round(x[:, 0].clamp(0, 1) * (self.categories - 1)).long()

    def forward(self, q: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """q: (B, H, W) categories -> logits (B, K, H, W), or (B, H, W) Bernoulli logits when K = 2."""
        logits = self.net(q[:, None].float() * (2.0 / (self.categories - 1)) - 1.0, y)
        return logits[:, 0] if self.categories == 2 else logits

    def log_prob(self, q: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(q) per image (eq. 1): (B, H, W) -> (B,)."""
        logits = self(q, y).float()
        if self.categories == 2:
            return bernoulli_log_likelihood(logits, q)
        return categorical_log_likelihood(logits, q)


def build(config: Config, data) -> PixelCNNModel:
    """The PixelCNN for a data set of (1, H, W) grey images."""
    if len(data.shape) != 3 or data.shape[0] != 1:
        raise ValueError(f"PixelCNN models (1, H, W) grey images; {data.name} examples have shape {tuple(data.shape)}")
    if config.categories < 2 or config.kernel % 2 == 0 or config.first_kernel % 2 == 0 or config.kernel < 1:
        raise ValueError(f"model.categories must be >= 2 and model.kernel, model.first_kernel odd, got "
                         f"{config.categories}, {config.kernel}, {config.first_kernel}")
    if min(config.channels, config.layers) < 1 or config.eval_images < 0:
        raise ValueError("model.channels and model.layers must be positive and model.eval_images >= 0")
    if config.conditional and not data.num_classes:
        raise ValueError(f"model.conditional needs labels; {data.name} has none")
    num_classes = data.num_classes if config.conditional else 0
    out = 1 if config.categories == 2 else config.categories
    cls = {"gated": GatedPixelCNN, "plain": PlainPixelCNN}[config.architecture]
    net = cls(config.channels, config.layers, config.kernel, out, num_classes, config.first_kernel)
    rows = config.first_kernel // 2 + config.kernel // 2 * (config.layers - 1)  # input rows above that reach a pixel
    return PixelCNNModel(net, config.categories, data.shape, num_classes, rows)


def draw_noise(net: PixelCNNModel, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """None: the loss is the exact likelihood."""
    return {}


def loss(net: PixelCNNModel, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """The NLL of eq. 1 in nats per dimension (the batch mean); terms: bits/dim and nats per image."""
    x, y = batch
    q = net.quantise(x)
    nll = -net.log_prob(q, y if net.num_classes else None)
    per_dim = nll.mean() / q[0].numel()
    return per_dim, {"bits_per_dim": per_dim.detach() / math.log(2), "nll_nats": nll.mean().detach()}


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def generate(net: PixelCNNModel, u: torch.Tensor, y: torch.Tensor | None = None, known: torch.Tensor | None = None,
             start_row: int = 0) -> torch.Tensor:
    """Sequential sampling in raster order from row ``start_row`` (rows above taken from ``known``), pixel (r, c)
    drawn by ``sample_pixel`` with u[:, r, c]. Each pass runs on rows r - R .. r only, R = first_kernel // 2 +
    (k // 2)(layers - 1): a wrong top border reaches at most R rows down, so row r is exact.
    u: (B, H, W) in [0, 1) -> (B, H, W) categories."""
    b, (_, height, width) = u.shape[0], net.shape
    q = torch.zeros(b, height, width, dtype=torch.long, device=_device(net)) if known is None else known.clone()
    for r in range(start_row, height):
        top = max(0, r - net.receptive_rows)
        for c in range(width):
            logits = net(q[:, top: r + 1], y)[..., r - top, c]  # (B, K) or (B,)
            if net.categories == 2:
                logits = torch.stack([torch.zeros_like(logits), logits], dim=-1)
            q[:, r, c] = sample_pixel(logits.float(), u[:, r, c].to(logits.device).float())
    return q


def _labels(net: PixelCNNModel, n: int) -> torch.Tensor | None:
    return torch.arange(n, device=_device(net)) % net.num_classes if net.num_classes else None


@torch.no_grad()
def sample(net: PixelCNNModel, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """'samples': n images drawn pixel by pixel (labels 0, 1, ... in turn when conditional); 'completions': with
    ``examples``, up to 8 held-out images (top row) and their bottom halves sampled twice (rows below)."""
    _, height, width = net.shape
    scale = 1.0 / (net.categories - 1)
    per_row = max(1, int(math.sqrt(n)))
    u = torch.rand(n, height, width, generator=generator, dtype=torch.float64)
    samples = generate(net, u, _labels(net, n))
    artefacts = [Artefact("samples", "images", (samples[:, None].float() * scale).cpu(), nrow=per_row)]
    if examples is not None:
        x, y = examples[0][:8].to(_device(net)), examples[1][:8].to(_device(net))
        q = net.quantise(x)
        k = len(q)
        u = torch.rand(2 * k, height, width, generator=generator, dtype=torch.float64)
        done = generate(net, u, y.repeat(2) if net.num_classes else None, q.repeat(2, 1, 1), height // 2)
        grid = torch.cat([q, done])[:, None].float() * scale
        artefacts.append(Artefact("completions", "images", grid.cpu(), nrow=k))
    return artefacts


@torch.no_grad()
def evaluate(net: PixelCNNModel, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """The NLL of the first ``eval_images`` images of the split (all if 0): nats per image and bits/dim."""
    if config.eval_images:
        dataset = Subset(dataset, range(min(config.eval_images, len(dataset))))
    total, count, dims = 0.0, 0, 1
    for x, y in DataLoader(dataset, batch_size=100):
        q = net.quantise(x.to(_device(net)))
        total += -net.log_prob(q, y.to(q.device) if net.num_classes else None).sum().item()
        count, dims = count + len(q), q[0].numel()
    nats = total / max(count, 1)
    return {"nll_nats": nats, "bits_per_dim": float(bits_per_dim(torch.tensor(nats), dims)), "images": count,
            "categories": net.categories}
