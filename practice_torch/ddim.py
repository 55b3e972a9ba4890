"""DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models") in PyTorch: the twin of ``theory_jax/ddim.py``.

Timestep convention of the project: integer index t in 0..T-1 (the paper's t+1), alpha_bar[t] = prod_{s<=t} (1 - beta_s),
alpha_bar_prev[0] = 1. Per-example coefficients are (B,) tensors broadcast over the trailing dims of x.

* ``ddim_sigma``, ``ddim_step``, ``ddim_reverse_step`` (from the diffusion core, ``practice_torch.diffusion.steps``):
  the noise scale sigma_t(eta) of eq. 16 (eta = 1 is DDPM's posterior std, eta = 0 is deterministic), one reverse
  step x_t -> x_{t-1} of eq. 12 with injected noise z, one step of DDIM inversion x_{t-1} -> x_t.
* ``respace_alpha_bars``: the kept alpha_bars, their alpha_bars_prev and the respaced betas (Nichol & Dhariwal 2021),
  as a pure function of the kept indices (``practice_torch.diffusion.Schedule.respace`` builds the same tables).
* ``ddim_encode`` / ``ddim_decode``: the deterministic encoder x_0 -> x_T (inversion) over a (respaced) schedule and
  the decoder x_T -> x_0, which is ``practice_torch.diffusion.sample_loop(..., sampler="ddim", eta=0)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from practice_torch.diffusion import ddim_reverse_step, ddim_sigma, ddim_step, sample_loop
from practice_torch.progress import progress as bar

__all__ = ["ddim_decode", "ddim_encode", "ddim_reverse_step", "ddim_sigma", "ddim_step", "respace_alpha_bars"]


def respace_alpha_bars(alpha_bars: torch.Tensor, timesteps: torch.Tensor):
    """A sub-schedule on the kept original indices (Nichol & Dhariwal 2021, Sec. 4).

    alpha_bars: (T,) of the full schedule; timesteps: (S,) increasing kept indices (long). Returns (alpha_bars (S,),
    alpha_bars_prev (S,) with 1 first, betas (S,) = 1 - a_i / a_{i-1}): the cumulative product of the respaced betas
    gives back the original alpha_bar at every kept index, so q(x_t|x_0) is unchanged.
    """
    kept = alpha_bars[timesteps]
    prev = torch.cat([torch.ones(1, dtype=kept.dtype, device=kept.device), kept[:-1]])
    return kept, prev, 1 - kept / prev


@torch.no_grad()
def ddim_encode(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule, x_0: torch.Tensor, *,
                progress: bool = False) -> torch.Tensor:
    """Deterministic DDIM inversion x_0 -> x_T over ``schedule`` (a ``practice_torch.diffusion.Schedule``, maybe
    respaced).

    eps_fn(x_t: (B, ...), t: (B,) long original timestep indices) -> eps: (B, ...); x_0: (B, ...). Step i goes from
    the level of schedule index i - 1 (x_0 for i = 0) to index i, evaluating eps at the current point with the target
    timestep (the ODE of Song et al. 2021, Sec. 4.3, run forwards as in their Sec. 5.4 reconstructions).
    Decoding with ``sample_loop(eps_fn, schedule, x_T, sampler="ddim", eta=0)`` recovers x_0 up to the ODE error.
    """
    x = x_0
    steps = range(len(schedule.timesteps))
    for i in bar(steps, desc="ddim encode", leave=False, disable=not progress):
        t = torch.full((x.shape[0],), int(schedule.timesteps[i]), dtype=torch.long, device=x.device)
        eps = eps_fn(x, t)
        x = ddim_reverse_step(x, eps, float(schedule.alpha_bars[i]), float(schedule.alpha_bars_prev[i]))
    return x


def ddim_decode(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule, x_T: torch.Tensor, *,
                progress: bool = False) -> torch.Tensor:
    """Deterministic DDIM sampling x_T -> x_0 (eta = 0): the inverse of ``ddim_encode`` up to the ODE error.

    The loop is the core's ``sample_loop`` with DDIM's step at eta = 0.
    """
    return sample_loop(eps_fn, schedule, x_T, sampler="ddim", eta=0.0, progress=progress)
