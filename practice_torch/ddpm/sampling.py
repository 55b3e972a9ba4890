"""The reverse process: one loop over a (possibly respaced) ``Schedule`` for every sampler.

``sample_loop`` walks the kept timesteps from the last to the first; at each it asks ``eps_fn`` for the noise
prediction and takes one step: DDPM's ancestral step (Ho et al. 2020, Algorithm 2) or DDIM's (Song et al. 2021,
eq. 12, ``practice_torch.ddim.ddim_step``). The noise z of each step comes from ``generator``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from practice_torch.ddpm.schedule import Schedule, ddpm_step, per_example, predict_x0
from practice_torch.progress import progress as bar

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SAMPLERS = ("ddpm", "ddim")


def clipped_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t, clip: float) -> torch.Tensor:
    """The eps for which predict_x0 returns x0_hat clipped to [-clip, clip] (Ho et al.'s clip_denoised):
    eps' = (x_t - sqrt(alpha_bar_t) clip(x0_hat)) / sqrt(1 - alpha_bar_t). x_t, eps: (B, ...), alpha_bar_t: (B,)."""
    a = per_example(alpha_bar_t, x_t)
    x0 = predict_x0(x_t, alpha_bar_t, eps).clamp(-clip, clip)
    return (x_t - torch.sqrt(a) * x0) / torch.sqrt(1 - a)


@torch.no_grad()
def sample_loop(eps_fn: EpsFn, schedule: Schedule, x_T: torch.Tensor, *, sampler: str = "ddpm", eta: float = 0.0,
                generator: torch.Generator | None = None, progress: bool = True, clip_x0: float | None = None,
                callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """x_0 from x_T: (B, ...) by the reverse chain over ``schedule``'s kept timesteps.

    eps_fn(x_t, t) -> eps, t: (B,) long ORIGINAL timestep indices (``schedule.timesteps``); sampler 'ddpm'
    (ancestral, posterior variance beta-tilde) or 'ddim' (eta: 0 deterministic, 1 = DDPM's variance).
    clip_x0: clip the predicted x_0 to [-clip_x0, clip_x0] at each step (images in [-1, 1]); None: no clipping.
    callback(t, x_prev) is called after each step with the original index t of the step just taken.
    The noise z (B, ...) of each step is drawn on the CPU from ``generator`` (none at the last step)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if sampler == "ddim":
        from practice_torch.ddim import ddim_step
    x, b = x_T, x_T.shape[0]
    steps = range(len(schedule) - 1, -1, -1)
    for i in bar(steps, desc=f"{sampler} sampling", leave=False, disable=not progress):
        t = schedule.timesteps[i]
        a_t = schedule.alpha_bars[i].expand(b)
        a_prev = schedule.alpha_bars_prev[i].expand(b)
        eps = eps_fn(x, t.expand(b).to(x.device))
        if clip_x0 is not None:
            eps = clipped_eps(x, eps, a_t, clip_x0)
        z = (torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device) if i > 0
             else torch.zeros_like(x))
        if sampler == "ddpm":
            x = ddpm_step(x, eps, a_t, a_prev, z)
        else:
            x = ddim_step(x, eps, a_t, a_prev, eta, z)
        if callback is not None:
            callback(int(t), x)
    return x
