"""The VQ-VAE's training adapter (``practice_torch.models``): ``python -m practice_torch train vq_vae``.

Two stages, one model name. ``model.stage=vqvae`` (the default) trains the VQ-VAE: encoder, EMA codebook with
dead-code restarts (the restart rows chosen by the engine's noise, ``draw_noise``), decoder; ``eval`` reports the test
reconstruction MSE, the share of the K codes used over the whole test split and the perplexity of their usage;
``sample`` writes reconstructions and the usage histogram (spectrograms and WAV files, through Griffin-Lim, for
spoken-digit log-mels). ``model.stage=prior model.vq_vae=RUN_DIR`` trains the second stage: a transformer over the
raster-ordered code grid of that trained vq_vae run, which is frozen (requires_grad off, always in eval mode, so its
codebook stays as trained). The prior run builds on that run (``BUILDS_ON``): the engine records it in the run's
builds_on.json and the VQ-VAE's settings in its config (``inherit``); the prior run's checkpoints hold the VQ-VAE's
weights, so ``sample``, ``eval`` and ``--resume`` rebuild it from the config and never read the vq_vae run again
(which may be deleted). ``eval`` of a prior run adds the test NLL in bits per code against the uniform prior (log2 K) and the
unigram prior (the training split's code frequencies); ``sample`` decodes prior samples into images. Both stages share
the preset's train section. The derivation: ``python -m theory_jax vq_vae``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from practice_torch.autoencoder.functions import reconstruction_mse
from practice_torch.autoencoder.networks import bounded_outputs
from practice_torch.data import DatasetMissing
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.engine.runs import inherited_keys, sibling_split
from practice_torch.models import Artefact
from practice_torch.vq_vae.functions import code_usage, perplexity
from practice_torch.vq_vae.networks import VQVAE, CodebookUpdate, CodePrior, VQVAEWithPrior, check_loss_settings


@dataclass
class Config:
    """The VQ-VAE's hyperparameters: the run's ``model.*`` keys (``--set model.num_codes=128``)."""

    stage: Literal["vqvae", "prior"] = "vqvae"  # prior: a transformer over the codes of the vq_vae run model.vq_vae
    # the VQ-VAE (stage prior: copied from the model.vq_vae run by build)
    num_codes: int = 64  # K
    code_dim: int = 16  # D
    channels: tuple[int, ...] = (32, 64)  # conv widths, each halving the image: a 28x28 image becomes a 7x7 grid
    groups: int = 8
    beta: float = 0.25  # weight of the commitment loss
    objective: Literal["mse", "bce"] = "mse"
    decay: float = 0.99  # of the EMA codebook
    eps: float = 1e-5  # Laplace smoothing of the EMA counts
    restart_every: int = 100  # steps between dead-code restarts (0: none after the first step's initialisation)
    threshold: float = 1.0  # codes used fewer times than this since the last restart are dead
    mel: bool = False  # spoken_digits log-mels (data.view=mel) in [-1, 1]: shown as spectrograms, written as WAV
    # the prior (stage prior)
    vq_vae: str = ""  # a trained vq_vae run directory
    prior_dim: int = 64
    prior_layers: int = 2
    prior_heads: int = 4
    prior_dropout: float = 0.0
    temperature: float = 1.0  # of the prior's samples (sample and eval take --set model.temperature=...)


VQ_KEYS = ("num_codes", "code_dim", "channels", "groups", "beta", "objective", "decay", "eps", "restart_every",
           "threshold", "mel")  # what the prior stage inherits from its vq_vae run
BUILDS_ON = {"vq_vae": "vq_vae"}  # the prior stage's VQ-VAE run (engine.runs.Parent)

GPU_TRAINING = {"precision": "bf16", "log_every": 100}

# quick: a few minutes on 2 CPU cores for each stage, on one thread (small convs and a small transformer run slower on
# two threads that share the cores with other work); the same train section serves both stages (batch 64: the prior's
# step costs about as much as the VQ-VAE's). Fashion-MNIST (the default): a 7x7 grid of 64 codes of dimension 16 and
# a 2-layer, 64-wide transformer prior. spoken_digits: 64x64 log-mels to an 8x8 grid of 128 codes.
# full: GPU scale (a 512-code codebook, an 8-layer prior, bf16).
# The results table's figure: the prior's test NLL for a prior run, the reconstruction MSE for a VQ-VAE run.
HEADLINE = (("bits_per_code", "test NLL of the code prior", "bits/code"),
            ("mse", "test reconstruction MSE", "per pixel"))

PRESETS = {
    "quick": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(),
            TrainConfig(steps=1500, batch_size=64, lr=2e-3, warmup_steps=100, checkpoint_every=500, log_every=50,
                        val_batch=256, samples=64, threads=1))),
        "spoken_digits": Preset(
            Config(num_codes=128, channels=(32, 64, 128), mel=True),
            TrainConfig(steps=1500, batch_size=64, lr=1e-3, warmup_steps=100, checkpoint_every=500, log_every=50,
                        val_batch=100, samples=16, threads=1), view="mel"),
    },
    "full": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(num_codes=512, code_dim=64, channels=(128, 256), prior_dim=384, prior_layers=8, prior_heads=6,
                   prior_dropout=0.1),
            TrainConfig(steps=30_000, batch_size=256, lr=5e-4, warmup_steps=500, checkpoint_every=5000,
                        val_batch=1000, samples=100, **GPU_TRAINING))),
        "spoken_digits": Preset(
            Config(num_codes=256, code_dim=32, channels=(64, 128, 256), mel=True, prior_dim=256,
                   prior_layers=6, prior_heads=8, prior_dropout=0.1),
            TrainConfig(steps=10_000, batch_size=128, lr=5e-4, warmup_steps=500, checkpoint_every=2000,
                        val_batch=200, samples=16, **GPU_TRAINING), view="mel"),
    },
}
default_config = preset_config("vq_vae", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("stage", "num_codes", "code_dim", "channels", "groups", "mel", "vq_vae", "prior_dim",
                "prior_layers", "prior_heads")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("temperature",)
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("num_codes", "code_dim", "channels", "groups", "prior_dim", "prior_layers", "prior_heads",
                           "temperature"), "positive"),
          **dict.fromkeys(("beta", "eps", "restart_every", "threshold"), "at least 0"),
          "decay": "in [0, 1)", "prior_dropout": "in [0, 1)"}
CHECKPOINT_VERSIONS = {1: "a step counter in the quantiser's buffers", 2: "the restarts read the engine's step number"}


# Building either stage ----------------------------------------------------------------------------------------
def build_vq_vae(config: Config, data) -> VQVAE:
    """The VQ-VAE of ``config`` for (C, H, W) examples: sigmoid outputs for [0, 1] images, linear ones for log-mels."""
    bounded = bounded_outputs(data, config.objective, "the VQ-VAE")
    check_loss_settings(config.beta, config.objective, bounded)  # the loss's own checks, before training
    codebook_update(config)
    return VQVAE(data.shape, config.num_codes, config.code_dim, config.channels, config.groups, bounded)


def codebook_update(config: Config) -> CodebookUpdate:
    """The quantiser's update rule from the config (``model.decay``, ``model.eps``, ``model.restart_every``,
    ``model.threshold``); a one-line ValueError for a setting out of range."""
    return CodebookUpdate(config.decay, config.eps, config.restart_every, config.threshold)


def inherit(config: Config, parents: dict) -> Config:
    """The prior stage's config with its vq_vae run's settings (``VQ_KEYS``): what the engine records before the
    first build (``practice_torch.models.inherited``)."""
    return inherited_keys(config, parents.get("vq_vae"), VQ_KEYS)


def build(config: Config, data, parents: dict) -> VQVAE | VQVAEWithPrior:
    """Stage vqvae: the VQ-VAE. Stage prior: the frozen VQ-VAE of the run it builds on (``parents['vq_vae']``: its
    weights copied the first time, from the prior run's checkpoint afterwards) and the transformer prior over its
    h w codes."""
    if config.stage == "vqvae":
        if config.vq_vae:
            raise ValueError("model.vq_vae names the VQ-VAE run of a prior; add --set model.stage=prior")
        net = build_vq_vae(config, data)
    else:
        parent = parents.get("vq_vae")
        if parent is None:
            raise ValueError("model.stage=prior needs a trained VQ-VAE: --set model.vq_vae=RUN_DIR (a vq_vae run)")
        vq_vae = build_vq_vae(config, data)
        if parent.net is not None:  # the first build: the vq_vae run's weights
            check_vq_vae(parent, data)
            vq_vae.load_state_dict(parent.net.state_dict())
        if config.temperature <= 0:
            raise ValueError(f"model.temperature must be positive, got {config.temperature}")
        prior = CodePrior(vq_vae.num_codes, vq_vae.length, config.prior_dim, config.prior_heads, config.prior_layers,
                          config.prior_dropout)
        net = VQVAEWithPrior(vq_vae, prior)
    return net


def check_vq_vae(parent, data) -> None:
    """ValueError, one line, unless the run a prior builds on is a first-stage VQ-VAE of this data set."""
    if parent.config.model.stage != "vqvae":
        raise ValueError(f"model.vq_vae={parent.run} is a prior run; name the vq_vae run it was trained on")
    if parent.config.data.name != data.name or tuple(parent.net.image_shape) != tuple(data.shape):
        raise ValueError(f"model.vq_vae={parent.run} was trained on {parent.config.data.name} "
                         f"{tuple(parent.net.image_shape)}; this run is on {data.name} {tuple(data.shape)}")


def _vq(net) -> VQVAE:
    return net.vq_vae if isinstance(net, VQVAEWithPrior) else net


# Training -----------------------------------------------------------------------------------------------------
def draw_noise(net, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Stage vqvae: keys (n, h w) ~ U[0, 1), one per encoder output; a restart takes the rows with the smallest keys.
    Stage prior: nothing (the prior's loss is exact)."""
    if isinstance(net, VQVAEWithPrior):
        return {}
    return {"keys": torch.rand((n, net.length), generator=generator)}


def loss(net, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """Stage vqvae: mean of reconstruction + beta commitment (the EMA codebook updates inside, once per step), by the
    config's ``beta``, ``objective`` and codebook update rule (``codebook_update``); terms: the two parts, and the
    perplexity and share of codes used in this batch. Stage prior: the mean NLL per code in
    nats; term: bits per code. batch: (x (B, C, H, W), y (B,))."""
    x = batch[0]
    if isinstance(net, VQVAEWithPrior):
        nats = net.prior.nll(net.codes(x)).mean() / net.prior.length
        return nats, {"bits_per_code": nats.detach() / math.log(2)}
    per_example, terms = net.per_example_loss(x, noise["keys"].to(x.device), step, beta=config.beta,
                                              objective=config.objective, update=codebook_update(config))
    counts = code_usage(terms["indices"], net.num_codes)
    return per_example.mean(), {"reconstruction": terms["reconstruction"].mean().detach(),
                                "commitment": terms["commitment"].mean().detach(),
                                "batch_perplexity": perplexity(counts), "batch_usage": (counts > 0).float().mean()}


def validate(net, config: Config, batch) -> dict[str, torch.Tensor]:
    """Held-out terms at each log step (eval mode): val_mse of the reconstructions, or val_bits_per_code of the prior."""
    x = batch[0]
    if isinstance(net, VQVAEWithPrior):
        return {"val_bits_per_code": net.bits_per_code(x).mean()}
    return {"val_mse": reconstruction_mse(x, net.reconstruct(x)).mean()}


# Evaluation ---------------------------------------------------------------------------------------------------
def _device(net: nn.Module) -> torch.device:
    return next(net.buffers()).device


@torch.no_grad()
def code_statistics(vq: VQVAE, dataset: Dataset, batch_size: int = 500):
    """Over a whole split: (reconstruction MSE per example (N,), the usage counts of every code (K,), the code
    sequences (N, h w))."""
    device, errors, codes = _device(vq), [], []
    for x, *_ in DataLoader(dataset, batch_size=batch_size):
        x = x.to(device)
        c = vq.encode(x)
        errors.append(reconstruction_mse(x, vq.decode(c)).cpu())
        codes.append(c.flatten(1).cpu())
    codes = torch.cat(codes)
    return torch.cat(errors), code_usage(codes, vq.num_codes), codes


def usage_metrics(counts: torch.Tensor) -> dict[str, float]:
    """The share of the K codes used at least once, the perplexity exp H(usage) and its share of K."""
    k = len(counts)
    used, ppl = int((counts > 0).sum()), float(perplexity(counts.double()))
    return {"codes_used": used, "code_usage": used / k, "perplexity": ppl, "perplexity_share": ppl / k}


@torch.no_grad()
def evaluate(net, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """Stage vqvae: the test reconstruction MSE per pixel, the codes used over the whole split (count and share of K)
    and the perplexity of their usage. Stage prior, besides: the prior's NLL in bits per code (and per example),
    against the uniform prior over the K codes (log2 K) and the unigram prior (the code frequencies of the training
    split, add-one smoothed)."""
    vq = _vq(net)
    errors, counts, codes = code_statistics(vq, dataset)
    metrics: dict[str, float] = {"examples": len(errors), "num_codes": vq.num_codes, "codes_per_example": vq.length,
                                 "mse": float(errors.mean()), **usage_metrics(counts)}
    if not isinstance(net, VQVAEWithPrior):
        return metrics
    device, nats = _device(net), 0.0
    for i in range(0, len(codes), 500):
        nats += float(net.prior.nll(codes[i:i + 500].to(device)).sum())
    bits = nats / (len(codes) * vq.length * math.log(2))
    train_counts = code_statistics(vq, sibling_split(dataset, "train"))[1] + 1.0
    unigram = -(counts * torch.log2(train_counts / train_counts.sum())).sum() / counts.sum()
    metrics.update({"bits_per_code": bits, "bits_per_example": bits * vq.length,
                    "uniform_bits_per_code": math.log2(vq.num_codes), "unigram_bits_per_code": float(unigram),
                    "gain_over_uniform_bits": math.log2(vq.num_codes) - bits})
    return metrics


# Pictures -----------------------------------------------------------------------------------------------------
def _pairs(name: str, x: torch.Tensor, recon: torch.Tensor, cols: int) -> Artefact:
    """Rows of ``cols`` originals over rows of their reconstructions."""
    rows = torch.stack([x.reshape(-1, cols, *x.shape[1:]), recon.reshape(-1, cols, *x.shape[1:])], dim=1)
    return Artefact(name, "images", rows.reshape(-1, *x.shape[1:]).cpu(), nrow=cols)


def usage_figure(data_counts: torch.Tensor, sample_counts: torch.Tensor | None = None) -> Artefact:
    """The share of each code in the test split's code grids, codes sorted by it (and in the prior's samples)."""
    from practice_torch.plots import figure_artefact, new_figure

    k = len(data_counts)
    order = torch.argsort(data_counts, descending=True)
    fig, (ax,) = new_figure(1, 4.5)
    fig.set_size_inches(7, 3.5)
    metrics = usage_metrics(data_counts)
    ax.bar(range(k), (data_counts[order] / data_counts.sum()).numpy(), width=1.0, color="tab:blue",
           label=f"test codes: {metrics['codes_used']} of {k} used, perplexity {metrics['perplexity']:.1f}")
    if sample_counts is not None:
        ax.step(range(k), (sample_counts[order] / sample_counts.sum()).numpy(), where="mid", color="tab:orange",
                label=f"prior samples: perplexity {float(perplexity(sample_counts.double())):.1f}")
    ax.axhline(1 / k, color="k", ls=":", lw=0.8, label="uniform")
    ax.set(xlabel="code (sorted by test usage)", ylabel="share of positions", title="codebook usage")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return figure_artefact("usage", fig)


@torch.no_grad()
def sample(net, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """Stage prior: 'samples', n prior samples decoded (drawn at ``model.temperature``), first. Then, when
    ``examples`` (held-out (x, y), ``engine.runs.HeldOut``) are given: 'reconstructions' (rows of originals over
    rows of reconstructions) and 'usage' (the code usage of the test split, loaded as the examples were, and the
    samples'). Log-mel spectrograms are shown as pictures and, through Griffin-Lim, written as WAV files too."""
    vq, device, cols = _vq(net), _device(net), 8
    figures, samples, sample_codes = [], None, None
    if isinstance(net, VQVAEWithPrior):
        uniforms = torch.rand((n, vq.length), generator=generator, dtype=torch.float64).float()
        samples, sample_codes = net.generate(uniforms.to(device), config.temperature)
        figures.append(Artefact("samples", "images", samples.cpu(), nrow=math.ceil(math.sqrt(n))))
    if examples is None:
        return _audible(figures, config, samples, None, None)
    x = examples[0][: max(cols, n // cols * cols)]
    cols = min(cols, len(x))
    x = x[: len(x) // cols * cols].to(device)
    recon = vq.reconstruct(x)
    figures.append(_pairs("reconstructions", x, recon, cols))
    try:
        counts = code_statistics(vq, sibling_split(examples, "test"))[1]
        figures.append(usage_figure(counts, None if sample_codes is None else
                                    code_usage(sample_codes.cpu(), vq.num_codes)))
    except DatasetMissing as exc:  # the pictures go on without the test split
        print(f"usage figure skipped: {exc}")
    return _audible(figures, config, samples, x, recon)


def _audible(figures: list[Artefact], config: Config, samples, x, recon) -> list[Artefact]:
    """For log-mels: the pictures as spectrograms (low frequencies at the bottom) and WAV files of the first 8
    samples, originals and reconstructions (``practice_torch.data.audio``: InverseMelScale and Griffin-Lim)."""
    if not config.mel:
        return figures
    from practice_torch.data.audio import mel_picture, mel_to_waveform

    pictures = [replace(a, data=mel_picture(a.data)) if a.name != "usage" else a for a in figures]
    sounds = [] if samples is None else [Artefact("samples_audio", "audio", mel_to_waveform(samples[:8, 0].cpu()))]
    if x is not None:
        sounds += [Artefact("originals_audio", "audio", mel_to_waveform(x[:8, 0].cpu())),
                   Artefact("reconstructions_audio", "audio", mel_to_waveform(recon[:8, 0].cpu()))]
    return pictures + sounds

