"""The rows of ``python -m benchmarks reproduce`` (``benchmarks/reproduce.py`` runs them): each row one paper's
experiment, its arms (a model, a data set and its settings each) and the target every seed must meet. A row is data:
the sweep, the record and the pages read it; nothing here trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


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
    the ``published`` points of peers; ``baselines``: the arms run beside the row's subject for comparison (another
    model's encoder read by the same probe), never judged against its target nor the front page's headline."""

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
    baselines: tuple[str, ...] = ()  # arm names: beside the subject, not judged against the target



# The figures that are better low (a distance, an error): which arm a summary calls a row's best. The others (modes
# covered, accuracies, returns, the mutual information gap) are better high.
LOWER_IS_BETTER = frozenset({"fid", "fid_samples", "fid_one_step", "w1_exact", "w2_one_step", "nll_bits_per_dim"})


def run_dir(folder: Path, row: Row, arm: Arm, seed: int) -> Path:
    """Where a sweep into ``folder`` trains (``row``, ``arm``, ``seed``): ``folder/<row>/<arm>-<seed>``."""
    return folder / row.id / f"{arm.name}-{seed}"

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

# The unrolled GAN at Metz et al.'s own rates (their toy code's Adam at 1e-4 for the discriminator against 1e-3 for the
# generator, 10 look-ahead steps of the discriminator's own Adam), an arm of both mode-collapse rows; and on the grid,
# WGAN-GP at five times its quick preset's updates (its cosine decay stretched to them).
def metz_arm(dataset: str) -> Arm:
    return Arm("unrolled_metz", "gan", dataset, ("train.lr=1e-3", "model.discriminator_lr=1e-4",
                                                 "model.unrolled_steps=10", "model.unroll_optimizer=adam"))


GRID_LONGER_ARMS = (metz_arm("grid25"), Arm("wgan_gp_10k", "wgan", "grid25", ("train.steps=10000",)))

# PacGAN's grid settings (fjxmlzn/PacGAN, synthetic_data_experiments/2DGrid_GAN&PacGAN/config.py): a 2-d normal latent,
# Adam 1e-4 with beta1 0.8 held constant, 100 packed groups a batch, D and G updated together. 100 000 updates of its
# 400 000 (400 epochs of 100 000 points): a full run of PacGAN4 would take over three hours on one thread.
PACGAN_PAPER = ("model.latent_dim=2", "model.hidden=400,400,400,400", "model.discriminator_steps=0", "train.lr=1e-4",
                "train.betas=0.8,0.999", "train.warmup_steps=0", "train.min_lr_ratio=1", "train.steps=100000",
                "train.checkpoint_every=10000", "train.log_every=500")
PACGAN_PLAYERS = ("model.architecture=pacgan", "model.discriminator_hidden=200,200,200", "model.pieces=5")
PACGAN_FIGURES = {1: "17.3 +- 0.8 (94.8% high quality, reverse KL 0.70)", 2: "23.8 +- 0.7 (91.3%, 0.13)",
                  4: "24.8 +- 0.2 (93.6%, 0.04)"}  # PacGAN's Table 1, by the number of samples packed
# Each pack with the project's MLPs, then with PacGAN's players as its code builds them (``model.architecture=pacgan``:
# a batch-normalised generator of four layers of 400, a discriminator of three maxout layers of 200 units and 5
# pieces, N(0, 0.02^2) weights), half a thousand seconds slower
PACGAN_PAPER_ARMS = tuple(
    Arm(f"{'gan' if m == 1 else f'pacgan{m}'}_paper{suffix}", "gan", "grid25",
        (f"model.pack={m}", f"train.batch_size={100 * m}", *PACGAN_PAPER, *players), PACGAN_FIGURES[m], seconds + slower)
    for suffix, players, slower in (("", (), 0.0), ("_players", PACGAN_PLAYERS, 500.0))
    for m, seconds in ((1, 2000.0), (2, 2500.0), (4, 3000.0)))

CASCADE_SAMPLER = ("model.sampler=ddim", "model.sample_steps=50")  # the cascade row's sampler, every arm's

SSM_ARMS = (Arm("s4d", "ssm", "{task}", ("model.kind=s4d", "model.channels=144", "model.state=16"), "{s4d}"),
            Arm("mamba", "ssm", "{task}", (), "{mamba}"), Arm("transformer", "language_model", "{task}", (), "{tf}"))
SSM_PROTOCOL = ("Each arm its quick preset on {what}: 2 layers of about 60k parameters (Mamba of width 64 with N = 8, "
                "S4D of width 144 with N = 16, a Transformer of width 48 with rotary positions), batches of 32, AdamW "
                "at 5e-3 (the SSMs) or 2e-3 (the Transformer); the share of the answers right on 2 000 test "
                "sequences{longer}")


# The induction-heads rows' target (every answer at the training length of 64, 0.9 at 16 times it) and the longer
# lengths' scores beside it
def induction_target(length: int) -> tuple[str, Callable[[dict], bool]]:
    """The induction-heads rows' target for a training ``length``: (its words, its test on a run's metrics)."""
    return ("every answer right at the training length and at least 0.9 at 16 times it, on every seed",
            lambda m: m["accuracy"] >= 0.99 and m.get(f"accuracy_{16 * length}", 0.0) >= 0.9)


def induction_beside(length: int) -> tuple[tuple[str, str], ...]:
    """The accuracies at 2 to 16 times the training ``length``, beside the rows' figure."""
    return tuple((f"accuracy_{length * k}", f"at {length * k}") for k in (2, 4, 8, 16))


INDUCTION_TARGET, INDUCTION_BESIDE = induction_target(64), induction_beside(64)
INDUCTION_PAPER = ("Gu & Dao 2023 (Mamba), Table 2: 2-layer models trained on sequences of 256, vocabulary 16: Mamba "
                   "answers every test right at every length up to 2^20 (4 096 times), the attention models "
                   "(absolute, rotary and xPos positions) fail beyond about twice it; H3 and Hyena fall off too")


def induction_row(task: str, title: str, length: int, what: str, lengths: str, seconds: float) -> Row:
    """An induction-heads row: S4D, Mamba and the Transformer trained on ``task``'s sequences of ``length``,
    scored at it and at 2 to 16 times it (``lengths``: those lengths in words, or "")."""
    return Row(task, ("ssm",), title, INDUCTION_PAPER,
               SSM_PROTOCOL.format(what=what, longer=f", and on 500 sequences at 2 to 16 times the length{lengths}"),
               "-", ssm_arms(task, "-", "1.00 to 2^20", "fails past about 2x (MHA-RoPE)"),
               "accuracy", "answers right at the training length", *induction_target(length),
               beside=induction_beside(length), seconds=seconds)


def ssm_arms(task: str, s4d: str, mamba: str, tf: str) -> tuple[Arm, ...]:
    """The synthetic-task rows' arms on ``task``, each with the paper's figure for its kind of model."""
    return tuple(Arm(a.name, a.model, task, a.sets, a.paper.format(s4d=s4d, mamba=mamba, tf=tf)) for a in SSM_ARMS)


def families_row(name: str, which: str, *arms: tuple[str, str], protocol: str, seconds: float,
                 eval_samples: int = 0) -> Row:
    """A row of the families table (docs/families.md, ``shared_specs.families``): each arm (name, model) its
    Fashion-MNIST quick preset as it comes, scored on its samples beside the milliseconds a sample took."""
    return Row(name, tuple(model for _, model in arms), f"The families on one table: {which}",
               "Xiao et al. 2022 (the generative learning trilemma), Figure 1: GANs sample fast and sharply but cover "
               "less, likelihood models cover and sample slowly or blur, diffusion covers and samples slowly; no "
               "figure of theirs is for Fashion-MNIST",
               f"Each arm its Fashion-MNIST quick preset as it comes: {protocol} against the test split, beside "
               "precision, recall and the wall milliseconds a sample took to draw on one thread; docs/families.md "
               "sets them beside the models other rows measure", "-",
               tuple(Arm(arm, model, "fashion_mnist") for arm, model in arms),
               "fid", "FID (project features)", "none: a comparison of the families at their quick presets", None,
               beside=(("precision", "precision"), ("recall", "recall"), ("sample_ms", "ms a sample")), digits=1,
               seconds=seconds, sample_metrics=True, pictures=("samples",), eval_samples=eval_samples)


def disentanglement_arms() -> tuple[Arm, ...]:
    """The disentanglement row's arms: each default variant of ``benchmarks.disentanglement`` (``beta=4`` -> arm
    ``beta4``, ``--set model.beta=4``) on the galaxies' quick preset, named as that benchmark names its runs' folders,
    so that it draws its traversals from this row's runs (``--dis-runs``)."""
    from benchmarks.disentanglement import VARIANTS, run_name, variant_set

    return tuple(Arm(run_name(v), "vae", "galaxies", (variant_set(v),)) for v in VARIANTS.split(","))


# Donahue et al.'s MNIST settings (jeffdonahue/bigan, train_mnist.sh and train_gan.py's defaults), 20 of their 400 epochs
BIGAN_PAPER = ("model.latent_dim=50", "model.prior=uniform", "model.discriminator_steps=0", "model.r1=0",
               "train.batch_size=128", "train.lr=2e-4", "train.weight_decay=2.5e-5", "train.warmup_steps=0",
               "train.schedule=exponential", "train.min_lr_ratio=0.01", "train.steps=9380")

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
        "1 000 samples to as many test points beside the floor, and split in two: the W1 of the modes' weights (each "
        "point moved to its nearest mode's centre) and the samples' mean distance to that centre, each beside the "
        "test points' own", "converges (Figure 1)",
        (Arm("gaussians25_10k", "wgan", "gaussians25", ("train.steps=10000",)), WGAN_PAPER_ARM),
        "w1_exact", "W1 to the test points", "W1 within 1.5 times the floor on every seed",
        lambda m: m["w1_exact"] <= 1.5 * m["w1_floor"],
        beside=(("w1_floor", "W1 floor"), ("modes_captured", "modes captured"), ("high_quality", "high-quality share"),
                ("w1_weights", "the modes' weights' W1"), ("w1_weights_floor", "its floor"),
                ("centre_distance", "distance to a mode's centre"), ("centre_distance_floor", "the test points'")),
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
        "posterior mean, each 32-dimensional as E(x) is, from their quick presets on every class. The arm "
        "`bigan_paper` trains the paper's MNIST settings (jeffdonahue/bigan, train_mnist.sh) on Fashion-MNIST (MNIST "
        "is not on this machine: torchvision would download it) with the quick preset's networks (the paper's are "
        "MLPs of 1 024 units): z ~ U[-1, 1]^50, batches of 128, Adam at "
        "2e-4 with beta1 0.5, weight decay 2.5e-5 (AdamW's, the paper's is an L2 term), D, E and G updated "
        "together, no R1, the peak rate for half the run and then exponentially to a hundredth; 20 epochs of the "
        "paper's 400 (9 380 steps: the 187 600 would take about 8 hours a run on one thread); E's codes squashed "
        "into the cube, 2 sigmoid(a) - 1, as its code does. The arm `bigan_r1_100` is the quick preset with R1 at 100 "
        "in place of 10, the next hypothesis for a generator that trains on every seed",
        "E(x) above the pixels", (Arm("bigan", "bigan", "fashion_mnist"),
                                  Arm("bigan_r1_100", "bigan", "fashion_mnist", ("model.r1=100",)),
                                  Arm("bigan_paper", "bigan", "fashion_mnist", BIGAN_PAPER, seconds=1750.0),
                                  Arm("autoencoder", "autoencoder", "fashion_mnist",
                                      ("model.code_dim=32", "model.holdout_class=-1"), "-"),
                                  Arm("vae", "vae", "fashion_mnist", ("model.latent_dim=32",), "-")),
        "probe_accuracy", "probe accuracy on the representation", "above the pixels' probe on every seed",
        lambda m: m["probe_accuracy"] > m["probe_accuracy_inputs"],
        beside=(("probe_accuracy_inputs", "the pixels' probe"), ("probe_accuracy_untrained", "an untrained E's"),
                ("fid_samples", "G's FID"), ("class_share_min", "the rarest class's share of G's samples"),
                ("discriminator_loss", "D's held-out loss (log 4 = 1.386 at balance)")),
        seconds=240.0, baselines=("autoencoder", "vae"), pictures=("samples", "reconstructions")),
    Row("gan_ring", ("gan",), "Mode collapse on the 2-D ring",
        MODE_COLLAPSE_PAPER.format(what="ring, 8 Gaussians on the unit circle", std="0.01"), MODE_COLLAPSE_PROTOCOL,
        "-", (*mode_collapse_arms("ring8", {"gan": "6.3 +- 0.5 (98.2% high quality, reverse KL 0.45)",
                                            "pacgan2": "7.9 +- 0.1 (95.6%, 0.07)",
                                            "pacgan4": "7.8 +- 0.1 (95.9%, 0.07)"}),
              metz_arm("ring8")),
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
    Row("gan_grid_paper", ("gan",), "Mode collapse on the 2-D grid at PacGAN's own settings",
        MODE_COLLAPSE_PAPER.format(what="grid, 25 Gaussians on {-4, -2, 0, 2, 4}^2", std="0.05"),
        "PacGAN's code's settings for the grid: a 2-d normal latent, Adam at a constant 1e-4 with beta1 0.8, "
        "batches of 100 packed groups (100, 200 and 400 points for packs of 1, 2 and 4), the discriminator and "
        "the generator updated together; the project's MLPs of four 400-wide LeakyReLU layers each way, and in the "
        "arms named players PacGAN's own (model.architecture=pacgan: a generator of four 400-wide layers with "
        "BatchNorm before each ReLU, a discriminator of three maxout layers of 200 units and 5 pieces, weights from "
        "N(0, 0.02^2)); 100 000 updates, a quarter of its 400 epochs of 100 000 points (a full PacGAN4 run would "
        "take over three hours on one thread); 2 500 samples scored as the papers do", "-", PACGAN_PAPER_ARMS,
        "modes_captured", "modes captured of 25", "at least 24 of 25 on every seed (the best remedy)",
        lambda m: m["modes_captured"] >= 24, beside=MODE_COLLAPSE_BESIDE, digits=1, seconds=2500.0,
        pictures=("samples",)),
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
    Row("consistency_fashion_mnist", ("flow_matching",),
        "Consistency distillation on Fashion-MNIST beside its teacher's Euler sampler",
        "Song, Dhariwal, Chen & Sutskever 2023 (consistency models), Table 1: consistency distillation samples "
        "CIFAR-10 in one step at FID 3.55 and in two at 2.93 (distilled from an EDM teacher, 800 000 steps of 512); "
        "no figure of theirs is for Fashion-MNIST",
        "Each run trains its teacher, the flow-matching quick preset on Fashion-MNIST (the class-conditional U-Net "
        "of C = 32, 1 500 steps of 64, guidance 1), with the run's seed, then distils it with the same preset's "
        "optimiser and steps from the teacher's weights: N = 20 Euler steps of the guided teacher, the target's EMA "
        "0.95, sigma_data 0.5, the squared L2 distance. FID on the project's features of 2 000 samples in one step "
        "(t = 0) and in two (t = 0 and 0.5), beside the teacher's guided Euler sampler at 1, 2, 4 and 20 steps from "
        "the same noise and classes, against the test split", "-",
        (Arm("consistency", "flow_matching", "fashion_mnist", ("model.consistency=true",)),),
        "fid_one_step", "FID of one step", "one step below the teacher's Euler sampler at 4 steps on every seed",
        lambda m: m["fid_one_step"] < m["teacher_fid_euler_4"],
        beside=(("fid_two_step", "two steps"), ("teacher_fid_euler_1", "the teacher's Euler, 1 step"),
                ("teacher_fid_euler_2", "2 steps"), ("teacher_fid_euler_4", "4 steps"),
                ("teacher_fid_euler_20", "20 steps"), ("precision", "precision"), ("recall", "recall")),
        digits=1, seconds=5400.0, sample_metrics=True, pictures=("samples",), eval_samples=2000),
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
    families_row("families", "the fast samplers", ("wgan_gp", "wgan"), ("latent_diffusion", "latent_diffusion"),
                 ("coupling_flows", "coupling_flows"), protocol="WGAN-GP, latent diffusion and the RealNVP coupling "
                 "flow; FID on the project's features of 10 000 samples", seconds=600.0),
    families_row("families_slow_samplers", "the slow samplers", ("pixelcnn", "pixelcnn"),
                 ("flow_matching", "flow_matching"), ("ebm", "ebm"), protocol="PixelCNN (784 network passes a "
                 "sample), flow matching (an ODE solve through the U-Net) and the EBM (Langevin chains); FID on the "
                 "project's features of 2 000 samples (as the cascade's row: 10 000 would take hours a run)",
                 seconds=1800.0, eval_samples=2000),
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
    induction_row("induction_heads", "Induction heads, tested at up to 16 times the training length", 64,
                  "sequences of 64 (1 000 steps)", "", 120.0),
    # Mamba: about 1.2 s a step at 256 on one thread (20 steps in 47 s at load 3.9 on 2 cores)
    induction_row("induction_heads_256", "Induction heads at the paper's training length, 256", 256,
                  "the paper's sequences of 256 (`induction_heads_256`, 1 000 steps)", " (512 to 4 096)", 1200.0),
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
