"""BiGAN's three players (Donahue, Kraehenbuehl & Darrell 2017, sec. 3; ALI, Dumoulin et al. 2017) and their
losses.

* ``FeatureTrunk``: x (B, *shape) -> (B, width) features: the VAE's strided conv trunk (``downsampling_convs``,
  GroupNorm, no batch statistics) then a Linear for images, a LeakyReLU MLP for vectors. The encoder, the
  discriminator's x-path and its z-path are each one.
* ``Encoder``: E(x) = Linear(trunk(x)) -> z (B, d), deterministic as in BiGAN; for the uniform prior squashed
  into its cube, 2 sigmoid(a) - 1, as the paper's code maps E's outputs into the latent's support.
* ``JointDiscriminator``: D(x, z) over pairs: the x-path's and the z-path's features meet in one tanh hidden layer,
  ``pair_logits`` of ``practice_torch.bigan.functions`` (the derivation's joint discriminator), so the losses are
  ``bigan_losses`` on the two paths' features. No batch normalisation anywhere in D: a pair's logit must not
  depend on the rest of the batch (real and generated pairs are scored apart).
* ``BiGAN``: encoder, generator (the f-GAN's ``ConvGenerator`` or ``MLPGenerator``) and discriminator: weights only
  (who updates when is the adapter's ``train_step``, two optimizers: D, and E with G).
* ``player_losses``: the players' losses on a batch; ``pair_r1_penalty``: R1 (Mescheder et al. 2018) at the real
  pairs, in x and z.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from practice_torch.bigan.functions import bigan_losses, pair_logits
from practice_torch.f_divergence.networks import ConvGenerator, MLPGenerator
from practice_torch.vae.networks import downsample, downsampling_convs


# 1. The players ---------------------------------------------------------------------------------------------------
class FeatureTrunk(nn.Module):
    """x (B, *shape) -> (B, width). Images (C, H, W): a strided 3x3 conv per ``channels`` entry with GroupNorm and
    SiLU (the VAE's trunk), flattened, Linear to ``width``, LeakyReLU(0.2). Vectors (D,): LeakyReLU(0.2) MLP with
    the widths ``hidden`` (width = hidden[-1])."""

    def __init__(self, shape: Sequence[int], width: int, channels: Sequence[int] = (32, 64),
                 hidden: Sequence[int] = (128, 128), groups: int = 8):
        super().__init__()
        self.shape = tuple(shape)
        if len(self.shape) == 3:
            c, hgt, wid = self.shape
            scale = 2 ** len(channels)
            if hgt % scale or wid % scale:
                raise ValueError(f"the conv trunk halves H and W {len(channels)} times; images of shape {self.shape} "
                                 f"need H and W divisible by {scale} (fewer model.channels)")
            self.convs, self.norms = downsampling_convs(c, channels, groups)
            widths = [channels[-1] * (hgt // scale) * (wid // scale), width]
        else:
            self.convs = None
            widths = [math.prod(self.shape), *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.width = widths[-1]

    def forward(self, x):
        h = torch.flatten(x if self.convs is None else downsample(self.convs, self.norms, x), 1)
        for layer in self.layers:
            h = F.leaky_relu(layer(h), 0.2)
        return h


class Encoder(nn.Module):
    """E(x): x (B, *shape) -> z (B, latent_dim), a ``FeatureTrunk`` and a Linear head (deterministic, BiGAN sec. 3).

    ``in_cube``: E(x) = 2 sigmoid(a) - 1, in the open cube (-1, 1)^d, for the uniform prior U[-1, 1]^d: the paper's
    code (jeffdonahue/bigan, ``dist.UniformDistribution.logits_to_recon``) maps the head's outputs a into the prior's
    support before the joint discriminator sees them, so that no real pair can be told from a generated one by a
    code outside the cube. The normal prior's support is all of R^d: the head's outputs as they are."""

    def __init__(self, shape: Sequence[int], latent_dim: int, width: int, channels: Sequence[int] = (32, 64),
                 hidden: Sequence[int] = (128, 128), in_cube: bool = False):
        super().__init__()
        self.trunk = FeatureTrunk(shape, width, channels, hidden)
        self.head = nn.Linear(self.trunk.width, latent_dim)
        self.in_cube = in_cube

    def forward(self, x):
        a = self.head(self.trunk(x))
        return 2 * torch.sigmoid(a) - 1 if self.in_cube else a


class JointDiscriminator(nn.Module):
    """D(x, z)'s logit = w_out . tanh(W_x phi(x) + W_z psi(z) + b) (``pair_logits``): phi a ``FeatureTrunk`` of x,
    psi a LeakyReLU MLP of z (two layers of phi's width), ``joint`` tanh units where the two paths meet (BiGAN
    sec. 3.3: the paths are concatenated before the joint layers; W_x phi + W_z psi = [W_x W_z] [phi; psi])."""

    def __init__(self, shape: Sequence[int], latent_dim: int, width: int, joint: int,
                 channels: Sequence[int] = (32, 64), hidden: Sequence[int] = (128, 128)):
        super().__init__()
        self.x_path = FeatureTrunk(shape, width, channels, hidden)
        self.z_path = FeatureTrunk((latent_dim,), width, hidden=(self.x_path.width,) * 2)
        self.w_x = nn.Parameter(torch.empty(joint, self.x_path.width))
        self.w_z = nn.Parameter(torch.empty(joint, self.z_path.width))
        self.w_out = nn.Parameter(torch.empty(1, joint))
        self.b = nn.Parameter(torch.empty(joint))
        self.reset_parameters()

    def reset_parameters(self):
        """The joint layer as nn.Linear initialises one of fan-in width_x + width_z, and the output layer likewise:
        U(-1/sqrt(fan_in), 1/sqrt(fan_in)). (``gan.quality.untrained_copy`` calls this.)"""
        bound = 1 / math.sqrt(self.w_x.shape[1] + self.w_z.shape[1])
        for p in (self.w_x, self.w_z, self.b):
            nn.init.uniform_(p, -bound, bound)
        nn.init.uniform_(self.w_out, -1 / math.sqrt(self.w_out.shape[1]), 1 / math.sqrt(self.w_out.shape[1]))

    def joint_weights(self) -> tuple[torch.Tensor, ...]:
        """(w_x, w_z, w_out, b): the last four arguments of ``pair_logits`` and ``bigan_losses``."""
        return self.w_x, self.w_z, self.w_out, self.b

    def forward(self, x, z):
        """Logits of pairs: x (B, *shape), z (B, d) -> (B,)."""
        return pair_logits(self.x_path(x), self.z_path(z), *self.joint_weights())


class BiGAN(nn.Module):
    """Encoder E, generator G and joint discriminator D.

    shape: one example, (D,) vectors (MLPs) or (C, H, W) images (convolutions; G is the DCGAN generator of the
    f-GAN, sigmoid output in [0, 1]). ``prior``: p(z), "normal" or "uniform" (then E maps into the cube).
    ``forward(z)`` is G(z), so the GAN's helpers (``generated``) apply as they are.
    """

    def __init__(self, shape: Sequence[int], latent_dim: int = 8, width: int = 128, joint: int = 256,
                 channels: Sequence[int] = (32, 64), hidden: Sequence[int] = (128, 128), fc: int = 512,
                 unit_interval: bool = False, prior: str = "normal"):
        super().__init__()
        self.shape, self.latent_dim = tuple(shape), latent_dim
        if len(self.shape) == 3 and len(channels) != 2:
            raise ValueError(f"the conv BiGAN's generator upsamples twice and needs two model.channels, "
                             f"got {tuple(channels)}")
        self.encoder = Encoder(shape, latent_dim, width, channels, hidden, in_cube=prior == "uniform")
        if len(self.shape) == 3:
            self.generator = ConvGenerator(latent_dim, shape, channels, fc, unit_interval)
        else:
            self.generator = MLPGenerator(latent_dim, shape, hidden, unit_interval)
        self.discriminator = JointDiscriminator(shape, latent_dim, width, joint, channels, hidden)

    def forward(self, z, y=None):
        """Samples G(z): z (B, d) -> (B, *shape); y is ignored (the GAN helpers' signature)."""
        return self.generator(z)

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """D's weights: one player."""
        return list(self.discriminator.parameters())

    def encoder_generator_parameters(self) -> list[nn.Parameter]:
        """E's and G's weights: the other player, which BiGAN updates together."""
        return [*self.encoder.parameters(), *self.generator.parameters()]


# 2. The players' losses -------------------------------------------------------------------------------------------
def pair_r1_penalty(real_logits, x, z):
    """R1 on pairs (Mescheder et al. 2018, eq. 9 without the gamma): 1/2 E_{p_E} |grad_(x, z) D-logit|^2, the squared
    norm over all of x's and z's dimensions, in the graph so that D's step descends it.
    real_logits: (B,) logits of (x (B, *shape), z (B, d)), both of which required grad -> ()."""
    grad_x, grad_z = torch.autograd.grad(real_logits.sum(), (x, z), create_graph=True)
    squared = torch.sum(torch.flatten(grad_x, 1) ** 2, dim=1) + torch.sum(grad_z**2, dim=1)
    return 0.5 * torch.mean(squared)


def player_losses(net: BiGAN, x, z, phase: tuple[bool, bool] = (True, True), r1: float = 0.0):
    """The losses of BiGAN's game (Donahue et al., eq. 3) on a batch: ``bigan_losses`` on the features of the real
    pairs (x, E(x)) and the generated pairs (G(z), z). For D (``phase[0]``): its cross-entropy, E(x) and G(z) taken as
    data (and, with ``r1`` > 0, r1 * ``pair_r1_penalty`` at the real pairs); for E and G (``phase[1]``): the flipped
    cross-entropy (the non-saturating form: real pairs labelled 0, generated 1), whose gradient the engine takes with
    respect to E's and G's weights only.

    x: (B, *shape), z: (B, d) -> ({"discriminator", "encoder_generator"}: the losses of the players asked for,
    {"discriminator_loss", "encoder_generator_loss"[, "r1_penalty"]}).
    """
    d_steps, eg_steps = phase
    grad_on = torch.is_grad_enabled()
    with torch.set_grad_enabled(eg_steps and grad_on):
        z_encoded, x_generated = net.encoder(x), net.generator(z)
    disc = net.discriminator
    losses, terms = {}, {}
    if d_steps:
        with_r1 = r1 > 0 and grad_on
        x_real = x.detach().requires_grad_(with_r1)
        z_real = z_encoded.detach().requires_grad_(with_r1)
        hx, hz = disc.x_path(x_real), disc.z_path(z_real)
        d_loss, eg_loss = bigan_losses(hx, hz, disc.x_path(x_generated.detach()), disc.z_path(z),
                                       *disc.joint_weights())
        losses["discriminator"] = d_loss
        if with_r1:
            penalty = pair_r1_penalty(pair_logits(hx, hz, *disc.joint_weights()), x_real, z_real)
            losses["discriminator"] = d_loss + r1 * penalty
            terms["r1_penalty"] = penalty.detach()
    if eg_steps:
        d_loss, eg_loss = bigan_losses(disc.x_path(x), disc.z_path(z_encoded), disc.x_path(x_generated),
                                       disc.z_path(z), *disc.joint_weights())
        losses["encoder_generator"] = eg_loss
    return losses, {"discriminator_loss": d_loss.detach(), "encoder_generator_loss": eg_loss.detach(), **terms}
