"""CycleGAN's training interface (``practice_torch.models``): unpaired translation between two image domains.

``python -m practice_torch train style_transfer`` trains G: A -> B and F: B -> A between two class-split domains of
fashion_mnist, by default A = sneakers (class 7) and B = ankle boots (class 9): ``--set model.domain_a=0
--set model.domain_b=1`` (T-shirts/tops <-> trousers) picks others, ``--dataset digits`` works the same on 8x8
digits. The domains are the images of those classes in the training split the engine loaded (``domains``, so
``data.data_dir``, ``data.classes`` and ``data.limit`` hold); each step takes one unpaired batch from each, which
the engine draws from its generator (with replacement) and appends to its batch, so a resumed run repeats them
exactly. The split's own batch (x, y) in front of them only sets the batch size: its images are not used.

The loss (Zhu et al. 2017, eq. 3 and sec. 5.2): the least-squares GAN losses of both directions (Mao et al. 2017,
CycleGAN's choice; ``model.gan_loss=non_saturating`` for the binary cross-entropy of ``practice_torch.gan``), plus
``cycle_weight`` (10) times ``cycle_loss`` and ``identity_weight`` (5) times ``identity_loss``. By default
(``model.discriminator_steps=0``) every step updates both players from one forward pass, as CycleGAN's own training loop does
(the translators on their losses, the discriminators on the same translations, detached), each player with its own
AdamW; ``model.discriminator_steps=k`` alternates them as the GAN's players do: k updates of both discriminators, then one of
both translators (``train_step``), so ``train.steps`` counts the translators' updates.

``eval``: the cycle reconstruction error |F(G(a)) - a| and |G(F(b)) - b| on held-out images of both domains, and,
through the project's feature classifier of the data set, how often G(a) is called a member of domain B against how
often the untranslated a is (the baseline) and the real b are (the ceiling); likewise F(b) in A; the FID between G(a)
and held-out b against that between a and b. ``sample``: the translations G(a) of held-out images first, then grids
a / G(a) / F(G(a)) and b / F(b) / G(F(b)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from practice_torch.data import stacked
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.players import Player
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.engine.runs import sibling_split
from practice_torch.gan.functions import discriminator_loss, generator_loss_nonsaturating
from practice_torch.models import Artefact
from practice_torch.style_transfer.functions import cycle_loss, identity_loss
from practice_torch.style_transfer.networks import CycleGAN

GAN_LOSSES = ("least_squares", "non_saturating")


@dataclass
class Config:
    """CycleGAN's hyperparameters: the run's ``model.*`` keys (``--set model.domain_a=0``)."""

    domain_a: tuple[int, ...] = (7,)  # the classes of domain A (fashion_mnist 7: sneakers)
    domain_b: tuple[int, ...] = (9,)  # the classes of domain B (fashion_mnist 9: ankle boots)
    domain_limit: int = 0  # keep the first N training images of each domain; 0 = all of them
    width: int = 32  # translator channels at full resolution (2 x width at half resolution)
    blocks: int = 2  # residual blocks at half resolution
    channels: tuple[int, ...] = (32, 64)  # discriminator conv widths (the f-GAN's ConvCritic)
    fc: int = 256  # discriminator fully connected width
    gan_loss: Literal["least_squares", "non_saturating"] = "least_squares"
    cycle_weight: float = 10.0  # lambda of eq. 3
    identity_weight: float = 5.0  # 0.5 lambda (sec. 5.2)
    discriminator_steps: int = 0  # 0: both players in every step (CycleGAN's own loop); k: k discriminator updates, then one


GPU_TRAINING = {"ema_decay": 0.999, "precision": "bf16", "log_every": 100}
ADAM = {"betas": (0.5, 0.999), "warmup_steps": 50, "grad_clip": 0.0}  # CycleGAN: Adam(2e-4, beta1 = 0.5)

HEADLINE = (("translated_to_b", "G(a) classified as domain B", "share"),
            ("cycle_error_a", "cycle error |F(G(a)) - a|", "mean abs"))

# quick: 2 CPU cores, minutes (one thread: small convolutions); full: GPU scale.
PRESETS = {
    "quick": {
        **dict.fromkeys(("fashion_mnist", "image"), Preset(Config(width=16, blocks=2, channels=(16, 32), fc=128),
                        TrainConfig(steps=2000, batch_size=16, lr=2e-4, checkpoint_every=500, log_every=50,
                                    samples=64, threads=1, **ADAM))),
    },
    "full": {
        **dict.fromkeys(("fashion_mnist", "image"), Preset(Config(width=64, blocks=6, channels=(64, 128), fc=512),
                        TrainConfig(steps=40_000, batch_size=64, lr=2e-4, checkpoint_every=5000, samples=64,
                                    **ADAM, **GPU_TRAINING))),
    },
}
default_config = preset_config("style_transfer", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("domain_a", "domain_b", "width", "blocks", "channels", "fc")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ()
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("width", "channels", "fc"), "positive"),
          **dict.fromkeys(("domain_a", "domain_b", "domain_limit", "blocks", "cycle_weight", "identity_weight",
                           "discriminator_steps"), "at least 0")}
CHECKPOINT_VERSIONS = {1: "the players shared one optimizer, a step counter in the weights",
                       2: "the discriminators and the translators each have their own optimizer; no step counter",
                       3: "the discriminators' weights are named discriminator_a and discriminator_b, not critic_a/b"}


# 1. The two domains --------------------------------------------------------------------------------------------
def domain_images(dataset, classes: tuple[int, ...], limit: int = 0) -> torch.Tensor:
    """The images (N, C, H, W) of a split of (image, label) pairs whose label is in ``classes`` (the first ``limit``
    of them; 0: all)."""
    x, y = stacked(dataset)[:2]
    keep = torch.isin(y, torch.tensor(classes, dtype=y.dtype, device=y.device)).nonzero().squeeze(1)
    return x[keep[:limit] if limit else keep]


def build(config: Config, data) -> CycleGAN:
    """The CycleGAN for two class-split domains of a labelled image data set; one-line ValueError otherwise."""
    if data.modality != "image" or len(data.shape) != 3 or not data.num_classes:
        raise ValueError(f"CycleGAN translates between class-split domains of a labelled image data set; "
                         f"{data.name} is {data.modality} data" + ("" if data.num_classes else " without labels"))
    bad = sorted(set(config.domain_a + config.domain_b) - set(range(data.num_classes)))
    if bad or not config.domain_a or not config.domain_b:
        raise ValueError(f"a domain is a non-empty set of {data.name}'s labels 0..{data.num_classes - 1}, got "
                         f"model.domain_a={','.join(map(str, config.domain_a))} and "
                         f"model.domain_b={','.join(map(str, config.domain_b))}")
    if set(config.domain_a) & set(config.domain_b):
        raise ValueError(f"model.domain_a and model.domain_b must not share a class, got "
                         f"{','.join(map(str, config.domain_a))} and {','.join(map(str, config.domain_b))}")
    if config.gan_loss not in GAN_LOSSES:
        raise ValueError(f"unknown model.gan_loss {config.gan_loss!r}; choose from {', '.join(GAN_LOSSES)}")
    if config.cycle_weight < 0 or config.identity_weight < 0 or config.domain_limit < 0:
        raise ValueError("model.cycle_weight, model.identity_weight and model.domain_limit must be >= 0")
    if config.discriminator_steps < 0:
        raise ValueError("model.discriminator_steps must be 0 (simultaneous updates) or more, "
                         f"got {config.discriminator_steps}")
    return CycleGAN(data.shape, config.width, config.blocks, config.channels, config.fc)


def domains(config: Config, train_set) -> dict[str, torch.Tensor]:
    """Domain A's and domain B's training images, (N_a, C, H, W) and (N_b, C, H, W): the engine appends a batch of
    each to the step's batch, (x, y, a, b)."""
    return {"a": domain_images(train_set, config.domain_a, config.domain_limit),
            "b": domain_images(train_set, config.domain_b, config.domain_limit)}


def draw_noise(net: CycleGAN, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """None: the step's randomness is its two domains' rows, which the engine draws."""
    return {}


# 2. The loss ---------------------------------------------------------------------------------------------------
def discriminator_adversarial_loss(real_scores, fake_scores, kind: str):
    """A discriminator's loss on its domain's real images and the translations into it. (B,), (B,) -> ().
    least_squares: 1/2 [mean (D(b) - 1)^2 + mean D(G(a))^2] (LSGAN, Mao et al. 2017, eq. 9 with a = 0, b = c = 1;
    CycleGAN sec. 4); non_saturating: the binary cross-entropy ``discriminator_loss`` (GAN eq. 1, negated)."""
    if kind == "least_squares":
        return 0.5 * (torch.mean((real_scores - 1) ** 2) + torch.mean(fake_scores**2))
    return discriminator_loss(real_scores, fake_scores)


def translator_adversarial_loss(fake_scores, kind: str):
    """A translator's adversarial loss on the discriminator's scores of its translations. (B,) -> ().
    least_squares: mean (D(G(a)) - 1)^2 (CycleGAN sec. 4); non_saturating: -mean log D(G(a)) (GAN sec. 3)."""
    if kind == "least_squares":
        return torch.mean((fake_scores - 1) ** 2)
    return generator_loss_nonsaturating(fake_scores)


def player_losses(net: CycleGAN, config: Config, a, b, phase: tuple[bool, bool] = (True, True)):
    """The losses of CycleGAN's game (Zhu et al. eq. 3) on a batch of each domain: both discriminators' (the
    translations taken as data) for ``phase[0]``; for ``phase[1]`` the translators' adversarial losses
    (``config.gan_loss``; the engine takes their gradient with respect to the translators' weights only) +
    cycle_weight L_cyc (eq. 2) + identity_weight L_id (sec. 5.2).

    a: (B, C, H, W) from domain A, b: (B', C, H, W) from domain B -> ({"discriminators", "translators"}: the losses
    of the players asked for, terms). Every term is reported (computed without a graph where its player does not
    update).
    """
    discriminators_step, translators_step = phase
    grad = torch.is_grad_enabled()
    with torch.set_grad_enabled(translators_step and grad):
        fake_b, fake_a = net.g_ab(a), net.f_ba(b)  # G(a), F(b)
        a_cycled, b_cycled = net.f_ba(fake_b), net.g_ab(fake_a)  # F(G(a)), G(F(b))
        cyc = cycle_loss(a, a_cycled, b, b_cycled)
        idt = identity_loss(a, net.f_ba(a), b, net.g_ab(b))
    with torch.set_grad_enabled(discriminators_step and grad):
        d_b = discriminator_adversarial_loss(net.discriminator_b(b), net.discriminator_b(fake_b.detach()), config.gan_loss)
        d_a = discriminator_adversarial_loss(net.discriminator_a(a), net.discriminator_a(fake_a.detach()), config.gan_loss)
    with torch.set_grad_enabled(translators_step and grad):
        adv = (translator_adversarial_loss(net.discriminator_b(fake_b), config.gan_loss)
               + translator_adversarial_loss(net.discriminator_a(fake_a), config.gan_loss))
    translator = adv + config.cycle_weight * cyc + config.identity_weight * idt
    losses = {**({"discriminators": d_a + d_b} if discriminators_step else {}),
              **({"translators": translator} if translators_step else {})}
    terms = {"discriminator_loss_a": d_a.detach(), "discriminator_loss_b": d_b.detach(), "adversarial_loss": adv.detach(),
             "cycle_loss": cyc.detach(), "identity_loss": idt.detach()}
    return losses, terms


def players(net: CycleGAN, config: Config) -> dict[str, Player]:
    """One AdamW each (the run's lr and betas): both discriminators, both translators."""
    return {"discriminators": Player(net.discriminator_parameters()), "translators": Player(net.translator_parameters())}


def train_step(net: CycleGAN, config: Config, step: int, run):
    """One step of CycleGAN's game on unpaired batches a and b of the two domains (the batch's last two columns):
    ``model.discriminator_steps = 0`` updates both players from one forward pass (CycleGAN's own loop); k > 0: k
    updates of the discriminators, each on fresh batches, then one of the translators.
    -> (the players' losses summed, terms)."""
    for _ in range(config.discriminator_steps):
        (*_, a, b), _ = run.next_batch()
        with run.autocast():
            losses, terms = player_losses(net, config, a, b, (True, False))
        run.update(**losses)
    (*_, a, b), _ = run.next_batch()
    with run.autocast():
        losses, terms = player_losses(net, config, a, b, (config.discriminator_steps == 0, True))
    run.update(**losses)
    return sum(v.detach() for v in losses.values()), terms


# 3. Samples and evaluation -------------------------------------------------------------------------------------
def _device(net) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def translate(net: CycleGAN, x: torch.Tensor, direction: str, batch_size: int = 500) -> torch.Tensor:
    """G(x) (direction 'ab') or F(x) ('ba') of images (N, C, H, W) on the CPU, in batches on the net's device."""
    network = net.g_ab if direction == "ab" else net.f_ba
    device = _device(net)
    return torch.cat([network(part.to(device)).cpu() for part in x.split(batch_size)])


@torch.no_grad()
def sample(net: CycleGAN, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """'samples': G(a) of n validation images a of domain A drawn with ``generator``; then 'a_to_b', rows a / G(a) /
    F(G(a)), and 'b_to_a', rows b / F(b) / G(F(b)), of the first min(n, 12) validation images of each domain. The
    validation split is loaded as the run loads its data (``sibling_split`` of the held-out ``examples``); without
    them, nothing."""
    if examples is None:
        return []
    val = sibling_split(examples, "val")
    a_all, b_all = domain_images(val, config.domain_a), domain_images(val, config.domain_b)
    rows = torch.randint(len(a_all), (n,), generator=generator)
    artefacts = [Artefact("samples", "images", translate(net, a_all[rows], "ab"), nrow=max(1, round(n**0.5)))]
    k = max(1, min(n, 12))
    for name, x, there, back in (("a_to_b", a_all[:k], "ab", "ba"), ("b_to_a", b_all[:k], "ba", "ab")):
        moved = translate(net, x, there)
        artefacts.append(Artefact(name, "images", torch.cat([x, moved, translate(net, moved, back)]), nrow=len(x)))
    return artefacts


def share_in(classes: tuple[int, ...], probabilities: torch.Tensor) -> float:
    """How often the classifier's top class is one of ``classes``. probabilities: (N, K) -> a share."""
    return float(torch.isin(probabilities.argmax(-1), torch.tensor(classes)).double().mean())


@torch.no_grad()
def evaluate(net: CycleGAN, config: Config, dataset, generator: torch.Generator) -> dict[str, float]:
    """On the held-out ``dataset``'s images of both domains: cycle errors, identity errors, the feature classifier's
    domain shares of translated, untranslated and real images, and FIDs of the translations against the target
    domain's held-out images beside the untranslated images'."""
    from practice_torch.evaluation.features import embed, feature_network
    from practice_torch.evaluation.metrics import fid_from_features

    x, y = stacked(dataset)[:2]
    a = x[torch.isin(y, torch.tensor(config.domain_a))]
    b = x[torch.isin(y, torch.tensor(config.domain_b))]
    if not len(a) or not len(b):
        raise ValueError(f"the held-out split has {len(a)} images of domain A and {len(b)} of domain B; both needed")
    g_a, f_b = translate(net, a, "ab"), translate(net, b, "ba")
    metrics = {"cycle_error_a": float(torch.mean(torch.abs(translate(net, g_a, "ba") - a))),
               "cycle_error_b": float(torch.mean(torch.abs(translate(net, f_b, "ab") - b))),
               "identity_error_a": float(torch.mean(torch.abs(translate(net, a, "ba") - a))),
               "identity_error_b": float(torch.mean(torch.abs(translate(net, b, "ab") - b))),
               "examples_a": len(a), "examples_b": len(b)}
    features = feature_network(dataset.run_data.name, dataset.run_data.data_dir, device=_device(net))
    (fa, pa), (fb, pb), (fga, pga), (ffb, pfb) = (embed(features, v.clamp(0, 1)) for v in (a, b, g_a, f_b))
    metrics.update({
        "translated_to_b": share_in(config.domain_b, pga), "untranslated_a_in_b": share_in(config.domain_b, pa),
        "real_b_in_b": share_in(config.domain_b, pb),
        "translated_to_a": share_in(config.domain_a, pfb), "untranslated_b_in_a": share_in(config.domain_a, pb),
        "real_a_in_a": share_in(config.domain_a, pa),
        "fid_translated_b": fid_from_features(fb, fga), "fid_untranslated_a_b": fid_from_features(fb, fa),
        "fid_translated_a": fid_from_features(fa, ffb), "features_test_accuracy": features.test_accuracy})
    return metrics
