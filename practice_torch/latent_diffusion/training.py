"""Latent diffusion trained with the shared engine: ``python -m practice_torch train latent_diffusion``.

Stage 1, the autoencoder, is the project's conv VAE (``practice_torch.vae``), frozen: its parameters have
requires_grad = False, so the engine's optimizer never sees them, and the latent of an image is the posterior mean
mu(x) (B, d). The run builds on a trained ``vae`` run (``BUILDS_ON``, opened by the engine when the run starts):
``model.autoencoder=RUN_DIR`` names one, or, when it is empty, the engine trains one first (``prerequisite_runs``:
the vae preset ``model.autoencoder_preset`` with the ``autoencoder_*`` overrides) into the run's own folder,
RUN/autoencoder, or, when ``model.autoencoder_root`` names a folder, into ``autoencoder_root/vae-<data>-<hash>``,
reusing the finished run already there; and names it in the run's config.
Stage 2 is a class-conditional DDPM (``practice_torch.diffusion``: Schedule, Diffusion, generate) on the scaled
latents u = s mu(x), s = 1 / std of the training latents (Rombach et al. 2022, "scale_by_std", estimated at the first
build unless ``model.latent_scale`` gives it), trained with label dropout and sampled with classifier-free guidance;
images are D(u_0 / s). The run's builds_on.json records the vae run and its config, its checkpoints hold the
autoencoder's weights and the scale, so ``sample``, ``eval`` and ``--resume`` rebuild it from them and never train,
load the autoencoder run (which may be deleted) or estimate again. The derivation:
``python -m theory_jax latent_diffusion``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from practice_torch.diffusion import Schedule
from practice_torch.diffusion.model import Diffusion, generate
from practice_torch.engine.config import DataConfig, RunConfig, TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.engine.runs import Parent, Prerequisite, load_split
from practice_torch.latent_diffusion.functions import latent_eps_loss, latent_scale, prior_kl, unscale_latents
from practice_torch.models import Artefact
from practice_torch.nets import MLPDenoiser
from practice_torch.vae import VAE


@dataclass
class Config:
    """Latent diffusion's hyperparameters: the run's ``model.*`` keys (``--set model.guidance_scale=2``)."""

    autoencoder: str = ""  # a trained vae run directory; "" = the engine trains one first (and names it here)
    autoencoder_root: str = ""  # where that run is written: "" = inside this run's folder (RUN/autoencoder); a folder
    # (e.g. runs/autoencoders): there, as <folder>/vae-<data set>-<hash>, reused by later runs
    autoencoder_preset: Literal["quick", "full"] = "quick"  # the vae preset it starts from
    autoencoder_steps: int = 3000
    autoencoder_latent_dim: int = 16
    autoencoder_beta: float = 0.1  # a weak KL: sharper reconstructions; the DDPM, not N(0, I), is the prior
    latent_scale: float = 0.0  # s; 0 = estimate 1/std on ``scale_examples`` training latents (kept in the checkpoint)
    scale_examples: int = 10_000
    schedule: Literal["linear", "cosine"] = "linear"
    T: int = 1000
    hidden: int = 256  # MLPDenoiser width
    depth: int = 3  # MLPDenoiser residual blocks
    conditional: bool = True  # class-conditional on the data set's labels
    label_dropout: float = 0.1  # probability of the null label in training (classifier-free guidance)
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    sample_steps: int = 100  # respaced steps of ``sample`` and of eval's FID/KID samples; 0 = all T
    eta: float = 0.0  # DDIM's noise scale
    guidance_scale: float = 1.0  # w of classifier-free guidance: (1 + w) eps(u, y) - w eps(u)
    chain_frames: int = 10  # columns of the decoded reverse-chain figure
    eval_examples: int = 2000  # held-out examples of the latent loss in ``evaluate``


GPU_TRAINING = {"ema_decay": 0.9999, "precision": "bf16", "compile": True, "compile_mode": "reduce-overhead",
                "log_every": 100}


# quick (2 CPU cores, fashion_mnist): the vae quick conv VAE for 3000 steps, then 5000 steps of a 256-wide MLP DDPM on
# its 16-d latents (about 10 min in all). full (one GPU): the vae full conv VAE (latent 32) for 50k steps, a 1024-wide
# 6-block MLP DDPM for 200k steps, EMA, bf16, compiled.
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("fid", "FID (project features)", "FID"), ("latent_loss", "test latent epsilon loss", "MSE"))

PRESETS = {
    "quick": dict.fromkeys(("fashion_mnist", "*"), Preset(
        Config(),
        TrainConfig(steps=5000, batch_size=256, lr=1e-3, warmup_steps=200, ema_decay=0.999, grad_clip=1.0,
                    checkpoint_every=2000, log_every=100, samples=100))),
    "full": dict.fromkeys(("fashion_mnist", "*"), Preset(
        Config(autoencoder_preset="full", autoencoder_steps=50_000, autoencoder_latent_dim=32, hidden=1024, depth=6,
               sample_steps=250, eval_examples=10_000),
        TrainConfig(steps=200_000, batch_size=512, lr=2e-4, warmup_steps=5000, grad_clip=1.0, checkpoint_every=10_000,
                    samples=100, **GPU_TRAINING))),
}
default_config = preset_config("latent_diffusion", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("autoencoder", "autoencoder_root", "autoencoder_preset", "autoencoder_steps",
                "autoencoder_latent_dim", "autoencoder_beta", "latent_scale", "schedule", "T", "hidden", "depth",
                "conditional")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("sampler", "sample_steps", "eta", "guidance_scale", "chain_frames", "eval_examples")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("autoencoder_steps", "autoencoder_latent_dim", "scale_examples", "T", "hidden", "depth",
                           "chain_frames", "eval_examples"), "positive"),
          **dict.fromkeys(("autoencoder_beta", "latent_scale", "sample_steps", "guidance_scale"), "at least 0"),
          "label_dropout": "in [0, 1)", "eta": "in [0, 1]"}
BUILDS_ON = {"autoencoder": "vae"}  # the frozen stage 1 (engine.runs.Parent)


# The network: a frozen autoencoder, the latent scale, a DDPM on latent vectors ----------------------------------
class LatentDiffusion(nn.Module):
    """The frozen VAE (requires_grad off, always in eval mode), the scale s (a buffer: it is checkpointed) and the
    latent DDPM ``diffusion`` (a ``ddpm.Diffusion`` over vectors (d,))."""

    def __init__(self, autoencoder: VAE, diffusion: Diffusion, scale: float):
        super().__init__()
        self.autoencoder = autoencoder.requires_grad_(False).eval()
        self.diffusion = diffusion
        self.register_buffer("scale", torch.tensor(float(scale)))

    def train(self, mode: bool = True) -> LatentDiffusion:
        super().train(mode)
        self.autoencoder.eval()
        return self

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent mu(x), the posterior mean (unscaled). x: (B, C, H, W) -> (B, d)."""
        return self.autoencoder.encode(x)[0]

    @torch.no_grad()
    def decode(self, u: torch.Tensor) -> torch.Tensor:
        """Images D(u / s) from scaled latents u: (B, d) -> decoder means (B, C, H, W)."""
        return self.autoencoder.sample(unscale_latents(u, self.scale))


def prerequisite_runs(config: Config, data) -> dict[str, Prerequisite]:
    """The vae run the engine trains first when ``model.autoencoder`` is empty: the vae preset
    ``model.autoencoder_preset`` on this data set, unconditional, with the ``autoencoder_*`` latent size, beta and
    steps, inside this run's folder (RUN/autoencoder) or, when ``model.autoencoder_root`` names a folder, there
    (reused once finished)."""
    if config.autoencoder:
        return {}

    def edit(base: RunConfig) -> RunConfig:
        return replace(base, model=replace(base.model, latent_dim=config.autoencoder_latent_dim,
                                           beta=config.autoencoder_beta, conditional=False),
                       train=replace(base.train, steps=config.autoencoder_steps,
                                     checkpoint_every=min(base.train.checkpoint_every, config.autoencoder_steps)))

    return {"autoencoder": Prerequisite("vae", config.autoencoder_preset, edit, config.autoencoder_root)}


def frozen_autoencoder(parent: Parent, data) -> VAE:
    """The VAE of the vae run ``parent``, built as the vae adapter builds it from the run's config, its weights
    copied the first time (from this run's checkpoint afterwards), frozen. ValueError, one line, for a vae run of
    another data set or a conditional one."""
    if parent.config is None:
        raise ValueError(f"the autoencoder run {parent.run}'s config is not at hand: open this run through "
                         "practice_torch.models (open_run, new_trainer), which reads it off builds_on.json")
    c = parent.config.model
    if parent.net is not None:  # the first build: check the run, then copy its weights
        if parent.config.data.name != data.name or tuple(parent.net.image_shape) != tuple(data.shape):
            raise ValueError(f"model.autoencoder={parent.run} was trained on {parent.config.data.name}; this run is "
                             f"on {data.name}")
        if parent.net.num_classes:
            raise ValueError(f"model.autoencoder={parent.run} is a conditional VAE; use an unconditional one (the "
                             "labels condition the latent DDPM)")
    autoencoder = VAE(image_shape=data.shape, latent_dim=c.latent_dim, architecture=c.architecture,
                      likelihood=c.likelihood, hidden=c.hidden, channels=c.channels, num_classes=0)
    if parent.net is not None:
        autoencoder.load_state_dict(parent.net.state_dict())
    return autoencoder.requires_grad_(False).eval()


@torch.no_grad()
def estimate_scale(autoencoder: VAE, data: DataConfig, n: int) -> float:
    """s = ``latent_scale`` of mu(x) over the first n training examples."""
    latents = [autoencoder.encode(x)[0] for x, _ in DataLoader(load_split(data, "train", limit=n), batch_size=500)]
    return float(latent_scale(torch.cat(latents)))


def build(config: Config, data, parents: dict) -> LatentDiffusion:
    """The frozen autoencoder of the vae run it builds on (``parents['autoencoder']``) and the scale (``model.
    latent_scale``, or estimated on its training latents at the first build; from the checkpoint afterwards), then
    the MLP DDPM on d-dimensional latents."""
    if len(data.shape) != 3 or data.modality != "image":
        raise ValueError(f"latent diffusion uses the conv VAE on (C, H, W) images; {data.name} examples have shape "
                         f"{data.shape}")
    if config.conditional and not data.num_classes:
        raise ValueError(f"model.conditional=true needs labels, and {data.name} has none")
    if config.guidance_scale and not config.conditional:
        raise ValueError("model.guidance_scale needs a class-conditional model (model.conditional=true)")
    if not 0 <= config.sample_steps <= config.T:
        raise ValueError(f"model.sample_steps must be in 0..T={config.T}, got {config.sample_steps}")
    if config.latent_scale < 0:
        raise ValueError(f"model.latent_scale must be positive (or 0: estimate it), got {config.latent_scale}")
    parent = parents.get("autoencoder")
    if parent is None:
        raise ValueError("latent diffusion builds on a vae run: --set model.autoencoder=RUN_DIR, or leave it empty "
                         "and train through practice_torch.models, which trains one first")
    autoencoder = frozen_autoencoder(parent, data)
    scale = config.latent_scale or (estimate_scale(autoencoder, parent.config.data, config.scale_examples)
                                    if parent.net is not None else 1.0)  # reopened: the checkpoint's scale
    k = data.num_classes if config.conditional else 0
    denoiser = MLPDenoiser(autoencoder.latent_dim, config.hidden, config.depth, k)
    diffusion = Diffusion(denoiser, Schedule.make(config.schedule, config.T), (autoencoder.latent_dim,), k,
                          images=False)
    return LatentDiffusion(autoencoder, diffusion, scale)


def draw_noise(net: LatentDiffusion, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """t ~ U{0..T-1} (n,), eps ~ N(0, I) (n, d), drop (n,) bool: the labels replaced by the null token."""
    d = net.diffusion
    return {"t": torch.randint(0, len(d.schedule), (n,), generator=generator),
            "eps": torch.randn((n, *d.shape), generator=generator),
            "drop": torch.rand(n, generator=generator) < config.label_dropout}


def loss(net: LatentDiffusion, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """L_simple on the scaled latents: mean of ``latent_eps_loss`` (Ho et al. eq. 14 on u = s mu(x)).
    batch: (x (B, C, H, W), y (B,)); noise: ``draw_noise`` rows."""
    d = net.diffusion
    z = net.encode(batch[0])
    per_example = latent_eps_loss(d, z, batch[1].long(), noise["t"], noise["eps"], noise["drop"],
                                  d.alpha_bars, net.scale, d.num_classes)
    return per_example.mean(), {}


# Sampling and evaluation ---------------------------------------------------------------------------------------
@torch.no_grad()
def sample(net: LatentDiffusion, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """A class-conditional grid (one row per class) of D(u_0 / s), the decoded reverse chain of 8 samples
    (D(u_t / s) at ``chain_frames`` steps), and, for ``examples``, originals over their autoencoder reconstructions
    (the ceiling any latent model can reach)."""
    d, device = net.diffusion, net.scale.device
    y, per_row = None, math.ceil(math.sqrt(n))
    if d.num_classes:
        per_row = math.ceil(n / d.num_classes)
        y = torch.arange(d.num_classes, device=device).repeat_interleave(per_row)
    u0, snapshots, _ = generate(d, n if y is None else len(y), generator, y, sampler=config.sampler,
                                steps=config.sample_steps, eta=config.eta,
                                guidance_scale=config.guidance_scale if config.conditional else 0.0,
                                frames=config.chain_frames)  # no clipping: latents are not in [-1, 1]
    chain = torch.stack([net.decode(s.to(device)) for s in snapshots], dim=1)  # (8, frames + 1, C, H, W)
    figures = [Artefact("samples", "images", net.decode(u0).cpu(), nrow=per_row),
               Artefact("chain", "images", chain.reshape(-1, *chain.shape[2:]).cpu(), nrow=chain.shape[1])]
    if examples is not None:
        cols = min(8, len(examples[0]))
        x = examples[0][: min(4, len(examples[0]) // cols) * cols].to(device)
        recon = net.autoencoder.sample(net.encode(x))
        pairs = torch.stack([x.view(-1, cols, *x.shape[1:]), recon.view(-1, cols, *x.shape[1:])], dim=1)
        figures.append(Artefact("reconstructions", "images", pairs.reshape(-1, *x.shape[1:]).cpu(), nrow=cols))
    return figures


@torch.no_grad()
def evaluate(net: LatentDiffusion, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """On the first ``eval_examples`` held-out examples: the latent epsilon loss (labels kept, t ~ U{0..T-1}), the
    prior term L_T = KL(q(u_T|u_0) || N(0, I)) per latent dimension, with the scale and without it (s = 1), and
    the std of the scaled latents (1 if s generalises). FID/KID come from eval's sample metrics."""
    d, device = net.diffusion, net.scale.device
    a_T = d.schedule.alpha_bars[-1].item()
    sums = {"latent_loss": 0.0, "prior_kl_per_dim": 0.0, "prior_kl_per_dim_unscaled": 0.0}
    latents = []
    m = min(config.eval_examples, len(dataset))
    for x, y in DataLoader(Subset(dataset, range(m)), batch_size=500):
        z, b = net.encode(x.to(device)), len(x)
        t = torch.randint(0, len(d.schedule), (b,), generator=generator).to(device)
        eps = torch.randn(z.shape, generator=generator).to(device)
        no_drop = torch.zeros(b, dtype=torch.bool, device=device)
        sums["latent_loss"] += latent_eps_loss(d, z, y.to(device).long(), t, eps, no_drop, d.schedule.alpha_bars,
                                               net.scale, d.num_classes).sum().item()
        sums["prior_kl_per_dim"] += (prior_kl(z * net.scale, a_T) / z.shape[1]).sum().item()
        sums["prior_kl_per_dim_unscaled"] += (prior_kl(z, a_T) / z.shape[1]).sum().item()
        latents.append(z * net.scale)
    return {**{k: v / m for k, v in sums.items()}, "latent_scale": net.scale.item(),
            "scaled_latent_std": torch.cat(latents).std().item(), "examples": m}
