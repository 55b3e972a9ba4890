"""The training adapter of the Gaussianization flow (``practice_torch.models``):
``python -m practice_torch train change_of_variables`` fits it by maximum likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from practice_torch.change_of_variables.functions import standard_normal_log_prob
from practice_torch.change_of_variables.networks import GaussianizationFlow
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.models import Artefact

# 6. Training interface (practice_torch.models): config, presets, loss on a batch, samples, evaluation --------
# ``python -m practice_torch train change_of_variables`` fits the flow to moons (default) or ``--dataset mixture1d``;
# ``sample`` draws x = T^{-1}(z), z ~ N(0, I), and plots the model density against the data; ``eval`` reports the
# held-out negative log-likelihood in nats per example.


@dataclass
class Config:
    """The flow's hyperparameters: the run's ``model.*`` keys (``--set model.layers=8``)."""

    components: int = 16  # logistics per coordinate and layer
    layers: int = 8  # elementwise layers (LU mixing between consecutive ones)


# quick: about a minute on 2 CPU cores; full: a deeper flow trained longer. Default data: moons (2-D).
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("nll", "test NLL", "nats/example"),)

PRESETS = {
    "quick": dict.fromkeys(("moons", "*"), Preset(
        Config(),
        TrainConfig(steps=2500, batch_size=512, lr=1e-2, warmup_steps=100, grad_clip=10.0, checkpoint_every=1000,
                    log_every=100, samples=2000))),
    "full": dict.fromkeys(("moons", "*"), Preset(
        Config(components=32, layers=16),
        TrainConfig(steps=20_000, batch_size=1024, lr=5e-3, warmup_steps=500, grad_clip=10.0, checkpoint_every=5000,
                    log_every=200, samples=2000, ema_decay=0.999, compile=True, compile_mode="reduce-overhead"))),
}
default_config = preset_config("change_of_variables", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("components", "layers")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ()
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = dict.fromkeys(("components", "layers"), "positive")


def build(config: Config, data) -> GaussianizationFlow:
    """The flow for a data set of 1-D or 2-D vectors (its density is plotted)."""
    if len(data.shape) != 1 or data.shape[0] not in (1, 2):
        raise ValueError(f"the elementwise flow models 1-D or 2-D vectors (e.g. mixture1d, moons); {data.name} "
                         f"examples have shape {tuple(data.shape)}")
    if config.components < 1 or config.layers < 1:
        raise ValueError(f"model.components and model.layers must be positive, got {config.components}, "
                         f"{config.layers}")
    return GaussianizationFlow(data.shape[0], config.components, config.layers)


def draw_noise(net: GaussianizationFlow, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Maximum likelihood draws nothing: the loss is exact."""
    return {}


def loss(net: GaussianizationFlow, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """Mean NLL of the batch (nats per example) and its two terms: -log N(z) and -log |det dz/dx|."""
    z, log_det = net(batch[0])
    base = standard_normal_log_prob(z)
    return -torch.mean(base + log_det), {"base_nll": -base.mean(), "neg_log_det": -log_det.mean()}


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def sample(net: GaussianizationFlow, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """x = T^{-1}(z), z ~ N(0, I): 'samples' (a scatter beside the data in 2-D; their histogram under the model
    density in 1-D), 'density' (the model density against a histogram of ``examples``) and 'sample_values'."""
    from practice_torch.plots import density_figure_1d, density_figure_2d, scatter_figure_2d

    device = _device(net)
    x = net.inverse(torch.randn((n, net.dim), generator=generator).to(device)).cpu()

    def log_prob(points):
        return net.log_prob(points.to(device)).cpu()

    data = examples[0].reshape(-1, net.dim).cpu() if examples is not None else x
    if net.dim == 1:
        figures = [samples_figure_1d("samples", x, data, log_prob), density_figure_1d("density", log_prob, data)]
    else:
        figures = [scatter_figure_2d("samples", x, data), density_figure_2d("density", log_prob, data, samples=x)]
    values = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in x.tolist())
    return figures + [Artefact("sample_values", "text", [values])]


def samples_figure_1d(name: str, samples: torch.Tensor, data: torch.Tensor, log_prob) -> Artefact:
    """A density histogram of ``samples`` (N, 1), the data's histogram as an outline and the model density."""
    from practice_torch.plots import data_limits, figure_artefact, new_figure

    s, d = samples.reshape(-1).numpy(), data.reshape(-1).numpy()
    ((x0, x1),) = data_limits(d[:, None])
    grid = torch.linspace(x0, x1, 400)[:, None]
    fig, axes = new_figure(1, size=5.0)
    axes[0].hist(s, bins=100, range=(x0, x1), density=True, alpha=0.5, label=f"samples ({len(s)})")
    axes[0].hist(d, bins=100, range=(x0, x1), density=True, histtype="step", color="k", label=f"data ({len(d)})")
    axes[0].plot(grid[:, 0].numpy(), torch.exp(log_prob(grid)).numpy(), lw=2, label="model density")
    axes[0].legend()
    return figure_artefact(name, fig)


@torch.no_grad()
def evaluate(net: GaussianizationFlow, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """Held-out negative log-likelihood -log p(x) (exact), in nats per example and per dimension."""
    device, total, count = _device(net), 0.0, 0
    for x, _ in DataLoader(dataset, batch_size=4096):
        total -= net.log_prob(x.to(device)).sum().item()
        count += len(x)
    return {"nll": total / count, "nll_per_dim": total / count / net.dim, "examples": count}
