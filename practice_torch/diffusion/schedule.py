"""The forward process of diffusion (Ho, Jain & Abbeel 2020): noise schedules, q(x_t|x_0), the posterior q(x_{t-1}|x_t, x_0).

Timestep convention of the project: integer index t in 0..T-1 (the paper's t+1); alpha_bar[t] = prod_{s<=t} (1 - beta_s),
alpha_bar_prev[0] = 1. Per-example coefficients are () or (B,) tensors broadcast over the trailing dims of x and cast to
x's dtype (``practice_torch.broadcasting.per_example``). The derivation ``python -m theory_jax ddpm`` proves each
formula; ``theory_jax/diffusion.py`` has the JAX twins.

``Schedule`` is the one object that training and every sampler share: the float64 tables of a schedule, and its
respaced versions (a subsequence of the timesteps, Nichol & Dhariwal 2021, section 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from practice_torch.broadcasting import per_example

__all__ = ["Schedule", "alpha_bars", "cosine_betas", "linear_betas", "posterior_mean_variance", "predict_x0",
           "q_sample"]


# 1. Noise schedules -----------------------------------------------------------------------------------------
def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """beta_t evenly spaced from beta_start to beta_end (Ho et al. 2020, section 4). -> (T,) float64."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """beta_t = min(1 - f(t+1)/f(t), max_beta), f(u) = cos^2((u/T + s)/(1 + s) * pi/2), so that
    alpha_bar[t] = f(t+1)/f(0) (Nichol & Dhariwal 2021, eq. 17). -> (T,) float64."""
    u = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2
    return torch.clamp(1 - f[1:] / f[:-1], max=max_beta)


def alpha_bars(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar[t] = prod_{s<=t} (1 - beta_s) (Ho et al. 2020, eq. 4). (T,) -> (T,)."""
    return torch.cumprod(1 - betas, dim=0)


# 2. q(x_t|x_0) and its inverse ------------------------------------------------------------------------------
def q_sample(x0: torch.Tensor, alpha_bar_t, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, a draw of q(x_t|x_0) (Ho et al. 2020, eq. 4).
    x0: (B, ...) the data; alpha_bar_t: (B,) or () the cumulative product of the alphas at each example's t;
    eps: (B, ...) the noise ~ N(0, I) -> x_t: (B, ...)."""
    a = per_example(alpha_bar_t, x0)
    return torch.sqrt(a) * x0 + torch.sqrt(1 - a) * eps


def predict_x0(x_t: torch.Tensor, alpha_bar_t, eps: torch.Tensor) -> torch.Tensor:
    """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t): eq. 4 solved for x_0 (Ho et al. eq. 15)."""
    a = per_example(alpha_bar_t, x_t)
    return (x_t - torch.sqrt(1 - a) * eps) / torch.sqrt(a)


# 3. The posterior q(x_{t-1}|x_t, x_0) ------------------------------------------------------------------------
def posterior_mean_variance(x0: torch.Tensor, x_t: torch.Tensor, alpha_bar_t, alpha_bar_prev):
    """Mean and variance of q(x_{t-1}|x_t, x_0) = N(mu_tilde, beta_tilde I) (Ho et al. eqs. 6-7), with
    beta_t = 1 - alpha_bar_t / alpha_bar_prev:

        mu_tilde   = sqrt(alpha_bar_prev) beta_t / (1 - alpha_bar_t) x_0
                   + sqrt(alpha_t) (1 - alpha_bar_prev) / (1 - alpha_bar_t) x_t
        beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta_t

    x0, x_t: (B, ...); alpha_bar_t, alpha_bar_prev: (B,) or () -> (mean (B, ...), var shaped like alpha_bar_t)."""
    a_t, a_prev = per_example(alpha_bar_t, x_t), per_example(alpha_bar_prev, x_t)
    beta = 1 - a_t / a_prev
    mean = torch.sqrt(a_prev) * beta / (1 - a_t) * x0 + torch.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t) * x_t
    var = (1 - a_prev) / (1 - a_t) * beta
    return mean, var.reshape(torch.as_tensor(alpha_bar_t).shape)


# 4. The schedule object shared by training and samplers ------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """The float64 CPU tables of a noise schedule over the timesteps ``timesteps`` (original indices, (T,) long):
    betas, alphas = 1 - betas, alpha_bars, alpha_bars_prev (alpha_bar of the previous kept step; 1 first), each (T,).
    A full schedule has timesteps = arange(T); ``respace`` keeps a subsequence (betas recomputed from alpha_bars)."""

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor
    alpha_bars_prev: torch.Tensor
    timesteps: torch.Tensor

    @staticmethod
    def from_alpha_bars(alpha_bars_: torch.Tensor, timesteps: torch.Tensor) -> Schedule:
        """The schedule whose kept steps have these alpha_bars: beta_i = 1 - alpha_bar_i / alpha_bar_prev_i."""
        alpha_bars_ = alpha_bars_.to(torch.float64)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars_[:-1]])
        betas = 1 - alpha_bars_ / prev
        return Schedule(betas, 1 - betas, alpha_bars_, prev, timesteps.to(torch.long))

    @staticmethod
    def make(kind: str, T: int) -> Schedule:
        """The full schedule 'linear' (Ho et al.) or 'cosine' (Nichol & Dhariwal) of T steps."""
        if kind not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {kind!r}")
        if T < 1:
            raise ValueError(f"the number of diffusion steps T must be positive, got {T}")
        betas = linear_betas(T) if kind == "linear" else cosine_betas(T)
        return Schedule.from_alpha_bars(alpha_bars(betas), torch.arange(T))

    def respace(self, steps: int) -> Schedule:
        """``steps`` evenly spaced kept steps, the first (index 0) and the last (T-1) included, betas recomputed
        as 1 - alpha_bar_i / alpha_bar_prev_i so the marginals q(x_t|x_0) are unchanged (Nichol & Dhariwal 2021)."""
        if not 1 <= steps <= len(self):
            raise ValueError(f"respace to 1..{len(self)} steps, got {steps}")
        keep = torch.unique(torch.round(torch.linspace(0, len(self) - 1, steps, dtype=torch.float64)).long())
        if steps == 1:
            keep = torch.tensor([len(self) - 1])
        return Schedule.from_alpha_bars(self.alpha_bars[keep], self.timesteps[keep])

    def __len__(self) -> int:
        return len(self.betas)

    def at(self, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_bar, alpha_bar_prev) of the kept steps at positions i: (B,) long -> two (B,) float64."""
        i = i.cpu()
        return self.alpha_bars[i], self.alpha_bars_prev[i]
