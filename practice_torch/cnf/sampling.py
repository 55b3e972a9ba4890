"""Drawing from and scoring a trained CNF, for its adapter and for whoever compares it (``benchmarks.flow_matching``):
the solver settings of a config, samples pushed from noise at t = 0 to data at t = 1, and the exact-trace held-out
log-likelihood. ``config`` is the cnf adapter's ``Config`` (``cnf/training.py``), read, never kept."""

from __future__ import annotations

import torch

from practice_torch.cnf.field import CNF
from practice_torch.cnf.functions import FIXED_STEP
from practice_torch.engine.interface import Artefact
from practice_torch.plots import data_limits, trajectory_figure


def solver(method: str, atol: float, rtol: float, steps: int) -> dict:
    """torchdiffeq's settings of a solve: the tolerances of an adaptive method, the steps of a fixed-step one
    (ValueError, one line, for a fixed-step method without steps)."""
    if method in FIXED_STEP and steps < 1:
        raise ValueError(f"the fixed-step method {method!r} needs steps >= 1, got {steps}")
    return {"method": method, "atol": atol, "rtol": rtol, "steps": steps if method in FIXED_STEP else None}


def sample_solver(config) -> dict:
    """The solver of ``sample`` and of the W2 samples: ``sample_method`` at the eval tolerances."""
    return solver(config.sample_method, config.eval_atol, config.eval_rtol, config.sample_steps)


def device_of(net: CNF) -> torch.device:
    return next(net.parameters()).device


def draw_samples(net: CNF, config, n: int, generator: torch.Generator, frames: int = 2):
    """(x at ``frames`` times evenly spread over [0, 1] (frames, n, D), times (frames,), NFE): z ~ N(0, I) at t = 0
    pushed to t = 1 by the sampling solver."""
    z = torch.randn((n, net.dim), generator=generator).to(device_of(net))
    times = torch.linspace(0.0, 1.0, max(frames, 2))
    xs, nfe = net.transport(z, times, **sample_solver(config))
    return xs, times, nfe


def eval_log_prob(net: CNF, config, x: torch.Tensor, chunk: int = 1000) -> tuple[torch.Tensor, int]:
    """(log p_1(x) (B,) with the exact trace and the eval tolerances (dopri5), the NFE of the largest chunk)."""
    parts, nfe = [], 0
    for part in x.split(chunk):
        ll, n = net.log_prob(part, trace="exact", method="dopri5", atol=config.eval_atol, rtol=config.eval_rtol,
                             steps=None)
        parts.append(ll.detach())
        nfe = max(nfe, n)
    return torch.cat(parts), nfe


def cnf_trajectory_figure(xs: torch.Tensor, times: torch.Tensor, data: torch.Tensor, nfe: int) -> Artefact:
    """Particles x_t (T, N, 2) at each of ``times`` (T,) from noise to data, then 300 paths on the data box."""
    (x0, x1), (y0, y1) = data_limits(torch.cat([data, xs[0]]).numpy())
    return trajectory_figure(xs, times, (x0, x1), (y0, y1), f"paths noise -> data ({nfe} NFE)")
