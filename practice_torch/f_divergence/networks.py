"""The f-GAN: variational divergence minimisation with a selectable f-divergence (Nowozin et al. 2016).

A generator G_theta(z) and a critic V_omega(x) with T = g_f(V) play the saddle-point game of eq. 6,

    F(theta, omega) = E_{x~P}[g_f(V_omega(x))] - E_{z}[f*(g_f(V_omega(G_theta(z))))],

minimised in theta, maximised in omega; max_omega F is the variational lower bound on D_f(P || Q_theta).
Algorithm 1 ("single-step gradient method") updates both players at once with one optimizer step:
``fgan_loss`` is one scalar whose gradient is -dF/domega for the critic (ascent) and dF/dtheta for the
generator (descent), so the shared engine's single AdamW step is exactly that method. The generator's
term sees the critic through its detached weights (``torch.func.functional_call``); the critic's term
sees the generated samples detached. ``generator_objective = "non_saturating"`` swaps the generator's
term for max E_z[g_f(V(G(z)))] (Nowozin et al., sec. 3.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from practice_torch.f_divergence.functions import (
    check_divergence,
    conjugate_at_activation,
    output_activation,
    variational_objective,
)

GENERATOR_OBJECTIVES = ("saddle", "non_saturating")


# 1. Networks: MLPs for vectors (2-D toy data), DCGAN-style convolutions for images -------------------
class MLPGenerator(nn.Module):
    """z (B, d) -> x (B, *shape): LeakyReLU(0.2) MLP (no dead units); a sigmoid output when the data are [0, 1] images."""

    def __init__(self, latent_dim: int, shape: Sequence[int], hidden: Sequence[int], unit_interval: bool = False):
        super().__init__()
        self.shape, self.unit_interval = tuple(shape), unit_interval
        widths = [latent_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(widths[-1], math.prod(shape))

    def forward(self, z):
        h = z
        for layer in self.layers:
            h = F.leaky_relu(layer(h), 0.2)
        x = self.out(h).view(-1, *self.shape)
        return torch.sigmoid(x) if self.unit_interval else x


class Critic(nn.Module):
    """A critic V(x) = out(features(x)): a subclass builds ``features`` (x (B, *shape) -> (B, width)) and the linear
    head ``out`` (width -> 1); V is unconstrained (T = g_f(V) is applied outside)."""

    def forward(self, x):
        return self.out(self.features(x)).squeeze(-1)

    def logit_and_features(self, x):
        """(V (B,), the features (B, width) ``out`` reads): what a projection discriminator reads
        (``practice_torch.gan``)."""
        h = self.features(x)
        return self.out(h).squeeze(-1), h


class MLPCritic(Critic):
    """x (B, *shape) -> V (B,): LeakyReLU(0.2) MLP, unconstrained output (T = g_f(V) is applied outside)."""

    def __init__(self, shape: Sequence[int], hidden: Sequence[int]):
        super().__init__()
        widths = [math.prod(shape), *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(widths[-1], 1)

    def features(self, x):
        """The last hidden layer, (B, hidden[-1]): what ``out`` reads (and a projection critic, ``practice_torch.gan``)."""
        h = torch.flatten(x, 1)
        for layer in self.layers:
            h = F.leaky_relu(layer(h), 0.2)
        return h


class ConvGenerator(nn.Module):
    """DCGAN-style (Radford et al. 2016): z (B, d) -> Linear, BatchNorm, ReLU to ``fc`` features, then to a
    (channels[-1], H/4, W/4) map, then ConvTranspose 4x4 stride 2 (padding 1) twice -> (B, C, H, W) in [0, 1]
    (a sigmoid), or unbounded (``unit_interval=False``: normalised log-mels)."""

    def __init__(self, latent_dim: int, shape: Sequence[int], channels: Sequence[int] = (64, 128), fc: int = 1024,
                 unit_interval: bool = True):
        super().__init__()
        self.unit_interval = unit_interval
        c, hgt, wid = shape
        small, big = channels
        self.base = (big, hgt // 4, wid // 4)
        self.fc = nn.Linear(latent_dim, fc, bias=False)
        self.norm_fc = nn.BatchNorm1d(fc)
        self.project = nn.Linear(fc, math.prod(self.base), bias=False)
        self.norm0 = nn.BatchNorm2d(big)
        self.up1 = nn.ConvTranspose2d(big, small, 4, stride=2, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(small)
        self.up2 = nn.ConvTranspose2d(small, c, 4, stride=2, padding=1)

    def forward(self, z):
        h = F.relu(self.norm_fc(self.fc(z)))
        h = F.relu(self.norm0(self.project(h).view(-1, *self.base)))
        h = F.relu(self.norm1(self.up1(h)))
        x = self.up2(h)
        return torch.sigmoid(x) if self.unit_interval else x


class ConvCritic(Critic):
    """x (B, C, H, W) -> V (B,): Conv 4x4 stride 2 (padding 1) twice, Linear to ``fc`` features, Linear to 1;
    LeakyReLU(0.2) between, layer normalisation after the second conv and the first Linear (``norm=False``: none,
    for a weight-clipped WGAN critic, whose Lipschitz bound a normalisation would undo). Never batch
    normalisation: V(x) must not depend on the rest of the batch (the critic sees data and samples apart)."""

    def __init__(self, shape: Sequence[int], channels: Sequence[int] = (64, 128), fc: int = 1024, norm: bool = True):
        super().__init__()
        c, hgt, wid = shape
        small, big = channels
        self.down1 = nn.Conv2d(c, small, 4, stride=2, padding=1)
        self.down2 = nn.Conv2d(small, big, 4, stride=2, padding=1)
        self.norm2 = nn.GroupNorm(1, big) if norm else nn.Identity()  # one group: LayerNorm over (C, H, W)
        self.fc = nn.Linear(big * (hgt // 4) * (wid // 4), fc)
        self.norm_fc = nn.LayerNorm(fc) if norm else nn.Identity()
        self.out = nn.Linear(fc, 1)

    def features(self, x):
        """The ``fc`` features, (B, fc): what ``out`` reads (and a projection critic, ``practice_torch.gan``)."""
        h = F.leaky_relu(self.down1(x), 0.2)
        h = F.leaky_relu(self.norm2(self.down2(h)), 0.2)
        return F.leaky_relu(self.norm_fc(self.fc(torch.flatten(h, 1))), 0.2)


# 2. The f-GAN ----------------------------------------------------------------------------------------
class FGAN(nn.Module):
    """Generator and critic of one f-GAN. ``shape``: one example, (D,) vectors or (C, H, W) images; ``divergence``:
    the f whose conjugate's domain the critic's output activation g_f maps into."""

    def __init__(self, shape: Sequence[int], divergence: str = "js", architecture: str = "mlp", latent_dim: int = 8,
                 hidden: Sequence[int] = (128, 128), channels: Sequence[int] = (64, 128), fc: int = 1024,
                 unit_interval: bool = False):
        super().__init__()
        check_divergence(divergence)
        self.shape, self.latent_dim, self.divergence = tuple(shape), latent_dim, divergence
        if architecture == "mlp":
            self.generator = MLPGenerator(latent_dim, shape, hidden, unit_interval)
            self.critic = MLPCritic(shape, hidden)
        elif architecture == "conv":
            if len(shape) != 3 or shape[1] % 4 or shape[2] % 4 or len(channels) != 2:
                raise ValueError(f"the conv f-GAN needs (C, H, W) images with H and W divisible by 4 and two "
                                 f"model.channels, got shape {tuple(shape)} and channels {tuple(channels)}")
            self.generator = ConvGenerator(latent_dim, shape, channels, fc, unit_interval)
            self.critic = ConvCritic(shape, channels, fc)
        else:
            raise ValueError(f"architecture must be 'mlp' or 'conv', got {architecture!r}")

    def critic_value(self, x):
        """T = g_f(V(x)), the variational function. x: (B, *shape) -> (B,)."""
        return output_activation(self.critic(x), self.divergence)

    def forward(self, z):
        """Samples G(z): z (B, d) -> (B, *shape)."""
        return self.generator(z)


def fgan_loss(net: FGAN, x, z, r1: float = 0.0, generator_objective: str = "non_saturating"):
    """One scalar for Algorithm 1's simultaneous step: -F for the critic plus the generator's objective (the sum of
    ``player_losses``, whose gradient is each player's: the critic's weights are held fixed in the generator's term).

    x: (B, *shape) data, z: (B, d) latents -> (loss, {"divergence_estimate": F, "generator_loss": ...}).
    ``r1`` > 0 adds r1/2 E_P|grad_x V|^2 to the critic's loss (Mescheder et al. 2018), which makes simultaneous
    gradient steps converge locally; ``generator_objective``: "saddle" (F itself) or "non_saturating".
    """
    losses, terms = player_losses(net, x, z, r1, generator_objective)
    return losses["generator"] + losses["critic"], terms


def player_losses(net: FGAN, x, z, r1: float = 0.0, generator_objective: str = "non_saturating"):
    """The two players' losses of Algorithm 1's simultaneous step: the critic's -F (+ r1 R1) and the generator's
    ``generator_objective`` on the critic's fixed weights. x: (B, *shape), z: (B, d) -> ({"critic", "generator"},
    terms)."""
    if generator_objective not in GENERATOR_OBJECTIVES:
        raise ValueError(f"unknown generator objective {generator_objective!r}; choose from "
                         f"{', '.join(GENERATOR_OBJECTIVES)}")
    fake = net.generator(z)
    x = x.detach().requires_grad_(r1 > 0)
    v_real = net.critic(x)
    objective = variational_objective(v_real, net.critic(fake.detach()), net.divergence)  # eq. 6, F at omega
    frozen = {name: p.detach() for name, p in net.critic.named_parameters()}
    v_gen = functional_call(net.critic, frozen, (fake,))  # the critic's weights held fixed: gradients reach theta
    if generator_objective == "saddle":
        generator_loss = -torch.mean(conjugate_at_activation(v_gen, net.divergence))  # F's theta-dependent term
    else:
        generator_loss = -torch.mean(output_activation(v_gen, net.divergence))  # max E_z[g_f(V(G(z)))], sec. 3.2
    terms = {"divergence_estimate": objective, "generator_loss": generator_loss}
    if r1 <= 0:
        return {"critic": -objective, "generator": generator_loss}, terms
    terms["r1_penalty"] = r1_penalty(v_real, x)
    return {"critic": -objective + r1 * terms["r1_penalty"], "generator": generator_loss}, terms


def r1_penalty(v_real, x):
    """R1 (Mescheder et al. 2018, eq. 9 without the gamma): 1/2 E_P |grad_x V(x)|^2, the squared norm over all of an
    example's dimensions, in the graph (create_graph) so that the critic's step descends it.

    v_real: (B,) critic values of x (B, *shape), which required grad when V was evaluated -> scalar.
    """
    (grad,) = torch.autograd.grad(v_real.sum(), x, create_graph=True)
    return 0.5 * torch.mean(torch.sum(torch.flatten(grad, 1) ** 2, dim=1))
