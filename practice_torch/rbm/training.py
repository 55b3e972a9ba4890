"""The RBM's training adapter (``practice_torch.models``): ``python -m practice_torch train rbm``.

A Bernoulli RBM on images binarised by a fixed threshold (a pixel is on when its intensity is above 0.5, in training
and in evaluation alike), trained by CD-k or, with ``model.persistent=true``, by persistent CD (Tieleman 2008): the
loss mean F(v_data) - mean F(v_k), v_k held fixed, has minus the CD-k estimate as its gradient, and the engine's
AdamW follows it. ``sample`` runs Gibbs chains from noise; ``eval`` reports the test log-likelihood through log Z
estimated by annealed importance sampling (Salakhutdinov & Murray 2008), beside the exact test log-likelihood of the
independent-Bernoulli model of the training pixels, and the exact log Z where a layer is small enough to enumerate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from practice_torch.engine import RunError
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.models import Artefact
from practice_torch.progress import progress
from practice_torch.rbm.functions import (
    ais_log_partition,
    ais_step,
    base_log_partition,
    bernoulli_sample,
    free_energy,
    gibbs_step,
    log_partition_by_enumeration,
    visible_probs,
)
from practice_torch.rbm.networks import ImageRBM

THRESHOLD = 0.5  # binarisation: v = 1[x > 0.5]
ENUMERABLE = 20  # evaluate also computes the exact log Z when min(D, H) <= this


@dataclass
class Config:
    """The RBM's hyperparameters: the run's ``model.*`` keys (``--set model.persistent=true``)."""

    hidden: int = 128
    cd_steps: int = 1  # k of CD-k (PCD: sweeps of the persistent chains per step)
    persistent: bool = False  # PCD: the chains carry over from step to step
    chains: int = 128  # PCD: the number of persistent chains, one per example of each process's batch
    gibbs_steps: int = 1000  # sample: Gibbs sweeps of each chain from noise
    ais_runs: int = 100  # evaluate: M AIS runs
    ais_steps: int = 14_500  # evaluate: K intermediate distributions (Salakhutdinov & Murray's schedule; 5000
    # underestimated log Z by 2.1 nats on the quick preset)


# quick: a few minutes on 2 CPU cores (training about a minute, AIS a few minutes); full: one GPU. Both evaluate with
# the paper's AIS (14 500 steps). PCD on both: chains from noise then give clothing, where CD-1's wander off the data.
HEADLINE = (("nll_ais", "test NLL (annealed importance sampling)", "nats/example"),)
EVAL_SAMPLES = 1000  # sample metrics: each sample is a chain of ``gibbs_steps`` sweeps

PRESETS = {
    "quick": {
        "fashion_mnist": Preset(Config(hidden=128, persistent=True, chains=100),
                                TrainConfig(steps=6000, batch_size=100, lr=3e-3, warmup_steps=100, grad_clip=0.0,
                                            checkpoint_every=2000, samples=100)),
        "image": Preset(Config(hidden=64, persistent=True, chains=64),
                        TrainConfig(steps=2000, batch_size=64, lr=3e-3, grad_clip=0.0, checkpoint_every=1000,
                                    samples=64)),
    },
    "full": {
        "fashion_mnist": Preset(Config(hidden=500, cd_steps=10, persistent=True, chains=256),
                                TrainConfig(steps=50_000, batch_size=256, lr=1e-3, warmup_steps=500, grad_clip=0.0,
                                            checkpoint_every=5000, samples=100)),
        "image": Preset(Config(hidden=256, cd_steps=10, persistent=True, chains=256),
                        TrainConfig(steps=20_000, batch_size=256, lr=1e-3, warmup_steps=500, grad_clip=0.0,
                                    checkpoint_every=5000, samples=100)),
    },
}
default_config = preset_config("rbm", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("hidden", "persistent", "chains")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("gibbs_steps", "ais_runs", "ais_steps")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = dict.fromkeys(("hidden", "cd_steps", "chains", "gibbs_steps", "ais_runs", "ais_steps"), "positive")


def binarise(x: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1] -> binary vectors (B, C H W): 1[x > 0.5]."""
    return (x.flatten(1) > THRESHOLD).to(x.dtype)


def build(config: Config, data) -> ImageRBM:
    """An RBM with one visible unit per pixel of a [0, 1] image data set."""
    if data.modality != "image" or len(data.shape) != 3:
        raise ValueError(f"a Bernoulli RBM models binarised [0, 1] images; {data.name} examples are {data.modality} "
                         f"of shape {data.shape}")
    if config.hidden < 1 or config.cd_steps < 1:
        raise ValueError(f"model.hidden and model.cd_steps must be positive, got {config.hidden}, {config.cd_steps}")
    if config.persistent and config.chains < 1:
        raise ValueError("model.persistent=true needs model.chains >= 1 (one per example of the batch)")
    return ImageRBM(data.shape, config.hidden, config.persistent, config.chains)


def draw_noise(net: ImageRBM, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The uniforms of k Gibbs sweeps (rule 1): hidden (n, k, H) and visible (n, k, D)."""
    return {"u_h": torch.rand((n, config.cd_steps, net.hidden), generator=generator),
            "u_v": torch.rand((n, config.cd_steps, net.visible), generator=generator)}


def loss(net: ImageRBM, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """CD-k or PCD on the binarised batch: mean F(v_data) - mean F(v_k) (``ImageRBM.loss``) and the reconstruction
    error sum_i (v_i - p(v_i | p(h|v)))^2 per example."""
    v = binarise(batch[0])
    if net.persistent and net.chains.shape[0] != len(v):
        raise RunError(f"PCD keeps model.chains={net.chains.shape[0]} persistent chains, one per example of each "
                       f"process's batch, and this batch has {len(v)}: set model.chains={len(v)}")
    return net.loss(v, noise["u_h"], noise["u_v"])


def _device(net: ImageRBM) -> torch.device:
    return net.rbm.weight.device


SNAPSHOTS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)


@torch.no_grad()
def gibbs_samples(net: ImageRBM, n: int, sweeps: int, generator: torch.Generator, keep: int = 0):
    """n chains from noise (each pixel on with probability 1/2), ``sweeps`` Gibbs sweeps each; uniforms from
    ``generator``. -> (p(v | h) of the last sweep (n, D), the same of the first ``keep`` chains at each of
    ``SNAPSHOTS`` up to ``sweeps`` (S, keep, D))."""
    device, params = _device(net), net.params()
    v = bernoulli_sample(torch.full((n, net.visible), 0.5), torch.rand(n, net.visible, generator=generator)).to(device)
    mean, shots = v, [v[:keep]] if keep else []
    for t in range(1, sweeps + 1):
        u_h = torch.rand(n, net.hidden, generator=generator).to(device)
        u_v = torch.rand(n, net.visible, generator=generator).to(device)
        h, v = gibbs_step(v, u_h, u_v, *params)
        mean = visible_probs(h, params[0], params[1])
        if keep and t in SNAPSHOTS:
            shots.append(mean[:keep])
    return mean, (torch.stack(shots) if keep else None)


@torch.no_grad()
def sample(net: ImageRBM, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """Gibbs chains from noise: p(v | h) after ``gibbs_steps`` sweeps ('samples'), 8 chains at growing numbers of
    sweeps ('chains', one row per chain, columns at 0, 1, 2, 5, 10, ... sweeps), and the first 64 hidden units'
    weights as images ('filters', each scaled to [0, 1])."""
    shape = net.image_shape
    mean, shots = gibbs_samples(net, n, config.gibbs_steps, generator, keep=min(8, n))
    figures = [Artefact("samples", "images", mean.view(n, *shape).float().cpu(), nrow=math.ceil(math.sqrt(n)))]
    rows = shots.transpose(0, 1)  # (chains, snapshots, D)
    figures.append(Artefact("chains", "images", rows.reshape(-1, *shape).float().cpu(), nrow=rows.shape[1]))
    w = net.rbm.weight.T[:64].detach()
    lo, hi = w.min(1, keepdim=True).values, w.max(1, keepdim=True).values
    figures.append(Artefact("filters", "images", ((w - lo) / (hi - lo + 1e-12)).view(-1, *shape).float().cpu(),
                            nrow=8))
    return figures


def ais_betas(steps: int) -> torch.Tensor:
    """K + 1 inverse temperatures from 0 to 1, spaced as Salakhutdinov & Murray (2008): steps of 1e-3 up to 0.5,
    1e-4 up to 0.9, 1e-5 up to 1 at K = 14 500; other K keep the proportions (500 : 4000 : 10 000)."""
    k1, k2 = max(1, round(steps * 500 / 14_500)), max(1, round(steps * 4000 / 14_500))
    k3 = max(1, steps - k1 - k2)
    return torch.cat([torch.linspace(0, 0.5, k1 + 1, dtype=torch.float64)[:-1],
                      torch.linspace(0.5, 0.9, k2 + 1, dtype=torch.float64)[:-1],
                      torch.linspace(0.9, 1.0, k3 + 1, dtype=torch.float64)])


@torch.no_grad()
def ais(net: ImageRBM, runs: int, steps: int, base_visible_bias: torch.Tensor, generator: torch.Generator
        ) -> torch.Tensor:
    """The log-weights (runs,) of ``runs`` AIS runs of ``steps`` steps (``ais_step``, float64), uniforms drawn
    step by step from ``generator``."""
    device = _device(net)
    weight, a, b = (p.detach().double() for p in net.params())
    betas = ais_betas(steps).tolist()
    u_0 = torch.rand(runs, net.visible, generator=generator, dtype=torch.float64).to(device)
    v = bernoulli_sample(torch.sigmoid(base_visible_bias).expand_as(u_0), u_0)
    log_w = torch.zeros(runs, dtype=torch.float64, device=device)
    for k in progress(range(1, len(betas)), desc=f"AIS ({runs} runs)", leave=False):
        u_h = torch.rand(runs, net.hidden, generator=generator, dtype=torch.float64).to(device)
        u_v = torch.rand(runs, net.visible, generator=generator, dtype=torch.float64).to(device)
        v, log_w = ais_step(v, log_w, betas[k - 1], betas[k], u_h, u_v, base_visible_bias, weight, a, b)
    return log_w


@torch.no_grad()
def evaluate(net: ImageRBM, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """Held-out log p(v) per example (nats) of the binarised images: mean -F(v) - log Z with log Z by AIS (``ais_runs``
    runs of ``ais_steps`` steps from the independent Bernoullis of the training pixels) and its standard error over
    the runs (delta method: sd(w) / (sqrt(M) mean(w))), with the effective number of runs (sum w)^2 / sum w^2;
    the exact log Z too where min(D, H) <= 20; and the independent-Bernoulli baseline, exact."""
    device = _device(net)
    weight, a, b = (p.detach().double() for p in net.params())
    probs = net.marginals().to(device)
    base = torch.log(probs) - torch.log1p(-probs)
    neg_f, baseline, n = 0.0, 0.0, 0
    for x, _ in DataLoader(dataset, batch_size=2000):
        v = binarise(x.to(device)).double()
        neg_f += -free_energy(v, weight, a, b).sum().item()
        baseline += (v @ torch.log(probs) + (1 - v) @ torch.log1p(-probs)).sum().item()
        n += len(v)
    log_w = ais(net, config.ais_runs, config.ais_steps, base, generator)
    log_z0 = base_log_partition(base, net.hidden)
    log_z = ais_log_partition(log_w, log_z0).item()
    rel = torch.exp(log_w - log_w.max())  # w / max w
    se = (rel.std(correction=1) / math.sqrt(len(rel)) / rel.mean()).item()  # SE of log Z_hat (delta method), nats
    metrics = {"log_likelihood_ais": neg_f / n - log_z, "nll_ais": log_z - neg_f / n,
               "log_partition_ais": log_z, "log_partition_ais_se": se, "ais_log_weight_sd": log_w.std().item(),
               "ais_effective_runs": (rel.sum() ** 2 / (rel**2).sum()).item(), "ais_runs": config.ais_runs,
               "ais_steps": config.ais_steps, "log_partition_base": log_z0.item(),
               "baseline_log_likelihood": baseline / n, "nll_baseline": -baseline / n,
               "gain_over_baseline": neg_f / n - log_z - baseline / n, "examples": n}
    if min(net.visible, net.hidden) <= ENUMERABLE:
        exact = log_partition_by_enumeration(weight, a, b).item()
        metrics.update(log_partition_exact=exact, log_likelihood_exact=neg_f / n - exact)
    return metrics
