"""The EBM functions in PyTorch: the twins of ``theory_jax/ebm.py`` (same names, same arguments).

``python -m theory_jax ebm`` proves what they compute: the contrastive divergence's gradient is the two-phase
likelihood gradient -E_data[grad E] + E_model[grad E] with model samples as negatives, Langevin steps sample
p ~ exp(-E) up to a bias that vanishes with the step, a step whose noise is decoupled from its size samples
exp(-E / T) with T = sigma^2 / (2a), and the buffer refresh replaces the masked rows. All noise is an argument.
"""

from __future__ import annotations

import torch

from practice_torch.broadcasting import per_example


def langevin_step(x, grad_energy, step_size, z):
    """x' = x - eps grad_x E(x) + sqrt(2 eps) z: one step of the unadjusted Langevin algorithm on p ~ exp(-E) (Du &
    Mordatch 2019, IGEBM eq. 2 with lambda = 2 eps). x: (B, ...) the chains; grad_energy: (B, ...) grad_x E(x);
    step_size: () or (B,) the step eps; z: (B, ...) the noise ~ N(0, I) -> x': (B, ...)."""
    eps = per_example(step_size, x)
    return x - eps * grad_energy + torch.sqrt(2 * eps) * z


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
    contrast = torch.mean(energy_pos) - torch.mean(energy_neg)
    return contrast + alpha * (torch.mean(energy_pos**2) + torch.mean(energy_neg**2))
