"""The ODE sampler of flow matching: dx/dt = v(t, x) from x(0) ~ N(0, I) to t = 1 with torchdiffeq, counting NFE.

Methods (torchdiffeq's names): 'euler' (1 evaluation per step), 'midpoint' (2), 'rk4' (4; NOTE torchdiffeq's 'rk4' is
Kutta's 3/8 rule, not the classic 1/6, 1/3, 1/3, 1/6 tableau of the specs) with ``steps`` uniform steps, and 'dopri5'
(adaptive Dormand-Prince 5(4) with ``atol``/``rtol``; ``steps`` is then only the number of recorded frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchdiffeq import odeint

FIXED = {"euler": 1, "midpoint": 2, "rk4": 4}
METHODS = (*FIXED, "dopri5")


@dataclass
class Trajectory:
    """x: (frames, B, ...) the states at ``times`` (frames,), x[-1] the samples; nfe: field evaluations (batches)."""

    x: torch.Tensor
    times: torch.Tensor
    nfe: int


def check_solver(method: str, steps: int) -> None:
    if method not in METHODS:
        raise ValueError(f"the ODE sampler's method must be one of {', '.join(METHODS)}, got {method!r}")
    if steps < 1:
        raise ValueError(f"the ODE sampler needs steps >= 1, got {steps}")


@torch.no_grad()
def integrate(field, x0: torch.Tensor, method: str = "euler", steps: int = 50, atol: float = 1e-5,
              rtol: float = 1e-5, frames: int = 0) -> Trajectory:
    """Solve dx/dt = field(t, x) (t a 0-d tensor, x (B, ...)) from x0 at t = 0 to t = 1. Fixed-step methods take
    ``steps`` uniform steps; dopri5 adapts. Keeps ``frames`` evenly spaced states (0: only x0 and x1)."""
    check_solver(method, steps)
    nfe = 0

    def counted(t, x):
        nonlocal nfe
        nfe += 1
        return field(t, x)

    kw = dict(dtype=x0.dtype, device=x0.device)
    if method in FIXED:
        grid = torch.linspace(0, 1, steps + 1, **kw)  # the solver's steps; the output keeps only ``times``
        times = grid[torch.linspace(0, steps, min(max(frames, 2), steps + 1), device=x0.device).round().long()]
        options = dict(method=method, options=dict(grid_constructor=lambda func, y0, t: grid))
    else:
        times, options = torch.linspace(0, 1, max(frames, 2), **kw), dict(method=method, atol=atol, rtol=rtol)
    xs = odeint(counted, x0, times, **options)
    return Trajectory(xs, times, nfe)
