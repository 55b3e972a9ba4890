"""The GAN's players and their losses (Goodfellow et al. 2014; DCGAN, Radford et al. 2016; cGAN, Mirza & Osindero
2014, with a projection discriminator, Miyato & Koyama 2018).

The networks are the f-GAN's (``practice_torch.f_divergence.networks``): LeakyReLU MLPs for vectors, DCGAN-style
convolutions for images (BatchNorm in the generator only). ``players`` builds a generator and the network that judges
its samples, which a GAN calls its discriminator (``Adversarial`` here) and a WGAN its critic
(``practice_torch.wgan.networks``). ``Adversarial`` holds both players, optionally class-conditional: weights only.
Who updates when is the adapter's ``train_step`` (``practice_torch.gan.training``, on the engine's players: one
optimizer each); ``discriminator_objective`` and ``generator_objective`` are the two players' losses on a batch,
built from ``practice_torch.gan.functions``. ``SpectralNorm`` divides a layer's weight by its largest singular
value (Miyato et al. 2018; ``model.spectral_norm=true`` puts it on every layer of the discriminator);
``model.minibatch_std=true`` lets the discriminator's last layer read the batch's feature spread (Karras et al. 2018),
``unrolled_generator_objective`` scores the generator against the discriminator a few steps ahead (Metz et al.
2017: plain gradient steps, or the discriminator's own Adam steps from its moments), and ``model.pack=m`` has the
discriminator judge m samples at once (PacGAN, Lin et al. 2018). ``model.architecture=pacgan`` builds the toy players
as PacGAN's code does (``PacGANGenerator``, ``MaxoutDiscriminator``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from practice_torch.f_divergence.networks import (
    ConvCritic,
    ConvGenerator,
    Critic,
    MLPCritic,
    MLPGenerator,
    r1_penalty,
)
from practice_torch.gan.functions import (
    adam_unroll,
    discriminator_loss,
    generator_loss_nonsaturating,
    generator_loss_saturating,
    maxout,
    minibatch_std,
    normalize,
    pack,
    power_iteration,
    spectral_normalize,
    unroll,
)

GENERATOR_LOSSES = {"non_saturating": generator_loss_nonsaturating, "saturating": generator_loss_saturating}


def players(shape: Sequence[int], architecture: str, z_dim: int, hidden: Sequence[int], channels: Sequence[int],
            fc: int, norm: bool, unit_interval: bool, pack: int = 1, discriminator_hidden: Sequence[int] = (200, 200, 200),
            pieces: int = 5) -> tuple[nn.Module, nn.Module, int]:
    """A generator z (B, z_dim) -> (B, *shape) and a judge x (B, *shape) -> (B,) (a GAN's discriminator, a WGAN's
    critic; ``norm``: its layer normalisation, off for a weight-clipped critic), created in that order, and the width
    of the judge's last features. shape: one example, (D,) vectors (``mlp``, ``pacgan``) or (C, H, W) images
    (``conv``; the MLPs flatten them); ``pack``: the judge reads that many examples at once, concatenated along the
    first axis (``functions.pack``); ``pacgan``: ``hidden`` the generator's widths, ``discriminator_hidden`` and
    ``pieces`` the maxout discriminator's units and pieces."""
    judged = (shape[0] * pack, *shape[1:])
    if architecture == "mlp":
        return MLPGenerator(z_dim, shape, hidden, unit_interval), MLPCritic(judged, hidden), hidden[-1]
    if architecture == "pacgan":
        return (PacGANGenerator(z_dim, shape, hidden, unit_interval),
                MaxoutDiscriminator(judged, discriminator_hidden, pieces), discriminator_hidden[-1])
    if architecture == "conv":
        if len(shape) != 3 or shape[1] % 4 or shape[2] % 4 or len(channels) != 2:
            raise ValueError(f"the conv GAN needs (C, H, W) images with H and W divisible by 4 and two "
                             f"model.channels, got shape {tuple(shape)} and channels {tuple(channels)}")
        return (ConvGenerator(z_dim, shape, channels, fc, unit_interval), ConvCritic(judged, channels, fc, norm=norm),
                fc)
    raise ValueError(f"architecture must be 'mlp', 'pacgan' or 'conv', got {architecture!r}")


# PacGAN's toy players (Lin et al. 2018; fjxmlzn/PacGAN's grid task, on Blocks): its batch normalisation's
# epsilon and the weight of a batch in its running statistics, and its weights' initial standard deviation
PACGAN_NORM_EPS, PACGAN_NORM_MOMENTUM, PACGAN_INIT_STD = 1e-4, 0.05, 0.02


def gaussian_init(module: nn.Module, std: float) -> nn.Module:
    """Every Linear layer of ``module`` drawn as PacGAN's code draws them: weights from N(0, std^2), biases zero
    (in place; normalisation layers keep their unit scales and zero shifts)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


class PacGANGenerator(nn.Module):
    """z (B, d) -> x (B, *shape), PacGAN's toy generator: for each width of ``hidden`` a linear layer without bias,
    batch normalisation (eps 1e-4, running statistics at momentum 0.05) and a ReLU, then a linear output with bias
    (a sigmoid for [0, 1] images, ``unit_interval``); weights from N(0, 0.02^2), biases zero."""

    def __init__(self, latent_dim: int, shape: Sequence[int], hidden: Sequence[int], unit_interval: bool = False):
        super().__init__()
        self.shape, self.unit_interval = tuple(shape), unit_interval
        widths = [latent_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b, eps=PACGAN_NORM_EPS, momentum=PACGAN_NORM_MOMENTUM)
                                   for b in hidden)
        self.out = nn.Linear(widths[-1], math.prod(shape))
        gaussian_init(self, PACGAN_INIT_STD)

    def forward(self, z):
        h = z
        for layer, norm in zip(self.layers, self.norms, strict=True):
            h = F.relu(norm(layer(h)))
        x = self.out(h).view(-1, *self.shape)
        return torch.sigmoid(x) if self.unit_interval else x


class MaxoutDiscriminator(Critic):
    """x (B, *shape) -> logit (B,), PacGAN's (and ALI's) toy discriminator: for each width of ``hidden`` a linear
    layer to ``pieces`` times as many outputs and ``maxout`` over each unit's pieces, then a linear logit; weights
    from N(0, 0.02^2), biases zero. No normalisation: a logit must not depend on the rest of the batch."""

    def __init__(self, shape: Sequence[int], hidden: Sequence[int], pieces: int):
        super().__init__()
        self.pieces = pieces
        widths = [math.prod(shape), *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b * pieces) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(widths[-1], 1)
        gaussian_init(self, PACGAN_INIT_STD)

    def features(self, x):
        """The last maxout layer, (B, hidden[-1]): what ``out`` reads."""
        h = torch.flatten(x, 1)
        for layer in self.layers:
            h = maxout(layer(h), self.pieces)
        return h


class SpectralNorm(nn.Module):
    """A parametrization (``torch.nn.utils.parametrize``) that reads a layer's weight as W / sigma(W):
    ``spectral_normalize`` with the power iteration's vectors u (out,) and v (in * kh * kw,) kept as buffers, one
    iteration per forward pass in training mode, none in eval mode (torch's ``spectral_norm`` does the same; its
    vectors start from 15 iterations on the initial weight, as here)."""

    def __init__(self, weight: torch.Tensor, n_iter: int = 1, eps: float = 1e-12):
        super().__init__()
        self.n_iter, self.eps = n_iter, eps
        matrix = weight.detach().reshape(weight.shape[0], -1)
        u = normalize(torch.randn(matrix.shape[0], dtype=matrix.dtype), eps)
        v = normalize(torch.randn(matrix.shape[1], dtype=matrix.dtype), eps)
        u, v = power_iteration(matrix, u, v, 15, eps)
        self.register_buffer("u", u)
        self.register_buffer("v", v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        normalised, u, v = spectral_normalize(weight, self.u, self.v, self.n_iter if self.training else 0, self.eps)
        if self.training:
            with torch.no_grad():
                self.u.copy_(u)
                self.v.copy_(v)
        return normalised


def spectral_norm_layers(module: nn.Module) -> nn.Module:
    """``module`` with a ``SpectralNorm`` on the weight of each of its Linear and Conv2d layers (in place)."""
    from torch.nn.utils import parametrize

    for layer in list(module.modules()):
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            parametrize.register_parametrization(layer, "weight", SpectralNorm(layer.weight))
    return module


class Adversarial(nn.Module):
    """A generator G(z[, y]) and a discriminator D(x[, y]) = sigmoid(logit(x[, y])), the logit (B,) its output.

    shape: one example, (D,) vectors or (C, H, W) images; num_classes > 0: class-conditional, the one-hot label
    appended to z and a projection term <embed(y), phi(x)> added to the discriminator's logit (phi: its last
    features). minibatch_std: the discriminator's last layer reads one more feature, ``minibatch_std`` of phi(x)
    over the batch, so a batch is judged as a whole (real and fake batches are judged apart). pack = m > 1: the
    discriminator reads m consecutive examples at once (``functions.pack``, PacGAN), one logit per group; a batch's
    last B mod m examples sit out. architecture: ``players``' (``pacgan``: ``discriminator_hidden`` and ``pieces``
    its maxout discriminator's units and pieces).
    """

    def __init__(self, shape: Sequence[int], architecture: str = "mlp", latent_dim: int = 8,
                 hidden: Sequence[int] = (128, 128), channels: Sequence[int] = (64, 128), fc: int = 1024,
                 num_classes: int = 0, unit_interval: bool = False, spectral_norm: bool = False,
                 minibatch_std: bool = False, pack: int = 1, discriminator_hidden: Sequence[int] = (200, 200, 200),
                 pieces: int = 5):
        super().__init__()
        if pack < 1 or (pack > 1 and num_classes):
            raise ValueError(f"pack must be at least 1, and 1 for a class-conditional net; got {pack}")
        self.shape, self.latent_dim, self.num_classes = tuple(shape), latent_dim, num_classes
        self.minibatch_std, self.pack = minibatch_std, pack
        self.generator, self.discriminator, width = players(shape, architecture, latent_dim + num_classes, hidden,
                                                            channels, fc, norm=True, unit_interval=unit_interval,
                                                            pack=pack, discriminator_hidden=discriminator_hidden,
                                                            pieces=pieces)
        if minibatch_std:
            self.discriminator.out = nn.Linear(width + 1, 1)
        if spectral_norm:
            spectral_norm_layers(self.discriminator)
        if num_classes:
            self.embed = nn.Embedding(num_classes, width)  # the projection discriminator's class vectors
            nn.init.zeros_(self.embed.weight)  # starts as the unconditional discriminator

    def forward(self, z, y=None):
        """Samples G(z, y): z (B, d), y (B,) int64 class labels (conditional nets) -> (B, *shape)."""
        if self.num_classes:
            z = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1)
        return self.generator(z)

    def logit(self, x, y=None):
        """The discriminator's logit, D(x[, y]) = sigmoid(logit): x (B, *shape), y (B,) labels (conditional nets)
        -> (B,); packed (``pack`` = m > 1), one per group of m: (B // m,)."""
        if self.pack > 1:
            x = pack(x[:len(x) - len(x) % self.pack], self.pack)
        if not self.num_classes and not self.minibatch_std:
            return self.discriminator(x)
        h = self.discriminator.features(x)
        logit = self.discriminator.out(minibatch_std(h) if self.minibatch_std else h).squeeze(-1)
        if not self.num_classes:
            return logit
        return logit + torch.sum(self.embed(y) * h, dim=-1)  # Miyato & Koyama, eq. 3

    def discriminator_named_parameters(self) -> dict[str, nn.Parameter]:
        """The discriminator's weights and the projection's class vectors, by name: everything but the generator."""
        return {name: p for name, p in self.named_parameters() if not name.startswith("generator.")}

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator_named_parameters().values())

    def generator_parameters(self) -> list[nn.Parameter]:
        return list(self.generator.parameters())


def generated(net: nn.Module, z, y, with_grad: bool):
    """G(z, y), in the graph only when the generator steps (otherwise no graph is built for it at all)."""
    if with_grad:
        return net(z, y)
    with torch.no_grad():
        return net(z, y)


def discriminator_objective(net: Adversarial, x, fake, y=None, r1: float = 0.0):
    """The discriminator's loss on a batch (eq. 1, negated: ``discriminator_loss``) with ``r1`` > 0 times
    R1 = 1/2 E_P |grad_x logit(x)|^2 at the real data (Mescheder et al. 2018), which keeps the discriminator from
    growing steep around the data and stopped the DCGAN's collapse onto a few classes.

    x: (B, *shape) real, fake: (B, *shape) G(z) (taken as data: no gradient reaches G), y: (B,) labels or None ->
    (loss, {"discriminator_loss", "d_real", "d_fake"[, "r1_penalty"]}).
    """
    with_r1 = r1 > 0 and torch.is_grad_enabled()
    x = x.detach().requires_grad_(with_r1)
    real_logits, fake_logits = net.logit(x, y), net.logit(fake.detach(), y)
    loss = discriminator_loss(real_logits, fake_logits)
    terms = {"discriminator_loss": loss.detach(), "d_real": torch.sigmoid(real_logits.detach()).mean(),
             "d_fake": torch.sigmoid(fake_logits.detach()).mean()}
    if with_r1:
        penalty = r1_penalty(real_logits, x)
        loss = loss + r1 * penalty
        terms["r1_penalty"] = penalty.detach()
    return loss, terms


def generator_objective(net: Adversarial, fake, y=None, kind: str = "non_saturating"):
    """The generator's loss on the discriminator's logits of its samples: -E log D(G(z)) (non-saturating, sec. 3)
    or E log(1 - D(G(z))) (saturating, eq. 1). fake: (B, *shape) G(z) in the graph, y: (B,) or None -> ()."""
    return GENERATOR_LOSSES[kind](net.logit(fake, y))


class _Judge(nn.Module):
    """``net.logit`` as a forward pass, so that ``torch.func.functional_call`` can run it on other weights."""

    def __init__(self, net: Adversarial):
        super().__init__()
        self.net = net

    def forward(self, x, y=None):
        return self.net.logit(x, y)


def unrolled_generator_objective(net: Adversarial, x, fake, y=None, steps: int = 1, lr: float = 1e-3,
                                 kind: str = "non_saturating", adam=None):
    """The unrolled GAN's generator loss (Metz et al. 2017, eq. 5): the generator's loss against the discriminator
    after ``steps`` gradient steps (lr ``lr``) on its plain loss on this batch of real x and these fakes, with the
    fakes in the graph, so that the gradient also follows how the discriminator would answer the generator's move
    (eq. 6). ``adam`` (the discriminator's ``engine.players.AdamState``): the steps are its optimizer's own, from
    its moments, step count and scheduled lr (``lr`` unused), as Metz et al.'s code unrolls them. The network's own
    discriminator does not move. x: (B, *shape) real, fake: (B, *shape) G(z) in the graph, y: (B,) or None -> ()."""
    judge = _Judge(net)

    def logit(params, inputs):
        return torch.func.functional_call(judge, params, (inputs, y))

    def d_loss(params):
        return discriminator_loss(logit(params, x), logit(params, fake))

    start = {f"net.{name}": p for name, p in net.discriminator_named_parameters().items()}
    if adam is None:
        ahead = unroll(d_loss, start, steps, lr)
    else:
        m, v = ({name: adam.moments(p)[i] for name, p in start.items()} for i in (0, 1))
        ahead = adam_unroll(d_loss, start, m, v, adam.step, steps, adam.lr, adam.betas, adam.eps, adam.weight_decay)
    return GENERATOR_LOSSES[kind](logit(ahead, fake))
