"""The VAE's training adapter (``practice_torch.models``): ``python -m practice_torch train vae``.

Config, presets, the loss on a batch, samples and evaluation: ``eval`` reports the test ELBO and the
importance-sampled NLL (nats and bits/dim); ``sample`` writes samples, reconstructions and interpolations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from practice_torch.data import stacked
from practice_torch.engine.config import ConfigError, TrainConfig
from practice_torch.engine.players import Player
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.engine.runs import sibling_split
from practice_torch.evaluation.probe import probe_against_pixels
from practice_torch.models import Artefact
from practice_torch.progress import progress
from practice_torch.vae.functions import (
    draw_eps,
    factor_vae_loss,
    latent_activity,
    permutations,
    permute_dims,
    tc_discriminator_loss,
    total_correlation_terms,
    vaegan_losses,
)
from practice_torch.vae.networks import VAE, HierarchicalVAE, most_used_latents, traverse

# 4. Training interface (practice_torch.models): config, presets, loss on a batch, samples, evaluation ------
# ``python -m practice_torch train vae`` trains this model with the shared engine; ``eval`` reports the
# test ELBO and the importance-sampled NLL (nats and bits/dim); ``sample`` writes the figures below.


@dataclass
class Config:
    """The VAE's hyperparameters: the run's ``model.*`` keys (``--set model.beta=4``)."""

    architecture: Literal["mlp", "conv"] = "conv"
    latent_dim: int = 16
    hidden: tuple[int, ...] = (512, 256)  # MLP widths
    channels: tuple[int, ...] = (32, 64)  # conv widths, each conv halving the image
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    beta: float = 1.0  # weight of the KL in the training loss (beta-VAE); evaluation uses beta = 1
    tc_beta: float = 1.0  # beta-TCVAE's weight of the total correlation (at beta = 1; in general beta + tc_beta - 1)
    dataset_size: int = 0  # N of beta-TCVAE's estimate of q(z) over a batch: the training split's size (0: the batch's)
    factor_gamma: float = 0.0  # FactorVAE's weight of the TC (Kim & Mnih 2018): > 0 trains a TC discriminator beside
    tc_hidden: tuple[int, ...] = (1000,) * 6  # the TC discriminator's widths (the paper's 6 layers of 1000)
    tc_lr: float = 1e-4  # the TC discriminator's Adam (the paper's lr and betas); the VAE keeps train.lr and train.betas
    tc_betas: tuple[float, float] = (0.5, 0.9)
    vaegan_gamma: float = 0.0  # VAE-GAN (Larsen et al. 2016): > 0 trains a discriminator whose features measure the
    # reconstruction; gamma weighs that likeness against fooling the discriminator in the decoder's loss
    dis_channels: tuple[int, ...] = (32, 64)  # VAE-GAN's discriminator: strided convs, its features the last one's
    dis_fc: int = 512  # and a fully connected layer before the logit
    gan_lr: float = 1e-3  # VAE-GAN's decoder's and discriminator's Adam (at the DCGAN's 2e-4, D won within 200 steps)
    gan_betas: tuple[float, float] = (0.5, 0.999)  # the DCGAN's; VAE-GAN's encoder keeps train.lr and train.betas
    conditional: bool = False  # a conditional VAE on the data set's labels
    levels: int = 1  # 2: a hierarchical VAE, z2 (top_dim) over z1 (latent_dim), inferred top-down (HierarchicalVAE)
    top_dim: int = 8  # the top level's latents (levels = 2)
    nll_samples: int = 100  # K importance samples per example in evaluate
    nll_examples: int = 1000  # how many held-out examples get the K-sample NLL (the ELBO uses them all)
    tc_examples: int = 1000  # how many held-out examples' aggregate posterior gets eval's MI / TC / dimension-wise KL
    probe_examples: int = 5000  # training images eval's linear probe of the posterior mean is fitted on (0: no probe)
    mel: bool = False  # spoken_digits log-mels (data.view=mel) in [-1, 1]: shown as spectrograms, written as WAV


GPU_TRAINING = {"ema_decay": 0.999, "precision": "bf16", "compile": True, "compile_mode": "reduce-overhead",
                "channels_last": True, "log_every": 100}


# quick: about 2 minutes on 2 CPU cores; full: GPU scale (wider, longer, EMA, bf16, compiled under CUDA graphs).
# Fashion-MNIST (the default) and other [0, 1] images: a conv VAE with a Bernoulli decoder.
# spoken_digits: an MLP VAE with a Gaussian decoder on 64x64 log-mel spectrograms (the conv decoder's samples come out
# speckled on these 1 900 clips). galaxies (real-valued, with sky noise): a Gaussian decoder and 10 latents for the
# five generating factors, which eval scores by the mutual information gap.
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("nll_bits_per_dim", "test NLL (importance-sampled)", "bits/dim"),)

PRESETS = {
    "quick": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(),
            TrainConfig(steps=4000, batch_size=128, lr=2e-3, grad_clip=100.0, checkpoint_every=1000))),
        "spoken_digits": Preset(
            Config(architecture="mlp", likelihood="gaussian", mel=True, nll_examples=140),
            TrainConfig(steps=1500, batch_size=64, lr=1e-3, grad_clip=100.0, checkpoint_every=500, samples=20),
            view="mel"),
        "galaxies": Preset(
            Config(likelihood="gaussian", latent_dim=10, dataset_size=12_000),
            TrainConfig(steps=3000, batch_size=128, lr=2e-3, grad_clip=100.0, checkpoint_every=1000)),
    },
    "full": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(latent_dim=32, channels=(64, 128), nll_examples=10_000),
            TrainConfig(steps=50_000, batch_size=256, lr=1e-3, warmup_steps=1000, grad_clip=100.0,
                        checkpoint_every=5000, samples=100, **GPU_TRAINING))),
        "spoken_digits": Preset(
            Config(architecture="mlp", likelihood="gaussian", mel=True, nll_examples=140, latent_dim=32,
                   hidden=(1024, 512)),
            TrainConfig(steps=20_000, batch_size=128, lr=1e-3, warmup_steps=500, grad_clip=100.0,
                        checkpoint_every=2000, samples=40, **GPU_TRAINING),
            view="mel"),
        "galaxies": Preset(
            Config(likelihood="gaussian", latent_dim=10, dataset_size=12_000, channels=(64, 128), nll_examples=1000),
            TrainConfig(steps=30_000, batch_size=256, lr=1e-3, warmup_steps=1000, grad_clip=100.0,
                        checkpoint_every=5000, samples=100, **GPU_TRAINING)),
    },
}
default_config = preset_config("vae", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("architecture", "latent_dim", "hidden", "channels", "likelihood", "conditional", "mel", "tc_hidden",
                "levels", "top_dim", "dis_channels", "dis_fc")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("nll_samples", "nll_examples", "tc_examples", "probe_examples")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("latent_dim", "hidden", "channels", "tc_hidden", "tc_lr", "dis_channels", "dis_fc", "gan_lr",
                           "top_dim", "nll_samples", "nll_examples", "tc_examples"), "positive"),
          # tc_beta: the TC's weight at beta = 1 (0: none); dataset_size 1 is refused by build (0: the batch's)
          **dict.fromkeys(("beta", "tc_beta", "dataset_size", "factor_gamma", "vaegan_gamma", "probe_examples"),
                          "at least 0"),
          "tc_betas": "in [0, 1)", "gan_betas": "in [0, 1)", "levels": "1 or 2"}


def build(config: Config, data) -> VAE:
    """The VAE for a data set of (C, H, W) examples (in [0, 1] for a Bernoulli decoder); a cVAE on its labels."""
    if len(data.shape) != 3:
        hint = " (use --set data.view=mel)" if data.modality == "audio" else ""
        raise ValueError(f"the VAE models (C, H, W) images or spectrograms; {data.name} examples have shape "
                         f"{data.shape}{hint}")
    if config.likelihood == "bernoulli" and not data.unit_images:
        raise ValueError(f"a Bernoulli decoder needs [0, 1] images; for {data.name} use model.likelihood=gaussian")
    if config.dataset_size < 0 or config.dataset_size == 1:
        raise ValueError(f"model.dataset_size is the training split's size (or 0: the batch's), got {config.dataset_size}")
    if config.conditional and not data.num_classes:
        raise ValueError(f"model.conditional=true needs labels, and {data.name} has none")
    if config.levels == 2:
        return build_hierarchical(config, data)
    if config.levels != 1:
        raise ValueError(f"model.levels is 1 (the VAE) or 2 (a hierarchical VAE), got {config.levels}")
    if config.factor_gamma < 0 or (config.factor_gamma and config.tc_beta != 1):
        raise ValueError("model.factor_gamma is FactorVAE's weight of the TC (0: off), at least 0 and not with "
                         f"beta-TCVAE's model.tc_beta (got {config.factor_gamma} and {config.tc_beta}): choose one")
    check_vaegan(config)
    return VAE(image_shape=data.shape, latent_dim=config.latent_dim, architecture=config.architecture,
               likelihood=config.likelihood, hidden=config.hidden, channels=config.channels,
               num_classes=data.num_classes if config.conditional else 0,
               tc_hidden=config.tc_hidden if config.factor_gamma else (),
               discriminator_channels=config.dis_channels if config.vaegan_gamma else (), discriminator_fc=config.dis_fc)


def check_vaegan(config: Config) -> None:
    """VAE-GAN (``model.vaegan_gamma > 0``) is an unconditional VAE of one level with the plain KL; a one-line
    ValueError for a negative gamma, no discriminator convs or what it does not combine with."""
    others = [key for key, on in (("conditional", config.conditional), ("tc_beta", config.tc_beta != 1),
                                  ("factor_gamma", config.factor_gamma)) if on]
    if config.vaegan_gamma < 0 or (config.vaegan_gamma and (not config.dis_channels or others)):
        raise ValueError(f"model.vaegan_gamma > 0 (VAE-GAN) weighs the discriminator's likeness against fooling it: "
                         f"at least 0, with model.dis_channels, and not with model."
                         f"{others[0] if others else 'vaegan_gamma'} (got {config.vaegan_gamma})")


def build_hierarchical(config: Config, data) -> HierarchicalVAE:
    """The two-level VAE (``model.levels=2``): conv only, unconditional, trained on its ELBO (beta may weigh both KLs);
    one-line ValueError for what it does not combine with."""
    others = [key for key, on in (("architecture=mlp", config.architecture != "conv"), ("conditional", config.conditional),
                                  ("tc_beta", config.tc_beta != 1), ("factor_gamma", config.factor_gamma),
                                  ("vaegan_gamma", config.vaegan_gamma)) if on]
    if others or config.top_dim < 1:
        raise ValueError(f"model.levels=2 (a hierarchical VAE) is a conv VAE of model.top_dim >= 1 latents over "
                         f"model.latent_dim, without model.{others[0] if others else 'top_dim'}")
    return HierarchicalVAE(data.shape, config.latent_dim, config.top_dim, config.likelihood, config.channels,
                           hidden=config.hidden[0])


def draw_noise(net: VAE, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """eps ~ N(0, I), (n, d): the one reparameterised sample per example of the training loss; FactorVAE's also
    ``perm_keys`` ~ U(0, 1), (n, d), whose ranks down each column (``permutations``) shuffle the batch's codes;
    VAE-GAN's ``z_prior`` ~ N(0, I), (n, d), the codes its decoder draws the prior's samples from."""
    noise = {"eps": draw_eps((n, net.latent_dim), generator)}
    if config.factor_gamma:
        noise["perm_keys"] = torch.rand((n, net.latent_dim), generator=generator)
    if config.vaegan_gamma:
        noise["z_prior"] = draw_eps((n, net.latent_dim), generator)
    return noise


def loss(net: VAE, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """``VAE.loss`` (batch mean of beta KL - E log p(x|z)) and its two terms. batch: (x (B, C, H, W), y (B,)).
    With ``tc_beta`` != 1, beta-TCVAE (Chen et al. 2018, eq. 4 with alpha = gamma = beta): beta KL + (tc_beta - 1) TC
    - E log p(x|z), the total correlation estimated over the batch (``VAE.tc_terms``), which is also logged split in
    its three parts."""
    y = batch[1] if net.num_classes else None
    if isinstance(net, HierarchicalVAE):  # the KL of each level, logged apart
        recon, kl_top, kl_lower = net.level_terms(batch[0], noise["eps"])
        return (torch.mean(config.beta * (kl_top + kl_lower) - recon),
                {"recon_nll": -recon.mean(), "kl": (kl_top + kl_lower).mean(), "kl_top": kl_top.mean(),
                 "kl_lower": kl_lower.mean()})
    if config.tc_beta == 1:
        recon, kl = net.terms(batch[0], noise["eps"], y)
        return torch.mean(config.beta * kl - recon), {"recon_nll": -recon.mean(), "kl": kl.mean()}
    if config.dataset_size and config.dataset_size < len(batch[0]):
        raise ConfigError(f"model.dataset_size ({config.dataset_size}) is smaller than a batch ({len(batch[0])}): give "
                          "the training split's size, or 0 to take the batch for the data set")
    recon, kl, mi, tc, dim_kl = net.tc_terms(batch[0], noise["eps"], y, config.dataset_size)
    return (torch.mean(config.beta * kl + (config.tc_beta - 1) * tc - recon),
            {"recon_nll": -recon.mean(), "kl": kl.mean(), "mi": mi.mean(), "tc": tc.mean(), "dim_kl": dim_kl.mean()})


# Models of several players: FactorVAE (the VAE, the TC discriminator), VAE-GAN (encoder, decoder, discriminator) -----
def own_step(config: Config) -> bool:
    """Whether a run trains by ``train_step`` (FactorVAE's or VAE-GAN's players) rather than the engine's step on
    ``loss``."""
    return config.factor_gamma > 0 or config.vaegan_gamma > 0


def players(net: VAE, config: Config) -> dict[str, Player]:
    """FactorVAE's two optimizers: the VAE's (``train.lr``, ``train.betas``) and the TC discriminator's
    (``model.tc_lr``, ``model.tc_betas``: the paper's Adam at 1e-4 with betas (0.5, 0.9)); VAE-GAN's three: the
    encoder's (``train.lr``, ``train.betas``), the decoder's and the discriminator's (``model.gan_lr``,
    ``model.gan_betas``: the DCGAN's betas)."""
    if config.vaegan_gamma:
        return {"encoder": Player(list(net.encoder.parameters())),
                "decoder": Player(net.decoder_parameters(), config.gan_lr, config.gan_betas),
                "discriminator": Player(list(net.discriminator.parameters()), config.gan_lr, config.gan_betas)}
    return {"vae": Player(net.vae_parameters()),
            "tc_discriminator": Player(list(net.tc_discriminator.parameters()), config.tc_lr, config.tc_betas)}


def train_step(net: VAE, config: Config, step: int, run):
    """The step of a model of several players: ``vaegan_step`` or ``factor_vae_step``."""
    return (vaegan_step if config.vaegan_gamma else factor_vae_step)(net, config, step, run)


def vaegan_step(net: VAE, config: Config, step: int, run):
    """One iteration of VAE-GAN (Larsen et al. 2016, Algorithm 1): on one batch, the KL, the reconstruction's
    likeness in the discriminator's features and its logits of x, the reconstructions and the prior's samples
    (``VAE.vaegan_terms``); then each network's own loss (``vaegan_losses``), its gradient taken with respect to its
    own parameters only, the three updated at once. -> (the three losses' sum, the terms)."""
    (x, _), noise = run.next_batch()
    with run.autocast():
        kl, feature_nll, logits_real, logits_recon, logits_prior = net.vaegan_terms(x, noise["eps"], noise["z_prior"])
        encoder_loss, decoder_loss, d_loss = vaegan_losses(kl, feature_nll, logits_real, logits_recon, logits_prior,
                                                           config.vaegan_gamma, config.beta)
    run.update(encoder=encoder_loss, decoder=decoder_loss, discriminator=d_loss)
    return encoder_loss + decoder_loss + d_loss, {
        "kl": kl.mean(), "feature_nll": feature_nll.mean(), "encoder_loss": encoder_loss,
        "decoder_loss": decoder_loss, "discriminator_loss": d_loss, "d_real": torch.sigmoid(logits_real).mean(),
        "d_recon": torch.sigmoid(logits_recon).mean(), "d_prior": torch.sigmoid(logits_prior).mean()}


def factor_vae_step(net: VAE, config: Config, step: int, run):
    """One iteration of FactorVAE (Kim & Mnih 2018, Algorithm 2): the VAE's update on a batch, the negative ELBO plus
    gamma times the discriminator's logit of its codes (``factor_vae_loss``); then the discriminator's on the next
    batch, those codes (label 1) against the next batch's codes with each dimension shuffled (``permute_dims``,
    label 0). -> (the VAE's loss, its terms and the discriminator's)."""
    (x, y), noise = run.next_batch()
    with run.autocast():
        recon, kl, z = net.sample_terms(x, noise["eps"], y if net.num_classes else None)
        tc_logits = net.tc_discriminator(z)
        vae_loss = factor_vae_loss(recon, kl, tc_logits, config.factor_gamma)
    run.update(vae=vae_loss)
    (x2, y2), noise2 = run.next_batch()
    with run.autocast():
        with torch.no_grad():
            z2 = net.sample_terms(x2, noise2["eps"], y2 if net.num_classes else None)[2]
        shuffled = permute_dims(z2, permutations(noise2["perm_keys"]))
        logits_q, logits_shuffled = net.tc_discriminator(z.detach()), net.tc_discriminator(shuffled)
        d_loss = tc_discriminator_loss(logits_q, logits_shuffled)
    run.update(tc_discriminator=d_loss)
    accuracy = 0.5 * ((logits_q > 0).float().mean() + (logits_shuffled < 0).float().mean())
    return vae_loss, {"recon_nll": -recon.mean(), "kl": kl.mean(), "tc": tc_logits.mean(),
                      "tc_discriminator_loss": d_loss, "tc_discriminator_accuracy": accuracy}


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def sample(net: VAE, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """Decoder means of z ~ N(0, I) (a cVAE: one row per class), then reconstructions of ``examples``
    (rows of originals over rows of reconstructions) and latent interpolations between pairs of them.
    Log-mel spectrograms are shown as images and, through Griffin-Lim, written as WAV files too."""
    device = _device(net)
    if net.num_classes:
        per_row = math.ceil(n / net.num_classes)
        y = torch.arange(net.num_classes, device=device).repeat_interleave(per_row)
    else:
        per_row, y = math.ceil(math.sqrt(n)), None
    samples = net.sample(draw_eps((n if y is None else len(y), net.latent_dim), generator).to(device), y)
    figures = [Artefact("samples", "images", samples.cpu(), nrow=per_row, labels=None if y is None else y.cpu())]
    if isinstance(net, HierarchicalVAE):
        figures.append(levels_figure(net, generator))
    if examples is not None:
        x, labels = examples[0].to(device), examples[1].to(device)
        figures += [reconstructions(net, x, labels), interpolations(net, x, labels), traversals(net, x, labels)]
    if not config.mel:
        return figures
    from practice_torch.data.audio import mel_picture, mel_to_waveform

    pictures = [replace(a, data=mel_picture(a.data)) for a in figures]
    sounds = [Artefact("samples_audio", "audio", mel_to_waveform(samples[::per_row][:10, 0].cpu()))]
    if examples is not None:
        x, labels = examples[0][:8].to(device), examples[1][:8].to(device) if net.num_classes else None
        recon = net.sample(net.encode(x, labels)[0], labels)
        sounds += [Artefact("originals_audio", "audio", mel_to_waveform(x[:, 0].cpu())),
                   Artefact("reconstructions_audio", "audio", mel_to_waveform(recon[:, 0].cpu()))]
    return pictures + sounds


def levels_figure(net: HierarchicalVAE, generator: torch.Generator, rows: int = 6, cols: int = 8) -> Artefact:
    """The hierarchy's two scales: each row one draw of the top level z2, its columns different draws of the lower
    level given it (what z2 fixes, and what z1 adds); the first column z1 at its prior mean."""
    u = draw_eps((rows, cols, net.latent_dim), generator).to(_device(net))
    u[:, :, :net.top_dim] = u[:, :1, :net.top_dim]  # one z2 a row
    u[:, 0, net.top_dim:] = 0.0
    return Artefact("levels", "images", net.sample(u.reshape(rows * cols, -1)).cpu(), nrow=cols)


def reconstructions(net: VAE, x, y, cols: int = 8, rows: int = 4) -> Artefact:
    """Each row of up to ``cols`` originals x (N, C, H, W) followed by the decoder mean at their posterior means."""
    cols = min(cols, len(x))
    x = x[: min(rows, len(x) // cols) * cols]
    y = y[: len(x)] if net.num_classes else None
    mean, _ = net.encode(x, y)
    pairs = torch.stack([x.view(-1, cols, *x.shape[1:]), net.sample(mean, y).view(-1, cols, *x.shape[1:])], dim=1)
    return Artefact("reconstructions", "images", pairs.reshape(-1, *x.shape[1:]).cpu(), nrow=cols)


def interpolations(net: VAE, x, y, steps: int = 10, rows: int = 8) -> Artefact:
    """Decoder means along z_t = (1 - t) mu(x_a) + t mu(x_b), t in [0, 1], one row per pair (x_a, x_b) of
    consecutive examples (a cVAE keeps x_a's label along the row)."""
    rows = min(rows, len(x) // 2)
    ya, yb = (y[0:2 * rows:2], y[1:2 * rows:2]) if net.num_classes else (None, None)
    za, zb = net.encode(x[0:2 * rows:2], ya)[0], net.encode(x[1:2 * rows:2], yb)[0]
    t = torch.linspace(0, 1, steps, device=x.device)[None, :, None]
    z = ((1 - t) * za[:, None] + t * zb[:, None]).reshape(rows * steps, -1)
    images = net.sample(z, None if ya is None else ya.repeat_interleave(steps))
    return Artefact("interpolation", "images", images.cpu(), nrow=steps)


def traversals(net: VAE, x, y, rows: int = 10, steps: int = 9, span: float = 2.5) -> Artefact:
    """``traverse`` along the ``most_used_latents`` of x (N, C, H, W): one row per latent, ``steps`` values each."""
    y = y if net.num_classes else None
    images = traverse(net, x, y, most_used_latents(net, x, y, rows), steps, span)
    return Artefact("traversals", "images", images.cpu(), nrow=steps)


@torch.no_grad()
def evaluate(net: VAE, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """Held-out ELBO (one sample per example, every example) and -log p(x) by K importance samples on the
    first ``config.nll_examples`` (Burda et al. 2016), in nats per example and bits/dim = nll / (D ln 2); the
    reconstruction's mean squared error per pixel (the decoder's mean at the posterior mean against x); the KL's
    parts (``kl_parts``); with class labels and no conditioning, the linear probe of the posterior mean beside the
    pixels' (``evaluation.probe``, the probe BiGAN's encoder is read by)."""
    device, d = _device(net), net.latent_dim
    dims = math.prod(net.image_shape)
    totals = {"elbo": 0.0, "recon_nll": 0.0, "kl": 0.0, "recon_mse": 0.0}
    for x, y in progress(DataLoader(dataset, batch_size=500), desc="ELBO", leave=False):
        x, y = x.to(device), y.to(device) if net.num_classes else None
        recon, kl = net.terms(x, draw_eps((len(x), d), generator).to(device), y)
        mse = torch.mean((net.sample(net.encode(x, y)[0], y) - x).flatten(1) ** 2, dim=1)
        for name, value in (("elbo", recon - kl), ("recon_nll", -recon), ("kl", kl), ("recon_mse", mse)):
            totals[name] += value.sum().item()
    k, m = config.nll_samples, min(config.nll_examples, len(dataset))
    nll_sum = 0.0
    subset = torch.utils.data.Subset(dataset, range(m))
    for x, y in progress(DataLoader(subset, batch_size=max(1, 10_000 // k)), desc=f"NLL (K={k})", leave=False):
        x, y = x.to(device), y.to(device) if net.num_classes else None
        nll_sum += net.importance_nll(x, draw_eps((len(x), k, d), generator).to(device), y).sum().item()
    n, nll = len(dataset), nll_sum / max(m, 1)
    return {"elbo": totals["elbo"] / n, "recon_nll": totals["recon_nll"] / n, "kl": totals["kl"] / n,
            "recon_mse": totals["recon_mse"] / n,
            "neg_elbo_bits_per_dim": -totals["elbo"] / n / (dims * math.log(2)), "nll": nll,
            "nll_bits_per_dim": nll / (dims * math.log(2)), "examples": n, "nll_examples": m, "importance_samples": k,
            **kl_parts(net, config, dataset, generator), **probe(net, config, dataset)}


def probe(net: VAE, config: Config, dataset: Dataset) -> dict[str, float]:
    """The linear probe of the posterior mean E_q[z | x] on ``model.probe_examples`` training images, scored on the
    held-out split, beside the pixels'; {} without class labels, for a conditional VAE (whose mean reads y) or with
    no probe examples."""
    if not config.probe_examples or net.num_classes:
        return {}
    x, y = stacked(dataset)[:2]
    if y.dtype != torch.int64 or y.ndim != 1:
        return {}
    train = stacked(sibling_split(dataset, "train", limit=config.probe_examples))
    return probe_against_pixels(lambda chunk: net.encode(chunk)[0], (train[0], torch.as_tensor(train[1])), (x, y),
                                _device(net))


def posterior_means(net: VAE, dataset: Dataset, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, logvar, y) of q(z|x) on the first n examples: (n, d), (n, d) and their labels or factors (n, ...)."""
    device, means, logvars, ys = _device(net), [], [], []
    for x, y in DataLoader(torch.utils.data.Subset(dataset, range(min(n, len(dataset)))), batch_size=500):
        mean, logvar = net.encode(x.to(device), y.to(device) if net.num_classes else None)
        means.append(mean.cpu())
        logvars.append(logvar.cpu())
        ys.append(y)
    return torch.cat(means), torch.cat(logvars), torch.cat(ys)


def level_activity(net: HierarchicalVAE, mean) -> dict[str, float]:
    """The posterior-collapse diagnostic of a hierarchical VAE: the active units of each level (activity, the variance
    of the posterior mean over the examples, above 0.01; Burda et al. 2016), of the means (N, top_dim + latent_dim)
    in its standard coordinates (``HierarchicalVAE.encode``): a lower unit counts as active only where its posterior
    moves beyond what the top level's prior predicts of it."""
    activity = latent_activity(mean.double())
    top, lower = activity[:net.top_dim], activity[net.top_dim:]
    return {"active_units_top": int((top > 0.01).sum()), "active_units_lower": int((lower > 0.01).sum()),
            "activity_examples": len(mean)}


def kl_parts(net: VAE, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """The held-out KL split in its three parts (``total_correlation_terms``) over the aggregate posterior of the
    first ``tc_examples`` examples, which is then exact: N = M, q(z) = (1/M) sum_j q(z | x_j). On a data set whose
    y is its generating factors (the galaxies: (N, 5) floats) the mutual information gap of the posterior means too
    (``evaluation.disentanglement``)."""
    mean, logvar, y = posterior_means(net, dataset, config.tc_examples)
    if len(mean) < 2:
        return {}
    if isinstance(net, HierarchicalVAE):  # q is not one diagonal Gaussian: each level's active units instead
        return level_activity(net, mean)
    z = mean.double() + torch.exp(0.5 * logvar.double()) * draw_eps(mean.shape, generator, dtype=torch.float64)
    mi, tc, dim_kl = total_correlation_terms(z, mean.double(), logvar.double(), len(z))
    parts = {"mi": mi.mean().item(), "tc": tc.mean().item(), "dim_kl": dim_kl.mean().item(), "tc_examples": len(z),
             "active_units": int((latent_activity(mean.double()) > 0.01).sum())}
    if y.is_floating_point() and y.ndim == 2:
        from practice_torch.evaluation.disentanglement import mutual_information_gap

        score = mutual_information_gap(mean.numpy(), y.numpy())
        parts.update(mig=score["mig"], **{f"mig_factor_{k}": float(g) for k, g in enumerate(score["gaps"])},
                     **{f"mig_latent_{k}": int(j) for k, j in enumerate(score["best"])})
    return parts
