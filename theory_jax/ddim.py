"""DDIM: one family of non-Markovian forward processes with DDPM's marginals, and its deterministic sampler.

Lectures: DDIM; inference in DDIM; implementation (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit
Models", eq. 7, 12, 13, 14, 16; Ho et al. 2020 eq. 6-7 and 11 for the DDPM posterior; Nichol & Dhariwal 2021 for
respaced schedules; Song et al. 2021, "Score-Based Generative Modeling through SDEs", for the probability flow).

Timestep convention of the project: index t in 0..T-1 (the paper's t+1), a_t = alpha_bar[t] = prod_{s<=t}(1 - beta_s),
a_prev = alpha_bar[t-1] with alpha_bar_prev[0] = 1. The DDIM family, for any sigma_t (eq. 7):

    q_sigma(x_{t-1} | x_t, x_0) = N( sqrt(a_prev) x_0 + sqrt(1 - a_prev - sigma_t^2) (x_t - sqrt(a_t) x_0) / sqrt(1 - a_t),
                                     sigma_t^2 I ),

and the sampler replaces x_0 by x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t) (eq. 12). sigma_t(eta) of eq. 16:
eta = 1 is DDPM's posterior (beta-tilde), eta = 0 is deterministic: the Euler step of the probability-flow ODE
d xbar = eps ds in xbar = x / sqrt(a), s = sqrt(1/a - 1) (eq. 14), which can be run backwards to encode (inversion).

Twin: ``practice_torch/ddim.py`` (same names, same arguments); cases: ``shared_specs/ddim.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from theory_jax.broadcasting import per_example
from theory_jax.diffusion import (
    ddim_reverse_step,
    ddim_sigma,
    ddim_step,
)

__all__ = ["Schedule", "ddim_decode", "ddim_encode", "ddim_reverse_step", "ddim_sigma", "ddim_step",
           "even_timesteps", "gaussian_eps", "gaussian_flow", "respace_alpha_bars", "respaced_schedule"]


# 1. One step of the family and its inverse: ddim_sigma, ddim_step, ddim_reverse_step, from the diffusion core
# (theory_jax/diffusion.py), imported above and proved in the derivation (theory_jax/derivations/ddim.py).


# 2. Respaced schedules and the deterministic encoder / decoder -----------------------------------------------------
class Schedule(NamedTuple):
    """The fields of ``practice_torch.ddpm.Schedule`` that DDIM reads: (S,) each; timesteps are original indices."""

    timesteps: np.ndarray
    alpha_bars: np.ndarray
    alpha_bars_prev: np.ndarray


def respace_alpha_bars(alpha_bars, timesteps):
    """A sub-schedule on the kept original indices (Nichol & Dhariwal 2021, Sec. 4).

    alpha_bars: (T,) of the full schedule; timesteps: (S,) increasing kept indices. Returns (alpha_bars (S,),
    alpha_bars_prev (S,) with 1 first, betas (S,) = 1 - a_i / a_{i-1}): the respaced chain's own betas, whose
    cumulative product gives back the original alpha_bar at every kept index.
    """
    kept = alpha_bars[timesteps]
    prev = jnp.concatenate([jnp.ones((1,), kept.dtype), kept[:-1]])
    return kept, prev, 1 - kept / prev


def respaced_schedule(alpha_bars, timesteps) -> Schedule:
    """The ``Schedule`` of ``respace_alpha_bars`` as host (NumPy) tables, for the step loops below."""
    kept = np.asarray(alpha_bars)[np.asarray(timesteps)]
    return Schedule(np.asarray(timesteps), kept, np.concatenate([[1.0], kept[:-1]]))


_jit_step, _jit_reverse_step = jax.jit(ddim_step), jax.jit(ddim_reverse_step)


def ddim_encode(eps_fn: Callable, schedule: Schedule, x_0):
    """Deterministic inversion x_0 -> x_T: ``ddim_reverse_step`` from schedule index 0 up to S - 1.

    eps_fn(x: (B, ...), t: (B,) int original timesteps) -> (B, ...). Step i evaluates eps at the current point with
    the target timestep (index i), as in the torch twin.
    """
    x, (ts, a_t, a_prev) = x_0, (np.asarray(column) for column in schedule)  # host tables: cheap indexing
    for i in range(len(ts)):
        x = _jit_reverse_step(x, eps_fn(x, np.full((x.shape[0],), ts[i])), a_t[i], a_prev[i])
    return x


def ddim_decode(eps_fn: Callable, schedule: Schedule, x_T):
    """Deterministic DDIM sampling x_T -> x_0 (eta = 0) from schedule index S - 1 down to 0.

    The torch twin delegates to ``practice_torch.ddpm.sample_loop(..., sampler="ddim", eta=0)``.
    """
    x, zero, (ts, a_t, a_prev) = x_T, jnp.zeros_like(x_T), (np.asarray(column) for column in schedule)
    for i in reversed(range(len(ts))):
        x = _jit_step(x, eps_fn(x, np.full((x.shape[0],), ts[i])), a_t[i], a_prev[i], 0.0, zero)
    return x


# 3. Gaussian data: the optimal noise predictor and the exact flow, in closed form -----------------------------------
def gaussian_eps(x_t, alpha_bar_t, mu, s0):
    """E[eps | x_t] for data x_0 ~ N(mu, diag(s0^2)): sqrt(1 - a) (x_t - sqrt(a) mu) / (a s0^2 + 1 - a). x_t: (B, D)."""
    a = per_example(alpha_bar_t, x_t)
    return jnp.sqrt(1 - a) * (x_t - jnp.sqrt(a) * mu) / (a * s0**2 + 1 - a)


def gaussian_flow(x_0, alpha_bar_t, mu, s0):
    """The exact probability-flow map x_0 -> x_t for N(mu, diag(s0^2)) data (x_0: (B, D)):
    x_t = sqrt(a) mu + sqrt(a s0^2 + 1 - a) / s0 (x_0 - mu)."""
    a = per_example(alpha_bar_t, x_0)
    return jnp.sqrt(a) * mu + jnp.sqrt(a * s0**2 + 1 - a) / s0 * (x_0 - mu)


def even_timesteps(T: int, steps: int) -> np.ndarray:
    """``steps`` evenly spaced original indices from 0 to T - 1 (both included)."""
    return np.round(np.linspace(0, T - 1, steps)).astype(np.int64)
