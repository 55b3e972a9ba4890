"""DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models") in PyTorch: the twin of ``theory_jax/ddim.py``.

Timestep convention of the project: integer index t in 0..T-1 (the paper's t+1), alpha_bar[t] = prod_{s<=t} (1 - beta_s),
alpha_bar_prev[0] = 1. Per-example coefficients are (B,) tensors broadcast over the trailing dims of x.

* ``ddim_sigma``: the noise scale sigma_t(eta) of eq. 16; eta = 1 is DDPM's posterior std, eta = 0 is deterministic.
* ``ddim_step``: one reverse step x_t -> x_{t-1} of eq. 12 with injected noise z.
* ``ddim_reverse_step``: one step of DDIM inversion x_{t-1} -> x_t (eta = 0, eps evaluated at the known point).
* ``respace_alpha_bars``: the kept alpha_bars, their alpha_bars_prev and the respaced betas (Nichol & Dhariwal 2021),
  as a pure function of the kept indices (``practice_torch.ddpm.Schedule.respace`` builds the same tables).
* ``ddim_encode`` / ``ddim_decode``: the deterministic encoder x_0 -> x_T (inversion) over a (respaced) schedule and
  the decoder x_T -> x_0, which is ``practice_torch.ddpm.sample_loop(..., sampler="ddim", eta=0)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from practice_torch.progress import progress as bar

__all__ = ["ddim_decode", "ddim_encode", "ddim_reverse_step", "ddim_sigma", "ddim_step", "respace_alpha_bars"]


def _per_example(c: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """A coefficient c: () or (B,) as a tensor broadcastable against x: (B, ...)."""
    c = torch.as_tensor(c, dtype=x.dtype, device=x.device)
    return c.reshape(c.shape + (1,) * (x.dim() - c.dim())) if c.dim() == 1 else c


def ddim_sigma(alpha_bar_t, alpha_bar_prev, eta):
    """sigma_t(eta) = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev) (Song et al. 2021, eq. 16).

    alpha_bar_t, alpha_bar_prev: (B,) or scalars; eta: float or (B,). Returns the same shape.
    """
    alpha_bar_t = torch.as_tensor(alpha_bar_t)
    return eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * torch.sqrt(1 - alpha_bar_t / alpha_bar_prev)


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t, alpha_bar_prev, eta, z: torch.Tensor) -> torch.Tensor:
    """One DDIM reverse step x_t -> x_{t-1} (Song et al. 2021, eq. 12).

    x_t, eps, z: (B, ...); alpha_bar_t, alpha_bar_prev: (B,) or scalars (alpha_bar_prev = 1 at t = 0); eta: float.
    x_{t-1} = sqrt(a_prev) * x0_hat + sqrt(1 - a_prev - sigma^2) * eps + sigma * z.
    """
    a_t, a_prev = _per_example(alpha_bar_t, x_t), _per_example(alpha_bar_prev, x_t)
    sigma = ddim_sigma(a_t, a_prev, _per_example(eta, x_t))
    x0_hat = (x_t - torch.sqrt(1 - a_t) * eps) / torch.sqrt(a_t)          # "predicted x_0", eq. 12 first term
    direction = torch.sqrt((1 - a_prev - sigma**2).clamp_min(0)) * eps  # "direction pointing to x_t"
    return torch.sqrt(a_prev) * x0_hat + direction + sigma * z              # + random noise


def ddim_reverse_step(x_prev: torch.Tensor, eps: torch.Tensor, alpha_bar_t, alpha_bar_prev) -> torch.Tensor:
    """One step of DDIM inversion x_{t-1} -> x_t: ``ddim_step`` at eta = 0 solved for x_t with eps held fixed.

    x_prev, eps: (B, ...); alpha_bar_t, alpha_bar_prev: (B,) or scalars. With eps from the same network at the new
    level this is the Euler step of the probability-flow ODE (Song et al. 2021, eq. 13) run forwards in time:
    x_t = sqrt(a_t) * x0_hat + sqrt(1 - a_t) * eps,  x0_hat = (x_{t-1} - sqrt(1 - a_prev) * eps) / sqrt(a_prev).
    """
    a_t, a_prev = _per_example(alpha_bar_t, x_prev), _per_example(alpha_bar_prev, x_prev)
    x0_hat = (x_prev - torch.sqrt(1 - a_prev) * eps) / torch.sqrt(a_prev)
    return torch.sqrt(a_t) * x0_hat + torch.sqrt(1 - a_t) * eps


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
    """Deterministic DDIM inversion x_0 -> x_T over ``schedule`` (a ``practice_torch.ddpm.Schedule``, maybe respaced).

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

    The loop is ``practice_torch.ddpm.sample_loop`` (imported here, so that this module does not import ddpm).
    """
    from practice_torch.ddpm import sample_loop

    return sample_loop(eps_fn, schedule, x_T, sampler="ddim", eta=0.0, progress=progress)
