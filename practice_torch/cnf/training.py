"""The CNF's training interface (``practice_torch.models``): ``python -m practice_torch train cnf``.

FFJORD (Grathwohl et al. 2019) on the toy sets (two moons by default; gaussians, rings, mixture1d): maximum likelihood
with log p_1(x) = log N(z; 0, I) - int_0^1 tr(df/dx) dt, the trace estimated by Hutchinson's estimator with one
Rademacher probe per example (``draw_noise``), the ODE solved by torchdiffeq's dopri5 at ``atol``/``rtol``, the
gradient by backpropagation through the solver or by the adjoint ODE (``model.adjoint=true``). ``eval`` reports the
held-out NLL in nats per point with the exact trace, the exact W2 of samples to held-out points (beside the W2 of two
held-out halves: the floor) and the NFE of one likelihood and one sampling solve. ``sample`` draws the density plot
(exact trace on a grid) and the trajectories of particles from noise (t = 0) to data (t = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from practice_torch.cnf.field import ACTIVATIONS, CNF, TIME_INPUTS, ODEField
from practice_torch.cnf.functions import TRACES, draw_probe
from practice_torch.cnf.sampling import (
    cnf_trajectory_figure,
    device_of,
    draw_samples,
    eval_log_prob,
    sample_solver,
    solver,
)
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.evaluation.metrics import wasserstein2
from practice_torch.models import Artefact
from practice_torch.plots import density_figure_1d, density_figure_2d


@dataclass
class Config:
    """The CNF's hyperparameters: the run's ``model.*`` keys (``--set model.adjoint=true``)."""

    hidden: tuple[int, ...] = (64, 64, 64)  # widths of the field's MLP
    time_input: Literal["concatsquash", "concat"] = "concatsquash"  # how each layer sees t
    activation: Literal["tanh", "softplus", "silu"] = "tanh"
    method: str = "dopri5"  # torchdiffeq solver of the training loss (and of eval/sample unless overridden)
    atol: float = 1e-5  # dopri5's tolerances in training
    rtol: float = 1e-5
    steps: int = 0  # fixed-step methods (euler, midpoint, rk4 = the 3/8 rule): steps over [0, 1]
    adjoint: bool = False  # gradients by the adjoint ODE (odeint_adjoint) instead of backprop through the solver
    trace: Literal["hutchinson", "hutchinson_gaussian", "exact"] = "hutchinson"  # trace estimator of the loss
    eval_atol: float = 1e-5  # dopri5's tolerances for the held-out NLL (exact trace)
    eval_rtol: float = 1e-5
    sample_method: str = "dopri5"  # solver of ``sample`` and of the W2 samples; a fixed-step one is cheaper
    sample_steps: int = 0  # its steps when fixed-step
    frames: int = 6  # times shown in the trajectory figure
    grid: int = 80  # density plot: grid x grid points (exact trace)
    eval_examples: int = 2000  # held-out points: half for the W2 (and as many samples), the floor from both halves
    nll_examples: int = 1000  # held-out points that get the exact NLL


# quick: a few minutes on moons on 2 CPU cores (64 x 3 field, 1000 steps of 256, dopri5 at 1e-4); full: GPU scale
# (FFJORD's toy setting: tolerances 1e-5, 10k steps of 1024).
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("nll", "test NLL", "nats/example"),)

PRESETS = {
    "quick": dict.fromkeys(("moons", "*"), Preset(
        Config(atol=1e-4, rtol=1e-4),
        TrainConfig(steps=1000, batch_size=256, lr=3e-3, warmup_steps=50, grad_clip=1.0, ema_decay=0.99,
                    checkpoint_every=250, log_every=50, samples=2000, threads=1))),
    "full": dict.fromkeys(("moons", "*"), Preset(
        Config(hidden=(128, 128, 128)),
        TrainConfig(steps=10_000, batch_size=1024, lr=1e-3, warmup_steps=200, grad_clip=1.0, ema_decay=0.999,
                    checkpoint_every=2000, log_every=100, samples=5000))),
}
default_config = preset_config("cnf", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("hidden", "time_input", "activation")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("eval_atol", "eval_rtol", "sample_method", "sample_steps", "frames", "grid", "eval_examples", "nll_examples")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("hidden", "atol", "rtol", "eval_atol", "eval_rtol", "frames", "grid", "eval_examples",
                           "nll_examples"), "positive"),
          **dict.fromkeys(("steps", "sample_steps"), "at least 0")}  # 0 steps: an adaptive solver's (dopri5)


def build(config: Config, data) -> CNF:
    """The CNF for vectors (D,); one-line ValueError for images, unknown layers or solver settings."""
    if len(data.shape) != 1:
        raise ValueError(f"the cnf model takes vectors (2-D toy sets, mixture1d); {data.name} examples have shape "
                         f"{data.shape} (use coupling_flows or flow_matching for images)")
    if config.time_input not in TIME_INPUTS:
        raise ValueError(f"model.time_input must be one of {TIME_INPUTS}, got {config.time_input!r}")
    if config.activation not in ACTIVATIONS:
        raise ValueError(f"model.activation must be one of {tuple(ACTIVATIONS)}, got {config.activation!r}")
    if config.trace not in TRACES:
        raise ValueError(f"model.trace must be one of {TRACES}, got {config.trace!r}")
    sample_solver(config)  # a fixed-step sampler without steps is refused here, not at the end of the run
    field = ODEField(data.shape[0], tuple(config.hidden), config.time_input, config.activation)
    return CNF(field, data.shape[0], solver(config.method, config.atol, config.rtol, config.steps), config.adjoint)


def draw_noise(net: CNF, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One Hutchinson probe v (n, D) per example: Rademacher, or N(0, I) for trace 'hutchinson_gaussian'."""
    kind = "hutchinson_gaussian" if config.trace == "hutchinson_gaussian" else "hutchinson"
    return {"probe": draw_probe((n, net.dim), kind, generator=generator, like=torch.empty(0))}


def loss(net: CNF, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """The negative log-likelihood -mean_b log p_1(x_b) (nats per point) by the instantaneous change of variables,
    the trace by ``config.trace`` (Hutchinson with the drawn probes, FFJORD eq. 7); also the NFE of the forward solve."""
    x = batch[0]
    ll, nfe = net.log_prob(x, trace=config.trace, probe=noise["probe"].to(x))
    return -ll.mean(), {"nfe": torch.tensor(float(nfe))}


@torch.no_grad()
def sample(net: CNF, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """'density' (exp log p_1 on a grid with the exact trace, beside the data and the samples) and 'trajectories'
    (the particles at ``frames`` times from noise at t = 0 to data at t = 1, and 300 of their paths)."""
    xs, times, nfe = draw_samples(net, config, n, generator, config.frames)
    xs = xs.cpu()
    data = examples[0] if examples is not None else xs[-1]
    log_prob = lambda points: eval_log_prob(net, config, points.to(device_of(net)))[0].cpu()  # noqa: E731
    if net.dim == 1:
        return [density_figure_1d("density", log_prob, data, grid=config.grid * 4, title="CNF density (exact trace)")]
    if net.dim != 2:
        return [Artefact("samples", "text", [" ".join(f"{v:.4f}" for v in row) for row in xs[-1].tolist()])]
    return [density_figure_2d("density", log_prob, data, xs[-1], grid=config.grid,
                              title="CNF density: log p_1 with the exact trace"),
            cnf_trajectory_figure(xs, times, data, nfe)]


@torch.no_grad()
def evaluate(net: CNF, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """The held-out NLL in nats per point (exact trace, dopri5 at the eval tolerances) on ``nll_examples`` points
    with its standard error, the exact W2 of eval_examples/2 samples to as many held-out points beside the W2 of
    two held-out halves (the floor), and the NFE of one likelihood solve and one sampling solve."""
    device = device_of(net)
    m = min(len(dataset), config.eval_examples)
    held = torch.cat([b[0] for b in DataLoader(Subset(dataset, range(m)), batch_size=1000)])
    ll, nfe_ll = eval_log_prob(net, config, held[: config.nll_examples].to(device))
    nll = -ll.cpu()
    metrics: dict[str, float] = {"nll": nll.mean().item(), "nll_stderr": (nll.std() / math.sqrt(len(nll))).item(),
                                 "nll_examples": len(nll), "nfe_likelihood": nfe_ll}
    half = len(held) // 2
    xs, _, nfe = draw_samples(net, config, half, generator)
    metrics |= {"w2": wasserstein2(xs[-1].cpu(), held[:half]),
                "w2_held_out_halves": wasserstein2(held[half:2 * half], held[:half]), "w2_samples": half,
                "nfe_per_solve": nfe}
    return metrics
