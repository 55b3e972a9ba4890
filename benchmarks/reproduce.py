"""``python -m benchmarks reproduce [--rows A,B] [--seeds N] [--jobs J] [--reproduce-runs DIR] [--publish]``: each
algorithm's own paper's experiment, over seeds, beside the paper's figure; ``--list``: the rows, each with how long
its runs should take. ``--presets [MODEL,...]``: the README's results table over seeds instead
(``reproduce_presets``): each front-page quick preset trained once a seed, its row the mean (the runs a preset builds
on trained first, a seed each: ``PARENTS``).

A row (``ROWS``) is one experiment: the paper and where its figure is, the protocol (our presets as trained, on the
paper's task), the arms (a model, a data set and its settings each, with the paper's figure for it), the figure every
run is read for (a key of ``eval``'s metrics) and the target every seed must meet, or, for DANN, the share of the gap
between two arms a third closes on each seed. The rows: CartPole (PPO, TRPO), WGAN-GP's 8 Gaussians and its other
toys, DANN on two shifts with its bounds (and on the galaxy blend at three times the steps), BiGAN's encoder against
the autoencoder's and the VAE's, the mode-collapse ring and grid of VEEGAN and PacGAN (the plain GAN, each remedy,
packing, WGAN-GP), progressive growing and StyleGAN2 beside the DCGAN, flow matching's reflow and consistency
distillation beside their teachers, DDPM's cascade with and without conditioning augmentation, the VAE family's
rows (VAE-GAN, the hierarchical VAE, disentanglement and FactorVAE's critic), and Mamba's synthetic tasks (selective
copying and induction heads also at three times the steps). Each (row, arm, seed) is one ``python -m practice_torch
train`` and ``eval`` on one torch thread, ``--jobs`` at a time, into ``DIR/<row>/<arm>-<seed>``; a run whose
evaluation is there is kept, so a stopped sweep (Ctrl-C: exit 130, the runs' child processes killed) picks up where
it left off. The first line says how long the sweep should take on this
machine (the seconds each row's runs took in the last sweep recorded, where there is one). The record,
``docs/reproduce.json`` (``benchmarks/results/reproduce.json`` is the last sweep's own table, as for every benchmark),
holds every run's figures, wall time and whether it met the target, with the commit, the machine and the load;
``make docs`` renders it on each row's topic pages (``shared_specs.docs.reproduce_table``) and, one line a row, in the
README (``reproduce_summary``). A row with a ``curve`` (CartPole) also draws its runs' learning curves, mean +- sd
over the seeds beside peers' published points, into ``docs/figures/reproduce_<row>.png``; a row with ``pictures``
(VAE-GAN) puts its arms' first-seed samples side by side in ``docs/figures/reproduce_<row>_pictures.png``.

Only ``--publish`` writes the published record, its figures and (``--presets``) ``docs/results.json``. A trial
without it writes its own: ``reproduce_record.json`` and ``figures/`` (``--presets``: ``reproduce_presets.json``) in
``--results``, and leaves the published ones byte for byte as they were.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "docs" / "reproduce.json"  # the published record: written only with ``--publish``
TRIAL_RECORD = "reproduce_record.json"  # a trial's record, in ``--results`` (its figures in ``--results``/figures)
TRIAL_PRESETS = "reproduce_presets.json"  # a trial's rows of ``--presets``, in ``--results``


@dataclass(frozen=True)
class Arm:
    """One configuration of a row: ``python -m practice_torch train MODEL --dataset DATASET --set ...``; ``paper``:
    the paper's figure for this arm where it differs from the row's (``Row.paper_figure``); ``seconds``: a guess at
    one run's wall time, before any is recorded, where it is far from the row's (``Row.seconds``)."""

    name: str
    model: str
    dataset: str
    sets: tuple[str, ...] = ()
    paper: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Row:
    """One paper's experiment. ``metric``: the ``eval`` key each run is read for (``label``, with ``digits``);
    ``holds(metrics)``: whether a run meets the target (``target`` says it in words; None for an arm it does not
    judge, a baseline), None where the target is a
    ``gap`` (low arm, arm, high arm): the share of the gap from the low arm's figure to the high one's that the arm
    closes, seed by seed (``shared_specs.docs.gap_shares``); ``beside``: (key, what it is) of
    the figures the pages show beside ours (a baseline, a floor), recorded with it and averaged over the seeds;
    ``seconds``: one run's wall time on the 2-core AMD EPYC, one thread, where no sweep is recorded yet; ``curve``:
    the logged figure each arm's mean +- sd over the seeds is drawn of (``docs/figures/reproduce_<row>.png``), beside
    the ``published`` points of peers."""

    id: str
    topics: tuple[str, ...]
    title: str
    paper: str
    protocol: str
    paper_figure: str
    arms: tuple[Arm, ...]
    metric: str
    label: str
    target: str
    holds: Callable[[dict], bool] | None
    beside: tuple[tuple[str, str], ...] = ()
    gap: tuple[str, str, str] = ()
    curve: tuple[str, str, str] = ()  # (x, y, y's label): keys of the runs' metrics.jsonl, drawn over the seeds
    published: tuple[tuple[str, float, float, float], ...] = ()  # (whose, x, mean, sd): peers' points beside it
    digits: int = 3
    seconds: float = 60.0
    sample_metrics: bool = False  # eval also scores samples (FID and the rest) where the row's figure is one of them
    pictures: tuple[str, ...] = ()  # the samples/ images (stems) of each arm's first seed, side by side in a figure
    eval_samples: int = 0  # the sample metrics' samples (0: eval's default, up to 10 000): fewer for slow samplers


def mode_collapse_arms(dataset: str, paper: dict[str, str]) -> tuple[Arm, ...]:
    """The mode-collapse rows' arms on ``dataset``: the plain GAN and each remedy, the GAN's quick preset at lr 1e-3
    (at its own 2e-4 the plain game covered 16 of the grid's 25 modes with 2.5% of its samples near one), WGAN-GP's
    own quick toy preset (lr 1e-3 already); ``paper``: the papers' figures by arm name."""
    fast = "train.lr=1e-3"
    remedies = {"gan": (), "r1": ("model.r1=0.1",), "spectral_norm": ("model.spectral_norm=true",),
                "minibatch_std": ("model.minibatch_std=true",),
                "unrolled": ("model.unrolled_steps=5", "model.unroll_optimizer=adam"),  # Metz et al.'s Adam look-ahead
                "unrolled_sgd": ("model.unrolled_steps=5",),  # plain gradient steps of lr 1e-3 ahead
                "pacgan2": ("model.pack=2",), "pacgan4": ("model.pack=4",)}
    return (*(Arm(name, "gan", dataset, (fast, *sets), paper.get(name, "-")) for name, sets in remedies.items()),
            Arm("wgan_gp", "wgan", dataset, (), paper.get("wgan_gp", "-")))


MODE_COLLAPSE_PAPER = ("Lin et al. 2018 (PacGAN), Table 1, mean +- standard error of 10 trials, and its code: VEEGAN's "
                       "2D {what} (Srivastava et al. 2017, sec. 5.1) drawn with std {std}, 2 500 samples, a mode "
                       "captured when a sample lies within 3 standard deviations of it, 400 epochs of 100 000 points")
MODE_COLLAPSE_PROTOCOL = ("Each arm its quick preset (4 000 generator updates of 256; WGAN-GP 2 000 of 5 critic "
                          "steps), 2 500 samples scored as the papers do; beside them the share of samples near a mode, "
                          "the reverse KL of the modes' shares and the modes that get a quarter of a fair share")
MODE_COLLAPSE_BESIDE = (("high_quality", "high-quality share"), ("reverse_kl", "reverse KL"),
                        ("modes_covered", "modes with a quarter share"))

# gan_toy.py's toy settings (Gulrajani et al. 2017) where the quick preset differs: 100 000 generator updates at a
# constant Adam lr 1e-4 (no warm-up, no decay) from a 2-d latent; lambda 0.1, 5 critic steps, batches of 256 and
# Adam's betas (0.5, 0.9) are the preset's already. Its MLPs are 512 wide; here 128 (the row's protocol says why).
# About 65 minutes a run on one thread (39 ms an update).
WGAN_PAPER_ARM = Arm("gaussians25_paper", "wgan", "gaussians25",
                     ("train.steps=100000", "train.lr=1e-4", "train.min_lr_ratio=1", "train.warmup_steps=0",
                      "model.latent_dim=2", "train.checkpoint_every=5000"), seconds=3900.0)

# The grid's two arms beyond the quick presets: the unrolled GAN at Metz et al.'s own rates (their toy code's Adam at
# 1e-4 for the discriminator against 1e-3 for the generator, 10 look-ahead steps of the discriminator's own Adam) and
# WGAN-GP at five times its quick preset's updates (its cosine decay stretched to them).
GRID_LONGER_ARMS = (
    Arm("unrolled_metz", "gan", "grid25", ("train.lr=1e-3", "model.discriminator_lr=1e-4", "model.unrolled_steps=10",
                                           "model.unroll_optimizer=adam")),
    Arm("wgan_gp_10k", "wgan", "grid25", ("train.steps=10000",)))

CASCADE_SAMPLER = ("model.sampler=ddim", "model.sample_steps=50")  # the cascade row's sampler, every arm's

SSM_ARMS = (Arm("s4d", "ssm", "{task}", ("model.kind=s4d", "model.channels=144", "model.state=16"), "{s4d}"),
            Arm("mamba", "ssm", "{task}", (), "{mamba}"), Arm("transformer", "language_model", "{task}", (), "{tf}"))
SSM_PROTOCOL = ("Each arm its quick preset on {what}: 2 layers of about 60k parameters (Mamba of width 64 with N = 8, "
                "S4D of width 144 with N = 16, a Transformer of width 48 with rotary positions), batches of 32, AdamW "
                "at 5e-3 (the SSMs) or 2e-3 (the Transformer); the share of the answers right on 2 000 test "
                "sequences{longer}")


# The induction-heads rows' target (every answer at the training length of 64, 0.9 at 16 times it) and the longer
# lengths' scores beside it
INDUCTION_TARGET = ("every answer right at the training length and at least 0.9 at 16 times it, on every seed",
                    lambda m: m["accuracy"] >= 0.99 and m.get("accuracy_1024", 0.0) >= 0.9)
INDUCTION_BESIDE = tuple((f"accuracy_{64 * k}", f"at {64 * k}") for k in (2, 4, 8, 16))


def ssm_arms(task: str, s4d: str, mamba: str, tf: str) -> tuple[Arm, ...]:
    """The synthetic-task rows' arms on ``task``, each with the paper's figure for its kind of model."""
    return tuple(Arm(a.name, a.model, task, a.sets, a.paper.format(s4d=s4d, mamba=mamba, tf=tf)) for a in SSM_ARMS)


def disentanglement_arms() -> tuple[Arm, ...]:
    """The disentanglement row's arms: each default variant of ``benchmarks.disentanglement`` (``beta=4`` -> arm
    ``beta4``, ``--set model.beta=4``) on the galaxies' quick preset, named as that benchmark names its runs' folders,
    so that it draws its traversals from this row's runs (``--dis-runs``)."""
    from benchmarks.disentanglement import VARIANTS, run_name, variant_set

    return tuple(Arm(run_name(v), "vae", "galaxies", (variant_set(v),)) for v in VARIANTS.split(","))


DANN_SHIFTS = {"galaxies": "MNIST-M's blend over GalSim galaxies, the default",
               "patches": "the blend over upsampled crops of other images, closest to how MNIST-M is built"}

# The longer DANN row's settings: three times the quick preset's steps, lambda's ramp with them, and the full preset's
# domain classifier (the setting that closed the most of the gap in the trials on seed 0 its page lists).
DANN_LONG = ("model.target=galaxies", "train.steps=9000", "model.ramp_steps=9000", "model.domain_hidden=512,512")
# Ganin et al. 2016, sec. 5.2.2: SGD with momentum 0.9 at mu_0 = 0.01, annealed as mu_0 / (1 + 10 p)^0.75; no warm-up
# and no clipping (the quick preset: AdamW at 1e-3, a 100-step warm-up, a cosine to a tenth, norms clipped at 1).
DANN_PAPER_SGD = ("train.optimizer=sgd", "train.momentum=0.9", "train.lr=0.01", "train.schedule=annealing",
                  "train.warmup_steps=0", "train.grad_clip=0")

ROWS = {row.id: row for row in (
    Row("cartpole", ("ppo", "trpo"), "CartPole-v1 in 100k environment steps",
        "RL Baselines3 Zoo's benchmark table: PPO and TRPO on CartPole-v1 after 100k steps, 300 evaluation episodes",
        "Each quick preset (TRPO 100k environment steps, PPO 150k), its greedy policy on the 100 test episodes",
        "500 +- 0", (Arm("ppo", "ppo", "cartpole"), Arm("trpo", "trpo", "cartpole")),
        "mean_return", "greedy mean return", "500 on every seed", lambda m: m["mean_return"] >= 500,
        beside=(("min_return", "the lowest episode"),), digits=1, seconds=25.0,
        curve=("env_steps", "episode_return", "mean return of the last 20 training episodes"),
        published=(("RL Zoo PPO and TRPO (greedy, 300 episodes)", 100_000, 500.0, 0.0),
                   ("CleanRL ppo.py (training episodes; at 500k steps)", 150_000, 490.04, 6.12))),
    Row("wgan_8gaussians", ("wgan",), "WGAN-GP on the 8 Gaussians",
        "Gulrajani et al. 2017, Figure 1 and its gan_toy.py: lambda 0.1, 100 000 generator iterations",
        "The quick preset: lambda 0.1, 2 000 generator updates of 256; 2 000 samples against the test points",
        "converges: all 8 modes", (Arm("wgan_gp", "wgan", "gaussians"),),
        "modes_covered", "modes covered of 8", "8 of 8 modes on every seed", lambda m: m["modes_covered"] == 8,
        beside=(("high_quality", "samples near a mode"), ("w1_exact", "W1"), ("w1_floor", "W1 floor")), digits=1,
        seconds=70.0),
    Row("wgan_toys", ("wgan",), "WGAN-GP on its other toys: the 25 Gaussians and the Swiss roll",
        "Gulrajani et al. 2017, Figure 1 and its gan_toy.py (its data sets as drawn there): ReLU MLPs of 512, lambda "
        "0.1, 5 critic steps, Adam(1e-4, 0.5, 0.9), batches of 256, 100 000 generator iterations; the critic's value "
        "surface drawn over data and samples",
        "The quick preset (lambda 0.1, lr 1e-3, 2 000 generator updates of 256; `sample` draws the critic's surface as "
        "the paper does); W1 of 1 000 samples to as many test points, beside the floor, W1 between two halves of the "
        "test points",
        "converges (Figure 1)", (Arm("gaussians25", "wgan", "gaussians25"), Arm("swissroll", "wgan", "swissroll")),
        "w1_exact", "W1 to the test points", "W1 within 1.5 times the floor on every seed",
        lambda m: m["w1_exact"] <= 1.5 * m["w1_floor"],
        beside=(("w1_floor", "W1 floor"), ("modes_covered", "modes with a quarter share"),
                ("high_quality", "high-quality share")), seconds=70.0),
    Row("wgan_toys_long", ("wgan",), "WGAN-GP's 25 Gaussians at five times the quick budget, and at the paper's",
        "Gulrajani et al. 2017, Figure 1 and its gan_toy.py, as for the other toys: 100 000 generator iterations",
        "The quick preset with 10 000 generator updates instead of 2 000 (lr 1e-3, cosine decay over them); and "
        "gan_toy.py's settings, 100 000 updates at a constant Adam lr 1e-4 from a 2-d latent, in MLPs of 128 where "
        "it has 512 (a 512-wide run takes 7.8 hours a seed on one thread of this CPU, seven times the 128's); W1 of "
        "1 000 samples to as many test points beside the floor", "converges (Figure 1)",
        (Arm("gaussians25_10k", "wgan", "gaussians25", ("train.steps=10000",)), WGAN_PAPER_ARM),
        "w1_exact", "W1 to the test points", "W1 within 1.5 times the floor on every seed",
        lambda m: m["w1_exact"] <= 1.5 * m["w1_floor"],
        beside=(("w1_floor", "W1 floor"), ("modes_captured", "modes captured"), ("high_quality", "high-quality share")),
        seconds=330.0),
    *(Row(f"dann_{shift}", ("domain_adversarial",), f"DANN's share of the domain gap ({shift})",
          "Ganin et al. 2016, Table 2: MNIST -> MNIST-M, target accuracy 0.5225 source only, 0.7666 DANN, 0.9596 "
          "trained on the target: DANN closes 56% of the gap",
          f"Each arm the quick preset on Fashion-MNIST (3 000 steps) with the target domain `{shift}` "
          f"({DANN_SHIFTS[shift]}): the source-only baseline (`model.adversarial=false`), DANN, and the bound, "
          "trained on the target's labelled images (`model.train_on=target`); the target's test accuracy",
          "-", (Arm("source_only", "domain_adversarial", "fashion_mnist",
                    (f"model.target={shift}", "model.adversarial=false"), "0.5225"),
                Arm("dann", "domain_adversarial", "fashion_mnist", (f"model.target={shift}",), "0.7666"),
                Arm("target", "domain_adversarial", "fashion_mnist",
                    (f"model.target={shift}", "model.train_on=target"), "0.9596")),
          "target_accuracy", "target test accuracy", "DANN closes half the gap or more on every seed", None,
          beside=(("source_accuracy", "source test accuracy"), ("proxy_a_distance", "proxy A-distance")),
          gap=("source_only", "dann", "target"), seconds=90.0) for shift in DANN_SHIFTS),
    Row("dann_galaxies_long", ("domain_adversarial",),
        "DANN's share of the domain gap (galaxies) at three times the steps, with a wider domain classifier",
        "Ganin et al. 2016, Table 2: MNIST -> MNIST-M, target accuracy 0.5225 source only, 0.7666 DANN, 0.9596 "
        "trained on the target: DANN closes 56% of the gap",
        "The row `dann_galaxies` with every arm trained three times as long (9 000 steps, lambda's ramp stretched to "
        "them) and a domain classifier of two 512-wide layers (the full preset's): the source-only baseline, DANN, "
        "and the bound trained on the target's labelled images; the target's test accuracy",
        "-", (Arm("source_only", "domain_adversarial", "fashion_mnist", (*DANN_LONG, "model.adversarial=false"),
                  "0.5225"),
              Arm("dann", "domain_adversarial", "fashion_mnist", DANN_LONG, "0.7666"),
              Arm("target", "domain_adversarial", "fashion_mnist", (*DANN_LONG, "model.train_on=target"), "0.9596")),
        "target_accuracy", "target test accuracy", "DANN closes half the gap or more on every seed", None,
        beside=(("source_accuracy", "source test accuracy"), ("proxy_a_distance", "proxy A-distance")),
        gap=("source_only", "dann", "target"), seconds=520.0),
    Row("dann_galaxies_paper", ("domain_adversarial",),
        "DANN's share of the domain gap (galaxies) with the paper's optimizer and learning-rate annealing",
        "Ganin et al. 2016, Table 2: MNIST -> MNIST-M, target accuracy 0.5225 source only, 0.7666 DANN, 0.9596 "
        "trained on the target: DANN closes 56% of the gap; sec. 5.2.2: SGD, momentum 0.9, mu_p = 0.01 / (1 + 10 "
        "p)^0.75, lambda_p = 2 / (1 + exp(-10 p)) - 1, batches of 64 source and 64 target images",
        "The row `dann_galaxies_long` (9 000 steps, lambda's ramp over them, a domain classifier of two 512-wide "
        "layers, batches of 64 and 64) with the paper's optimizer in every arm: SGD with momentum 0.9 at 0.01, "
        "annealed, no warm-up and no clipping; the target's test accuracy",
        "-", (Arm("source_only", "domain_adversarial", "fashion_mnist",
                  (*DANN_LONG, *DANN_PAPER_SGD, "model.adversarial=false"), "0.5225"),
              Arm("dann", "domain_adversarial", "fashion_mnist", (*DANN_LONG, *DANN_PAPER_SGD), "0.7666"),
              Arm("target", "domain_adversarial", "fashion_mnist", (*DANN_LONG, *DANN_PAPER_SGD, "model.train_on=target"),
                  "0.9596")),
        "target_accuracy", "target test accuracy", "DANN closes half the gap or more on every seed", None,
        beside=(("source_accuracy", "source test accuracy"), ("proxy_a_distance", "proxy A-distance")),
        gap=("source_only", "dann", "target"), seconds=520.0),
    Row("bigan_probe", ("bigan",), "BiGAN's encoder as a feature",
        "Donahue et al. 2017, Table 1: a linear classifier on E(x) beats one on the pixels",
        "The quick preset on Fashion-MNIST; a logistic regression on 5 000 training images' E(x), against one on "
        "their pixels, scored on the test split; beside it the same probe of the autoencoder's code and the VAE's "
        "posterior mean, each 32-dimensional as E(x) is, from their quick presets on every class",
        "E(x) above the pixels", (Arm("bigan", "bigan", "fashion_mnist"),
                                  Arm("autoencoder", "autoencoder", "fashion_mnist",
                                      ("model.code_dim=32", "model.holdout_class=-1"), "-"),
                                  Arm("vae", "vae", "fashion_mnist", ("model.latent_dim=32",), "-")),
        "probe_accuracy", "probe accuracy on the representation", "above the pixels' probe on every seed",
        lambda m: m["probe_accuracy"] > m["probe_accuracy_inputs"],
        beside=(("probe_accuracy_inputs", "the pixels' probe"), ("probe_accuracy_untrained", "an untrained E's"),
                ("fid_samples", "G's FID"), ("class_share_min", "the rarest class's share of G's samples")),
        seconds=240.0),
    Row("gan_ring", ("gan",), "Mode collapse on the 2-D ring",
        MODE_COLLAPSE_PAPER.format(what="ring, 8 Gaussians on the unit circle", std="0.01"), MODE_COLLAPSE_PROTOCOL,
        "-", mode_collapse_arms("ring8", {"gan": "6.3 +- 0.5 (98.2% high quality, reverse KL 0.45)",
                                          "pacgan2": "7.9 +- 0.1 (95.6%, 0.07)", "pacgan4": "7.8 +- 0.1 (95.9%, 0.07)"}),
        "modes_captured", "modes captured of 8", "8 of 8 on every seed (the best remedy; WGAN-GP too)",
        lambda m: m["modes_captured"] == 8, beside=MODE_COLLAPSE_BESIDE, digits=1, seconds=35.0),
    Row("gan_grid", ("gan",), "Mode collapse on the 2-D grid",
        MODE_COLLAPSE_PAPER.format(what="grid, 25 Gaussians on {-4, -2, 0, 2, 4}^2", std="0.05"),
        MODE_COLLAPSE_PROTOCOL, "-",
        (*mode_collapse_arms("grid25", {"gan": "17.3 +- 0.8 (94.8% high quality, reverse KL 0.70)",
                                        "pacgan2": "23.8 +- 0.7 (91.3%, 0.13)",
                                        "pacgan4": "24.8 +- 0.2 (93.6%, 0.04)"}),
         *GRID_LONGER_ARMS),
        "modes_captured", "modes captured of 25", "at least 24 of 25 on every seed (the best remedy)",
        lambda m: m["modes_captured"] >= 24, beside=MODE_COLLAPSE_BESIDE, digits=1, seconds=40.0),
    Row("progressive_growing", ("gan",), "Progressive growing against the DCGAN at one budget",
        "Karras et al. 2018 (progressive growing), Table 1: growing, with the equalised learning rate and pixel norm, "
        "lowers the sliced Wasserstein distance on CelebA-HQ and LSUN at 128 to 1024 pixels; no figure of theirs is "
        "for 28 x 28 images or this budget",
        "Each arm the Fashion-MNIST quick preset (3 000 rounds of two batches of 64, the non-saturating game with R1 "
        "weight 10): the DCGAN (32 and 64 channels and a 512-wide layer each way; 1.67M parameters in G, 1.64M in "
        "D) against the progressive players (blocks of 32 channels grown 7 -> 14 -> 28, 600 steps a phase; 148k and "
        "97k); FID on the project's features of 10 000 "
        "samples against the test split, beside the classes the feature network's classifier gives at least half a "
        "fair share", "-",
        (Arm("dcgan", "gan", "fashion_mnist"), Arm("progressive", "gan", "fashion_mnist", ("model.progressive=true",))),
        "fid_samples", "FID (project features)", "none: a comparison at one budget", None,
        beside=(("classes_covered", "classes covered of 10"), ("class_share_min", "the rarest class's share"),
                ("fid_untrained", "an untrained generator's FID")), digits=1, seconds=600.0),
    Row("stylegan", ("stylegan", "gan"), "StyleGAN2 beside the R1 DCGAN and progressive growing",
        "Karras et al. 2019 (StyleGAN), Table 3: the perceptual path length is shorter in W than in Z (FFHQ, 8 mapping "
        "layers: 200.5 in W against 412.0 in Z); Kynkaenniemi et al. 2019, Figure 7: truncation raises precision and "
        "lowers recall; Karras et al. 2020 (StyleGAN2), Table 1: FID 2.84 on FFHQ at 1024 pixels. No figure of theirs "
        "is for 28 x 28 images or this budget",
        "The Fashion-MNIST quick presets of StyleGAN2 (2 500 steps of 32: a 2-layer mapping network, channels "
        "32, 32 and 16 from a learned 7 x 7 constant, R1 gamma 0.5 every 16 steps, path length weight 2 every 4, "
        "mixing 0.9, EMA 0.995; 490 s of training on one thread), the DCGAN (3 000 rounds of two batches of 64, R1 "
        "10; 400 s) and progressive growing at StyleGAN's training time (the GAN's progressive players with 330 "
        "steps a phase, 1 650 rounds in all: 480 s; its quick preset's 3 000 take 880 s); FID on the project's "
        "features of 10 000 samples against the test split, beside precision and recall, StyleGAN's precision and "
        "recall at psi 0.7 and 0.5 and its perceptual path lengths in W and in Z (the project's features in place "
        "of VGG's, 1 000 pairs each)", "-",
        (Arm("stylegan", "stylegan", "fashion_mnist"), Arm("dcgan", "gan", "fashion_mnist"),
         Arm("progressive", "gan", "fashion_mnist",
             ("model.progressive=true", "model.phase_steps=330", "train.steps=1650"))),
        "fid", "FID (project features)", "the path length shorter in W than in Z on every seed",
        lambda m: m["ppl_w"] < m["ppl_z"] if "ppl_w" in m else None,
        beside=(("precision", "precision"), ("recall", "recall"), ("precision_psi_0.7", "precision at psi 0.7"),
                ("recall_psi_0.7", "recall at psi 0.7"), ("precision_psi_0.5", "precision at psi 0.5"),
                ("recall_psi_0.5", "recall at psi 0.5"), ("ppl_w", "path length in W"), ("ppl_z", "in Z")),
        digits=1, seconds=540.0, sample_metrics=True, pictures=("samples",)),
    Row("reflow_moons", ("flow_matching",), "Reflow: the 2-rectified flow beside its teacher on two moons",
        "Liu, Gong & Liu 2023 (rectified flow), Section 3 and its 2-D examples: reflow straightens the paths, so that "
        "one Euler step samples nearly as well as the full solve; Table 1: on CIFAR-10 the 2-rectified flow, "
        "distilled, reaches FID 4.85 in one step. No figure of theirs is for two moons",
        "Each run trains its teacher, the flow-matching quick preset on moons (an MLP of 128 x 3, 3 000 steps of "
        "256), with the run's seed, then the 2-rectified flow from the teacher's weights: 1 000 steps of 256 fresh "
        "pairs (x0, the teacher's midpoint solve of 50 steps from x0). Both are read from the same 1 000 noise draws: "
        "the straightness (Definition 3.1, 100 midpoint steps) and the W2 of one Euler step's samples to 1 000 "
        "held-out points, beside the W2 of the full solve and the W2 between two halves of the held-out points (the "
        "floor)", "-",
        (Arm("reflow", "flow_matching", "moons", ("model.reflow=true", "train.steps=1000")),),
        "w2_one_step", "W2 of one Euler step", "straightness and one-step W2 below the teacher's on every seed",
        lambda m: m["straightness"] < m["teacher_straightness"] and m["w2_one_step"] < m["teacher_w2_one_step"],
        beside=(("teacher_w2_one_step", "the teacher's one-step W2"), ("straightness", "straightness"),
                ("teacher_straightness", "the teacher's"), ("w2", "W2 of the full solve"),
                ("w2_held_out_halves", "the floor")), seconds=300.0),
    Row("consistency_moons", ("flow_matching",), "Consistency distillation beside its teacher's Euler sampler",
        "Song, Dhariwal, Chen & Sutskever 2023 (consistency models), Table 1: consistency distillation samples "
        "CIFAR-10 in one step at FID 3.55 and in two at 2.93 (the LPIPS distance, distilled from an EDM teacher). No "
        "figure of theirs is for two moons",
        "Each run trains its teacher, the flow-matching quick preset on moons (an MLP of 128 x 3, 3 000 steps of "
        "256), with the run's seed, then distils it: 2 000 steps of 256 from the teacher's weights, N = 20 Euler "
        "steps of the teacher, the target's EMA 0.95, sigma_data 0.5, the squared L2 distance. The W2 to 1 000 "
        "held-out points of 1 000 samples in one step (t = 0) and two (t = 0 and 0.5), beside the teacher's Euler "
        "sampler at 1, 2, 4 and 20 steps from the same noise and the W2 between two halves of the held-out points "
        "(the floor)", "-",
        (Arm("consistency", "flow_matching", "moons", ("model.consistency=true", "train.steps=2000")),),
        "w2_one_step", "W2 of one step", "one step below the teacher's Euler sampler at 4 steps on every seed",
        lambda m: m["w2_one_step"] < m["teacher_w2_euler_4"],
        beside=(("w2_two_step", "two steps"), ("teacher_w2_euler_1", "the teacher's Euler, 1 step"),
                ("teacher_w2_euler_2", "2 steps"), ("teacher_w2_euler_4", "4 steps"),
                ("teacher_w2_euler_20", "20 steps"), ("w2_held_out_halves", "the floor")), seconds=150.0),
    Row("cascade", ("ddpm",), "A cascade with and without conditioning augmentation, beside one stage",
        "Ho et al. 2021 (cascaded diffusion models), section 4.1 and its ablations: Gaussian conditioning "
        "augmentation of the low-resolution condition is crucial to the cascade's sample quality; the full cascade "
        "reaches FID 1.48 on ImageNet 64 x 64. No figure of theirs is for 28 x 28 images",
        "Each arm the Fashion-MNIST quick preset's U-Net, schedule and optimiser (C = 32, cosine T = 1 000, batches "
        "of 64, lr 2e-3, EMA 0.995): the cascade (a base on the 14 x 14 block means, levels 1 and 2, and the "
        "super-resolution stage at 28 x 28) for 1 500 steps with augmentation (s ~ U{0..250}, sampled at 100) and "
        "without (s = 0), and one stage for 2 000 steps, the cascade's training time (a cascade step costs 1.3 of "
        "its steps on one thread); FID, precision and recall of 2 000 samples (deterministic DDIM, 50 steps a "
        "stage: 10 000 samples of 100 steps would take an hour a run) against the test split", "-",
        (Arm("augmented", "ddpm", "fashion_mnist",
             ("model.cascade=true", "model.augment_levels=250", "model.sample_augment=100", *CASCADE_SAMPLER)),
         Arm("not_augmented", "ddpm", "fashion_mnist", ("model.cascade=true", *CASCADE_SAMPLER)),
         Arm("one_stage", "ddpm", "fashion_mnist", ("train.steps=2000", *CASCADE_SAMPLER))),
        "fid", "FID (project features)", "none: the augmented cascade against the other arms, seed by seed on the page",
        None, beside=(("precision", "precision"), ("recall", "recall")), digits=1, seconds=2700.0,
        sample_metrics=True, pictures=("samples",), eval_samples=2000),
    Row("factor_vae_critic", ("vae",), "FactorVAE's discriminator at the paper's pace and ten times faster",
        "Kim & Mnih 2018 (FactorVAE), Appendix A: the VAE and the discriminator both at Adam lr 1e-4 (the "
        "discriminator's betas 0.5 and 0.9), gamma 10 to 100 on dSprites, where its TC falls well below beta-VAE's; no "
        "figure of theirs is for the galaxies",
        "The disentanglement row's FactorVAE arm (the galaxies' quick preset, the VAE at Adam 2e-3, 3 000 steps of "
        "two batches of 128, gamma 10) with its discriminator at the paper's 1e-4, whose runs this row takes from "
        "that row, against the same at 1e-3: ten times the pace, closer to the VAE's; the MIG of the posterior means "
        "and the TC of the aggregate posterior on the 1 000 test galaxies", "-",
        (Arm("factor_gamma10", "vae", "galaxies", ("model.factor_gamma=10",)),
         Arm("factor_gamma10_tc_lr1e-3", "vae", "galaxies", ("model.factor_gamma=10", "model.tc_lr=1e-3"))),
        "mig", "mutual information gap", "none: a comparison of the discriminator's pace", None,
        beside=(("tc", "TC"), ("dim_kl", "dim-wise KL"), ("mi", "index-code MI"), ("elbo", "test ELBO")),
        seconds=660.0),
    Row("vae_gan", ("vae",), "VAE-GAN beside the VAE and the DCGAN",
        "Larsen et al. 2016 (VAE/GAN), Figures 3 and 4 and Table 1: on CelebA the VAE's reconstructions and samples "
        "blur, VAE/GAN's are sharp, the GAN's samples are sharp and it has no encoder; their table scores "
        "attribute-conditioned generation, no FID, and no figure of theirs is for Fashion-MNIST",
        "Each arm its Fashion-MNIST quick preset: the conv VAE (4 000 steps of 128, Bernoulli decoder), VAE-GAN "
        "(the same encoder and decoder, 4 000 steps of 64, gamma 0.1; a discriminator of 32 and 64 GroupNorm "
        "channels and 512 units, its second conv's features the likelihood's; the decoder and discriminator at "
        "Adam(1e-3, 0.5, 0.999), the encoder at the VAE's 2e-3) and the DCGAN (3 000 rounds of two batches of 64, "
        "R1 10); FID on the project's features of 10 000 samples against the test split, beside the reconstruction's "
        "mean squared error per pixel (decoder mean at the posterior mean) and the pixel likelihood's NLL", "-",
        (Arm("vae", "vae", "fashion_mnist"),
         Arm("vaegan", "vae", "fashion_mnist", ("model.vaegan_gamma=0.1", "train.batch_size=64")),
         Arm("dcgan", "gan", "fashion_mnist")),
        "fid", "FID (project features)", "none: a comparison of the three at their quick presets", None,
        beside=(("recon_mse", "reconstruction MSE"), ("nll_bits_per_dim", "pixel NLL (bits/dim)"),
                ("precision", "precision"), ("recall", "recall")),
        digits=1, seconds=600.0, sample_metrics=True, pictures=("samples", "reconstructions")),
    Row("selective_copying", ("ssm",), "Selective copying: the time-invariant SSM against the selective one",
        "Gu & Dao 2023 (Mamba), Table 1: 2-layer models on sequences of 4 096 with 16 tokens to copy, vocabulary 16: "
        "S4 18.3%, Mamba (S6) 99.8%",
        SSM_PROTOCOL.format(what="sequences of 128 with 16 tokens to copy (2 000 steps)", longer=""), "-",
        ssm_arms("selective_copying", "18.3% (S4)", "99.8%", "-"),
        "accuracy", "answers right", "at least 0.9 of the answers right on every seed",
        lambda m: m["accuracy"] >= 0.9, beside=(("sequence_accuracy", "sequences all right"),), seconds=260.0),
    Row("selective_copying_long", ("ssm",), "Selective copying: the selective scan at three times the steps",
        "Gu & Dao 2023 (Mamba), Table 1: 2-layer models on sequences of 4 096 with 16 tokens to copy, vocabulary 16: "
        "Mamba (S6) 99.8%",
        "The row `selective_copying`'s Mamba (2 layers of width 64, N = 8, 62k parameters, batches of 32, AdamW at "
        "5e-3) on sequences of 128 with 16 tokens to copy, trained for 6 000 steps instead of 2 000 (the learning "
        "rate's cosine decay stretched to them); the share of the answers right on 2 000 test sequences", "-",
        (Arm("mamba_6k", "ssm", "selective_copying", ("train.steps=6000",), "99.8%"),),
        "accuracy", "answers right", "at least 0.9 of the answers right on every seed",
        lambda m: m["accuracy"] >= 0.9, beside=(("sequence_accuracy", "sequences all right"),), seconds=1520.0),
    Row("induction_heads", ("ssm",), "Induction heads, tested at up to 16 times the training length",
        "Gu & Dao 2023 (Mamba), Table 2: 2-layer models trained on sequences of 256, vocabulary 16: Mamba answers "
        "every test right at every length up to 2^20 (4 096 times), the attention models (absolute, rotary and xPos "
        "positions) fail beyond about twice it; H3 and Hyena fall off too",
        SSM_PROTOCOL.format(what="sequences of 64 (1 000 steps)",
                            longer=", and on 500 sequences at 2 to 16 times the length"), "-",
        ssm_arms("induction_heads", "-", "1.00 to 2^20", "fails past about 2x (MHA-RoPE)"),
        "accuracy", "answers right at the training length",
        *INDUCTION_TARGET, beside=INDUCTION_BESIDE, seconds=120.0),
    Row("induction_heads_long", ("ssm",), "Induction heads: the selective scan at three times the steps",
        "Gu & Dao 2023 (Mamba), Table 2: 2-layer models trained on sequences of 256, vocabulary 16: Mamba answers "
        "every test right at every length up to 2^20 (4 096 times)",
        "The row `induction_heads`'s Mamba (2 layers of width 64, N = 8, batches of 32, AdamW at 5e-3) on sequences "
        "of 64, trained for 3 000 steps instead of 1 000 (the learning rate's cosine decay stretched to them); the "
        "share of the answers right on 2 000 test sequences, and on 500 sequences at 2 to 16 times the length", "-",
        (Arm("mamba_3k", "ssm", "induction_heads", ("train.steps=3000",), "1.00 to 2^20"),),
        "accuracy", "answers right at the training length",
        *INDUCTION_TARGET, beside=INDUCTION_BESIDE, seconds=400.0),
    Row("hierarchical_vae", ("vae",), "Two levels of latents against one, at equal parameters",
        "Sonderby et al. 2016 (the ladder VAE) and Vahdat & Kautz 2020 (NVAE): hierarchies inferred top-down lower "
        "the NLL and keep more units active; their tables are for MNIST, CIFAR-10 and CelebA with many more levels and "
        "far longer training, none for this budget",
        "Each arm the Fashion-MNIST quick preset (conv VAE, 4 000 steps of 128): one level of 24 latents (267k "
        "parameters) against two, 8 over 16, inferred top-down with MLPs of 32 (244k); the importance-sampled NLL "
        "(100 samples) on 1 000 test images, beside the ELBO and the active units (posterior mean's variance over the "
        "test images above 0.01)", "-",
        (Arm("one_level", "vae", "fashion_mnist", ("model.latent_dim=24",)),
         Arm("two_levels", "vae", "fashion_mnist", ("model.levels=2", "model.top_dim=8", "model.hidden=32"))),
        "nll_bits_per_dim", "test NLL (bits/dim)", "none: a comparison at equal parameters and budget", None,
        beside=(("elbo", "test ELBO"), ("active_units", "active units"), ("active_units_top", "active top units"),
                ("active_units_lower", "active lower units")), digits=4, seconds=250.0),
    Row("disentanglement", ("vae",), "Disentangling the galaxies' five factors: beta-VAE, beta-TCVAE and FactorVAE",
        "Chen et al. 2018 (beta-TCVAE; the MIG, sec. 5) and Kim & Mnih 2018 (FactorVAE: the TC by a discriminator "
        "on permuted codes, gamma 10 to 100 in Locatello et al. 2019's study), both on dSprites, not the galaxies: no "
        "figure of theirs is for this data; Locatello et al. 2019 found the seed to matter as much as the objective",
        "Each arm the galaxies' quick preset (conv VAE, 10 latents, Gaussian decoder, 3 000 steps of 128; FactorVAE "
        "two batches a step, its discriminator 6 layers of 1 000 at Adam(1e-4, 0.5, 0.9)) with one key changed; the "
        "MIG of the posterior means against (Sersic n, radius, e1, e2, log flux) on the 1 000 test galaxies, beside "
        "the KL's parts there", "-", disentanglement_arms(),
        "mig", "mutual information gap", "none: a comparison of the objectives at one budget", None,
        beside=(("tc", "TC"), ("mi", "index-code MI"), ("dim_kl", "dim-wise KL"), ("elbo", "test ELBO"),
                *((f"mig_factor_{k}", f"gap {name}") for k, name in enumerate(("Sersic n", "radius", "e1", "e2",
                                                                                "log flux")))),
        seconds=330.0),
)}


def run_dir(folder: Path, row: Row, arm: Arm, seed: int) -> Path:
    return folder / row.id / f"{arm.name}-{seed}"


class Children:
    """The child processes of the runs being trained (a sweep's threads each wait on one of them): an interrupted
    sweep stops them all (``stop``) and starts no more."""

    def __init__(self) -> None:
        self.lock, self.running, self.stopped = threading.Lock(), set(), False

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """``argv`` to its end, its output captured, as ``subprocess.run`` (killed if this thread is interrupted);
        RuntimeError once the sweep is stopped."""
        with self.lock:
            if self.stopped:
                raise RuntimeError("the sweep was interrupted")
            child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
            self.running.add(child)
        try:
            out, err = child.communicate()
        except BaseException:
            child.kill()
            child.wait()
            raise
        finally:
            with self.lock:
                self.running.discard(child)
        return subprocess.CompletedProcess(argv, child.returncode, out, err)

    def stop(self) -> None:
        """Kill every child still running; start none after this (until ``restart``)."""
        with self.lock:
            self.stopped = True
            for child in self.running:
                child.kill()

    def restart(self) -> None:
        """A new sweep in this process may start children again."""
        with self.lock:
            self.stopped = False


CHILDREN = Children()


def train_and_evaluate(out: Path, arm: Arm, seed: int, sample_metrics: bool = False, samples: int = 0) -> float:
    """Train and evaluate one run into ``out`` on one thread (a child process each, so that jobs run side by side);
    its wall time. A run stopped half-way is trained again from its start. ``sample_metrics``: ``eval`` computes
    FID and the other sample metrics too (a results row's headline may be one), on ``samples`` samples (0: eval's
    default)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    python = [sys.executable, "-m", "practice_torch"]
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    sets = [a for s in (*arm.sets, f"train.seed={seed}", "train.threads=1") for a in ("--set", s)]
    for argv in (["train", arm.model, "--dataset", arm.dataset, "--out", str(out), *sets],
                 ["eval", str(out), *([] if sample_metrics else ["--no-sample-metrics"]),
                  *(["--samples", str(samples)] if samples else [])]):
        done = CHILDREN.run([*python, *argv], cwd=ROOT, env=env)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{' '.join(argv[:2])} {out}: {last}")
    wall = time.perf_counter() - started
    (out / "reproduce_wall_s.json").write_text(json.dumps(wall))
    return wall


def record_of(row: Row, arm: Arm, seed: int, out: Path) -> dict:
    """The record of one finished run: its figures, wall time and whether it met the target."""
    metrics = json.loads((out / "eval_test.json").read_text())
    kept = {k: metrics[k] for k in (row.metric, *(key for key, _ in row.beside)) if k in metrics}
    wall = json.loads((out / "reproduce_wall_s.json").read_text()) if (out / "reproduce_wall_s.json").is_file() else None
    return {"row": row.id, "arm": arm.name, "seed": seed, "value": metrics[row.metric], "metrics": kept,
            "holds": holds if (holds := None if row.holds is None else row.holds(metrics)) is None else bool(holds),
            "wall_s": wall}


def estimate(todo: list, jobs: int, previous: list[dict]) -> float:
    """Seconds the (row, arm, seed) runs still to do should take, ``jobs`` at a time: each one its arm's mean wall
    time in the previous record (an unrolled GAN takes 4 times its row's plain one), else the arm's own guess, else
    its row's, else the row's own guess."""
    def seconds(row: Row, arm: Arm) -> float:
        mine = [r["wall_s"] for r in previous if r["row"] == row.id and r["arm"] == arm.name and r.get("wall_s")]
        if mine or arm.seconds:
            return sum(mine) / len(mine) if mine else arm.seconds
        rows = [r["wall_s"] for r in previous if r["row"] == row.id and r.get("wall_s")]
        return sum(rows) / len(rows) if rows else row.seconds

    return sum(seconds(row, arm) for row, arm, _ in todo) / jobs


def chosen_rows(args) -> list[Row]:
    """The rows ``--rows`` names, in its order (every row when it names none); a one-line SystemExit for an unknown
    row or for ``--seeds`` or ``--jobs`` below 1."""
    names = [n for n in args.rows.split(",") if n] if args.rows else list(ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise SystemExit(f"error: unknown reproduce row {unknown[0]!r}; choose from {', '.join(ROWS)}")
    if args.seeds < 1 or args.jobs < 1:
        raise SystemExit(f"error: --seeds and --jobs must be at least 1, got {args.seeds} and {args.jobs}")
    return [ROWS[n] for n in names]


def record_file(args) -> Path:
    """Where the sweep's record goes, its figures in ``figures/`` beside it: the published ``RECORD``
    (``docs/reproduce.json``, ``docs/figures``) only with ``--publish``; a trial's own ``TRIAL_RECORD`` in
    ``--results`` otherwise, the published record and figures left as they are."""
    return RECORD if args.publish else Path(args.results) / TRIAL_RECORD


def recorded_runs(path: Path) -> list[dict]:
    """The runs a record at ``path`` holds ([] where there is none)."""
    return json.loads(path.read_text())["runs"] if path.is_file() else []


def minutes(seconds: float) -> str:
    """'12 min', or '0.4 min' under ten minutes."""
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"


def list_rows(args) -> str:
    """``--list``: each row (those ``--rows`` names), its arms, the runs still to train in ``--reproduce-runs`` at
    ``--seeds`` and how long they should take ``--jobs`` at a time (``estimate``: each run as long as in the last
    sweep recorded, else its row's guess), then the whole sweep's."""
    rows, folder, history = chosen_rows(args), Path(args.reproduce_runs), recorded_runs(RECORD)
    lines = [f"reproduce rows at {args.seeds} seeds, {args.jobs} at a time (runs kept in {folder}):"]
    every = []
    for row in rows:
        runs = [(row, arm, seed) for arm in row.arms for seed in range(args.seeds)]
        todo = [r for r in runs if not (run_dir(folder, *r) / "eval_test.json").is_file()]
        every += todo
        lines.append(f"  {row.id:<22} {len(row.arms)} arm{'s' if len(row.arms) > 1 else ' '}  {len(todo):>3} of "
                     f"{len(runs):>3} runs to train, about {minutes(estimate(todo, args.jobs, history)):>8}  "
                     f"{row.title}")
    lines.append(f"  {'all':<22} {len(every)} runs to train, about {minutes(estimate(every, args.jobs, history))}")
    return "\n".join(lines)


def interrupted_note(args) -> str:
    """Where an interrupted sweep keeps the runs it finished (the same command trains only the others)."""
    folder = Path(args.reproduce_runs) / ("presets" if args.presets else "")
    return f"the runs finished so far are kept in {folder}; the same command trains only the others"


def reproduce(args) -> list[dict]:
    """The papers' experiments (``--rows``, default every row) over ``--seeds``, ``--jobs`` runs at a time, into
    ``--reproduce-runs`` (a run evaluated there is kept); their record and figures where ``record_file`` says: the
    published ``docs/reproduce.json`` and ``docs/figures`` only with ``--publish``. ``--presets``: the results
    table's sweep instead (``reproduce_presets``)."""
    if args.presets:
        if args.rows:
            raise SystemExit("error: --rows and --presets choose different sweeps (the papers' experiments, the "
                             "results table's presets); give one")
        return reproduce_presets(args)
    from practice_torch.engine.checkpoint import atomic_write
    from practice_torch.results import machine
    from project.environment import commit, describe

    rows, seeds = chosen_rows(args), range(args.seeds)
    names = [row.id for row in rows]
    path = record_file(args)
    folder = Path(args.reproduce_runs)
    runs = [(row, arm, seed) for row in rows for arm in row.arms for seed in seeds]
    todo = [r for r in runs if not (run_dir(folder, *r) / "eval_test.json").is_file()]
    previous = recorded_runs(path)
    print(f"reproduce: {len(runs)} runs ({len(todo)} to train) of {', '.join(names)}, {args.seeds} seeds, {args.jobs} "
          f"at a time: about {estimate(todo, args.jobs, recorded_runs(RECORD)) / 60:.0f} min on this "
          f"machine; runs kept in {folder}; the record: {path}"
          + ("" if args.publish else " (a trial: --publish writes the published one)"), flush=True)
    load_before = round(os.getloadavg()[0], 2)

    def one(run):
        row, arm, seed = run
        out = run_dir(folder, row, arm, seed)
        wall = train_and_evaluate(out, arm, seed, row.sample_metrics, samples=row.eval_samples)
        result = record_of(row, arm, seed, out)
        print(f"  {row.id} {arm.name} seed {seed}: {row.label} {result['value']:.{row.digits}f}"
              f"{' (target missed)' if result['holds'] is False else ''}, {wall:.0f} s", flush=True)

    each(one, todo, args.jobs)
    records = [record_of(*run, run_dir(folder, *run)) for run in runs]
    meta = {"commit": commit(ignoring=(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),)),
            "machine": machine({**describe(), "cores": os.cpu_count()}), "load_before": load_before,
            "load_after": round(os.getloadavg()[0], 2), "jobs": args.jobs, "date": time.strftime("%Y-%m-%d")}
    kept = [r for r in previous if r["row"] not in names]  # other rows' runs stay as they were recorded
    trained = {row.id for row, _, _ in todo}  # a row none of whose runs trained now keeps the conditions recorded
    old_meta = json.loads(path.read_text())["meta"] if path.is_file() else {}
    record = {"meta": {**old_meta, **{n: meta for n in names if n in trained or n not in old_meta}},
              "rows": {n: describe_row(ROWS[n]) for n in ROWS}, "runs": kept + records}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    print(f"wrote {path}; " + ("`make docs` puts it on the pages" if args.publish else
                               f"a trial: {RECORD} and its figures are left as they are (--publish writes them)"))
    figures = path.parent / "figures"
    for row in rows:
        if row.curve:
            out = figures / f"reproduce_{row.id}.png"
            print(f"wrote {draw_curves(row, folder, list(seeds), record['meta'][row.id], out)}")
        if row.pictures:
            out = figures / f"reproduce_{row.id}_pictures.png"
            print(f"wrote {draw_pictures(row, folder, record['meta'][row.id], out)}")
    return [{k: v for k, v in r.items() if k != "metrics"} for r in records]


def each(one: Callable, todo: list, jobs: int) -> None:
    """``one`` of every item of ``todo``, ``jobs`` at a time (threads, each waiting on its child processes), or in
    this thread when one at a time. Interrupted (Ctrl-C), it starts no more and kills the runs' children
    (``CHILDREN``) before it lets the interrupt through; the items finished are kept."""
    CHILDREN.restart()
    if jobs == 1:
        for item in todo:
            one(item)
        return
    with ThreadPoolExecutor(jobs) as pool:
        try:
            list(pool.map(one, todo))
        except KeyboardInterrupt:
            CHILDREN.stop()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def draw_pictures(row: Row, folder: Path, meta: dict, out: Path | None = None) -> Path:
    """``docs/figures/reproduce_<row>_pictures.png``: each of ``row.pictures`` (a stem of a run's ``samples/``
    images) of every arm's seed-0 run, a row an arm (an arm without that picture, a GAN's reconstructions, left
    blank), titled with the commit and the machine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(row.arms), len(row.pictures), squeeze=False,
                             figsize=(3.2 * len(row.pictures), 3.3 * len(row.arms)))
    for i, arm in enumerate(row.arms):
        for j, stem in enumerate(row.pictures):
            ax, image = axes[i][j], run_dir(folder, row, arm, 0) / "samples" / f"{stem}.png"
            if image.is_file():
                ax.imshow(mpimg.imread(image), cmap="gray")
            ax.set_title(f"{arm.name}: {stem if image.is_file() else f'no {stem}'}", fontsize=9)
            ax.axis("off")
    fig.suptitle(f"{row.title}, seed 0\n{meta['commit']} · {meta['machine']}", fontsize=8)
    out = out or RECORD.parent / "figures" / f"reproduce_{row.id}_pictures.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def logged_curve(out: Path, x: str, y: str) -> list[tuple[float, float]]:
    """(x, y) of every line of a run's metrics.jsonl that logs both."""
    lines = (json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip())
    return [(line[x], line[y]) for line in lines if x in line and y in line]


def draw_curves(row: Row, folder: Path, seeds: list[int], meta: dict, out: Path | None = None) -> Path:
    """``docs/figures/reproduce_<row>.png``: each arm's logged ``row.curve`` over the seeds, mean and a band of one
    standard deviation (on the first seed's x, every seed cut to the shortest), beside the published points with
    their standard deviations; titled with the commit, the machine and the load."""
    import numpy as np

    from benchmarks.plots import new_axes, save

    x_key, y_key, label = row.curve
    fig, ax = new_axes((7, 4))
    for k, arm in enumerate(row.arms):
        curves = [logged_curve(run_dir(folder, row, arm, seed), x_key, y_key) for seed in seeds]
        n = min(len(c) for c in curves)
        xs, ys = np.array([x for x, _ in curves[0][:n]]), np.array([[y for _, y in c[:n]] for c in curves])
        mean, sd = ys.mean(0), ys.std(0, ddof=1) if len(ys) > 1 else np.zeros(n)
        ax.plot(xs, mean, color=f"C{k}", lw=1.5, label=f"{arm.name}: mean +- sd over {len(seeds)} seeds")
        ax.fill_between(xs, mean - sd, mean + sd, color=f"C{k}", alpha=0.2)
    for k, (whose, x, y, sd) in enumerate(row.published):
        ax.errorbar([x], [y], yerr=[sd], fmt="s^v"[k % 3], color="k", ms=5, capsize=3, label=whose)
    ax.set(xlabel=x_key.replace("_", " "), ylabel=label,
           title=f"{row.title}\n{meta['commit']} · {meta['machine']}\n{meta['jobs']} runs at a time, one thread each "
                 f"· load average {meta['load_before']} before, {meta['load_after']} after")
    ax.title.set_fontsize(8)
    out = out or RECORD.parent / "figures" / f"reproduce_{row.id}.png"
    save(fig, ax, out)
    return out


def describe_row(row: Row) -> dict:
    """What the pages say of a row beside its figures (the record keeps it, so docs need not import the rows)."""
    return {"title": row.title, "topics": list(row.topics), "paper": row.paper, "protocol": row.protocol,
            "paper_figure": row.paper_figure, "label": row.label, "target": row.target, "digits": row.digits,
            "beside": [list(pair) for pair in row.beside], **({"gap": list(row.gap)} if row.gap else {}),
            "arms": [{"name": a.name, "model": a.model, "dataset": a.dataset, "sets": list(a.sets),
                      **({"paper": a.paper} if a.paper else {})} for a in row.arms]}


# The results table's sweep (``--presets``) ----------------------------------------------------------------------------
def sweepable(results: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the front page's rows that are a quick preset as it comes, on PyTorch, or one that builds on runs the sweep
    trains first (``parents_of``): the presets ``--presets`` trains over seeds; the other front-page rows, trained
    otherwise), in the course's order."""
    from shared_specs.docs import front_rows, in_course_order

    rows = in_course_order(front_rows(results))
    plain = [r for r in rows if parents_of(r) is not None]
    return plain, [r for r in rows if r not in plain]


# The runs a preset builds on that the sweep trains first, a seed each, shared by every preset that names them: the
# model key a row names -> that run's model and data set, its quick preset as it comes. A model whose engine trains
# its own (``prerequisite_runs``: latent diffusion's autoencoder) is swept as it comes.
PARENTS = {"model.reference": ("language_model", "shakespeare"), "model.generator": ("gan", "fashion_mnist")}


def parents_of(row: dict) -> tuple[str, ...] | None:
    """The ``PARENTS`` keys the sweep trains first for ``row``'s preset: () for a quick preset as it comes (or one
    whose model trains its own prerequisites), None for a row it cannot train as it comes (trained in JAX, a setting
    changed, or a parent the sweep does not know)."""
    from practice_torch.models import get_model
    from shared_specs.docs import plain_preset

    if row["preset"] != "quick" or row.get("backend") or not plain_preset(row):
        return None
    if not row["changes"] or hasattr(get_model(row["model"]), "prerequisite_runs"):
        return ()
    needs = tuple(key for key in PARENTS if any(c.startswith(key) for c in row["changes"]))
    named = all(any(c.startswith(key) for key in needs) for c in row["changes"])  # model.reference_step too
    return needs if needs and named else None


def parent_dir(folder: Path, key: str, seed: int) -> Path:
    model, dataset = PARENTS[key]
    return folder / "parents" / f"{model}-{dataset}" / f"seed-{seed}"


def one_thread_seconds(row: dict) -> float:
    """A results row's training time on one thread, as the sweep trains: its own where it ran on one (an earlier
    sweep's, or ``train.threads=1``), else its time times the cores it had (the runs use all of them by default; these
    small networks scale nearly linearly to 2: the GAN quick preset took 223 s on 2 threads and 460 s on one)."""
    alone = "one thread each" in row.get("load", "") or "train.threads=1" in row.get("changes", [])
    cores = re.search(r"(\d+) cores?", row.get("machine", ""))
    return row["train_seconds"] * (1 if alone else int(cores.group(1)) if cores else 1)


def over_seeds_changes(row: dict) -> list[str]:
    """A swept run's changes as the row over its seeds says them: the runs it builds on (a path a seed, and what the
    run recorded of them) said once, as the model key and the run's model, trained first a seed each."""
    from practice_torch.models import get_model
    from shared_specs.docs import BOOKKEEPING

    builds_on = getattr(get_model(row["model"]), "BUILDS_ON", {})
    named = [key for key in builds_on if any(c.startswith(f"model.{key}=") for c in row["changes"])]
    kept = [c for c in row["changes"] if not (named and c.startswith(BOOKKEEPING) and c.startswith("model."))]
    return kept + [f"model.{key}=(a {builds_on[key]} run a seed, trained first)" for key in named]


def over_seeds(rows: list[dict], load: str) -> dict:
    """One results row of a preset trained once a seed (``rows``: seed 0 first, as ``practice_torch.results`` reads
    each run): seed 0's settings, the headline and every metric all the seeds report as their mean over the seeds,
    with the headline's sd, min and the seeds' own values, the training time a run's mean; ``load`` says how it ran."""
    import statistics

    values = [r["value"] for r in rows]
    numeric = [k for k, v in rows[0]["metrics"].items()
               if isinstance(v, (int, float)) and all(isinstance(r["metrics"].get(k), (int, float)) for r in rows)]
    return {**rows[0], "changes": over_seeds_changes(rows[0]), "value": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "values": values,
            "seeds": len(rows),
            "train_seconds": round(statistics.fmean(r["train_seconds"] for r in rows), 1), "load": load,
            "run": "python -m benchmarks reproduce --presets --publish",
            "metrics": {k: statistics.fmean(r["metrics"][k] for r in rows) for k in numeric}}


# eval's sample metrics (``practice_torch.evaluation.samples``): a preset whose headline is one of them is evaluated
# with them; the others without (10 000 samples of an autoregressive model take longer than its training)
SAMPLE_METRICS = ("fid", "inception_score", "kid", "precision", "recall")


def reproduce_presets(args, results_file: Path | None = None, train: Callable = train_and_evaluate) -> list[dict]:
    """``--presets [MODEL,...]``: every front-page quick preset (``sweepable``; or those named) trained and evaluated
    once a seed by ``train`` (``train_and_evaluate``), ``--jobs`` at a time on one thread each, into
    ``DIR/presets/<model>-<data set>/seed-<k>``; each preset's results row replaced by the mean over the seeds
    (``over_seeds``) in ``results_file`` (``docs/results.json``) with ``--publish``, else in a trial's own
    ``TRIAL_PRESETS`` in ``--results``, the published table left as it is."""
    from practice_torch.results import RESULTS_FILE, add_rows, result_row

    results_file = results_file or RESULTS_FILE
    target = results_file if args.publish else Path(args.results) / TRIAL_PRESETS
    if args.seeds < 1 or args.jobs < 1:
        raise SystemExit(f"error: --seeds and --jobs must be at least 1, got {args.seeds} and {args.jobs}")
    plain, others = sweepable(json.loads(results_file.read_text()) if results_file.is_file() else [])
    named = [n for n in args.presets.split(",") if n and n != "all"]
    unknown = [n for n in named if n not in {r["model"] for r in plain}]
    if unknown:
        raise SystemExit(f"error: {unknown[0]!r} has no quick preset as it comes on the front page; choose from "
                         f"{', '.join(r['model'] for r in plain)}")
    chosen = [r for r in plain if not named or r["model"] in named]
    folder = Path(args.reproduce_runs) / "presets"
    runs = [(r, seed) for r in chosen for seed in range(args.seeds)]
    where = {(r["model"], seed): folder / f"{r['model']}-{r['dataset']}" / f"seed-{seed}" for r, seed in runs}
    todo = [(r, seed) for r, seed in runs if not (where[r["model"], seed] / "eval_test.json").is_file()]
    parents = sorted({(key, seed) for r, seed in todo for key in parents_of(r)})
    parents_todo = [p for p in parents if not (parent_dir(folder, *p) / "eval_test.json").is_file()]
    by_model = {(r["model"], r["dataset"]): r for r in json.loads(results_file.read_text())} if \
        results_file.is_file() else {}
    seconds = [one_thread_seconds(r) for r, _ in todo] + [one_thread_seconds(by_model[PARENTS[key]]) for key, _ in
                                                          parents_todo if PARENTS[key] in by_model]
    minutes = sum(t + 40 for t in seconds) / args.jobs / 60  # + start-up and evaluation
    first = f", after {len(parents_todo)} they build on" if parents_todo else ""
    print(f"reproduce --presets: {len(runs)} runs ({len(todo)} to train{first}) of {len(chosen)} quick presets, "
          f"{args.seeds} seeds, {args.jobs} at a time: about {minutes:.0f} min on "
          f"this machine (their recorded times); runs kept in {folder}"
          + (f"; not swept (trained otherwise): {', '.join(r['model'] for r in others)}" if others and not named
             else ""), flush=True)
    load_before = round(os.getloadavg()[0], 2)

    def parent(run):
        key, seed = run
        model, dataset = PARENTS[key]
        wall = train(parent_dir(folder, key, seed), Arm(model, model, dataset), seed)
        print(f"  {model} on {dataset} seed {seed} (for {key}): {wall:.0f} s", flush=True)

    def one(run):
        row, seed = run
        sets = tuple(f"{key}={parent_dir(folder, key, seed)}" for key in parents_of(row))
        wall = train(where[row["model"], seed], Arm(row["model"], row["model"], row["dataset"], sets), seed,
                     sample_metrics=row.get("metric") in SAMPLE_METRICS)
        print(f"  {row['model']} on {row['dataset']} seed {seed}: {wall:.0f} s", flush=True)

    each(parent, parents_todo, args.jobs)
    each(one, todo, args.jobs)
    load = (f"idle: {args.jobs} run{'s' if args.jobs > 1 else ''} at a time, one thread each (load average "
            f"{load_before} before, {round(os.getloadavg()[0], 2)} after)")
    trained = {r["model"] for r, _ in todo}  # a preset none of whose runs trained now keeps the row recorded
    swept = [over_seeds([result_row(where[r["model"], seed], load) for seed in range(args.seeds)], load)
             for r in chosen if r["model"] in trained or r.get("seeds") != args.seeds]
    add_rows(swept, target)
    print(f"wrote {len(swept)} rows, each the mean over {args.seeds} seeds, into {target}; "
          + ("`make docs` renders them" if args.publish else
             f"a trial: {results_file} is left as it is (--publish writes it)"))
    return swept
