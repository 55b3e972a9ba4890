"""The noise-conditional score network (NCSN) and annealed Langevin sampling.

Song & Ermon 2019 ("Generative modeling by estimating gradients of the data distribution"): one network
s_theta(x, sigma) for all noise levels sigma_1 > ... > sigma_L, trained by denoising score matching weighted by
lambda(sigma) = sigma^2 (eqs. 5-6), sampled by annealed Langevin dynamics (Algorithm 1). Song & Ermon 2020 (NCSNv2):

* technique 1: sigma_1 about the largest distance between training points (2-D moons: 5; Fashion-MNIST: 20);
* technique 3: s_theta(x, sigma) = f_theta(x, c(sigma)) / sigma, so sigma^2-weighted DSM is
  1/2 ||f_theta + z||^2: f_theta predicts -z, an epsilon-predictor (claim 9 of ``python -m theory_jax score``);
* the noise-level input c(sigma) = 999 (log sigma - log sigma_L) / (log sigma_1 - log sigma_L) runs over the
  range of DDPM timestep indices (sigma_L -> 0, sigma_1 -> 999), so the same sinusoidal embedding serves
  ``practice_torch.nets.MLPDenoiser`` (2-D) and ``practice_torch.nets.UNet`` (images);
* a final denoising step x + sigma_L^2 s(x, sigma_L) (Tweedie; Jolicoeur-Martineau et al. 2021).
"""

from __future__ import annotations

import torch
from torch import nn

from practice_torch.score.functions import annealed_step_sizes, denoise, langevin_step


class NCSN(nn.Module):
    """s_theta(x, sigma) = f(x, c(sigma)) / sigma for data of ``shape`` (D,) or (C, H, W); ``denoiser`` is f, called
    as f(x, t) with x flattened to (B, D) when ``flatten`` (an MLP on images). ``sigmas`` (L,): sigma_1 > ... > sigma_L."""

    def __init__(self, shape: tuple[int, ...], sigmas: torch.Tensor, denoiser: nn.Module, flatten: bool = False):
        super().__init__()
        if sigmas.ndim != 1 or len(sigmas) < 2 or not bool(torch.all(sigmas[:-1] > sigmas[1:])):
            raise ValueError("NCSN needs at least 2 noise levels in decreasing order")
        self.shape, self.flatten, self.denoiser = tuple(shape), flatten, denoiser
        self.register_buffer("sigmas", sigmas.float())

    @property
    def num_levels(self) -> int:
        return len(self.sigmas)

    def noise_input(self, sigma: torch.Tensor) -> torch.Tensor:
        """c(sigma) = 999 (log sigma - log sigma_L) / (log sigma_1 - log sigma_L): (B,) -> (B,)."""
        lo, hi = torch.log(self.sigmas[-1]), torch.log(self.sigmas[0])
        return 999.0 * (torch.log(sigma) - lo) / (hi - lo)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The score s_theta(x, sigma). x: (B, *shape), sigma: (B,) -> (B, *shape)."""
        t = self.noise_input(sigma)
        out = self.denoiser(x.flatten(1), t).view_as(x) if self.flatten else self.denoiser(x, t)
        return out / sigma.view(-1, *([1] * (x.ndim - 1)))


def level_subset(num_levels: int, keep: int) -> torch.Tensor:
    """Indices of ``keep`` levels evenly spread over 0..L-1, always with the first and the last (keep 0: all)."""
    if keep <= 0 or keep >= num_levels:
        return torch.arange(num_levels)
    return torch.unique(torch.round(torch.linspace(0, num_levels - 1, max(keep, 2))).long())


@torch.no_grad()
def annealed_langevin_sampling(score_fn, sigmas: torch.Tensor, x: torch.Tensor, steps_per_level: int, step_lr: float,
                               generator: torch.Generator, final_denoise: bool = True, snapshots: int = 0):
    """Algorithm 1 of Song & Ermon 2019 from x (B, ...): at each level i, ``steps_per_level`` steps of
    ``langevin_step`` with alpha_i = step_lr sigma_i^2 / sigma_L^2 (noise drawn on CPU from ``generator`` in x's
    dtype, then moved to x's device), then ``denoise`` at sigma_L. score_fn(x, sigma (B,)) -> (B, ...). Returns (x_0,
    the first ``snapshots`` chains after each level (L, snapshots, ...) or None)."""
    alphas = annealed_step_sizes(sigmas.double(), step_lr).tolist()
    trail = []
    for sigma, alpha in zip(sigmas, alphas):
        sigma_b = sigma.to(x.device).expand(len(x))
        for _ in range(steps_per_level):
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = langevin_step(x, score_fn(x, sigma_b), alpha, z)
        if snapshots:
            trail.append(x[:snapshots].cpu())
    if final_denoise:
        sigma_b = sigmas[-1].to(x.device).expand(len(x))
        x = denoise(x, score_fn(x, sigma_b), sigma_b)
        if snapshots:
            trail.append(x[:snapshots].cpu())
    return x, (torch.stack(trail) if snapshots else None)


def initial_state(n: int, shape: tuple[int, ...], sigma_max: float, generator: torch.Generator,
                  center: float = 0.0) -> torch.Tensor:
    """x_0 ~ N(center, sigma_1^2 I), (n, *shape): q_{sigma_1} is nearly this Gaussian when sigma_1 is about the data's
    diameter (NCSNv2 technique 1; Song & Ermon 2019 start from uniform noise instead)."""
    return center + sigma_max * torch.randn((n, *shape), generator=generator)
