"""StyleGAN2's training interface (``practice_torch.models``): config, presets, the two players' step, samples, eval.

``python -m practice_torch train stylegan`` trains StyleGAN2 (Karras et al. 2020) on Fashion-MNIST: the mapping
network and the synthesis network against a residual discriminator, on the non-saturating logistic loss, with style
mixing, lazy R1 on the discriminator and the lazy path-length penalty on the generator (sec. 3.1), each player on
its own Adam at the lazy ratio (``lazy_adam``); the engine keeps the EMA of the weights (``train.ema_decay``), which
``sample`` and ``eval`` read. ``sample`` draws at ``model.truncation`` (``--set model.truncation=0.7``) and pictures
style mixing and a truncation sweep; ``eval`` reports the discriminator's loss, the reference FIDs, precision and
recall along the truncation sweep and the perceptual path lengths in W and in Z (Karras et al. 2019, sec. 4.2), all
in the project's feature network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.players import Player
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.gan.quality import REFERENCE_NOTES
from practice_torch.models import Artefact
from practice_torch.stylegan.functions import (
    lazy_adam,
    logistic_d_loss,
    logistic_g_loss,
    mixing_ws,
    path_length_penalty,
    path_lengths,
    r1_penalty,
    truncate,
    update_w_avg,
)
from practice_torch.stylegan.networks import StyleGAN, image_side


@dataclass
class Config:
    """StyleGAN2's hyperparameters: the run's ``model.*`` keys (``--set model.truncation=0.7``)."""

    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 2  # the reference's cifar configuration (8 for faces)
    # per resolution, from base up (base * 2^(len - 1) is the image's side); (64, 64, 32) took 3 times as long a step
    channels: tuple[int, ...] = (32, 32, 16)
    base: int = 7  # the learned constant's side (Fashion-MNIST: 7 -> 14 -> 28)
    lr: float = 0.0025  # both players' Adam before the lazy ratio (the reference's); the run's train.lr is not used
    betas: tuple[float, float] = (0.0, 0.99)  # the reference's; the run's train.betas are not used
    # R1's gamma, 50 times the reference's cifar 0.01 (its heuristic 0.0002 res^2 / batch gives 0.005 here): in a
    # quick run at 0.1 (2 000 steps) the discriminator stayed ahead throughout (mean D(real) 0.8 against D(fake) 0.2,
    # R1 rising to 1) and the shoes came out as blobs; at 0.5 (2 500 steps) the players met (0.62 against 0.37), R1
    # stayed near 0.35 and every class was drawn recognisably.
    r1_gamma: float = 0.5
    r1_interval: int = 16  # R1 every 16 discriminator steps, weighted by 16 (lazy regularisation, sec. 3.1)
    pl_weight: float = 2.0  # on (the paper's FFHQ setting; the reference's cifar configuration turns it off)
    pl_decay: float = 0.01  # the running mean's rate (eq. 4's constant a)
    pl_interval: int = 4
    pl_batch_shrink: int = 2  # the penalty's batch: the generator's halved
    mixing_prob: float = 0.9  # style mixing regularisation (Karras et al. 2019, sec. 3.1)
    truncation: float = 1.0  # sampling's psi (1: no truncation)
    eval_references: bool = True  # eval also scores an untrained generator and the training images
    ppl_samples: int = 1000  # eval: pairs of the perceptual path length, in W and in Z each


W_AVG_BETA = 0.995  # the tracked mean style's decay (the reference's w_avg_beta)
SWEEP = (1.0, 0.85, 0.7, 0.5, 0.3, 0.0)  # the truncation sweep's psis (samples), Karras et al. 2019, Figure 8
PR_SWEEP = (1.0, 0.85, 0.7, 0.5)  # eval's precision and recall along the sweep
PPL_EPS = 1e-4  # Karras et al. 2019, sec. 4.2
CHUNK = 500  # images generated at once

REFERENCE_ADAM = {"warmup_steps": 0, "min_lr_ratio": 1.0, "grad_clip": 0.0}  # a constant lr, no clipping (reference)
QUICK = Preset(Config(), TrainConfig(steps=2500, batch_size=32, lr=0.0025, betas=(0.0, 0.99), ema_decay=0.995,
                                     checkpoint_every=500, log_every=64, samples=64, **REFERENCE_ADAM))
FULL_CONFIG = Config(z_dim=256, w_dim=256, channels=(256, 256, 128))
FULL = TrainConfig(steps=50_000, batch_size=64, lr=0.0025, betas=(0.0, 0.99), ema_decay=0.999, checkpoint_every=5000,
                   log_every=128, samples=64, **REFERENCE_ADAM)

# quick: 2 CPU cores, minutes; full: one GPU. 28 x 28 sets grow from 7 x 7, 32 x 32 ones (CIFAR-10, galaxies) from 8.
PRESETS = {
    "quick": {**dict.fromkeys(("fashion_mnist", "mnist"), QUICK),
              "image": Preset(replace(QUICK.model, base=8), QUICK.train)},
    "full": {**dict.fromkeys(("fashion_mnist", "mnist"), Preset(FULL_CONFIG, FULL)),
             "image": Preset(replace(FULL_CONFIG, base=8), FULL)},
}
default_config = preset_config("stylegan", PRESETS)
HEADLINE = (("fid", "FID (project features)", "FID"), ("fid_samples", "FID (project features)", "FID"))
METRIC_NOTES = {
    **REFERENCE_NOTES,
    "ppl_w": "perceptual path length in W, {ppl_pairs} pairs: squared feature distance / eps^2, 1st and 99th "
             "percentiles dropped (the project's features stand in for LPIPS)",
    "ppl_z": "the same in Z (slerp)",
}
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("z_dim", "w_dim", "mapping_layers", "channels", "base")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("truncation", "eval_references", "ppl_samples")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("z_dim", "w_dim", "mapping_layers", "channels", "base", "lr", "pl_batch_shrink",
                           "ppl_samples", "pl_decay"), "positive"),
          **dict.fromkeys(("r1_gamma", "r1_interval", "pl_weight", "pl_interval", "truncation"), "at least 0"),
          "betas": "in [0, 1)", "mixing_prob": "in [0, 1]"}


def build(config: Config, data) -> StyleGAN:
    """StyleGAN2 for square images whose side is base * 2^(len(channels) - 1); one-line ValueError otherwise."""
    if data.modality != "image":
        raise ValueError(f"StyleGAN draws images; {data.name} is {data.modality} data")
    if len(config.betas) != 2:
        raise ValueError(f"model.betas are Adam's two betas, e.g. 0,0.99; got {config.betas}")
    if config.pl_decay > 1:
        raise ValueError(f"model.pl_decay is the running mean's rate, in (0, 1]; got {config.pl_decay}")
    image_side(data.shape, config.channels, config.base)
    return StyleGAN(data.shape, config.z_dim, config.w_dim, config.mapping_layers, config.channels, config.base,
                    unit_interval=data.unit_images)


# 1. The randomness of a step -----------------------------------------------------------------------------------------
def draw_noise(net: StyleGAN, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """All of a batch's randomness, from the run's generator: z and z2 ~ N(0, I) (n, z_dim), the mixing cut-off
    (n,) (with probability ``mixing_prob`` uniform in [1, num_ws), else num_ws: no mixing), every synthesis layer's
    noise input ``noise_<i>`` (n, 1, r, r) and the path-length penalty's y ~ N(0, I) ``pl_y`` (n, C, H, W)."""
    num_ws = net.generator.num_ws
    noise = {"z": torch.randn((n, net.latent_dim), generator=generator),
             "z2": torch.randn((n, net.latent_dim), generator=generator)}
    mixed = torch.rand((n,), generator=generator) < config.mixing_prob
    cut = torch.randint(1, num_ws, (n,), generator=generator)
    noise["cutoff"] = torch.where(mixed, cut, torch.full_like(cut, num_ws))
    for i, shape in enumerate(net.generator.synthesis.noise_shapes(n)):
        noise[f"noise_{i}"] = torch.randn(shape, generator=generator)
    noise["pl_y"] = torch.randn((n, *net.shape), generator=generator)
    return noise


def layer_noises(noise: dict[str, torch.Tensor], rows: int | None = None) -> list[torch.Tensor]:
    """The synthesis layers' noise inputs of ``draw_noise``, in order (the first ``rows`` of each)."""
    count = sum(key.startswith("noise_") for key in noise)
    return [noise[f"noise_{i}"][:rows] for i in range(count)]


def styles(net: StyleGAN, noise: dict[str, torch.Tensor], rows: int | None = None):
    """The mixed styles ws (B, num_ws, w_dim) of the noise's z, z2 and cut-offs (the first ``rows``)."""
    return net.generator.ws(noise["z"][:rows], noise["z2"][:rows], noise["cutoff"][:rows])


# 2. The players' objectives ------------------------------------------------------------------------------------------
def due(step: int, interval: int) -> bool:
    """Whether a lazy regulariser runs at this step: every ``interval``-th step from step 0; every step for 0 or 1."""
    return interval <= 1 or step % interval == 0


def discriminator_objective(net: StyleGAN, x, fake):
    """The logistic loss (``logistic_d_loss``) on real images x and generated ones (data to D), both (B, C, H, W)
    as the players see them (in [-1, 1]) -> (loss, {"discriminator_loss", "d_real", "d_fake"})."""
    real_logits, fake_logits = net.discriminator(x), net.discriminator(fake.detach())
    loss = logistic_d_loss(real_logits, fake_logits)
    return loss, {"discriminator_loss": loss.detach(), "d_real": torch.sigmoid(real_logits.detach()).mean(),
                  "d_fake": torch.sigmoid(fake_logits.detach()).mean()}


def r1_objective(net: StyleGAN, config: Config, x):
    """gamma / 2 * R1 at the real images (``r1_penalty`` of D's gradient with respect to them, as D sees them, in
    [-1, 1], as the reference's), times the interval when lazy (sec. 3.1). x: (B, C, H, W) -> (loss, the penalty)."""
    x = x.detach().requires_grad_(True)
    logits = net.discriminator(x)
    (grads,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    penalty = r1_penalty(grads)
    # + 0 * logits: every parameter takes the regulariser's Adam step, the last bias (absent from R1) too, as the
    # reference's Dreg phase has it, so that each takes interval + 1 steps per interval (``lazy_adam``)
    return config.r1_gamma / 2 * penalty * max(config.r1_interval, 1) + 0 * logits.mean(), penalty.detach()


def path_length_objective(net: StyleGAN, config: Config, noise: dict[str, torch.Tensor]):
    """pl_weight * the path-length penalty (eq. 4) on the first B / pl_batch_shrink rows of the noise, times the
    interval when lazy: J_w^T y by one backward pass of sum(G(ws) * y) with y ~ N(0, I) / sqrt(H W), in the graph
    (``create_graph``) so that the penalty trains the generator; ``pl_mean`` moves to the penalty's new running mean.
    -> (loss, the mean path length)."""
    rows = max(1, len(noise["z"]) // config.pl_batch_shrink)
    ws = styles(net, noise, rows)
    images = net.generator.synthesis(ws, layer_noises(noise, rows))  # in [-1, 1], as the reference's
    y = noise["pl_y"][:rows] / math.sqrt(images.shape[2] * images.shape[3])
    (grads,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)
    lengths = path_lengths(grads)
    penalty, new_mean = path_length_penalty(lengths, net.pl_mean, config.pl_decay)
    net.pl_mean.copy_(new_mean)
    # + 0 * images: every parameter takes the regulariser's Adam step, the ToRGB biases (absent from J_w) too, as in
    # the reference's Gpl phase
    loss = config.pl_weight * penalty * max(config.pl_interval, 1) + 0 * images[:, 0, 0, 0].mean()
    return loss, lengths.mean().detach()


# 3. The step ---------------------------------------------------------------------------------------------------------
def players(net: StyleGAN, config: Config) -> dict[str, Player]:
    """One Adam each, at ``lazy_adam``'s ratio for its regulariser's interval (the reference's ``mb_ratio``): the
    discriminator (R1 every ``r1_interval`` steps), the generator, mapping and synthesis (the path length every
    ``pl_interval``)."""
    d_lr, d_betas = lazy_adam(config.lr, config.betas, config.r1_interval if config.r1_gamma else 0)
    g_lr, g_betas = lazy_adam(config.lr, config.betas, config.pl_interval if config.pl_weight else 0)
    return {"discriminator": Player(net.discriminator_parameters(), d_lr, d_betas),
            "generator": Player(net.generator_parameters(), g_lr, g_betas)}


def train_step(net: StyleGAN, config: Config, step: int, run):
    """One round of StyleGAN2's game (the reference's phases Dmain, Dreg, Gmain, Gpl):
    1. the discriminator's logistic loss on a batch and fakes of fresh mixed styles;
    2. every ``r1_interval``-th step, R1 as its own update of the discriminator (gamma / 2 * interval * R1);
    3. the generator's non-saturating loss on fresh noise, and the mean style ``w_avg`` moved toward the step's w;
    4. every ``pl_interval``-th step, the path-length penalty as its own update of the generator.
    A lazy regulariser is its own Adam step, as the reference's, so that a regularised player takes interval + 1 steps
    in interval minibatches: what ``lazy_adam``'s ratio assumes. With interval 0 or 1 it is added to the main loss.
    -> (the discriminator's loss + the generator's, the terms; a lazy term counts interval times at the steps it runs
    and 0 at the others, so that its mean over a log window of a multiple of the interval is its mean)."""
    r1_due, pl_due = config.r1_gamma > 0 and due(step, config.r1_interval), config.pl_weight > 0 and due(
        step, config.pl_interval)
    (x, _), noise = run.next_batch()  # 1.
    x = net.to_model(x)
    with run.autocast():
        with torch.no_grad():
            fake = net.generator.synthesis(styles(net, noise), layer_noises(noise))
        d_loss, terms = discriminator_objective(net, x, fake)
        if r1_due and config.r1_interval <= 1:
            r1_loss, r1 = r1_objective(net, config, x)
            d_loss = d_loss + r1_loss
    run.update(discriminator=d_loss)
    if r1_due and config.r1_interval > 1:  # 2.
        with run.autocast():
            r1_loss, r1 = r1_objective(net, config, x)
        run.update(discriminator=r1_loss)
    noise = run.next_noise()  # 3.
    with run.autocast():
        ws = styles(net, noise)
        g_loss = logistic_g_loss(net.discriminator(net.generator.synthesis(ws, layer_noises(noise))))
        total = g_loss
        if pl_due and config.pl_interval <= 1:
            pl_loss, length = path_length_objective(net, config, noise)
            total = g_loss + pl_loss
    run.update(generator=total)
    with torch.no_grad():
        net.generator.mapping.w_avg.copy_(update_w_avg(net.generator.mapping.w_avg, ws[:, 0].float(), W_AVG_BETA))
    if pl_due and config.pl_interval > 1:  # 4.
        with run.autocast():
            pl_loss, length = path_length_objective(net, config, noise)
        run.update(generator=pl_loss)
    zero = torch.zeros((), device=x.device)
    terms.update(generator_loss=g_loss.detach(), pl_mean=net.pl_mean.detach().clone(),
                 r1_penalty=r1 * max(config.r1_interval, 1) if r1_due else zero,
                 path_length=length * max(config.pl_interval, 1) if pl_due else zero)
    return terms["discriminator_loss"] + terms["generator_loss"], terms


# 4. Sampling -----------------------------------------------------------------------------------------------------------
def layer_noise_for(net: StyleGAN, n: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Every synthesis layer's noise input for n images, drawn from ``generator``, on the net's device."""
    device = next(net.parameters()).device
    return [torch.randn(shape, generator=generator).to(device) for shape in net.generator.synthesis.noise_shapes(n)]


@torch.no_grad()
def generate(net: StyleGAN, n: int, generator: torch.Generator, psi: float = 1.0) -> torch.Tensor:
    """n images in the data's range, on the CPU, at truncation psi: z and every noise input drawn from ``generator``,
    ``CHUNK`` at a time. -> (n, C, H, W)."""
    device, parts = next(net.parameters()).device, []
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        z = torch.randn((m, net.latent_dim), generator=generator).to(device)
        parts.append(net(z, layer_noise_for(net, m, generator), psi=psi).cpu())
    return torch.cat(parts) if parts else torch.zeros((0, *net.shape))


@torch.no_grad()
def style_mixing(net: StyleGAN, generator: torch.Generator, k: int = 5, psi: float = 1.0) -> torch.Tensor:
    """Karras et al. 2019, Figure 3, as a (k + 1) x (k + 1) grid: the top row's k images and the left column's k are
    sources; the cell of row i and column j takes row i's coarse styles (the first num_ws / 2 layers: the lowest
    resolutions) and column j's fine styles (``mixing_ws``). One noise image per layer for the whole grid, so that
    the styles alone differ. -> ((k + 1)^2, C, H, W) in the data's range, the corner blank (0)."""
    device, num_ws = next(net.parameters()).device, net.generator.num_ws
    z = torch.randn((2 * k, net.latent_dim), generator=generator).to(device)
    w = truncate(net.generator.mapping(z), net.generator.mapping.w_avg, psi)
    rows, cols = w[:k], w[k:]
    w1, w2 = rows.repeat_interleave(k, dim=0), cols.repeat(k, 1)  # cell (i, j): row i's coarse, column j's fine
    ws = torch.cat([w[:, None].expand(-1, num_ws, -1),
                    mixing_ws(w1, w2, torch.full((k * k,), num_ws // 2, device=device), num_ws)])
    shared = [x.expand(len(ws), -1, -1, -1) for x in layer_noise_for(net, 1, generator)]
    images = net.to_data(net.generator.synthesis(ws, shared)).cpu()
    sources_rows, sources_cols, cells = images[:k], images[k:2 * k], images[2 * k:].reshape(k, k, *net.shape)
    top = torch.cat([torch.zeros((1, *net.shape)), sources_cols])
    body = torch.cat([torch.cat([sources_rows[i:i + 1], cells[i]]) for i in range(k)])
    return torch.cat([top, body])


@torch.no_grad()
def truncation_sweep(net: StyleGAN, generator: torch.Generator, rows: int = 6, psis=SWEEP) -> torch.Tensor:
    """Karras et al. 2019, Figure 8: each row one z at psi = 1, 0.85, 0.7, 0.5, 0.3, 0 (the mean style ``w_avg``),
    with the row's noise held fixed. -> (rows * len(psis), C, H, W) in the data's range."""
    device = next(net.parameters()).device
    z = torch.randn((rows, net.latent_dim), generator=generator).to(device)
    noises = [x.repeat_interleave(len(psis), dim=0) for x in layer_noise_for(net, rows, generator)]
    w = net.generator.mapping(z).repeat_interleave(len(psis), dim=0)
    psi = torch.tensor(psis, device=device, dtype=w.dtype).repeat(rows)[:, None]
    ws = truncate(w, net.generator.mapping.w_avg, psi)[:, None].expand(-1, net.generator.num_ws, -1)
    return net.to_data(net.generator.synthesis(ws, noises)).cpu()


@torch.no_grad()
def sample(net: StyleGAN, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """A grid of n samples at ``model.truncation``; the style-mixing grid (at the same psi) and the truncation sweep."""
    pictures = [generate(net, n, generator, config.truncation), style_mixing(net, generator, psi=config.truncation),
                truncation_sweep(net, generator)]
    samples, mixing, sweep = (p.clamp(0, 1) for p in pictures)
    return [Artefact("samples", "images", samples, nrow=math.ceil(math.sqrt(n))),
            Artefact("style_mixing", "images", mixing, nrow=int(math.isqrt(len(mixing)))),
            Artefact("truncation_sweep", "images", sweep, nrow=len(SWEEP))]


# 5. Evaluation ---------------------------------------------------------------------------------------------------------
def slerp(a, b, t):
    """Spherical interpolation of the directions of a and b at fraction t (Shoemake 1985; the reference's PPL
    ``slerp``): a unit vector. a, b: (B, D), t: (B, 1) -> (B, D)."""
    a, b = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    d = torch.sum(a * b, dim=-1, keepdim=True).clamp(-1, 1)
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True)
    out = a * torch.cos(t * torch.acos(d)) + c * torch.sin(t * torch.acos(d))
    return out / out.norm(dim=-1, keepdim=True)


def trimmed_mean(distances: np.ndarray) -> float:
    """The mean of the distances between their 1st and 99th percentiles (Karras et al. 2019, sec. 4.2: "discard
    the 1% and 99% percentiles", as the reference's ``lower`` and ``higher`` interpolation). (N,) -> ()."""
    lo, hi = np.percentile(distances, 1, method="lower"), np.percentile(distances, 99, method="higher")
    return float(distances[(distances >= lo) & (distances <= hi)].mean())


@torch.no_grad()
def perceptual_path_length(net: StyleGAN, features, n: int, generator: torch.Generator, space: str,
                           eps: float = PPL_EPS) -> float:
    """PPL (Karras et al. 2019, sec. 4.2, eqs. 2-3): E[d(g(l(t)), g(l(t + eps))) / eps^2] for t ~ U(0, 1) along
    interpolations l between two latents, slerp in Z or lerp in W, every layer under the same w and both images
    under the same noise; d the squared distance of the project's feature network's features (standing in for
    LPIPS on VGG), images clamped to [0, 1]; the 1st and 99th percentiles dropped (``trimmed_mean``)."""
    device, distances = next(net.parameters()).device, []
    mapping, num_ws = net.generator.mapping, net.generator.num_ws
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        z0, z1 = (torch.randn((m, net.latent_dim), generator=generator).to(device) for _ in range(2))
        t = torch.rand((m, 1), generator=generator).to(device)
        if space == "z":
            w_t, w_e = mapping(slerp(z0, z1, t)), mapping(slerp(z0, z1, t + eps))
        else:
            w0, w1 = mapping(z0), mapping(z1)
            w_t, w_e = torch.lerp(w0, w1, t), torch.lerp(w0, w1, t + eps)
        noises = [x.repeat(2, 1, 1, 1) for x in layer_noise_for(net, m, generator)]
        ws = torch.cat([w_t, w_e])[:, None].expand(-1, num_ws, -1)
        images = net.to_data(net.generator.synthesis(ws, noises)).clamp(0, 1)
        h = features.features(images)
        distances.append((torch.sum((h[:m] - h[m:]) ** 2, dim=1) / eps**2).double().cpu())
    return trimmed_mean(torch.cat(distances).numpy())


def truncation_precision_recall(net: StyleGAN, features, real, n: int, generator: torch.Generator
                                ) -> dict[str, float]:
    """Precision and recall (Kynkaanniemi et al. 2019, k = 3, the project's features) of n samples at each psi of
    ``PR_SWEEP`` against the held-out images ``real`` (N, C, H, W): truncation trades recall for precision
    (Karras et al. 2019, Figure 8; Kynkaanniemi et al., sec. 4)."""
    from practice_torch.evaluation.features import embed
    from practice_torch.evaluation.metrics import precision_recall

    real_feats, _ = embed(features, real, desc="features (held out)")
    metrics = {}
    for psi in PR_SWEEP:
        fake_feats, _ = embed(features, generate(net, n, generator, psi).clamp(0, 1), desc=f"features (psi {psi})")
        precision, recall = precision_recall(real_feats, fake_feats, min(3, n - 1))
        metrics[f"precision_psi_{psi:g}"], metrics[f"recall_psi_{psi:g}"] = float(precision), float(recall)
    return metrics


@torch.no_grad()
def evaluate(net: StyleGAN, config: Config, dataset: Dataset, generator: torch.Generator,
             samples: int | None = None) -> dict[str, float]:
    """The discriminator's logistic loss on the held-out set (its first ``samples`` examples, when given) and as many
    samples (log 4 at D = 1/2); with
    ``model.eval_references`` the reference FIDs and class shares of ``gan.quality.image_references`` at
    ``model.truncation``, precision and recall along the truncation sweep and the perceptual path lengths in W and
    Z (``model.ppl_samples`` pairs), of at most ``samples`` images (eval's ``--samples``)."""
    device = next(net.parameters()).device
    n, total, seen = len(dataset), 0.0, 0
    for x, _ in DataLoader(dataset, batch_size=min(CHUNK, samples or CHUNK)):
        fake = generate(net, len(x), generator, config.truncation).to(device)
        total += float(logistic_d_loss(net.logit(x.to(device)), net.logit(fake))) * len(x)
        seen += len(x)
        if samples and seen >= samples:  # the loss of the first ``samples`` examples, as the figures below take
            break
    metrics = {"discriminator_loss": total / seen, "examples": seen}
    if not config.eval_references:
        return metrics
    from practice_torch.data import stacked
    from practice_torch.engine.runs import sibling_split
    from practice_torch.evaluation.features import feature_network
    from practice_torch.gan.quality import REFERENCE_SAMPLES, image_references, untrained_copy

    m = min(n, samples or REFERENCE_SAMPLES)
    data, fresh = dataset.run_data, untrained_copy(net)
    metrics.update(image_references(lambda k: generate(net, k, generator, config.truncation),
                                    lambda k: generate(fresh, k, generator), dataset, sibling_split(dataset, "train"),
                                    data.name, n=m))
    features = feature_network(data.name)
    features = features.to(device).eval()
    real = stacked(dataset, m)[0].clamp(0, 1)
    metrics.update(truncation_precision_recall(net, features, real, m, generator))
    metrics.update(ppl_w=perceptual_path_length(net, features, config.ppl_samples, generator, "w"),
                   ppl_z=perceptual_path_length(net, features, config.ppl_samples, generator, "z"),
                   ppl_pairs=config.ppl_samples)
    return metrics
