"""A noise predictor with its schedule, and drawing samples from it: what every DDPM-style topic trains and samples.

``Diffusion`` wraps a denoiser eps_theta(x_t, t[, y]) (``practice_torch.nets``: the U-Net or the MLP denoiser) with
the ``Schedule`` it was trained on, the shape of an example and its classes; ``generate`` draws samples by
``sample_loop`` over a respaced schedule, with classifier-free guidance for a conditional net (``ddpm`` on images,
mel spectrograms and 2-D sets; ``latent_diffusion`` on latents).
"""

from __future__ import annotations

import torch
from torch import nn

from practice_torch.diffusion.conditioning import cfg_eps
from practice_torch.diffusion.loop import sample_loop
from practice_torch.diffusion.schedule import Schedule

__all__ = ["Diffusion", "eps_function", "generate", "sampling_schedule"]


class Diffusion(nn.Module):
    """The noise predictor eps_theta with what sampling and evaluation need to know: the schedule, the shape of an
    example, the classes (``num_classes`` > 0: conditional), and whether the data are 8-bit images in [0, 1]
    (modelled as 2x - 1, with a discretised decoder in the bound) or real values taken as they are."""

    def __init__(self, denoiser: nn.Module, schedule: Schedule, shape: tuple[int, ...], num_classes: int,
                 images: bool):
        super().__init__()
        self.denoiser, self.schedule, self.shape = denoiser, schedule, tuple(shape)
        self.num_classes, self.images = num_classes, images
        # the training loss's alpha_bar_t, on the net's device (a step gathers from it with no copy from the host)
        self.register_buffer("alpha_bars", schedule.alpha_bars.clone(), persistent=False)

    def forward(self, x_t, t, y=None):
        """eps_theta(x_t, t[, y]): x_t (B, *shape), t (B,) long original indices, y (B,) long or None (null)."""
        return self.denoiser(x_t, t, y) if self.num_classes else self.denoiser(x_t, t)

    def to_model(self, x):
        return 2 * x - 1 if self.images else x

    def from_model(self, x):
        return ((x + 1) / 2).clamp(0, 1) if self.images else x


def eps_function(net: Diffusion, y: torch.Tensor | None, guidance_scale: float = 0.0):
    """eps_fn(x_t, t) for ``sample_loop``: eps_theta(x_t, t, y), or with classifier-free guidance w > 0
    (1 + w) eps(x_t, t, y) - w eps(x_t, t) (``cfg_eps``), both halves in one batch."""
    if y is None or not guidance_scale:
        return lambda x, t: net(x, t, y)
    null = torch.full_like(y, net.num_classes)

    def guided(x, t):
        both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        eps_cond, eps_uncond = both.chunk(2)
        return cfg_eps(eps_cond, eps_uncond, guidance_scale)

    return guided


def sampling_schedule(net: Diffusion, steps: int) -> Schedule:
    """The net's schedule respaced to ``steps`` kept steps (0 or T: the whole schedule)."""
    return net.schedule if steps in (0, len(net.schedule)) else net.schedule.respace(steps)


@torch.no_grad()
def generate(net: Diffusion, n: int, generator: torch.Generator, y: torch.Tensor | None = None, *,
             sampler: str = "ddpm", steps: int = 0, eta: float = 0.0, guidance_scale: float = 0.0,
             clip_x0: bool = False, frames: int = 0, chains: int = 8
             ) -> tuple[torch.Tensor, list[torch.Tensor], list[int]]:
    """n samples (n, *shape) in model space by ``sampler`` over ``steps`` respaced steps (0: all T), x_0 clipped to
    [-1, 1] at each step when ``clip_x0`` (data inside it: images rescaled to it, the galaxies), and, when frames > 0,
    x_t of the first ``chains`` chains at about ``frames`` steps, with t (T for x_T)."""
    device = next(net.parameters()).device
    schedule = sampling_schedule(net, steps)
    x_T = torch.randn((n, *net.shape), generator=generator).to(device)
    # frames quadratically spaced in the step index: more of them near t = 0, where the structure appears
    keep = (torch.linspace(1, 0, frames) ** 2 * (len(schedule) - 1)).round().long().tolist() if frames else []
    keep_t = {int(schedule.timesteps[i]) for i in keep}
    snapshots, times = [x_T[:chains].cpu()], [len(net.schedule)]

    def record(t: int, x: torch.Tensor) -> None:
        if t in keep_t:
            snapshots.append(x[:chains].cpu())
            times.append(t)

    x0 = sample_loop(eps_function(net, y, guidance_scale), schedule, x_T, sampler=sampler, eta=eta,
                     generator=generator, clip_x0=1.0 if clip_x0 else None, callback=record)
    return x0, snapshots, times
