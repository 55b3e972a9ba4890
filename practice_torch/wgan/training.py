"""The WGAN's training interface (``practice_torch.models``): config, presets, loss on a batch, samples, eval.

``python -m practice_torch train wgan`` trains WGAN-GP (Gulrajani et al. 2017) on the 2-D mixture of eight
Gaussians; ``--set model.penalty=clip`` the original WGAN with weight clipping (Arjovsky et al. 2017);
``--dataset fashion_mnist`` DCGAN-style convolutions with a critic without normalisation. The networks are the
GAN's (``practice_torch.wgan.networks.Wasserstein``), each player with its own AdamW; a training step
(``train_step``, WGAN-GP's Algorithm 1) is ``model.n_critic`` updates of the critic, each on a fresh batch, then
one of the generator, so ``train.steps`` counts generator updates (critic updates with ``model.critic_only``).

Weight clipping (Algorithm 1, line 7) projects every critic parameter onto [-c, c] after its update; the
projection runs when the weights are next used: at the start of the next loss, and before ``evaluate`` and
``sample`` read the critic. ``eval`` reports the critic's estimate of W1 on held-out data (for
clipping, W1 times the critic's unknown Lipschitz constant), the mean input-gradient norm of the critic at
interpolates (1 for a critic that is exactly 1-Lipschitz along them) and, on 2-D data, the exact W1 between
samples and held-out points (an optimal assignment) and the mode statistics; on images the reference FIDs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.players import Player
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.gan.networks import generated
from practice_torch.gan.quality import REFERENCE_NOTES
from practice_torch.gan.sampling import class_rows, generate
from practice_torch.models import Artefact
from practice_torch.plots import critic_surface_2d, histogram_figure_1d, scatter_figure_2d
from practice_torch.wgan.functions import (
    clip_weights,
    critic_objective,
    gradient_penalty,
    input_gradients,
    interpolates,
    lipschitz_penalty,
    w1_sorted,
)
from practice_torch.wgan.networks import Wasserstein

PENALTIES = ("gp", "lp", "clip")  # two-sided, one-sided (WGAN-LP) gradient penalty; weight clipping


@dataclass
class Config:
    """The WGAN's hyperparameters: the run's ``model.*`` keys (``--set model.penalty=clip``)."""

    penalty: Literal["gp", "lp", "clip"] = "gp"
    gp_weight: float = 10.0  # lambda of the gradient penalty, two- or one-sided (Gulrajani et al.)
    clip: float = 0.01  # c of weight clipping (Arjovsky et al.)
    n_critic: int = 5  # critic updates per generator update
    architecture: Literal["mlp", "conv"] = "mlp"
    latent_dim: int = 8
    hidden: tuple[int, ...] = (128, 128, 128)  # MLP widths (generator and critic)
    channels: tuple[int, ...] = (64, 128)  # conv widths (two stride-2 layers each way)
    fc: int = 1024  # conv: width of the fully connected layer in generator and critic
    eval_references: bool = True  # images: eval also scores an untrained generator and the training images
    critic_only: bool = False  # train the critic alone against the untrained generator: a pure W1 estimator


GPU_TRAINING = {"ema_decay": 0.999, "precision": "bf16", "log_every": 100}
GP_ADAM = {"betas": (0.5, 0.9), "warmup_steps": 10, "grad_clip": 0.0}  # Gulrajani et al.: Adam(1e-4, 0.5, 0.9)

# quick: 2 CPU cores, minutes; full: GPU scale. Steps count generator updates, each after n_critic = 5 of the
# critic's (six batches a step).
HEADLINE = (("fid", "FID (project features)", "FID"), ("fid_samples", "FID (project features)", "FID"),
            ("critic_w1_relative_error", "critic's W1 estimate against the exact 1-D W1, relative error", "share"),
            ("w1_exact", "W1(samples, test points)", "W1"),
            ("critic_w1", "critic's W1 estimate", "W1"))
METRIC_NOTES = REFERENCE_NOTES  # what eval prints beside fid_samples, fid_untrained and fid_floor

TOY_GP = 0.1  # lambda on 2-D toys, Gulrajani et al.'s gan_toy.py ("smaller lambda makes things faster for toy tasks")

PRESETS = {
    "quick": {  # 2-D: lr 1e-3, ten times the paper's, to cover the ring in 2 000 generator updates (the paper: 100 000)
        **dict.fromkeys(("gaussians", "*"), Preset(
            Config(gp_weight=TOY_GP),
            TrainConfig(steps=2000, batch_size=256, lr=1e-3, checkpoint_every=500, samples=2000, **GP_ADAM))),
        "1-D": Preset(  # the one-sided penalty: a 1-D critic cannot turn its slope past the two-sided one's barrier
            Config(penalty="lp"),
            TrainConfig(steps=1000, batch_size=256, lr=1e-4, checkpoint_every=500, samples=2000, **GP_ADAM)),
        "image": Preset(
            Config(architecture="conv", latent_dim=64, channels=(32, 64), fc=512),
            TrainConfig(steps=1000, batch_size=64, lr=1e-4, checkpoint_every=250, samples=100, **GP_ADAM)),
    },
    "full": {  # 2-D: the paper's toy settings (lambda 0.1, lr 1e-4) at a tenth of its 100 000 generator updates
        **dict.fromkeys(("gaussians", "*"), Preset(
            Config(gp_weight=TOY_GP),
            TrainConfig(steps=10_000, batch_size=512, lr=1e-4, checkpoint_every=2000, samples=5000,
                        **GP_ADAM, **GPU_TRAINING))),
        "1-D": Preset(
            Config(penalty="lp"),
            TrainConfig(steps=5000, batch_size=512, lr=1e-4, checkpoint_every=1000, samples=5000,
                        **GP_ADAM, **GPU_TRAINING)),
        "image": Preset(
            Config(architecture="conv", latent_dim=100, channels=(64, 128), fc=1024),
            TrainConfig(steps=20_000, batch_size=128, lr=1e-4, checkpoint_every=2000, samples=100,
                        **GP_ADAM, **GPU_TRAINING)),
    },
}
default_config = preset_config("wgan", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("architecture", "latent_dim", "hidden", "channels", "fc",)
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("eval_references",)
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("clip", "n_critic", "latent_dim", "hidden", "channels", "fc"), "positive"),
          "gp_weight": "at least 0"}
# What changed at each version of the checkpoint (the engine refuses, in one line, a run of another version)
CHECKPOINT_VERSIONS = {1: "the players took turns on one optimizer, a step counter in the weights",
                       2: "each player has its own optimizer, no step counter in the weights"}


def build(config: Config, data) -> Wasserstein:
    """Generator and critic for vectors (D,) or images (C, H, W) in [0, 1]; the critic has no normalisation layer
    (a batch norm would couple the examples the penalty treats one by one; a layer norm would undo clipping)."""
    if config.penalty not in PENALTIES:
        raise ValueError(f"unknown model.penalty {config.penalty!r}; choose from {', '.join(PENALTIES)}")
    if data.modality not in ("1-D", "2-D", "image"):
        raise ValueError(f"the WGAN models vectors or images; {data.name} is {data.modality} data")
    if config.architecture == "conv" and len(data.shape) != 3:
        raise ValueError(f"model.architecture=conv needs images; {data.name} examples have shape {data.shape} "
                         "(use model.architecture=mlp)")
    if config.n_critic < 1:
        raise ValueError(f"model.n_critic must be at least 1 (critic steps per generator step), got {config.n_critic}")
    return Wasserstein(data.shape, config.architecture, config.latent_dim, config.hidden, config.channels, config.fc,
                       unit_interval=data.unit_images)


@torch.no_grad()
def project(net: Wasserstein, config: Config) -> None:
    """Weight clipping's projection of every critic parameter onto [-c, c] (``clip_weights``), in place."""
    if config.penalty == "clip":
        for p in net.critic_parameters():
            p.copy_(clip_weights(p, config.clip))


def draw_noise(net: Wasserstein, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """z ~ N(0, I), (n, d), and the interpolation weights alpha ~ U(0, 1), (n,) (drawn whatever the step)."""
    return {"z": torch.randn((n, net.latent_dim), generator=generator), "alpha": torch.rand((n,), generator=generator)}


def critic_objective_terms(net: Wasserstein, config: Config, x, fake, alpha):
    """The critic's loss on a batch: -(E_data f - E_G f) (``critic_objective``, eq. 3, ascended), plus
    gp_weight * ``gradient_penalty`` (``lipschitz_penalty`` for model.penalty=lp) of ``input_gradients`` at
    ``interpolates`` (GP Algorithm 1, lines 4-8); weight clipping (model.penalty=clip) projects the critic first.

    x: (B, *shape) real, fake: (B, *shape) G(z) (data to the critic), alpha: (B,) ->
    (loss, {"w1_estimate", "grad_norm_hat"[, "gradient_penalty"]}).
    """
    project(net, config)
    fake = fake.detach()
    objective = critic_objective(net.critic(x), net.critic(fake))
    x_hat = interpolates(x, fake, alpha)
    penalised = config.penalty in ("gp", "lp")
    if penalised and torch.is_grad_enabled():
        grads = input_gradients(net.critic, x_hat)  # in the graph: the penalty's double backward
    else:
        with torch.no_grad():  # only reported: the input gradients, no double backward
            grads = input_gradients(net.critic, x_hat)
    terms = {"w1_estimate": objective.detach(), "grad_norm_hat": grads.flatten(1).norm(dim=1).mean().detach()}
    loss = -objective
    if penalised:
        penalty = (lipschitz_penalty if config.penalty == "lp" else gradient_penalty)(grads)
        loss = loss + config.gp_weight * penalty
        terms["gradient_penalty"] = penalty.detach()
    return loss, terms


def generator_objective(net: Wasserstein, config: Config, z):
    """-E_z f(G(z)) (GP Algorithm 1, line 11) on the critic as it stands (projected first). z: (B, d) -> ()."""
    project(net, config)
    return -torch.mean(net.critic(net(z)))


def players(net: Wasserstein, config: Config) -> dict[str, Player]:
    """One AdamW each (the run's lr and betas, Adam(1e-4, 0.5, 0.9) in the presets): the critic, the generator."""
    return {"critic": Player(net.critic_parameters()), "generator": Player(net.generator_parameters())}


def train_step(net: Wasserstein, config: Config, step: int, run):
    """One generator update of WGAN-GP (Gulrajani et al. 2017, Algorithm 1): ``model.n_critic`` updates of the
    critic, each on a fresh batch, z and alpha, then one of the generator on fresh z. With ``model.critic_only`` one
    critic update against the untrained generator. -> (the critic's loss [+ the generator's], the terms)."""
    for _ in range(1 if config.critic_only else config.n_critic):
        (x, _), noise = run.next_batch()
        with run.autocast():
            fake = generated(net, noise["z"], None, with_grad=False)
            c_loss, terms = critic_objective_terms(net, config, x, fake, noise["alpha"])
        run.update(critic=c_loss)
    if config.critic_only:
        return c_loss.detach(), terms
    _, noise = run.next_batch()
    with run.autocast():
        g_loss = generator_objective(net, config, noise["z"])
    run.update(generator=g_loss)
    return c_loss.detach() + g_loss.detach(), {**terms, "generator_loss": g_loss.detach()}


@torch.no_grad()
def sample(net: Wasserstein, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """Images: a grid of n samples. 2-D: a scatter of n samples beside the held-out ``examples``, and the critic's
    value surface under both (``critic``, as Gulrajani et al.'s Figure 1)."""
    _, per_row = class_rows(net, n)
    samples, device = generate(net, n, generator), next(net.parameters()).device
    if len(net.shape) == 3:
        return [Artefact("samples", "images", samples, nrow=per_row)]
    data = samples if examples is None else examples[0]
    if net.shape == (1,):
        return [histogram_figure_1d("samples", samples, data, title=f"WGAN samples ({config.penalty})",
                                    curve=net.critic, curve_label="critic f(x)")]
    return [scatter_figure_2d("samples", samples, data, title=f"WGAN samples ({config.penalty})"),
            critic_surface_2d("critic", lambda points: net.critic(points.to(device)).cpu(), samples, data)]


def exact_w1(a: torch.Tensor, b: torch.Tensor) -> float:
    """W1 between two empirical distributions of n points each, a, b (n, D): the optimal assignment's mean
    Euclidean cost (an optimal coupling of uniform weights is a permutation; SciPy's Hungarian solver)."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(a.double(), b.double()).numpy()
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def w1_split(fake: torch.Tensor, data: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The exact W1 of samples fake (n, D) to the first n held-out points data (2n, D) of a labelled mixture, labels
    (2n,), split in two by moving each point to its nearest mode's centre (``near_modes``):

    w1_weights: the W1 between the samples' centres and the held-out points' (only the modes' weights count), beside
      w1_weights_floor, the same between the two halves of the held-out points (two draws of the same weights);
    centre_distance: a sample's mean distance to its centre (the modes' widths and the samples between modes),
      beside centre_distance_floor, the held-out points'.

    By the triangle inequality W1 <= centre_distance + w1_weights + the held-out points' centre_distance."""
    from practice_torch.gan.quality import near_modes

    n = len(fake)
    _, nearest, centres, _ = near_modes(torch.cat([fake.double(), data.double()]), data, labels)  # the modes once
    fake_centres, data_centres = centres[nearest[:n]], centres[nearest[n:]]
    return {"w1_weights": exact_w1(fake_centres, data_centres[:n]),
            "w1_weights_floor": exact_w1(data_centres[n:2 * n], data_centres[:n]),
            "centre_distance": float((fake.double() - fake_centres).norm(dim=1).mean()),
            "centre_distance_floor": float((data[:n].double() - data_centres[:n]).norm(dim=1).mean())}


def evaluate(net: Wasserstein, config: Config, dataset: Dataset, generator: torch.Generator,
             samples: int | None = None) -> dict[str, float]:
    """On the held-out set and as many samples: the critic's W1 estimate E_data f - E_G f (with its standard error),
    the mean norm of grad f at interpolates (and its standard deviation); on 2-D data the exact W1 of up to 1 000
    samples against as many held-out points, beside the W1 between two such halves of the held-out set (the floor),
    and on labelled 2-D data the mode statistics and the W1 split into the modes' weights and the samples' distance
    from their modes (``w1_split``); on images the reference FIDs, of at most ``samples`` images
    (eval's ``--samples``)."""
    project(net, config)
    device = next(net.parameters()).device
    f_real, f_fake, norms, reals, labels = [], [], [], [], []
    for x, y in DataLoader(dataset, batch_size=500):
        x = x.to(device)
        fake = generate(net, len(x), generator).to(device)
        alpha = torch.rand((len(x),), generator=generator).to(device)
        with torch.no_grad():
            f_real.append(net.critic(x).double().cpu())
            f_fake.append(net.critic(fake).double().cpu())
            norms.append(input_gradients(net.critic, interpolates(x, fake, alpha)).flatten(1).norm(dim=1).cpu())
        if len(net.shape) == 1:
            reals.append(x.cpu())
            labels.append(y)
    f_real, f_fake, norms = torch.cat(f_real), torch.cat(f_fake), torch.cat(norms).double()
    n = len(f_real)
    metrics = {"critic_w1": float(f_real.mean() - f_fake.mean()),
               "critic_w1_se": float(torch.sqrt(f_real.var() / n + f_fake.var() / n)),
               "grad_norm_interpolates": float(norms.mean()), "grad_norm_interpolates_std": float(norms.std()),
               "examples": n}
    if net.shape == (1,):  # 1-D: W1 exactly by sorting (w1_sorted), on every held-out point
        data = torch.cat(reals)[:, 0].double()
        half = n // 2
        metrics["w1_exact"] = float(w1_sorted(generate(net, n, generator)[:, 0].double(), data))
        metrics["w1_floor"] = float(w1_sorted(data[half:2 * half], data[:half]))
        metrics["critic_w1_relative_error"] = abs(metrics["critic_w1"] / metrics["w1_exact"] - 1)
    elif len(net.shape) == 1:
        from practice_torch.gan.quality import mode_statistics

        data, labels = torch.cat(reals), torch.cat(labels)
        half = min(len(data), 2000) // 2  # the exact W1 solves an assignment: at most 1000 points a side
        fake = generate(net, half, generator)
        metrics["w1_exact"] = exact_w1(fake, data[:half])
        metrics["w1_floor"] = exact_w1(data[half:2 * half], data[:half])  # two halves of the held-out points
        if labels.dtype == torch.int64:  # as many samples as held-out points (the mode-collapse sets: the papers' 2500)
            metrics.update(mode_statistics(generate(net, len(data), generator), data, labels))
            metrics.update(w1_split(fake, data[:2 * half], labels[:2 * half]))
    elif config.eval_references:
        from practice_torch.gan.sampling import references

        metrics.update(references(net, dataset, generator, samples))
    return metrics
