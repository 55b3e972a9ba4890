"""The WGAN's players (Arjovsky et al. 2017; WGAN-GP, Gulrajani et al. 2017): the GAN's generator and, in the
discriminator's place, a critic f(x) -> (B,), a real-valued score with no sigmoid and no normalisation layer (the
weight clipping's Lipschitz bound would not survive one). The networks are the GAN's (``practice_torch.gan.networks
.players``); ``Wasserstein`` holds them: weights only. Its losses are ``practice_torch.wgan.functions``'.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from practice_torch.gan.networks import players


class Wasserstein(nn.Module):
    """A generator G(z) and a critic f(x). shape: one example, (D,) vectors (``mlp``) or (C, H, W) images (``conv``)."""

    def __init__(self, shape: Sequence[int], architecture: str = "mlp", latent_dim: int = 8,
                 hidden: Sequence[int] = (128, 128), channels: Sequence[int] = (64, 128), fc: int = 1024,
                 unit_interval: bool = False):
        super().__init__()
        self.shape, self.latent_dim, self.num_classes = tuple(shape), latent_dim, 0  # unconditional
        self.generator, self.critic, _ = players(shape, architecture, latent_dim, hidden, channels, fc, norm=False,
                                                 unit_interval=unit_interval)

    def forward(self, z, y=None):
        """Samples G(z): z (B, d) -> (B, *shape); y: None (the GAN family's samplers pass labels, this net has none)."""
        return self.generator(z)

    def critic_parameters(self) -> list[nn.Parameter]:
        return list(self.critic.parameters())

    def generator_parameters(self) -> list[nn.Parameter]:
        return list(self.generator.parameters())
