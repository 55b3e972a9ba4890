"""The energy networks and the EBM with its replay buffer (twins of the flax modules in ``theory_jax/ebm.py``).

``MLPEnergy`` (points) and ``ConvEnergy`` (images) map x to one number E(x); no normalisation layer, so that E is a
function of each x alone. ``EBM`` wraps one with the sampler: a replay buffer of persistent chains (a registered
buffer: checkpointed with the weights, never trained) and Langevin chains whose settings (``Langevin``: the run's
config) and noise are arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from practice_torch.ebm.functions import langevin_temperature, refresh_buffer, tempered_langevin_step


class MLPEnergy(nn.Module):
    """E(x) of points: Linear layers with SiLU, then a Linear to one number. x: (B, D) -> (B,)."""

    def __init__(self, dim: int, hidden: Sequence[int] = (128, 128)):
        super().__init__()
        sizes = [dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], 1)

    def forward(self, x):
        h = x
        for layer in self.layers:
            h = F.silu(layer(h))
        return self.out(h)[:, 0]


class ConvEnergy(nn.Module):
    """E(x) of images: strided 3x3 convs (stride 2, padding 1), SiLU, the spatial mean, then a SiLU hidden layer and
    one number. x: (B, C, H, W) -> (B,); any H, W (the mean pools whatever size is left)."""

    def __init__(self, channels: Sequence[int] = (16, 32, 64), hidden: int = 64, in_channels: int = 1):
        super().__init__()
        ins = [in_channels, *channels[:-1]]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, stride=2, padding=1) for i, o in zip(ins, channels))
        self.head = nn.ModuleList([nn.Linear(channels[-1], hidden), nn.Linear(hidden, 1)])

    def forward(self, x):
        h = x
        for conv in self.convs:
            h = F.silu(conv(h))
        h = F.silu(self.head[0](h.mean(dim=(2, 3))))
        return self.head[1](h)[:, 0]


@dataclass(frozen=True)
class Langevin:
    """The sampler's settings (the run's ``model.step_size``, ``model.temperature``, ``model.grad_clip``): chains
    move by ``tempered_langevin_step`` with step a and sigma = sqrt(2 a T): T = 1 is Langevin on p ~ exp(-E) itself,
    the course's images sampler (a = 10, sigma = 0.005) is T = 1.25e-6. ``grad_clip`` clamps each element of grad_x E
    (0: none)."""

    step_size: float
    temperature: float = 1.0
    grad_clip: float = 0.0

    @property
    def noise_scale(self) -> float:
        return (2 * self.step_size * self.temperature) ** 0.5

    @property
    def sampler_temperature(self) -> float:
        """T recovered from (a, sigma) by ``langevin_temperature``: what the chains sample, exp(-E / T)."""
        return float(langevin_temperature(torch.tensor(self.step_size, dtype=torch.float64),
                                         torch.tensor(self.noise_scale, dtype=torch.float64)))


class EBM(nn.Module):
    """An energy network with its replay buffer. Chains live in the box [low, high] (images: [0, 1]) and move by the
    ``Langevin`` sampler they are handed. The replay buffer holds ``buffer_size`` persistent chains, initialised with
    uniform noise; ``latest`` (buffer_size,) marks the rows the latest training step wrote."""

    def __init__(self, energy: nn.Module, shape: Sequence[int], low: float, high: float, buffer_size: int):
        super().__init__()
        self.energy, self.shape, self.low, self.high = energy, tuple(shape), low, high
        self.register_buffer("replay", low + (high - low) * torch.rand((buffer_size, *self.shape)))
        self.register_buffer("latest", torch.zeros(buffer_size, dtype=torch.bool))

    def forward(self, x):
        return self.energy(x)

    def uniform(self, u):
        """Fresh chains: uniforms u ~ U[0, 1) (B, ...) mapped to the box."""
        return self.low + (self.high - self.low) * u

    def langevin(self, x, z, sampler: Langevin):
        """Langevin chains from x (B, ...) with the noise z (B, K, ...) of K steps of ``sampler`` -> (B, ...),
        detached; each step is clamped to the box. The net's parameters get no gradient from the chains."""
        x = x.detach()
        for k in range(z.shape[1]):
            with torch.enable_grad():
                y = x.requires_grad_(True)
                grad = torch.autograd.grad(self.energy(y).sum(), y)[0]
            if sampler.grad_clip:
                grad = grad.clamp(-sampler.grad_clip, sampler.grad_clip)
            x = tempered_langevin_step(x.detach(), grad, sampler.step_size, sampler.noise_scale, z[:, k])
            x = x.clamp(self.low, self.high)
        return x.detach()

    def negatives(self, index, mask, u, z, sampler: Langevin):
        """The negatives of a training step: buffer rows ``index`` (B,), refreshed with uniform noise u (B, ...) where
        ``mask`` (B,) is 1, then K Langevin steps of ``sampler`` (z: (B, K, ...)); the chains go back into the
        buffer."""
        start = refresh_buffer(self.replay[index], self.uniform(u), mask.to(self.replay.dtype))
        x = self.langevin(start, z, sampler)
        with torch.no_grad():
            self.replay[index] = x
            self.latest.zero_()[index] = True  # the latest negatives, for the held-out criterion
        return x
