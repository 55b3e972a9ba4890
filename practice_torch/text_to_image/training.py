"""Text-to-image latent diffusion trained with the shared engine: ``python -m practice_torch train text_to_image``.

Stable diffusion's parts at the scale of two CPU cores (Rombach et al. 2022):

* stage 1, frozen: the project's VQ-VAE (``practice_torch.vq_vae``), a conv autoencoder to a grid of vectors
  (7 x 7 x 16 for a 28 x 28 image). The latent is the encoder's output z_e before quantisation, scaled by
  s = 1 / std (``latent_scale``); an image is decoded by quantising u / s to the nearest codes and running the
  decoder (the paper's VQ-regularised variant: "the quantisation layer is absorbed by the decoder"). A latent with
  a spatial grid is what cross-attention from feature maps needs; the project's VAE has a vector latent. The run
  builds on a trained ``vq_vae`` run (``model.autoencoder``), or the engine trains one first, inside the run's
  folder (RUN/autoencoder; ``model.autoencoder_root`` names a folder to train it in and reuse it from instead).
* the text encoder: ``TextEncoder``, a small causal character transformer (the project's trunk), trained jointly
  with the denoiser from scratch. No pretrained text model is at hand offline, and the captions are a small
  language of class names, synonyms and adjectives whose meaning the denoising loss alone teaches.
* the denoiser: the project's U-Net (``practice_torch.nets.UNet``) on the latent grid, with ``context_dim`` set, so
  every attention level cross-attends to the token states (with the captions' padding masked out), and the pooled
  caption (the last real token's state) added to the time embedding (``cond_dim``), as Imagen does.
* captions (``practice_torch.data.captions``): what the picture is and how dark it is, in varied words, drawn
  afresh at every step; with probability ``caption_dropout`` the caption is empty (the start token alone), so the
  same network is the unconditional model that classifier-free guidance needs:
  eps = (1 + w) eps(u, c) - w eps(u, empty).

``sample --set model.prompt="a dark sneaker"`` draws a prompt's images (a word no training caption says is named in
one line on stderr, ``prompt_note``, and the prompt drawn anyway); ``eval`` reports the feature network's class
accuracy and the brightness accuracy of each prompt's samples, on the seen and on the held-out combinations, and
the latent denoising loss. The derivation: ``python -m theory_jax text_to_image``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from practice_torch.data import captions
from practice_torch.data.galaxies import denormalise_condition
from practice_torch.diffusion import Schedule, q_sample, sample_loop
from practice_torch.diffusion.model import sampling_schedule
from practice_torch.engine.config import RunConfig, TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.engine.runs import Parent, Prerequisite, load_split
from practice_torch.models import Artefact
from practice_torch.nets import UNet, UNetConfig
from practice_torch.text_to_image.functions import guided_eps
from practice_torch.text_to_image.networks import TextEncoder
from practice_torch.vq_vae import VQVAE

DATASETS = ("fashion_mnist", "galaxies")


@dataclass
class Config:
    """Text-to-image's hyperparameters: the run's ``model.*`` keys (``--set model.guidance_scale=3``)."""

    autoencoder: str = ""  # a trained vq_vae run directory; "" = the engine trains one first (and names it here)
    autoencoder_root: str = ""  # where that run is written: "" = inside this run's folder (RUN/autoencoder); a folder
    # (e.g. runs/autoencoders): there, as <folder>/vq_vae-<data set>-<hash>, reused by later runs
    autoencoder_preset: Literal["quick", "full"] = "quick"
    autoencoder_steps: int = 1500
    latent_scale: float = 0.0  # s; 0 = estimate 1/std on ``scale_examples`` training latents (kept in the checkpoint)
    scale_examples: int = 5000
    schedule: Literal["linear", "cosine"] = "linear"
    T: int = 1000
    channels: int = 48  # the latent U-Net: channels x channel_mults at the latent grid's resolution
    channel_mults: tuple[int, ...] = (1,)
    num_res_blocks: int = 1
    heads: int = 4
    text_dim: int = 64  # the text encoder: width, blocks, heads; captions up to max_len tokens
    text_layers: int = 2
    text_heads: int = 4
    max_len: int = 48
    caption_dropout: float = 0.1  # probability of the empty caption in training (classifier-free guidance)
    sampler: Literal["ddpm", "ddim"] = "ddpm"  # ancestral: deterministic DDIM drifts off the latents' scale early on
    sample_steps: int = 100  # respaced steps (0: all T)
    eta: float = 0.0
    guidance_scale: float = 3.0  # w: (1 + w) eps(u, c) - w eps(u, empty caption)
    prompt: str = ""  # sample: draw this prompt's images (""): the grid of classes by brightness)
    eval_per_prompt: int = 20  # eval: samples per prompt
    eval_examples: int = 2000  # eval: held-out examples of the latent loss


GPU_TRAINING = {"ema_decay": 0.9999, "precision": "bf16", "compile": True, "log_every": 100}

# quick (2 CPU cores): the vq_vae quick preset (1500 steps, 2 min), then steps of 64 of a 48-wide latent U-Net at
# 7 x 7 (8 x 8 for galaxies), one residual block per stage, and a 2-block, 64-wide text encoder: 4000 for
# Fashion-MNIST (about 22 min), 12 000 for the galaxies (about 75 min), whose shape and profile words 4000 steps
# left unread (AUC 0.48 and 0.51 against 0.89 and 1.00 after 12 000). full (one GPU): a 512-code VQ-VAE, a wider
# and deeper U-Net and text encoder, 100k steps of 256.
HEADLINE = (("class_accuracy", "class accuracy of prompted samples", "fraction"),
            # galaxies: retrieval, which separates runs (0.13 to 0.45 in the page's), where every word's AUC saturates
            ("retrieval_top1", "caption -> image retrieval among 100 held-out galaxies, top-1", "share"),
            ("latent_loss", "test latent epsilon loss", "MSE"))

PRESETS = {
    "quick": {"fashion_mnist": Preset(
        Config(),
        TrainConfig(steps=4000, batch_size=64, lr=1e-3, warmup_steps=200, ema_decay=0.999, grad_clip=1.0,
                    checkpoint_every=1000, log_every=100, samples=60)),
              "galaxies": Preset(
        Config(max_len=96),
        TrainConfig(steps=12_000, batch_size=64, lr=1e-3, warmup_steps=200, ema_decay=0.999, grad_clip=1.0,
                    checkpoint_every=1000, log_every=100, samples=60))},
    "full": {name: Preset(
        Config(autoencoder_preset="full", autoencoder_steps=30_000, channels=128, num_res_blocks=3, heads=8,
               text_dim=256, text_layers=4, text_heads=8, max_len=96, sample_steps=100, eval_per_prompt=100,
               eval_examples=10_000),
        TrainConfig(steps=100_000, batch_size=256, lr=2e-4, warmup_steps=2000, grad_clip=1.0,
                    checkpoint_every=10_000, samples=60, **GPU_TRAINING)) for name in DATASETS},
}
default_config = preset_config("text_to_image", PRESETS)
ARCHITECTURE = ("autoencoder", "autoencoder_root", "autoencoder_preset", "autoencoder_steps", "latent_scale",
                "schedule", "T", "channels", "channel_mults", "num_res_blocks", "heads", "text_dim", "text_layers",
                "text_heads", "max_len")
USE = ("sampler", "sample_steps", "eta", "guidance_scale", "prompt", "eval_per_prompt", "eval_examples")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("autoencoder_steps", "scale_examples", "T", "channels", "channel_mults", "num_res_blocks",
                           "heads", "text_dim", "text_layers", "text_heads", "max_len", "eval_per_prompt",
                           "eval_examples"), "positive"),
          **dict.fromkeys(("latent_scale", "sample_steps", "guidance_scale"), "at least 0"),
          "caption_dropout": "in [0, 1)", "eta": "in [0, 1]"}
BUILDS_ON = {"autoencoder": "vq_vae"}  # the frozen stage 1 (engine.runs.Parent)


# The network: the frozen VQ-VAE, the text encoder, the latent U-Net --------------------------------------------
class TextToImage(nn.Module):
    """The frozen ``autoencoder`` (requires_grad off, always in eval mode), the ``text_encoder``, the ``denoiser``
    and, as buffers (checkpointed), the latent scale s and each class's brightness terciles ``brightness_edges``
    (10, 2): what "dark" and "light" mean, measured once on the training split ((0, 2) for the galaxies, which have
    no classes). Not checkpointed: the token ids of every Fashion-MNIST training caption, ``caption_table``
    (``captions.fashion_caption_table``; empty for the galaxies), so that a step looks its captions up on the
    device."""

    def __init__(self, autoencoder: VQVAE, text_encoder: TextEncoder, denoiser: UNet, schedule: Schedule,
                 scale: float, edges: torch.Tensor, caption_table: torch.Tensor):
        super().__init__()
        self.autoencoder = autoencoder.requires_grad_(False).eval()
        self.text_encoder, self.denoiser, self.schedule = text_encoder, denoiser, schedule
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("brightness_edges", edges.float().clone())
        self.register_buffer("alpha_bars", schedule.alpha_bars.clone(), persistent=False)
        self.register_buffer("caption_table", caption_table, persistent=False)

    def train(self, mode: bool = True) -> TextToImage:
        super().train(mode)
        self.autoencoder.eval()
        return self

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.autoencoder.code_dim, *self.autoencoder.grid_shape)

    @torch.no_grad()
    def encode(self, x):
        """Scaled latents u = s z_e(x): (B, 1, H, W) -> (B, D, h, w)."""
        return self.autoencoder.encoder(x) * self.scale

    @torch.no_grad()
    def decode(self, u):
        """Images from scaled latents: the nearest codes of u / s through the decoder. (B, D, h, w) -> (B, 1, H, W)."""
        return self.autoencoder.decode(self.autoencoder.quantiser.assign(u / self.scale))

    def read(self, ids, mask):
        """What the U-Net reads of a caption: the token states (B, S, E) it cross-attends to and the pooled state
        (B, E), the last real token's, added to the time embedding (Saharia et al. 2022's pooled text embedding;
        CLIP pools the same way). ids, mask: (B, S)."""
        states = self.text_encoder(ids)
        return states, states[torch.arange(len(ids), device=ids.device), mask.sum(1) - 1]

    def eps(self, u_t, t, ids, mask):
        """eps_theta(u_t, t, caption): u_t (B, D, h, w), t (B,), token ids and mask (B, S) -> (B, D, h, w)."""
        states, pooled = self.read(ids, mask)
        return self.denoiser(u_t, t, cond=pooled, context=states, context_mask=mask)


def prerequisite_runs(config: Config, data) -> dict[str, Prerequisite]:
    """The vq_vae run the engine trains first when ``model.autoencoder`` is empty: its ``autoencoder_preset`` on
    this data set for ``autoencoder_steps`` steps, inside this run's folder (RUN/autoencoder) or, when
    ``autoencoder_root`` names a folder, there (reused once finished)."""
    if config.autoencoder:
        return {}

    def edit(base: RunConfig) -> RunConfig:
        return replace(base, train=replace(base.train, steps=config.autoencoder_steps,
                                           checkpoint_every=min(base.train.checkpoint_every, config.autoencoder_steps)))

    return {"autoencoder": Prerequisite("vq_vae", config.autoencoder_preset, edit, config.autoencoder_root)}


def frozen_autoencoder(parent: Parent, data) -> VQVAE:
    """The VQ-VAE of the vq_vae run ``parent``, built from its config, its weights copied the first time (from this
    run's checkpoint afterwards), frozen. ValueError, one line, for a run of another data set or a prior run."""
    if parent.config is None:
        raise ValueError(f"the autoencoder run {parent.run}'s config is not at hand: open this run through "
                         "practice_torch.models, which reads it off builds_on.json")
    c = parent.config.model
    if parent.net is not None and (parent.config.data.name != data.name or c.stage != "vqvae"):
        raise ValueError(f"model.autoencoder={parent.run} is a {c.stage} run on {parent.config.data.name}; this run "
                         f"needs a VQ-VAE (stage vqvae) trained on {data.name}")
    autoencoder = VQVAE(data.shape, c.num_codes, c.code_dim, c.channels, c.groups, bounded=data.modality == "image")
    if parent.net is not None:
        autoencoder.load_state_dict(parent.net.state_dict())
    return autoencoder.requires_grad_(False).eval()


@torch.no_grad()
def measure_training_set(autoencoder: VQVAE, parent: Parent, n: int) -> tuple[float, torch.Tensor]:
    """s = 1 / std of z_e over the first n training images, and the brightness terciles of every class on the
    whole training split."""
    train = load_split(parent.config.data, "train")
    x, y = (torch.cat(t) for t in zip(*DataLoader(train, batch_size=5000)))
    z = torch.cat([autoencoder.encoder(b) for b in x[:n].split(500)])
    edges = captions.brightness_edges(x, y.long()) if y.ndim == 1 else torch.zeros(0, 2)  # galaxies: no classes
    return float(1 / z.std()), edges


def prompt_note(prompt: str, dataset: str) -> str:
    """The one line ``sample`` and ``eval`` print for a prompt with words the training captions of ``dataset`` never
    say: those words and the ones they do say (``captions.vocabulary``); "" when every word was seen."""
    unseen = captions.unseen_words(prompt, dataset)
    if not unseen:
        return ""
    return (f"text_to_image: {', '.join(map(repr, unseen))} never appear{'s' if len(unseen) == 1 else ''} in the "
            f"{dataset} training captions, so the model has not learnt {'it' if len(unseen) == 1 else 'them'} (the "
            f"prompt is used anyway); the captions' words: {', '.join(captions.vocabulary(dataset))}")


def build(config: Config, data, parents: dict) -> TextToImage:
    """The frozen VQ-VAE of the run it builds on, the scale and brightness edges (measured at the first build, from
    the checkpoint afterwards), the text encoder and the latent U-Net that cross-attends to it."""
    if data.name not in DATASETS:
        raise ValueError(f"text_to_image captions {', '.join(DATASETS)} (what the pictures show is known there); "
                         f"{data.name} has no captions")
    if not 0 <= config.sample_steps <= config.T:
        raise ValueError(f"model.sample_steps must be in 0..T={config.T}, got {config.sample_steps}")
    if not 0 <= config.caption_dropout < 1:
        raise ValueError(f"model.caption_dropout must be in [0, 1), got {config.caption_dropout}")
    if config.prompt:
        captions.check_prompt(config.prompt, config.max_len)
        if note := prompt_note(config.prompt, data.name):
            print(note, file=sys.stderr)
    parent = parents.get("autoencoder")
    if parent is None:
        raise ValueError("text_to_image builds on a vq_vae run: --set model.autoencoder=RUN_DIR, or leave it empty "
                         "and train through practice_torch.models, which trains one first")
    autoencoder = frozen_autoencoder(parent, data)
    scale, edges = 1.0, torch.zeros(data.num_classes or 0, 2)
    if parent.net is not None:  # the first build; reopened runs take both from their checkpoint
        scale, edges = measure_training_set(autoencoder, parent, config.scale_examples)
    scale = config.latent_scale or scale
    shape = (autoencoder.code_dim, *autoencoder.grid_shape)
    unet = UNet(UNetConfig(in_channels=shape[0], out_channels=shape[0], channels=config.channels,
                           channel_mults=tuple(config.channel_mults), num_res_blocks=config.num_res_blocks,
                           attention_levels=tuple(range(len(config.channel_mults))), heads=config.heads,
                           cond_dim=config.text_dim, context_dim=config.text_dim))
    text = TextEncoder(captions.VOCAB, config.text_dim, config.text_heads, config.text_layers, config.max_len)
    table = captions.fashion_caption_table(config.max_len) if data.num_classes else torch.zeros(0, dtype=torch.long)
    return TextToImage(autoencoder, text, unet, Schedule.make(config.schedule, config.T), scale, edges, table)


# Training --------------------------------------------------------------------------------------------------------
def draw_noise(net: TextToImage, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """t ~ U{0..T-1} (n,), eps ~ N(0, I) (n, D, h, w), the caption's wording (n,) ~ U[0, 1) and drop (n,) bool:
    the caption replaced by the empty one."""
    return {"t": torch.randint(0, len(net.schedule), (n,), generator=generator),
            "eps": torch.randn((n, *net.shape), generator=generator),
            "wording": torch.rand(n, generator=generator, dtype=torch.float64),
            "drop": torch.rand(n, generator=generator) < config.caption_dropout}


def caption_meanings(net: TextToImage, batch) -> list[str]:
    """What each image's caption says, whatever its wording: Fashion-MNIST's class and brightness word (none for a
    medium picture or a held-out pair, as training says it), the galaxies' words."""
    x, y = batch[0], batch[1]
    if y.ndim == 2:
        return [repr(sorted(w.items())) for w in captions.galaxy_attributes(denormalise_condition(y.cpu().float()))]
    bins = captions.brightness_bin(x, y.long(), net.brightness_edges).cpu()
    return [repr(captions.parse_fashion(captions.fashion_caption(int(k), int(b), 0.0)))
            for k, b in zip(y.long().cpu(), bins)]


def training_captions(net: TextToImage, config: Config, batch, noise) -> tuple[torch.Tensor, torch.Tensor]:
    """The token ids and mask (B, max_len) of a batch's captions in the drawn wording (the empty caption where
    ``noise["drop"]``), on the net's device: Fashion-MNIST's looked up there (``captions.fashion_caption_ids``: no
    host work, no synchronisation), the galaxies' written and tokenised on the host (``captions.batch_captions``)."""
    device = net.scale.device
    x, y = batch[0], batch[1]
    if net.caption_table.numel():
        bins = captions.brightness_bin(x, y.long(), net.brightness_edges)
        return captions.fashion_caption_ids(net.caption_table, y.long(), bins, noise["wording"].to(device),
                                            noise["drop"].to(device))
    ids, mask = captions.tokenize(captions.batch_captions(batch, noise["wording"], noise["drop"], net.brightness_edges),
                                  config.max_len)
    return ids.to(device), mask.to(device)


def loss(net: TextToImage, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """L_simple in the latent space, conditioned on the caption: mean ||eps - eps_theta(u_t, t, c)||^2 per latent
    element (Ho et al. eq. 14 on u = s z_e(x); Rombach et al. eq. 2)."""
    ids, mask = training_captions(net, config, batch, noise)
    u0 = net.encode(batch[0])
    u_t = q_sample(u0, net.alpha_bars[noise["t"]], noise["eps"])
    eps_pred = net.eps(u_t, noise["t"], ids, mask)
    return (noise["eps"] - eps_pred).pow(2).mean(), {}


# Sampling and evaluation ---------------------------------------------------------------------------------------
@torch.no_grad()
def generate(net: TextToImage, config: Config, texts: list[str], generator: torch.Generator) -> torch.Tensor:
    """Images (N, 1, H, W) for N prompts by ``config.sampler`` with classifier-free guidance at
    ``config.guidance_scale`` (the conditional and the empty caption in one batch)."""
    device = net.scale.device
    ids, mask = captions.tokenize(texts + [captions.EMPTY] * len(texts), config.max_len)
    ids, mask = ids.to(device), mask.to(device)
    states, pooled = net.read(ids, mask)

    def eps_fn(u, t):
        both = net.denoiser(torch.cat([u, u]), torch.cat([t, t]), cond=pooled, context=states, context_mask=mask)
        eps_cond, eps_uncond = both.chunk(2)
        return guided_eps(eps_cond, eps_uncond, config.guidance_scale)

    schedule = sampling_schedule(net, config.sample_steps)
    u_T = torch.randn((len(texts), *net.shape), generator=generator).to(device)
    return net.decode(sample_loop(eps_fn, schedule, u_T, sampler=config.sampler, eta=config.eta, generator=generator))


def grid_prompts(per_cell: int) -> tuple[list[str], torch.Tensor]:
    """One row per class: ``per_cell`` images each of 'a dark ...', 'a ...', 'a light ...' (the held-out
    combinations included). -> (prompts, their classes (N,))."""
    cells = [(k, b) for k in range(len(captions.NOUNS)) for b in range(len(captions.BRIGHTNESS))]
    texts = [captions.prompt_text(k, b) for k, b in cells for _ in range(per_cell)]
    return texts, torch.tensor([k for k, _ in cells for _ in range(per_cell)])


def is_galaxies(net: TextToImage) -> bool:
    """Whether the run captions galaxies: they have no classes, so no brightness edges."""
    return net.brightness_edges.numel() == 0


@torch.no_grad()
def sample(net: TextToImage, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """With ``model.prompt``: n images of that prompt (labelled with its class when it names one). Without: a grid,
    one row per prompt: for Fashion-MNIST a class by row, columns dark / no adjective / light (n // 30 of each);
    for galaxies the ten one-attribute prompts of ``captions.GALAXY_PROMPTS`` (n // 10 each). Then, for
    ``examples``, originals over their VQ-VAE reconstructions (the ceiling any latent model can reach)."""
    if config.prompt:
        label = None if is_galaxies(net) else captions.parse_fashion(config.prompt)[0]
        images = generate(net, config, [captions.check_prompt(config.prompt, config.max_len)] * n, generator)
        figures = [Artefact("samples", "images", images.cpu(), nrow=min(n, 10),
                            labels=None if label is None else torch.full((n,), label))]
    elif is_galaxies(net):
        per_row = max(1, n // len(captions.GALAXY_PROMPTS))
        texts = [p for p, _, _ in captions.GALAXY_PROMPTS for _ in range(per_row)]
        images = generate(net, config, texts, generator).cpu()
        figures = [Artefact("samples", "images", images, nrow=per_row),
                   prompt_figure(texts[::per_row], images.view(-1, per_row, *images.shape[1:]), galaxies=True)]
    else:
        per_cell = max(1, n // 30)
        texts, labels = grid_prompts(per_cell)
        images = generate(net, config, texts, generator).cpu()
        figures = [Artefact("samples", "images", images, nrow=3 * per_cell, labels=labels),
                   prompt_figure(texts[::per_cell], images.view(-1, per_cell, *images.shape[1:]))]
    rows = 0 if examples is None else min(2, len(examples[0]) // 8)
    if rows:
        x = examples[0][: 8 * rows].to(net.scale.device)
        shape = (rows, 8, *x.shape[1:])
        pairs = torch.stack([x.view(shape), net.autoencoder.reconstruct(x).view(shape)], 1)
        figures.append(Artefact("reconstructions", "images", pairs.reshape(-1, *x.shape[1:]).cpu(), nrow=8))
    return figures


def prompt_figure(texts: list[str], images: torch.Tensor, galaxies: bool = False) -> Artefact:
    """'prompts': each prompt written above its images. texts: P prompts, images: (P, k, 1, H, W); Fashion-MNIST's
    P = 30 prompts are laid out three to a row (dark, plain, light), the galaxies' one to a row."""
    from practice_torch.plots import figure_artefact, new_figure

    per_row = 1 if galaxies else 3
    rows, k = len(texts) // per_row, images.shape[1]
    fig, _ = new_figure(1, size=1.0)
    fig.clear()
    fig.set_size_inches(per_row * (k * 0.62 + 0.4), rows * 0.85 + 0.1)
    widths = ([1.0] * k + [0.5]) * per_row  # a narrow spacer column after each prompt's images
    grid = fig.add_gridspec(rows, len(widths), width_ratios=widths, hspace=0.5, wspace=0.05, left=0.01, right=0.99,
                            top=1 - 0.3 / (rows * 0.85 + 0.1), bottom=0.01)
    for i, text in enumerate(texts):
        r, c = divmod(i, per_row)
        for j in range(k):
            ax = fig.add_subplot(grid[r, c * (k + 1) + j])
            ax.imshow(images[i, j, 0].numpy(), cmap="afmhot" if galaxies else "gray",
                      vmin=-0.2 if galaxies else 0.0, vmax=1.0, interpolation="nearest")
            ax.set_axis_off()
            if j == 0:
                ax.set_title(text, fontsize=7, loc="left")
    return figure_artefact("prompts", fig)


# What each galaxy attribute is measured by (``practice_torch.evaluation.galaxies.measure``), and its two words
# in increasing order of that measurement
GALAXY_MEASURES = {"size": ("half_light_r", ("small", "large")), "brightness": ("log10_flux", ("faint", "bright")),
                   "shape": ("g", ("round", "elongated")), "orientation": ("e1", ("vertical", "horizontal")),
                   "profile": ("concentration", ("diffuse", "concentrated"))}


def measured_words(images: torch.Tensor) -> tuple[dict[str, torch.Tensor], list[dict[str, str]]]:
    """The measurements of galaxy images (N, 1, S, S) (with g = |(e1, e2)|) and the words they earn by the
    captions' thresholds (all but the profile: the measured concentration is not the Sersic index)."""
    from practice_torch.evaluation.galaxies import measure

    m = {k: torch.as_tensor(v) for k, v in measure(images).items()}
    m["g"] = torch.hypot(m["e1"], m["e2"])
    physical = torch.stack([torch.full_like(m["e1"], 2.0), m["half_light_r"], m["e1"], m["e2"], m["log10_flux"]], 1)
    words = captions.galaxy_attributes(physical)
    for w in words:
        w.pop("profile", None)
    return m, words


def separation(values: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> float:
    """P(value of a 'high' item > value of a 'low' item) (ties count 1/2): the AUC of the measurement between two
    words; 0.5 is a model that ignores them. values (N,), low and high (N,) bool."""
    a, b = values[low & values.isfinite()], values[high & values.isfinite()]
    if not len(a) or not len(b):
        return float("nan")
    diff = b[:, None] - a[None, :]
    return ((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean()).item()


def galaxy_scores(measured: dict[str, torch.Tensor], got: list[dict[str, str]], asked: list[dict[str, str]]
                  ) -> dict[str, float]:
    """Per attribute: the AUC of its measurement between the items asked for its low and its high word, and the
    fraction of the items asked for a word (but the profile's) whose measured word is that word."""
    out = {}
    for attribute, (quantity, (low_word, high_word)) in GALAXY_MEASURES.items():
        low = torch.tensor([a.get(attribute) == low_word for a in asked])
        high = torch.tensor([a.get(attribute) == high_word for a in asked])
        out[f"{attribute}_auc"] = separation(measured[quantity].double(), low, high)
        if attribute != "profile":
            hits = [g.get(attribute) == a[attribute] for g, a in zip(got, asked) if attribute in a]
            out[f"{attribute}_accuracy"] = sum(hits) / max(len(hits), 1)
    return out


@torch.no_grad()
def evaluate_galaxies(net: TextToImage, config: Config, dataset: Dataset, generator: torch.Generator
                      ) -> dict[str, float]:
    """The one-attribute prompts (``eval_per_prompt`` samples each) and the held-out pairs, measured and scored
    (``galaxy_scores``), beside the same scores of the first ``eval_examples`` (at most 1000) real held-out galaxies
    asked by their own words (``real_*``: the ceiling the measurement allows) and of their VQ-VAE reconstructions
    (``reconstruction_*``: the ceiling of any model in this latent space)."""
    m = config.eval_per_prompt
    asked = [{attribute: word} for _, attribute, word in captions.GALAXY_PROMPTS for _ in range(m)]
    texts = [p for p, _, _ in captions.GALAXY_PROMPTS for _ in range(m)]
    images = torch.cat([generate(net, config, texts[i:i + 500], generator) for i in range(0, len(texts), 500)])
    out = galaxy_scores(*measured_words(images.cpu()), asked)
    pairs = [captions.parse_galaxy(p) for p in captions.GALAXY_HELD_OUT_PROMPTS for _ in range(m)]
    held = generate(net, config, [p for p in captions.GALAXY_HELD_OUT_PROMPTS for _ in range(m)], generator)
    _, got = measured_words(held.cpu())
    out["held_out_pair_accuracy"] = sum(all(g.get(k) == v for k, v in a.items()) for g, a in zip(got, pairs)) / len(got)
    real = Subset(dataset, range(min(config.eval_examples, 1000, len(dataset))))
    x, y = (torch.cat(t) for t in zip(*DataLoader(real, batch_size=500)))
    truth = captions.galaxy_attributes(denormalise_condition(y.float()))
    ceiling = galaxy_scores(*measured_words(x), truth)
    through = galaxy_scores(*measured_words(net.autoencoder.reconstruct(x.to(net.scale.device)).cpu()), truth)
    return {**out, **{f"real_{k}": v for k, v in ceiling.items()},
            **{f"reconstruction_{k}": v for k, v in through.items()}}


@torch.no_grad()
def prompt_accuracy(net: TextToImage, config: Config, prompts, generator, classifier) -> dict[str, float]:
    """For (prompt, class, brightness bin) triples: ``eval_per_prompt`` samples each; the fraction the feature
    network classifies as the prompt's class, and, over the prompts that name a brightness, the fraction whose
    measured brightness falls in the named class's bin (chance: 1/3)."""
    m = config.eval_per_prompt
    texts = [p for p, _, _ in prompts for _ in range(m)]
    labels = torch.tensor([k for _, k, _ in prompts for _ in range(m)])
    bins = torch.tensor([b for _, _, b in prompts for _ in range(m)])
    images = torch.cat([generate(net, config, texts[i:i + 500], generator) for i in range(0, len(texts), 500)])
    predicted = torch.cat([classifier(b.to(net.scale.device)).argmax(1).cpu() for b in images.split(500)])
    measured = captions.brightness_bin(images.cpu(), labels, net.brightness_edges.cpu())
    named = bins != 1
    return {"class_accuracy": (predicted == labels).float().mean().item(),
            "brightness_accuracy": (measured[named] == bins[named]).float().mean().item() if named.any() else float("nan")}


RETRIEVAL_IMAGES, RETRIEVAL_DRAWS = 100, 8  # held-out pairs, shared (t, eps) draws per score


@torch.no_grad()
def retrieval(net: TextToImage, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """Caption -> image retrieval among the first 100 held-out images (fewer when ``eval_examples`` is smaller), the
    diffusion model as the classifier: image
    j scores for caption i by how much the caption lowers its denoising error, L(x_j, empty) - L(x_j, c_i) (the
    implicit classifier log p(c | x) up to terms of x alone), both over the same 8 draws of (t, eps) for every pair.
    A hit: the best-scoring image is one whose own caption means the same (class and brightness; the galaxy's
    words); chance is the share of such images. -> retrieval_top1, retrieval_chance."""
    device = net.scale.device
    first = Subset(dataset, range(min(RETRIEVAL_IMAGES, config.eval_examples, len(dataset))))
    x, y = (torch.cat(t) for t in zip(*DataLoader(first, batch_size=500)))
    n = len(x)
    texts = captions.batch_captions((x, y), torch.rand(n, generator=generator, dtype=torch.float64),
                                    torch.zeros(n, dtype=torch.bool), net.brightness_edges)
    ids, mask = captions.tokenize(texts + [captions.EMPTY], config.max_len)
    states, pooled = net.read(ids.to(device), mask.to(device))
    u0 = net.encode(x.to(device))
    t = torch.randint(len(net.schedule) // 10, len(net.schedule) * 9 // 10, (RETRIEVAL_DRAWS,), generator=generator)
    eps = torch.randn((RETRIEVAL_DRAWS, *net.shape), generator=generator).to(device)
    errors = torch.zeros(n + 1, n, device=device)  # errors[i, j]: caption i (n: empty) on image j
    for k in range(RETRIEVAL_DRAWS):
        u_t = q_sample(u0, net.alpha_bars[t[k]].expand(n), eps[k].expand(n, -1, -1, -1))
        for i in range(n + 1):
            pred = net.denoiser(u_t, t[k].expand(n).to(device), cond=pooled[i].expand(n, -1),
                                context=states[i].expand(n, -1, -1), context_mask=mask[i].to(device).expand(n, -1))
            errors[i] += (pred - eps[k]).pow(2).flatten(1).mean(1) / RETRIEVAL_DRAWS
    best = (errors[n][None] - errors[:n]).argmax(1).cpu()
    meaning = caption_meanings(net, (x, y))
    same = torch.tensor([[a == b for b in meaning] for a in meaning])
    return {"retrieval_top1": same[torch.arange(n), best].float().mean().item(),
            "retrieval_chance": same.float().mean().item()}


@torch.no_grad()
def evaluate(net: TextToImage, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """On the held-out split: the latent epsilon loss of the first ``eval_examples`` with their captions (t ~ U,
    one wording each), and the class and brightness accuracy of prompted samples (``prompt_accuracy``): the prompts
    seen in training and, apart, the held-out combinations (``captions.HELD_OUT``), beside the same two on the
    VQ-VAE's reconstructions of the held-out images (``reconstruction_ceiling``). FID/KID come from eval's sample
    metrics on the class grid."""
    from practice_torch.evaluation.features import feature_network

    device = net.scale.device
    total, m = 0.0, min(config.eval_examples, len(dataset))
    for x, y in DataLoader(Subset(dataset, range(m)), batch_size=500):
        x, y = x.to(device), y.to(device)
        noise = draw_noise(net, config, len(x), generator)
        noise["drop"][:] = False
        batch_loss, _ = loss(net, config, (x, y), {k: v.to(device) for k, v in noise.items()}, 0)
        total += batch_loss.item() * len(x)
    found = retrieval(net, config, dataset, generator)
    if is_galaxies(net):
        return {"latent_loss": total / m, "examples": m, "guidance_scale": config.guidance_scale, **found,
                **evaluate_galaxies(net, config, dataset, generator)}
    classifier = feature_network("fashion_mnist", device=device)
    seen = prompt_accuracy(net, config, captions.prompts(), generator, classifier)
    unseen = prompt_accuracy(net, config, captions.prompts(held_out=True), generator, classifier)
    return {"latent_loss": total / m, **seen, **{f"held_out_{k}": v for k, v in unseen.items()},
            **reconstruction_ceiling(net, Subset(dataset, range(m)), classifier), **found,
            "feature_network_test_accuracy": float(classifier.test_accuracy), "examples": m,
            "guidance_scale": config.guidance_scale}


@torch.no_grad()
def reconstruction_ceiling(net: TextToImage, dataset: Dataset, classifier) -> dict[str, float]:
    """What a perfect latent model could score: the feature network's accuracy on the VQ-VAE's reconstructions of
    held-out images, and the share of the dark or light ones whose reconstruction keeps its brightness bin."""
    device, hits, kept, named = net.scale.device, 0, 0, 0
    for x, y in DataLoader(dataset, batch_size=500):
        x, y = x.to(device), y.to(device).long()
        recon = net.autoencoder.reconstruct(x)
        hits += (classifier(recon).argmax(1) == y).sum().item()
        bins = captions.brightness_bin(x, y, net.brightness_edges)
        same = captions.brightness_bin(recon, y, net.brightness_edges) == bins
        kept += same[bins != 1].sum().item()
        named += (bins != 1).sum().item()
    return {"reconstruction_class_accuracy": hits / len(dataset),
            "reconstruction_brightness_accuracy": kept / max(named, 1)}
