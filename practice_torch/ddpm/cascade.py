"""A cascade of two DDPMs (Ho et al. 2021, "Cascaded diffusion models"), trained together in one run: a base DDPM on
the images downsampled by ``factor`` (block means) and a super-resolution DDPM on the full images conditioned on the
low-resolution image, upsampled, after Gaussian conditioning augmentation at a level s it is told
(``practice_torch.diffusion.cascade``). A library module of the ddpm package: the adapter (``training.py``) imports
it; it imports no adapter.
"""

from __future__ import annotations

import torch
from torch import nn

from practice_torch.ddpm.functions import eps_loss
from practice_torch.diffusion import Schedule, augment_condition, downsample, q_sample, sample_loop, upsample
from practice_torch.diffusion.model import Diffusion, generate

__all__ = ["Cascade", "SuperResolution", "cascade_losses", "cascade_sample", "condition_levels"]


class SuperResolution(nn.Module):
    """eps_theta(x_t, t | z_s, s): a U-Net on the channels of x_t (B, C, H, W) and of the upsampled, augmented
    condition (B, C, H, W) side by side (2C in), told the level as s / S (a one-dimensional continuous condition)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, condition: torch.Tensor, level: torch.Tensor
                ) -> torch.Tensor:
        return self.unet(torch.cat([x_t, condition], 1), t, cond=level[:, None].to(x_t.dtype))


class Cascade(nn.Module):
    """The two stages: ``base`` (a ``Diffusion`` on (C, H / factor, W / factor)) and ``sr`` (a ``SuperResolution``
    over the run's schedule on (C, H, W)); ``shape`` is the full image's, and the augmentation levels use the same
    schedule's alpha_bar (level 0: the clean condition)."""

    def __init__(self, base: Diffusion, sr: SuperResolution, schedule: Schedule, shape: tuple[int, ...],
                 factor: int, images: bool):
        super().__init__()
        self.base, self.sr, self.schedule, self.shape = base, sr, schedule, tuple(shape)
        self.factor, self.images, self.num_classes = factor, images, 0
        self.register_buffer("alpha_bars", schedule.alpha_bars.clone(), persistent=False)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x - 1 if self.images else x

    def from_model(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2).clamp(0, 1) if self.images else x


def condition_levels(net: Cascade, s: torch.Tensor) -> torch.Tensor:
    """alpha_bar of augmentation level s (B,) long: 1 at level 0 (no augmentation), the schedule's alpha_bar[s - 1]
    above it."""
    table = torch.cat([torch.ones(1, dtype=net.alpha_bars.dtype, device=net.alpha_bars.device), net.alpha_bars])
    return table[s]


def cascade_losses(net: Cascade, x0: torch.Tensor, noise: dict[str, torch.Tensor], levels: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(the base's L_simple on z = downsample(x0), the super-resolution stage's L_simple on x0 given
    upsample(z_s), z_s augmented at level s ~ U{0..levels}): Ho et al. 2021, section 4.1, each stage its own
    Ho et al. 2020 eq. 14. x0: (B, C, H, W) in model space; noise: the adapter's ``draw_noise`` rows."""
    z = downsample(x0, net.factor)
    t_low, t = noise["t_low"], noise["t"]
    base = eps_loss(noise["eps_low"], net.base(q_sample(z, net.alpha_bars[t_low], noise["eps_low"]), t_low))
    s = noise["s"]
    z_s = augment_condition(z, condition_levels(net, s), noise["eps_aug"])
    x_t = q_sample(x0, net.alpha_bars[t], noise["eps"])
    sr = eps_loss(noise["eps"], net.sr(x_t, t, upsample(z_s, net.factor), s.float() / max(levels, 1)))
    return base.mean(), sr.mean()


@torch.no_grad()
def cascade_sample(net: Cascade, n: int, generator: torch.Generator, *, level: int, levels: int, sampler: str,
                   steps: int, eta: float, clip_x0: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(the full images (n, C, H, W), the base's low-resolution images (n, C, H / factor, W / factor)), in model
    space: the base's reverse chain, its draw augmented at ``level`` (of ``levels`` the stage was trained on), then
    the super-resolution stage's chain conditioned on it; both by ``sampler`` over ``steps`` respaced steps."""
    from practice_torch.diffusion.model import sampling_schedule

    device = next(net.parameters()).device
    z, _, _ = generate(net.base, n, generator, sampler=sampler, steps=steps, eta=eta, clip_x0=clip_x0)
    s = torch.full((n,), level, device=device, dtype=torch.long)
    eps = torch.randn(z.shape, generator=generator).to(device)
    condition = upsample(augment_condition(z, condition_levels(net, s), eps), net.factor)
    told = s.float() / max(levels, 1)
    x_T = torch.randn((n, *net.shape), generator=generator).to(device)
    schedule = sampling_schedule(net.base, steps)  # the stages share the run's schedule
    x0 = sample_loop(lambda x, t: net.sr(x, t, condition, told), schedule, x_T, sampler=sampler, eta=eta,
                     generator=generator, clip_x0=1.0 if clip_x0 else None)
    return x0, z
