"""Energy-based models: p(x) = exp(-E(x)) / Z, the two-phase likelihood gradient, Langevin MCMC, a replay buffer.

Lectures: energy-based models; Langevin MCMC; replay buffer; contrastive divergence (Hinton 2002, "Training products
of experts by minimizing contrastive divergence"; Du & Mordatch 2019, "Implicit generation and modeling with
energy-based models" (IGEBM), eqs. 1-4 and sec. 3.1 (replay buffer, L2 energy regularisation); Nijkamp et al. 2019
for short-run, persistent chains; Roberts & Tweedie 1996 for the unadjusted Langevin algorithm's bias).

The normaliser Z(theta) = int exp(-E_theta) makes the log-likelihood gradient a difference of two expectations,

    grad_theta log p(x) = -grad_theta E(x) + E_{x' ~ p}[grad_theta E(x')]                 (data phase, model phase)

and the model phase is estimated with samples of p drawn by Langevin dynamics,

    x' = x - eps grad_x E(x) + sqrt(2 eps) z,  z ~ N(0, I)                              (stationary law -> p as eps -> 0)

Samplers that decouple the noise from the step, x' = x - a grad E + sigma z (the course's step 10, noise 0.005),
sample the tempered law exp(-E / T) with T = sigma^2 / (2a), not p. Training minimises the contrastive divergence
mean E(x+) - mean E(x-) plus alpha (E(x+)^2 + E(x-)^2), the negatives x- taken from persistent chains kept in a
replay buffer, a share of whose rows is refreshed with uniform noise at every step.
Twin: ``practice_torch/ebm`` (same names, same arguments); cases: ``shared_specs/ebm.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from theory_jax.broadcasting import per_example


# 1. The pure functions (twins in practice_torch.ebm.functions) ------------------------------------------------------
def langevin_step(x, grad_energy, step_size, z):
    """x' = x - eps grad_x E(x) + sqrt(2 eps) z: one step of the unadjusted Langevin algorithm on p ~ exp(-E) (Du &
    Mordatch 2019, IGEBM eq. 2 with lambda = 2 eps). x: (B, ...) the chains; grad_energy: (B, ...) grad_x E(x);
    step_size: () or (B,) the step eps; z: (B, ...) the noise ~ N(0, I) -> x': (B, ...)."""
    eps = per_example(step_size, x)
    return x - eps * grad_energy + jnp.sqrt(2 * eps) * z


def tempered_langevin_step(x, grad_energy, step_size, noise_scale, z):
    """x' = x - a grad_x E(x) + sigma z, noise decoupled from the step: Langevin on exp(-E / T), T = sigma^2 / (2a).
    x, grad_energy, z: (B, ...); step_size, noise_scale: () or (B,)."""
    return x - per_example(step_size, x) * grad_energy + per_example(noise_scale, x) * z


def langevin_temperature(step_size, noise_scale):
    """T = sigma^2 / (2a): the temperature whose law exp(-E / T) ``tempered_langevin_step`` samples. (...)."""
    return noise_scale**2 / (2 * step_size)


def refresh_buffer(samples, fresh, mask):
    """The replay buffer's refresh (Du & Mordatch 2019, sec. 3.1): row b becomes fresh noise where mask_b = 1, else
    keeps its persistent chain. samples: (B, ...) the buffer's chains; fresh: (B, ...) new noise; mask: (B,) of 0/1
    (Bernoulli(refresh fraction) draws) -> (B, ...)."""
    m = per_example(mask, samples)
    return m * fresh + (1 - m) * samples


def cd_loss(energy_pos, energy_neg, alpha):
    """Contrastive divergence with the L2 energy regulariser (IGEBM sec. 3.1): mean E(x+) - mean E(x-)
    + alpha (mean E(x+)^2 + mean E(x-)^2); the negatives x- are held fixed (no gradient through the chain).
    energy_pos: (B,), energy_neg: (M,), alpha: () -> ()."""
    contrast = jnp.mean(energy_pos) - jnp.mean(energy_neg)
    return contrast + alpha * (jnp.mean(energy_pos**2) + jnp.mean(energy_neg**2))


# 2. The energy networks (twins in practice_torch.ebm.networks; SiLU, no normalisation: E must be a function of x) --
class MLPEnergy(nn.Module):
    """E(x) of points: Dense layers with SiLU, then a Dense to one number. x: (B, D) -> (B,)."""

    dim: int
    hidden: Sequence[int] = (128, 128)

    def setup(self):
        self.layers = [nn.Dense(h) for h in self.hidden]
        self.out = nn.Dense(1)

    def __call__(self, x):
        h = x
        for layer in self.layers:
            h = nn.silu(layer(h))
        return self.out(h)[:, 0]


class ConvEnergy(nn.Module):
    """E(x) of images: strided 3x3 convs (stride 2, padding 1 each side, explicit), SiLU, the spatial mean, then a
    SiLU hidden layer and one number. x: (B, H, W, C) -> (B,)."""

    channels: Sequence[int] = (16, 32, 64)
    hidden: int = 64
    in_channels: int = 1  # the torch twin's Conv2d needs it; flax infers it from x

    def setup(self):
        self.convs = [nn.Conv(c, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))) for c in self.channels]
        self.head = [nn.Dense(self.hidden), nn.Dense(1)]

    def __call__(self, x):
        h = x
        for conv in self.convs:
            h = nn.silu(conv(h))
        h = nn.silu(self.head[0](jnp.mean(h, axis=(1, 2))))
        return self.head[1](h)[:, 0]


# 3. Known energies and their laws (the derivation's targets) --------------------------------------------------------
def double_well_energy(x):
    """E(x) = (x1^2 - 1)^2 + 2 (x2 - x1^2 / 2)^2: a bimodal, curved 2-D law whose marginals are known:
    x1 ~ exp(-(x1^2 - 1)^2) / Z1 and x2 | x1 ~ N(x1^2 / 2, 1/4). x: (N, 2) -> (N,)."""
    return (x[:, 0] ** 2 - 1) ** 2 + 2 * (x[:, 1] - x[:, 0] ** 2 / 2) ** 2


def double_well_cdfs(temperature: float = 1.0, grid: int = 1201):
    """The marginal CDFs (F1, F2) of exp(-E / T) for ``double_well_energy``, by quadrature over x1 in [-3, 3] (the
    tails beyond carry less than 1e-27): F1 by the trapezoid rule on the density of x1, F2(t) = int p(x1)
    Phi((t - x1^2/2) / sqrt(T/4)) dx1."""
    u = np.linspace(-3.0, 3.0, grid)
    dens = np.exp(-((u**2 - 1) ** 2) / temperature)
    cum = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(u))])
    weights = dens / np.trapezoid(dens, u)
    sd = math.sqrt(temperature / 4)

    def f1(t):
        return np.interp(t, u, cum / cum[-1])

    def f2(t):
        t = np.atleast_1d(t)
        out = np.empty(len(t))
        for i in range(0, len(t), 500):
            block = stats.norm.cdf((t[i:i + 500, None] - u[None] ** 2 / 2) / sd)
            out[i:i + 500] = np.trapezoid(block * weights, u, axis=1)
        return out

    return f1, f2


@partial(jax.jit, static_argnames="energy")
def langevin_chain(energy, x0, noise, step_size, noise_scale):
    """Langevin steps x' = x - a grad E(x) + sigma z from x0 (N, D), one step per noise[k] (K, N, D) -> (N, D).
    noise_scale sigma = sqrt(2a) is ``langevin_step``; any other sigma is ``tempered_langevin_step``."""
    grad = jax.grad(lambda y: jnp.sum(energy(y)))

    def body(x, z):
        return tempered_langevin_step(x, grad(x), step_size, noise_scale, z), None

    return jax.lax.scan(body, x0, noise)[0]
