"""The ODE solves of the flows' samplers (flow matching, the CNF): dx/dt = f(t, x) from noise at t = 0 to data at
t = 1, as torchdiffeq solves it for the PyTorch samplers.

The fixed-step methods take torchdiffeq's steps on its grid (``theory_jax.cnf.STEPS``: Euler, the midpoint rule and
Kutta's 3/8 rule, torchdiffeq's 'rk4'), every state kept, and the states at output times between grid points come
from torchdiffeq's linear interpolation within the step (``at_times``). dopri5 is diffrax's Dormand-Prince 5(4) with
a PID step-size controller at the same tolerances, as ``theory_jax.cnf.solve_dopri5`` solves, its outputs by diffrax's
dense interpolation: its steps are not torchdiffeq's, so its states agree with PyTorch's to the solver's tolerance,
not to rounding."""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

FIXED = {"euler": 1, "midpoint": 2, "rk4": 4}  # field evaluations a step (torchdiffeq's names; rk4: the 3/8 rule)
METHODS = (*FIXED, "dopri5")


def grid_states(field, x0, grid, step):
    """x at every point of ``grid`` (S + 1,) by ``step(f, t, x, h)`` from grid point k to k + 1 (h = t_{k+1} - t_k, as
    torchdiffeq steps its grid). x0: (B, ...) at grid[0] -> (S + 1, B, ...)."""
    def one(x, ends):
        t0, t1 = ends
        x = step(field, t0, x, t1 - t0)
        return x, x

    _, xs = jax.lax.scan(one, x0, (grid[:-1], grid[1:]))
    return jnp.concatenate([x0[None], xs])


def dopri5_states(field, x0, times, atol: float, rtol: float):
    """(x at each of ``times`` (F,) (F, B, ...), the field evaluations: 6 a step tried and 1 to start) by diffrax's
    Dopri5 with a PID controller at ``atol``/``rtol`` from times[0] (the first step 1/20 of the span, as
    ``theory_jax.cnf.solve_dopri5``)."""
    t0, t1 = times[0], times[-1]
    sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, args: field(t, y)), diffrax.Dopri5(), t0, t1, (t1 - t0) / 20,
                              x0, saveat=diffrax.SaveAt(ts=times),
                              stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=100_000)
    return sol.ys, 1 + 6 * sol.stats["num_steps"]


def at_times(states: np.ndarray, grid: np.ndarray, times: np.ndarray) -> np.ndarray:
    """torchdiffeq's outputs of a fixed-grid solve: x at each of ``times`` (F,), times[0] = grid[0], by linear
    interpolation within the first step [t_k, t_{k+1}] with t_{k+1} >= t (the step's end itself where t is it).
    states: (S + 1, B, ...) at ``grid`` (S + 1,) -> (F, B, ...)."""
    out, j = [states[0]], 1
    for k in range(len(grid) - 1):
        t0, t1 = grid[k], grid[k + 1]
        while j < len(times) and t1 >= times[j]:
            t = times[j]
            if t == t0:
                out.append(states[k])
            elif t == t1:
                out.append(states[k + 1])
            else:  # y0 + (t - t0) / (t1 - t0) (y1 - y0), in the states' precision
                slope = np.float32((t - t0) / (t1 - t0))
                out.append(states[k] + slope * (states[k + 1] - states[k]))
            j += 1
    return np.stack(out)
