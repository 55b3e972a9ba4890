"""Latent diffusion trained with the shared engine: ``python -m practice_torch train latent_diffusion``.

Stage 1, the autoencoder, is the project's conv VAE (``practice_torch.vae``), frozen: its parameters have
requires_grad = False, so the engine's optimizer never sees them, and the latent of an image is the posterior mean
mu(x) (B, d). Either ``model.autoencoder=RUN_DIR`` names a trained ``vae`` run (loaded with
``engine.runs.load_trained``), or, when it is empty, ``build`` trains one in-process first (the vae quick config
with ``autoencoder_*`` overrides) into ``autoencoder_root/vae-<data>-<hash>``, or reuses the run already there.
Stage 2 is a class-conditional DDPM (``practice_torch.diffusion``: Schedule, Diffusion, generate) on the scaled
latents u = s mu(x), s = 1 / std of the training latents (Rombach et al. 2022, "scale_by_std"), trained with label
dropout and sampled with classifier-free guidance; images are D(u_0 / s). ``build`` records the autoencoder's run
directory, its architecture (the vae run's model section, as JSON) and the estimated scale in the run's config; the
run's checkpoints hold the autoencoder's weights, so ``sample``, ``eval`` and ``--resume`` rebuild it from the
record and never train, load the autoencoder run (which may be deleted) or estimate again. The derivation:
``python -m theory_jax latent_diffusion``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from practice_torch.diffusion import Schedule
from practice_torch.diffusion.model import Diffusion, generate
from practice_torch.engine import RunError
from practice_torch.engine.checkpoint import latest_step
from practice_torch.engine.config import ConfigError, DataConfig, RunConfig, TrainConfig, parse_value, to_dict
from practice_torch.engine.loop import Trainer
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.engine.runs import CHECKPOINTS, load_split, load_trained, run_model_name
from practice_torch.latent_diffusion.functions import latent_eps_loss, latent_scale, prior_kl, unscale_latents
from practice_torch.models import Artefact
from practice_torch.nets import MLPDenoiser
from practice_torch.vae import VAE


@dataclass
class Config:
    """Latent diffusion's hyperparameters: the run's ``model.*`` keys (``--set model.guidance_scale=2``)."""

    autoencoder: str = ""  # a trained vae run directory; "" = train one in-process (recorded here once trained)
    autoencoder_root: str = "runs/autoencoders"  # where an in-process autoencoder run is written (and reused)
    autoencoder_preset: Literal["quick", "full"] = "quick"  # the vae preset it starts from
    autoencoder_steps: int = 3000
    autoencoder_latent_dim: int = 16
    autoencoder_beta: float = 0.1  # a weak KL: sharper reconstructions; the DDPM, not N(0, I), is the prior
    autoencoder_config: str = ""  # the autoencoder's model section as JSON (recorded by build; weights: checkpoint)
    latent_scale: float = 0.0  # s; 0 = estimate 1/std on ``scale_examples`` training latents (recorded here)
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


GPU_TRAINING = {"ema_decay": 0.9999, "precision": "bf16", "compile": True, "log_every": 100}


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
                "autoencoder_latent_dim", "autoencoder_beta", "autoencoder_config", "latent_scale", "schedule", "T",
                "hidden", "depth", "conditional")


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


def vae_model():
    """The vae model module, through the registry (its presets, Config and build; the engine trains and loads it)."""
    from practice_torch.models import get_model

    return get_model("vae")


def train_autoencoder(config: Config, data) -> Path:
    """The vae run this config asks for, trained here unless a finished one is already in its directory."""
    vae = vae_model()
    base = vae.default_config(config.autoencoder_preset, data.name)
    cfg = replace(base, model=replace(base.model, latent_dim=config.autoencoder_latent_dim, beta=config.autoencoder_beta,
                                      conditional=False),
                  train=replace(base.train, steps=config.autoencoder_steps,
                                checkpoint_every=min(base.train.checkpoint_every, config.autoencoder_steps)))
    key = hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode()).hexdigest()[:8]
    run_dir = Path(config.autoencoder_root) / f"vae-{data.name}-{key}"
    done = latest_step(run_dir / CHECKPOINTS)
    if done != cfg.train.steps:
        if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
            print(f"latent_diffusion: training the autoencoder ({cfg.train.steps} vae steps) into {run_dir}")
        trainer = Trainer(vae, cfg, run_dir, resume=done is not None)
        try:
            outcome = trainer.run()
        finally:
            trainer.close()
        if outcome.signal is not None:
            raise RunError(f"the autoencoder's training in {run_dir} was stopped; run again to continue it")
    return run_dir


def recorded_autoencoder(record: str, data) -> VAE:
    """An untrained VAE of the recorded architecture (``model.autoencoder_config``); the run's checkpoint then loads
    its weights. ValueError, one line, if the record is not a vae model section."""
    vae = vae_model()
    try:
        fields = json.loads(record)
        hints = typing.get_type_hints(vae.Config)
        unknown = sorted(set(fields) - set(hints))
        if unknown:
            raise ValueError(f"unknown vae key {unknown[0]}")
        config = vae.Config(**{k: parse_value(v, hints[k], f"model.autoencoder_config.{k}")
                                        for k, v in fields.items()})
    except (json.JSONDecodeError, AttributeError, ValueError, ConfigError) as exc:
        raise ValueError(f"model.autoencoder_config is not a recorded vae model section ({exc})") from None
    return vae.build(config, data)


def load_autoencoder(path: str, data) -> tuple[VAE, RunConfig]:
    """(the VAE of a trained vae run, its config); ValueError with one line for anything unsuitable."""
    try:
        name = run_model_name(Path(path))
        if name != "vae":
            raise ValueError(f"model.autoencoder={path} is a {name} run; latent diffusion needs a vae run")
        _, cfg, net = load_trained(Path(path), vae_model(), torch.device("cpu"))
    except (RunError, OSError) as exc:
        raise ValueError(f"model.autoencoder={path}: not a trained run ({exc})") from None
    if cfg.data.name != data.name or tuple(net.image_shape) != tuple(data.shape):
        raise ValueError(f"model.autoencoder={path} was trained on {cfg.data.name}; this run is on {data.name}")
    if net.num_classes:
        raise ValueError(f"model.autoencoder={path} is a conditional VAE; use an unconditional one (the labels "
                         "condition the latent DDPM)")
    return net, cfg


@torch.no_grad()
def estimate_scale(autoencoder: VAE, data: DataConfig, n: int) -> float:
    """s = ``latent_scale`` of mu(x) over the first n training examples."""
    latents = [autoencoder.encode(x)[0] for x, _ in DataLoader(load_split(data, "train", limit=n), batch_size=500)]
    return float(latent_scale(torch.cat(latents)))


def build(config: Config, data) -> LatentDiffusion:
    """Resolve the autoencoder (train or load it) and the scale (estimate it), record both in ``config``, then the
    MLP DDPM on d-dimensional latents."""
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
    if config.autoencoder_config:  # a recorded run: architecture here, weights in its checkpoint
        if not config.latent_scale:
            raise ValueError("model.autoencoder_config is recorded by build together with model.latent_scale; "
                             "leave it empty to load model.autoencoder")
        autoencoder = recorded_autoencoder(config.autoencoder_config, data).requires_grad_(False)
    else:
        if not config.autoencoder:
            config.autoencoder = str(train_autoencoder(config, data))
        autoencoder, ae_cfg = load_autoencoder(config.autoencoder, data)
        if not config.latent_scale:
            config.latent_scale = estimate_scale(autoencoder, ae_cfg.data, config.scale_examples)
        config.autoencoder_config = json.dumps(dataclasses.asdict(ae_cfg.model))
    k = data.num_classes if config.conditional else 0
    denoiser = MLPDenoiser(autoencoder.latent_dim, config.hidden, config.depth, k)
    diffusion = Diffusion(denoiser, Schedule.make(config.schedule, config.T), (autoencoder.latent_dim,), k,
                          images=False, label_dropout=config.label_dropout)
    return LatentDiffusion(autoencoder, diffusion, config.latent_scale)


def draw_noise(net: LatentDiffusion, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """t ~ U{0..T-1} (n,), eps ~ N(0, I) (n, d), drop (n,) bool: the labels replaced by the null token."""
    d = net.diffusion
    return {"t": torch.randint(0, len(d.schedule), (n,), generator=generator),
            "eps": torch.randn((n, *d.shape), generator=generator),
            "drop": torch.rand(n, generator=generator) < d.label_dropout}


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
