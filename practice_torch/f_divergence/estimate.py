"""The critic alone: estimate D_f(P || Q) between two known 2-D Gaussians and compare with the truth.

Only the critic of the f-GAN is trained (the generator is replaced by a fixed Q): maximising
E_P[g_f(V)] - E_Q[f*(g_f(V))] over an MLP V approaches sup_T of the variational bound, which is
D_f(P || Q) (Nowozin et al. 2016, eq. 4; tight at T* = f'(p/q), ``python -m theory_jax f_divergence``).
The truth is the quadrature of D_f = int q f(p/q) on a fine grid (any divergence); for kl, reverse_kl,
hellinger and pearson between diagonal Gaussians it factorises over coordinates into closed forms (``closed_form``).

    python -m practice_torch.f_divergence            # the table for all six divergences
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from practice_torch.f_divergence.functions import DIVERGENCES, conjugate_at_activation, f_generator, output_activation
from practice_torch.f_divergence.networks import MLPCritic


@dataclass(frozen=True)
class Gaussians:
    """P = N(mean_p, diag std_p^2), Q = N(mean_q, diag std_q^2) in 2-D (Q wider: every estimator has finite variance)."""

    mean_p: tuple[float, float] = (0.0, 0.0)
    std_p: tuple[float, float] = (1.0, 1.0)
    mean_q: tuple[float, float] = (1.0, -0.5)
    std_q: tuple[float, float] = (1.3, 1.1)

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n samples of P and n of Q, each (n, 2) float32."""
        eps = torch.randn((2, n, 2), generator=generator)
        return (torch.tensor(self.mean_p) + torch.tensor(self.std_p) * eps[0],
                torch.tensor(self.mean_q) + torch.tensor(self.std_q) * eps[1])


def true_divergence(divergence: str, g: Gaussians = Gaussians(), points: int = 1201, width: float = 9.0) -> float:
    """D_f(P || Q) = int q f(p/q) dx by the trapezoid rule on a points x points grid, +-width std around each mean."""
    lo = np.minimum(np.subtract(g.mean_p, width * np.asarray(g.std_p)), np.subtract(g.mean_q, width * np.asarray(g.std_q)))
    hi = np.maximum(np.add(g.mean_p, width * np.asarray(g.std_p)), np.add(g.mean_q, width * np.asarray(g.std_q)))
    axes = [np.linspace(a, b, points) for a, b in zip(lo, hi)]

    def density(mean, std):
        dens = [np.exp(-0.5 * ((ax - m) / s) ** 2) / (s * math.sqrt(2 * math.pi)) for ax, m, s in zip(axes, mean, std)]
        return np.outer(dens[0], dens[1])

    p, q = torch.from_numpy(density(g.mean_p, g.std_p)), torch.from_numpy(density(g.mean_q, g.std_q))
    integrand = (q * f_generator(p / q, divergence)).numpy()
    return float(np.trapezoid(np.trapezoid(integrand, axes[1], axis=1), axes[0]))


def closed_form(divergence: str, g: Gaussians = Gaussians()) -> float:
    """kl, reverse_kl, hellinger (2 - 2 prod BC_d) and pearson (prod (1 + chi2_d) - 1) between diagonal Gaussians."""
    mp, sp, mq, sq = (np.asarray(v, dtype=np.float64) for v in (g.mean_p, g.std_p, g.mean_q, g.std_q))
    if divergence == "reverse_kl":
        mp, sp, mq, sq = mq, sq, mp, sp
    if divergence in ("kl", "reverse_kl"):
        return float(np.sum(np.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5))
    if divergence == "hellinger":
        var = sp**2 + sq**2
        return float(2 - 2 * np.prod(np.sqrt(2 * sp * sq / var) * np.exp(-((mp - mq) ** 2) / (4 * var))))
    if divergence == "pearson":
        w = 2 * sq**2 - sp**2
        return float(np.prod(sq**2 / (sp * np.sqrt(w)) * np.exp((mp - mq) ** 2 / w)) - 1)
    raise ValueError(f"no closed form here for {divergence!r}; use true_divergence")


@dataclass(frozen=True)
class Estimate:
    divergence: str
    estimate: float  # the trained critic's variational bound on fresh samples
    standard_error: float  # of that Monte Carlo mean
    truth: float


def estimate_divergence(divergence: str, g: Gaussians = Gaussians(), steps: int = 1000, batch_size: int = 1024,
                        hidden: tuple[int, ...] = (64, 64), lr: float = 3e-3, eval_samples: int = 200_000,
                        seed: int = 0) -> Estimate:
    """Train an MLP critic V by Adam to maximise E_P[g_f(V)] - E_Q[f*(g_f(V))] on fresh batches, then evaluate
    the bound on ``eval_samples`` new pairs: T(x_P) - f*(T(x_Q)), mean and standard error."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    critic = MLPCritic((2,), hidden)
    optimizer = torch.optim.Adam(critic.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=0.05 * lr)
    for _ in range(steps):
        xp, xq = g.draw(batch_size, generator)
        bound = torch.mean(output_activation(critic(xp), divergence)) - torch.mean(
            conjugate_at_activation(critic(xq), divergence))
        optimizer.zero_grad()
        (-bound).backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        xp, xq = g.draw(eval_samples, generator)
        pairs = (output_activation(critic(xp), divergence) - conjugate_at_activation(critic(xq), divergence)).double()
    return Estimate(divergence, float(pairs.mean()), float(pairs.std() / math.sqrt(eval_samples)),
                    true_divergence(divergence, g))


def main() -> None:
    g = Gaussians()
    print(f"critic-only estimates of D_f(P || Q), P = N({g.mean_p}, diag{g.std_p}^2), Q = N({g.mean_q}, "
          f"diag{g.std_q}^2)  (js: D_f = 2 JS)")
    print(f"{'divergence':<12}{'estimate':>10}{'+- se':>9}{'truth':>10}{'rel. error':>12}")
    for divergence in DIVERGENCES:
        e = estimate_divergence(divergence, g)
        print(f"{divergence:<12}{e.estimate:>10.4f}{e.standard_error:>9.4f}{e.truth:>10.4f}"
              f"{(e.estimate - e.truth) / e.truth:>+12.1%}")
