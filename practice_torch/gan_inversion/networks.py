"""GAN inversion of a trained generator: the encoder, the frozen generator beside it, and the three inverters
(Zhu et al. 2016, "Generative visual manipulation on the natural image manifold", eq. 1-2; Bau et al. 2019, "Seeing
what a GAN cannot generate", for the encoder with a pixel term; Xia et al. 2022's survey for the taxonomy).

* optimisation-based: z* = argmin_z ||G(z) - x||^2 / D + lambda ||z||^2 (eq. 1), by Adam from z = 0 or a random z;
* learning-based: an encoder z* = E(x), trained by latent regression on the generator's own samples (eq. 2),
  min_E E_z ||E(G(z)) - z||^2, optionally plus a reconstruction term on real images, ||G(E(x)) - x||^2 / D;
* hybrid: the optimisation of eq. 1 started at E(x).

``inversion_objective`` is ``functions.inversion_loss`` for any generator (per example, not averaged), and
``encoder_loss`` uses ``functions.latent_regression_loss``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from practice_torch.autoencoder.functions import reconstruction_mse
from practice_torch.gan_inversion.functions import latent_regression_loss
from practice_torch.vae.networks import check_divisible, downsample, downsampling_convs


# 1. The encoder and the frozen generator -------------------------------------------------------------------------
class Encoder(nn.Module):
    """E(x): images (B, C, H, W) -> codes (B, d). The conv encoders' trunk (``downsampling_convs``: strided 3x3
    convs, GroupNorm, SiLU; each halves the image), then Linear (``fc``) to ``features`` values, SiLU, Linear
    (``out``) to d. Twin: ``theory_jax.gan_inversion.Encoder``."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: Sequence[int] = (32, 64),
                 features: int = 256, groups: int = 8):
        super().__init__()
        c, hgt, wid = image_shape
        check_divisible(image_shape, len(channels))
        self.convs, self.norms = downsampling_convs(c, channels, groups)
        scale = 2 ** len(channels)
        self.fc = nn.Linear(channels[-1] * (hgt // scale) * (wid // scale), features)
        self.out = nn.Linear(features, latent_dim)

    def forward(self, x):
        h = torch.flatten(downsample(self.convs, self.norms, x), 1)
        return self.out(F.silu(self.fc(h)))


class Inverter(nn.Module):
    """A trained generator G, frozen (requires_grad off, always in eval mode: a DCGAN's BatchNorm keeps the running
    statistics it was sampled with), and the encoder E that learns to invert it.

    generator: z (B, d) -> x (B, *shape); encoder: x (B, *shape) -> z (B, d)."""

    def __init__(self, generator: nn.Module, encoder: nn.Module, latent_dim: int, shape: Sequence[int]):
        super().__init__()
        self.generator = generator.requires_grad_(False).eval()
        self.encoder = encoder
        self.latent_dim, self.shape = latent_dim, tuple(shape)

    def train(self, mode: bool = True) -> Inverter:
        super().train(mode)
        self.generator.eval()
        return self

    def forward(self, z):
        """G(z): (B, d) -> (B, *shape)."""
        return self.generator(z)

    def encode(self, x):
        """E(x): (B, *shape) -> (B, d)."""
        return self.encoder(x)


# 2. The encoder's objective --------------------------------------------------------------------------------------
def encoder_loss(net: Inverter, x, z, reconstruction_weight: float = 0.0):
    """Latent regression on the generator's samples (Zhu et al. eq. 2), mean_b ||E(G(z_b)) - z_b||^2, plus
    ``reconstruction_weight`` times the reconstruction error of real images, mean_b ||G(E(x_b)) - x_b||^2 / D
    (Bau et al. 2019; its gradient reaches E through the frozen G).

    x: (B, *shape) real images, z: (B, d) ~ N(0, I) -> (loss, {"latent_regression", "reconstruction"}); the
    reconstruction term is reported at every step, computed without a graph when its weight is 0."""
    with torch.no_grad():
        fake = net(z)
    regression = latent_regression_loss(z, net.encode(fake))
    with torch.set_grad_enabled(reconstruction_weight > 0 and torch.is_grad_enabled()):
        reconstruction = reconstruction_mse(x, net(net.encode(x))).mean()
    total = regression + reconstruction_weight * reconstruction if reconstruction_weight > 0 else regression
    return total, {"latent_regression": regression.detach(), "reconstruction": reconstruction.detach()}


# 3. Inversion by optimisation (and the hybrid: the same from E(x)) -----------------------------------------------
def inversion_objective(generator, z, x, prior_weight: float):
    """Zhu et al. eq. 1 per example: ||G(z_b) - x_b||^2 / D + lambda ||z_b||^2. Its batch mean is
    ``functions.inversion_loss`` when G is ``functions.mlp_generator``. z: (B, d), x: (B, *shape) -> (B,)."""
    return reconstruction_mse(x, generator(z)) + prior_weight * torch.sum(z**2, dim=-1)


def invert(generator, x, z0, steps: int, lr: float, prior_weight: float, record: Sequence[int] = ()):
    """Minimise ``inversion_objective`` over z by Adam for ``steps`` steps from z0, every code by its own gradient
    (the per-example objectives summed: Adam's step is then the one it takes on each image alone). The generator's
    weights are left alone (only z is handed to the optimiser).

    x: (B, *shape), z0: (B, d) -> (z* (B, d), {k: the reconstruction MSE per example (B,) after k steps, for each k
    of ``record``})."""
    z = z0.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([z], lr=lr)
    trace = {}
    with torch.enable_grad():
        for k in range(1, steps + 1):
            optimiser.zero_grad(set_to_none=True)
            inversion_objective(generator, z, x, prior_weight).sum().backward()
            optimiser.step()
            if k in record:
                with torch.no_grad():
                    trace[k] = reconstruction_mse(x, generator(z)).detach()
    return z.detach(), trace


def latent_error(z, z_true):
    """The squared distance of recovered codes to the true ones per latent dimension, ||z - z_true||^2 / d:
    (B, d) x 2 -> (B,). 1 for z = 0 on average, 2 for an independent draw from the prior."""
    return torch.sum((z - z_true) ** 2, dim=-1) / z.shape[-1]


def feature_distance(features, x, x_hat):
    """||f(x) - f(x_hat)|| per example in the feature space of the project's classifier (``features(images)``:
    (B, C, H, W) -> (B, k)); x, x_hat: (B, C, H, W) in [0, 1] -> (B,)."""
    return torch.linalg.vector_norm(features(x) - features(x_hat.clamp(0, 1)), dim=-1)


def grid_side(n: int) -> int:
    """Columns of a picture of about n items."""
    return max(1, math.ceil(math.sqrt(n)))
