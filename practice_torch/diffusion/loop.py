"""The reverse process: one loop over a (possibly respaced) ``Schedule`` for every sampler.

``sample_loop`` walks the kept timesteps from the last to the first; at each it asks ``eps_fn`` for the noise
prediction and takes one step of a step function ``step(x_t, eps, alpha_bar_t, alpha_bar_prev, z) -> x_{t-1}``:
DDPM's ancestral step (Ho et al. 2020, Algorithm 2), DDIM's (Song et al. 2021, eq. 12) at a given eta, or any other
rule of that signature. The noise z of each step comes from ``generator``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from practice_torch.diffusion.schedule import Schedule
from practice_torch.diffusion.steps import clipped_eps, ddim_step, ddpm_step
from practice_torch.progress import progress as bar

__all__ = ["SAMPLERS", "EpsFn", "StepFn", "sample_loop", "step_rule"]

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
SAMPLERS = ("ddpm", "ddim")


def step_rule(sampler: str, eta: float = 0.0) -> StepFn:
    """The step function of a named sampler: 'ddpm' (ancestral, posterior variance beta-tilde) or 'ddim' at ``eta``
    (0: deterministic, 1: DDPM's variance)."""
    if sampler == "ddpm":
        return ddpm_step
    if sampler == "ddim":
        return lambda x_t, eps, a_t, a_prev, z: ddim_step(x_t, eps, a_t, a_prev, eta, z)
    raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")


@torch.no_grad()
def sample_loop(eps_fn: EpsFn, schedule: Schedule, x_T: torch.Tensor, *, sampler: str = "ddpm", eta: float = 0.0,
                step: StepFn | None = None, generator: torch.Generator | None = None, progress: bool = True,
                clip_x0: float | None = None, callback: Callable[[int, torch.Tensor], None] | None = None
                ) -> torch.Tensor:
    """x_0 from x_T: (B, ...) by the reverse chain over ``schedule``'s kept timesteps.

    eps_fn(x_t, t) -> eps, t: (B,) long ORIGINAL timestep indices (``schedule.timesteps``); ``step`` the update
    rule, or None for the named ``sampler`` at ``eta`` (``step_rule``).
    clip_x0: clip the predicted x_0 to [-clip_x0, clip_x0] at each step (images in [-1, 1]); None: no clipping.
    callback(t, x_prev) is called after each step with the original index t of the step just taken.
    The noise z (B, ...) of each step is drawn on the CPU from ``generator`` (none at the last step)."""
    desc = f"{sampler} sampling" if step is None else "sampling"
    step = step or step_rule(sampler, eta)
    x, b = x_T, x_T.shape[0]
    for i in bar(range(len(schedule) - 1, -1, -1), desc=desc, leave=False, disable=not progress):
        t = schedule.timesteps[i]
        a_t = schedule.alpha_bars[i].expand(b)
        a_prev = schedule.alpha_bars_prev[i].expand(b)
        eps = eps_fn(x, t.expand(b).to(x.device))
        if clip_x0 is not None:
            eps = clipped_eps(x, eps, a_t, clip_x0)
        z = (torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device) if i > 0
             else torch.zeros_like(x))
        x = step(x, eps, a_t, a_prev, z)
        if callback is not None:
            callback(int(t), x)
    return x
