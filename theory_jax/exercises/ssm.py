"""Exercises of state-space models: the S4D convolution kernel and Mamba's selective scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from theory_jax.exercises import Exercise, Mistake


def _powers_from_one(a_bar, b_bar, c, length):
    return (c * b_bar) @ (a_bar[:, None] ** jnp.arange(1, length + 1)[None, :])


def _without_b(a_bar, b_bar, c, length):
    return c @ (a_bar[:, None] ** jnp.arange(length)[None, :])


def _scan(u, delta, a, b, c, discretise_a=True, scale_b=True, read_before=False):
    def step(x, inputs):
        u_t, d_t, b_t, c_t = inputs
        new = jnp.exp((d_t[:, None] if discretise_a else 1.0) * a) * x + (
            (d_t[:, None] if scale_b else 1.0) * b_t[None, :]) * u_t[:, None]
        return new, (x if read_before else new) @ c_t
    _, y = jax.lax.scan(step, jnp.zeros(a.shape, u.dtype), (u, delta, b, c))
    return y


def _a_not_discretised(u, delta, a, b, c):
    return _scan(u, delta, a, b, c, discretise_a=False)


def _b_not_scaled(u, delta, a, b, c):
    return _scan(u, delta, a, b, c, scale_b=False)


def _read_before(u, delta, a, b, c):
    return _scan(u, delta, a, b, c, read_before=True)


EXERCISES = (
    Exercise(
        "diagonal_kernel",
        "a linear time-invariant SSM is a convolution: its kernel K_j = C Abar^j Bbar, for a diagonal A (S4D)",
        ("Unroll x_k = Abar x_{k-1} + Bbar u_k, y_k = C x_k from x_{-1} = 0: y_k = sum_j C Abar^j Bbar u_{k-j}.",
         "With A diagonal, Abar^j is elementwise: K_j = sum_n C_n Abar_n^j Bbar_n, j = 0 .. L - 1 (a Vandermonde "
         "matrix V_nj = Abar_n^j).",
         "(c * b_bar) @ (a_bar[:, None] ** arange(length)[None, :])."),
        (Mistake("your powers start at Abar^1: the input at the same step enters through K_0 = C Bbar", _powers_from_one),
         Mistake("your kernel leaves out Bbar: K_j = sum_n C_n Abar_n^j Bbar_n", _without_b))),
    Exercise(
        "selective_scan_sequential",
        "Mamba's selective SSM: a recurrence whose step size, B and C depend on the input at each step",
        ("Per step t and channel: x_t = exp(Delta_t A) x_{t-1} + Delta_t B_t u_t, y_t = x_t . C_t (zero-order hold "
         "for A, Euler for B, as Mamba discretises them).",
         "Broadcast to the state's (D, N): delta_t[:, None] * a, and delta_t[:, None] * b_t[None, :] * u_t[:, None]; "
         "then y_t = x_t @ c_t is (D,).",
         "jax.lax.scan over t of x = exp(d_t[:, None] a) x + (d_t[:, None] b_t[None, :]) u_t[:, None], "
         "emitting x @ c_t."),
        (Mistake("your A is not discretised: the state decays by exp(Delta_t A), the input's own step size",
                 _a_not_discretised),
         Mistake("your input enters as B_t u_t: discretised, it is Delta_t B_t u_t", _b_not_scaled),
         Mistake("you read the output before the update: y_t = C_t x_t with x_t already holding u_t",
                 _read_before))),
)
