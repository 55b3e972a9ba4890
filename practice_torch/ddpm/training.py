"""DDPM's training interface (``practice_torch.models``): ``python -m practice_torch train ddpm``.

Images (Fashion-MNIST by default; digits for tests; spoken_digits with ``data.view=mel``) are modelled by the U-Net of
``practice_torch.nets`` on data scaled to [-1, 1]; 2-D sets (moons, ...) by ``MLPDenoiser`` on the raw coordinates.
The loss is L_simple (Ho et al. eq. 14) with t, eps and the label-dropout mask drawn by ``draw_noise``. With
``model.conditional=true`` the net sees the label, replaced by the null token with probability ``label_dropout``, so
one net gives both eps(x, y) and eps(x) for classifier-free guidance (``guidance_scale``, Ho & Salimans 2022).
Sampling walks a respaced schedule (``sample_steps``; 0 = all T) with the 'ddpm' or 'ddim' sampler, and ``sample``
and ``eval`` accept ``--set model.sampler=ddim --set model.sample_steps=50``. ``eval`` reports the NLL bound in
bits/dim (``functions``) and the epsilon loss; FID/KID come from eval's sample metrics, drawn with the same sampler.
``model.cascade=true`` trains a cascade of two DDPMs in one run (``cascade``): a base at 1 / ``cascade_factor`` of
the size and a super-resolution stage conditioned on it, with Gaussian conditioning augmentation up to level
``augment_levels``; it samples with the base's draw augmented at ``sample_augment``, and its ``eval`` reports the
two stages' epsilon losses beside FID.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from practice_torch.ddpm.cascade import Cascade, SuperResolution, cascade_losses, cascade_sample
from practice_torch.ddpm.figures import vector_figures
from practice_torch.ddpm.functions import decoder_nll, eps_loss, prior_kl, vlb_term
from practice_torch.diffusion import Schedule, null_labels, predict_x0, q_sample, restoration, upsample
from practice_torch.diffusion import model as core
from practice_torch.diffusion.model import Diffusion
from practice_torch.elbo import gaussian_log_prob
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.models import Artefact
from practice_torch.nets import MLPDenoiser, UNet, UNetConfig
from practice_torch.progress import progress


@dataclass
class Config:
    """DDPM's hyperparameters: the run's ``model.*`` keys (``--set model.sampler=ddim``)."""

    schedule: Literal["linear", "cosine"] = "cosine"
    T: int = 1000  # diffusion steps
    denoiser: Literal["unet", "mlp"] = "unet"  # images: U-Net; vectors (2-D sets): MLP
    channels: int = 32  # U-Net base width C
    channel_mults: tuple[int, ...] = (1, 2, 2)  # widths C * mult per level, halving the resolution between levels
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (2,)  # levels with self-attention (0 = full resolution)
    heads: int = 1
    dropout: float = 0.0
    hidden: int = 256  # MLP width
    depth: int = 3  # MLP residual blocks
    conditional: bool = False  # class-conditional on the data set's labels
    label_dropout: float = 0.1  # probability of replacing the label by the null token in training (for CFG)
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    sample_steps: int = 100  # respaced steps of ``sample`` and of eval's FID/KID samples; 0 = all T
    eta: float = 0.0  # DDIM's noise scale (0 deterministic, 1 DDPM-like)
    guidance_scale: float = 0.0  # classifier-free guidance w: (1 + w) eps(x, y) - w eps(x); needs conditional
    clip_x0: bool = True  # clip the predicted x_0 to [-1, 1] at each sampling step (data inside it: images, galaxies)
    chain_frames: int = 10  # columns of the reverse-chain figure (x_t at evenly spaced steps)
    nll_examples: int = 1000  # held-out examples that get the NLL bound in ``evaluate``
    nll_timesteps: int = 8  # random t per example for the sum of L_{t-1} (unbiased); 0 = all T - 1 terms (exact)
    mel: bool = False  # spoken_digits log-mels (data.view=mel) in [-1, 1]: shown as spectrograms, written as WAV
    # ``sample`` with a task restores held-out images instead of drawing new ones (``diffusion.restoration``):
    task: Literal["sample", "inpaint", "super_resolution"] = "sample"
    mask: str = "center"  # inpaint: the unknown pixels, one of diffusion.restoration.MASKS
    sr_factor: int = 4  # super_resolution: the known image is the truth's factor x factor block means
    resample: int = 5  # RePaint's r: each level's step taken r times, going back up in between (1: replacement alone)
    jump: int = 1  # RePaint's j: levels gone back up at a time
    cascade: bool = False  # two stages in one run (Ho et al. 2021): a base DDPM and a super-resolution DDPM on it
    cascade_factor: int = 2  # cascade: the base models the images' factor x factor block means (28 x 28 -> 14 x 14)
    base_channel_mults: tuple[int, ...] = (1, 2)  # cascade: the base U-Net's levels (14 x 14 -> 7 x 7)
    augment_levels: int = 0  # cascade: S, the condition augmented at s ~ U{0..S} of the schedule in training (0: none)
    sample_augment: int = 0  # cascade: the level the base's draw is augmented at before the second stage (<= S)


GPU_TRAINING = {"ema_decay": 0.9999, "precision": "bf16", "compile": True, "compile_mode": "reduce-overhead",
                "channels_last": True, "log_every": 100}


# quick (an idle 2-core CPU): fashion_mnist ~10 min, a small U-Net (C = 32, mults 1,2,2, attention at 7x7, cosine T =
# 1000, 1500 steps of 64, lr 2e-3, EMA 0.995); spoken_digits (mel 64x64) ~10 min, C = 16, mults 1,2,2,2, attention at
# 8x8; moons ~1 min with the MLP. Samples: 100 respaced DDPM steps (``sample_steps``).
# full (one GPU): Ho et al.'s CIFAR-10 model scaled to 28x28 (C = 128, mults 1,2,2, 2 res blocks, attention at 14x14,
# dropout 0.1, linear schedule, lr 2e-4, batch 128, 200k steps, EMA 0.9999, bf16, compiled under CUDA graphs).
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("bits_per_dim", "test NLL bound", "bits/dim"),)

PRESETS = {
    "quick": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(),
            TrainConfig(steps=1500, batch_size=64, lr=2e-3, warmup_steps=100, ema_decay=0.995, grad_clip=1.0,
                        checkpoint_every=250, log_every=50, samples=64))),
        **dict.fromkeys(("moons", "gaussians", "rings"), Preset(
            Config(denoiser="mlp", hidden=128, depth=3, T=1000, schedule="linear", sample_steps=100, clip_x0=False,
                   nll_timesteps=0),
            TrainConfig(steps=3000, batch_size=256, lr=2e-3, warmup_steps=100, ema_decay=0.995, grad_clip=1.0,
                        checkpoint_every=1000, log_every=100, samples=1000, threads=1))),
        "spoken_digits": Preset(
            Config(channels=16, channel_mults=(1, 2, 2, 2), attention_levels=(3,), mel=True, clip_x0=False,
                   nll_examples=140),
            TrainConfig(steps=1500, batch_size=32, lr=1e-3, warmup_steps=100, ema_decay=0.995, checkpoint_every=500,
                        log_every=50, samples=20),
            view="mel"),
    },
    "full": {
        **dict.fromkeys(("fashion_mnist", "*"), Preset(
            Config(schedule="linear", channels=128, num_res_blocks=2, attention_levels=(1,), dropout=0.1,
                   sample_steps=250, nll_examples=10_000, nll_timesteps=16),
            TrainConfig(steps=200_000, batch_size=128, lr=2e-4, warmup_steps=5000, min_lr_ratio=1.0, grad_clip=1.0,
                        checkpoint_every=10_000, samples=100, **GPU_TRAINING))),
        **dict.fromkeys(("moons", "gaussians", "rings"), Preset(
            Config(denoiser="mlp", hidden=256, depth=3, T=1000, schedule="linear", sample_steps=0, clip_x0=False,
                   nll_timesteps=0),
            TrainConfig(steps=20_000, batch_size=512, lr=1e-3, warmup_steps=500, ema_decay=0.999,
                        checkpoint_every=5000, log_every=500, samples=5000))),
        "spoken_digits": Preset(
            Config(channels=128, channel_mults=(1, 2, 2, 2), num_res_blocks=2, attention_levels=(2,), dropout=0.1,
                   mel=True, clip_x0=False, nll_examples=140, sample_steps=250),
            TrainConfig(steps=100_000, batch_size=64, lr=2e-4, warmup_steps=2000, checkpoint_every=5000, samples=40,
                        **GPU_TRAINING),
            view="mel"),
    },
}
default_config = preset_config("ddpm", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("schedule", "T", "denoiser", "channels", "channel_mults", "num_res_blocks", "attention_levels",
                "heads", "hidden", "depth", "conditional", "mel", "cascade", "cascade_factor", "base_channel_mults")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("sampler", "sample_steps", "eta", "guidance_scale", "clip_x0", "chain_frames", "nll_examples", "nll_timesteps",
       "task", "mask", "sr_factor", "resample", "jump", "sample_augment")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("T", "channels", "channel_mults", "num_res_blocks", "heads", "hidden", "depth",
                           "chain_frames", "nll_examples", "resample", "jump", "base_channel_mults"), "positive"),
          **dict.fromkeys(("attention_levels", "sample_steps", "guidance_scale", "nll_timesteps", "augment_levels",
                           "sample_augment"), "at least 0"),
          "cascade_factor": "at least 2",
          "dropout": "in [0, 1)", "label_dropout": "in [0, 1)", "eta": "in [0, 1]", "sr_factor": "at least 2"}


def build(config: Config, data) -> Diffusion:
    """The U-Net DDPM for (C, H, W) examples, the MLP DDPM for vectors (D,)."""
    if config.conditional and not data.num_classes:
        raise ValueError(f"model.conditional=true needs labels, and {data.name} has none")
    if config.guidance_scale and not config.conditional:
        raise ValueError("model.guidance_scale needs a class-conditional model (model.conditional=true)")
    if config.sampler not in ("ddpm", "ddim"):
        raise ValueError(f"model.sampler must be 'ddpm' or 'ddim', got {config.sampler!r}")
    if not 0 <= config.sample_steps <= config.T:
        raise ValueError(f"model.sample_steps must be in 0..T={config.T}, got {config.sample_steps}")
    check_task(config, data.shape)
    if config.cascade:
        return build_cascade(config, data)
    k = data.num_classes if config.conditional else 0
    if config.denoiser == "unet":
        if len(data.shape) != 3:
            hint = " (use --set data.view=mel)" if data.modality == "audio" else " (use model.denoiser=mlp)"
            raise ValueError(f"the U-Net models (C, H, W) images or spectrograms; {data.name} examples have shape "
                             f"{data.shape}{hint}")
        denoiser = UNet(UNetConfig(in_channels=data.shape[0], out_channels=data.shape[0], channels=config.channels,
                                   channel_mults=config.channel_mults, num_res_blocks=config.num_res_blocks,
                                   attention_levels=config.attention_levels, heads=config.heads,
                                   dropout=config.dropout, num_classes=k))
    elif config.denoiser == "mlp":
        if len(data.shape) != 1:
            raise ValueError(f"the MLP denoiser models vectors (D,); {data.name} examples have shape {data.shape}")
        denoiser = MLPDenoiser(data.shape[0], config.hidden, config.depth, k)
    else:
        raise ValueError(f"model.denoiser must be 'unet' or 'mlp', got {config.denoiser!r}")
    # 8-bit images in [0, 1], modelled on [-1, 1] with the discretised decoder; the galaxies (real-valued, with noise
    # below 0) and log-mels are modelled as they are, with the Gaussian decoder
    images = data.unit_images and not config.mel
    return Diffusion(denoiser, Schedule.make(config.schedule, config.T), data.shape, k, images)


def build_cascade(config: Config, data) -> Cascade:
    """The base U-Net DDPM on (C, H / f, W / f) (``base_channel_mults``, attention at its last level when the run
    has any) and the super-resolution U-Net on (C, H, W) that reads the upsampled condition as C more channels and
    the augmentation level as a continuous condition; one-line ValueError for settings a cascade does not take."""
    if len(data.shape) != 3 or config.denoiser != "unet" or config.mel:
        raise ValueError(f"model.cascade=true stacks two U-Nets on (C, H, W) images; {data.name} examples have shape "
                         f"{data.shape}")
    if config.conditional or config.task != "sample":
        raise ValueError("model.cascade=true draws unconditional samples: leave model.conditional=false and "
                         "model.task=sample")
    c, h, w = data.shape
    f = config.cascade_factor
    if h % f or w % f:
        raise ValueError(f"model.cascade_factor={f} must divide the images' {h} x {w}")
    if config.sample_augment > config.augment_levels:
        raise ValueError(f"model.sample_augment={config.sample_augment} is beyond the levels the stage was trained "
                         f"on (model.augment_levels={config.augment_levels})")
    schedule = Schedule.make(config.schedule, config.T)
    shared = dict(channels=config.channels, num_res_blocks=config.num_res_blocks, heads=config.heads,
                  dropout=config.dropout)
    base = UNet(UNetConfig(in_channels=c, out_channels=c, channel_mults=config.base_channel_mults,
                           attention_levels=(len(config.base_channel_mults) - 1,) if config.attention_levels else (),
                           **shared))
    sr = UNet(UNetConfig(in_channels=2 * c, out_channels=c, channel_mults=config.channel_mults,
                         attention_levels=config.attention_levels, cond_dim=1, **shared))
    images = data.unit_images
    return Cascade(Diffusion(base, schedule, (c, h // f, w // f), 0, images), SuperResolution(sr), schedule,
                   data.shape, f, images)


def draw_noise(net: Diffusion, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """t ~ U{0..T-1} (n,), eps ~ N(0, I) (n, *shape), and drop (n,) bool: which labels become the null token; a
    cascade also draws its base's t_low and eps_low, and the augmentation's level s ~ U{0..S} and eps_aug."""
    noise = {"t": torch.randint(0, len(net.schedule), (n,), generator=generator),
             "eps": torch.randn((n, *net.shape), generator=generator)}
    if net.num_classes:
        noise["drop"] = torch.rand(n, generator=generator) < config.label_dropout
    if config.cascade:
        low = (n, *net.base.shape)
        noise |= {"t_low": torch.randint(0, len(net.schedule), (n,), generator=generator),
                  "eps_low": torch.randn(low, generator=generator),
                  "s": torch.randint(0, config.augment_levels + 1, (n,), generator=generator),
                  "eps_aug": torch.randn(low, generator=generator)}
    return noise


def labels(net: Diffusion, y: torch.Tensor, drop: torch.Tensor | None) -> torch.Tensor | None:
    """y with the dropped entries replaced by the null token K; None for an unconditional net."""
    if not net.num_classes:
        return None
    return y.long() if drop is None else null_labels(y.long(), drop, net.num_classes)


def loss(net: Diffusion, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """L_simple = E ||eps - eps_theta(sqrt(a_t) x_0 + sqrt(1 - a_t) eps, t)||^2 per dimension (Ho et al. eq. 14;
    Algorithm 1). batch: (x (B, ...), y (B,)); noise: ``draw_noise`` rows. A cascade: the sum of its two stages'
    L_simple (``cascade.cascade_losses``), each logged."""
    if config.cascade:
        base, sr = cascade_losses(net, net.to_model(batch[0]), noise, config.augment_levels)
        return base + sr, {"base_loss": base.detach(), "sr_loss": sr.detach()}
    x0 = net.to_model(batch[0])
    t = noise["t"]
    a_t = net.alpha_bars[t]  # the schedule's, kept on the net's device
    x_t = q_sample(x0, a_t, noise["eps"])
    eps_pred = net(x_t, t, labels(net, batch[1], noise.get("drop")))
    return eps_loss(noise["eps"], eps_pred).mean(), {}


# Sampling --------------------------------------------------------------------------------------------------
def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def eps_function(net: Diffusion, config: Config, y: torch.Tensor | None):
    """eps_fn(x_t, t) for ``sample_loop``: eps_theta(x_t, t, y), with classifier-free guidance at
    ``config.guidance_scale`` (``practice_torch.diffusion.model.eps_function``)."""
    return core.eps_function(net, y, config.guidance_scale)


def generate(net: Diffusion, config: Config, n: int, generator: torch.Generator, y: torch.Tensor | None = None,
             frames: int = 0, chains: int = 8) -> tuple[torch.Tensor, list[torch.Tensor], list[int]]:
    """n samples (n, *shape) in model space by ``config.sampler`` over ``sample_steps`` respaced steps, and, when
    frames > 0, x_t of the first ``chains`` chains at about ``frames`` steps, with t (T for x_T)
    (``practice_torch.diffusion.model.generate``)."""
    return core.generate(net, n, generator, y, sampler=config.sampler, steps=config.sample_steps, eta=config.eta,
                         guidance_scale=config.guidance_scale, clip_x0=config.clip_x0, frames=frames, chains=chains)


# Restoration: inpainting and super-resolution of held-out images (``model.task``, ``diffusion.restoration``) -----
def check_task(config: Config, shape: tuple[int, ...]) -> None:
    """A one-line error for a restoration setting that cannot work on examples of ``shape``."""
    if config.task != "sample":
        restoration.check_restoration(config.task, shape, config.mask, config.sr_factor, config.resample, config.jump)


def restore_images(net: Diffusion, config: Config, x: torch.Tensor, generator: torch.Generator,
                   y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(restored, known) in model space for held-out images x (n, C, H, W): ``model.task`` with the run's
    sampling settings (``diffusion.restoration.restore_images``)."""
    return restoration.restore_images(net, x, generator, task=config.task, mask=config.mask,
                                      sr_factor=config.sr_factor, steps=config.sample_steps,
                                      resample=config.resample, jump=config.jump, clip_x0=config.clip_x0, y=y,
                                      guidance_scale=config.guidance_scale)


def restoration_rows(config: Config, known: torch.Tensor, restored: torch.Tensor, truth: torch.Tensor
                     ) -> list[tuple[str, torch.Tensor]]:
    """The figure's three rows, each (what it shows, its images (k, C, H, W)): what is known (the unmasked pixels,
    or the block means), the restoration, the truth."""
    given = f"known pixels (mask {config.mask})" if config.task == "inpaint" else f"known: {config.sr_factor}x block means"
    method = "RePaint" if config.task == "inpaint" else "ILVR"
    how = f"resampled r = {config.resample}" if config.resample > 1 else "r = 1"
    return [(given, known), (f"restored ({method}, {how})", restored), ("truth", truth)]


def restoration_figure(net: Diffusion, config: Config, n: int, generator: torch.Generator, examples) -> Artefact:
    """Three labelled rows of up to 16 held-out images (``restoration_rows``)."""
    from practice_torch.plots import figure_artefact, labelled_rows

    if examples is None:
        raise ValueError(f"model.task={config.task} restores held-out images, and the run's data set is not here")
    x, y = examples[0][:min(n, 16)], (examples[1][:min(n, 16)] if len(examples) > 1 else None)
    restored, known = restore_images(net, config, x, generator, y)
    truth = net.to_model(x.to(restored.device))
    rows = [(label, net.from_model(images).cpu()) for label, images in restoration_rows(config, known, restored, truth)]
    return figure_artefact(config.task, labelled_rows(rows, per_row=len(x)))


@torch.no_grad()
def sample(net: Diffusion, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """Images: a grid of n samples (a conditional net: one row per class), then the reverse chain x_T ... x_0 of 8 of
    them at ``chain_frames`` steps (one row per sample). 2-D: samples beside the held-out data and all chains as
    scatter panels at a few steps. Log-mel spectrograms are shown as images and, through Griffin-Lim, written as WAV.
    With ``model.task`` inpaint or super_resolution: held-out images restored instead (``restoration_figure``)."""
    if config.task != "sample":
        return [restoration_figure(net, config, n, generator, examples)]
    if config.cascade:
        x0, z = cascade_sample(net, n, generator, level=config.sample_augment, levels=config.augment_levels,
                               sampler=config.sampler, steps=config.sample_steps, eta=config.eta,
                               clip_x0=config.clip_x0)
        per_row = math.ceil(math.sqrt(n))
        return [Artefact("samples", "images", net.from_model(x0).cpu(), nrow=per_row),
                Artefact("base_samples", "images", net.from_model(upsample(z, net.factor)).cpu(), nrow=per_row)]
    device = _device(net)
    y, per_row = None, math.ceil(math.sqrt(n))
    if net.num_classes:
        per_row = math.ceil(n / net.num_classes)
        y = torch.arange(net.num_classes, device=device).repeat_interleave(per_row)
    vectors = len(net.shape) == 1
    x0, snapshots, times = generate(net, config, n if y is None else len(y), generator, y, config.chain_frames,
                                    chains=n if vectors else 8)
    if vectors:
        return vector_figures(x0.cpu(), snapshots, times, examples)
    from practice_torch.data.audio import mel_picture, mel_to_waveform  # torchaudio: only when sampling

    chain = torch.stack(snapshots, dim=1)  # (8, frames + 1, C, H, W)
    to_picture = mel_picture if config.mel else net.from_model
    figures = [Artefact("samples", "images", to_picture(x0).cpu(), nrow=per_row),
               Artefact("chain", "images", to_picture(chain.reshape(-1, *net.shape)), nrow=chain.shape[1])]
    if not config.mel:
        return figures
    return figures + [Artefact("samples_audio", "audio", mel_to_waveform(x0[::per_row][:10, 0].cpu()))]


# Evaluation: the NLL bound and the epsilon loss ---------------------------------------------------------------
@torch.no_grad()
def evaluate(net: Diffusion, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """The variational bound -log p(x_0) <= L_T + sum_{t=1}^{T-1} L_{t-1} + L_0 (Ho et al. eq. 5; ``functions``) on
    the first ``nll_examples`` held-out examples: L_T and L_0 exactly (images: the discretised decoder of eq. 13 on
    the 8-bit grid of [-1, 1], so bits/dim are those of the 8-bit data; real-valued data: a Gaussian decoder, a
    bound on the density), the middle sum either exactly (``nll_timesteps=0``: all T - 1 terms) or unbiasedly as
    (T - 1) times the mean of ``nll_timesteps`` terms at t ~ U{1..T-1} per example. bits_per_dim_stderr is the
    standard error of the mean over examples (it includes the t-sampling noise). eps_loss: L_simple at t ~ U{0..T-1}
    estimated from the same forward passes. The decoder variance at t = 0 is beta-tilde at t = 1 (beta-tilde_0 = 0).
    A cascade reports its two stages' L_simple on those examples instead (``evaluate_cascade``)."""
    if config.cascade:
        return evaluate_cascade(net, config, dataset, generator)
    device, s, big_t = _device(net), net.schedule, len(net.schedule)
    if big_t < 2:
        raise ValueError("the NLL bound needs T >= 2")
    m, dims = min(config.nll_examples, len(dataset)), math.prod(net.shape)
    a = s.alpha_bars.to(device)
    var0 = (s.betas[1] * (1 - s.alpha_bars[0]) / (1 - s.alpha_bars[1])).item()
    columns = config.nll_timesteps or big_t - 1
    per_example = {"prior": [], "decoder": [], "diffusion": [], "simple": []}
    loader = DataLoader(Subset(dataset, range(m)), batch_size=250)
    for x, y in progress(loader, desc="NLL bound", leave=False):
        x0 = net.to_model(x.to(device))
        b, yy = len(x0), labels(net, y.to(device), None)
        full = lambda value: torch.full((b,), value, device=device, dtype=torch.long)  # noqa: E731
        per_example["prior"].append(prior_kl(x0, a[big_t - 1].expand(b)))
        eps = torch.randn(x0.shape, generator=generator).to(device)
        x_1 = q_sample(x0, a[0].expand(b), eps)
        eps_pred = net(x_1, full(0), yy)
        if net.images:
            per_example["decoder"].append(decoder_nll(x0, x_1, eps_pred, a[0].expand(b), var0))
        else:
            mean = predict_x0(x_1, a[0].expand(b), eps_pred).reshape(b, -1)
            logvar = torch.full_like(mean, math.log(var0))
            per_example["decoder"].append(-gaussian_log_prob(x0.reshape(b, -1), mean, logvar))
        simple0, diffusion, simple = eps_loss(eps, eps_pred), torch.zeros(b, device=device), 0.0
        for j in range(columns):
            t = (torch.randint(1, big_t, (b,), generator=generator).to(device) if config.nll_timesteps
                 else full(j + 1))
            eps = torch.randn(x0.shape, generator=generator).to(device)
            x_t = q_sample(x0, a[t], eps)
            eps_pred = net(x_t, t, yy)
            diffusion += vlb_term(x0, x_t, eps_pred, a[t], a[t - 1])
            simple = simple + eps_loss(eps, eps_pred)
        scale = (big_t - 1) / columns  # 1 for the exact sum; (T - 1) / K for the estimate
        per_example["diffusion"].append(diffusion * scale)
        per_example["simple"].append((simple0 + simple * scale) / big_t)
    terms = {k: torch.cat(v).double().cpu() for k, v in per_example.items()}
    bound = terms["prior"] + terms["decoder"] + terms["diffusion"]
    to_bits = 1 / (dims * math.log(2))
    estimator = ("all T terms (exact)" if not config.nll_timesteps else
                 f"unbiased: (T-1) x mean of {config.nll_timesteps} random t per example")
    return {"nll_bound": bound.mean().item(), "bits_per_dim": bound.mean().item() * to_bits,
            "bits_per_dim_stderr": (bound.std() / math.sqrt(m)).item() * to_bits if m > 1 else math.nan,
            "prior_bits_per_dim": terms["prior"].mean().item() * to_bits,
            "decoder_bits_per_dim": terms["decoder"].mean().item() * to_bits,
            "diffusion_bits_per_dim": terms["diffusion"].mean().item() * to_bits,
            "eps_loss": terms["simple"].mean().item(), "nll_examples": m, "nll_estimator": estimator,
            "data": "8-bit images on [-1, 1], discretised decoder" if net.images else "real values, Gaussian decoder"}


@torch.no_grad()
def evaluate_cascade(net: Cascade, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """The base's and the super-resolution stage's L_simple on the first ``nll_examples`` held-out images, with t,
    the noise and the augmentation level drawn as in training (``draw_noise``). FID/KID come from eval's sample
    metrics, drawn through both stages."""
    device, m = _device(net), min(config.nll_examples, len(dataset))
    totals = torch.zeros(2, dtype=torch.float64)
    for x, _ in DataLoader(Subset(dataset, range(m)), batch_size=250):
        noise = {k: v.to(device) for k, v in draw_noise(net, config, len(x), generator).items()}
        base, sr = cascade_losses(net, net.to_model(x.to(device)), noise, config.augment_levels)
        totals += torch.stack([base, sr]).double().cpu() * len(x)
    return {"base_eps_loss": totals[0].item() / m, "sr_eps_loss": totals[1].item() / m, "nll_examples": m,
            "augment_levels": config.augment_levels, "sample_augment": config.sample_augment}
