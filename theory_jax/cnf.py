"""Continuous normalizing flows: the instantaneous change of variables, Hutchinson's trace estimator, ODE solvers and
the adjoint method.

Lectures: neural ODEs and continuous normalizing flows (Chen, Rubanova, Bettencourt & Duvenaud 2018, "Neural
ordinary differential equations", Theorem 1 and sec. 2 (the adjoint method); Grathwohl, Chen, Bettencourt, Sutskever
& Duvenaud 2019, "FFJORD", eqs. 4-7; Hutchinson 1989 for the trace estimator; Kutta 1901 for RK4).

Convention of issue 6: t = 0 is the base N(0, I), t = 1 is data; the field f(t, x) pushes noise to data. Along a
solution x_t of dx/dt = f(t, x) the density of the pushed-forward base obeys

    d log p_t(x_t) / dt = -tr(df/dx)(t, x_t)                                   (instantaneous change of variables)
    log p_1(x) = log N(z; 0, I) - int_0^1 tr(df/dx)(t, x_t) dt,   z = x_0,     (integrated backwards from x_1 = x)

the limit of the discrete change of variables log p(x_{n+1}) = log p(x_n) - log |det(I + h df/dx)| of Euler steps.
tr(J) costs D vector-Jacobian products; Hutchinson's v^T J v with E[v v^T] = I costs one and is unbiased, with
variance 2 ||(J + J^T)/2||_F^2 for Gaussian v and that minus 2 sum_i J_ii^2 for Rademacher v. Gradients of a loss
of the solution come from backpropagating through the solver's steps or from the adjoint ODE
da/dt = -a^T df/dx, dL/dtheta = int a^T df/dtheta dt, run backwards; both agree to the solver's tolerance.
Twin: ``practice_torch/cnf`` (same names, same arguments); cases: ``shared_specs/cnf.py``.
"""

from __future__ import annotations

import math

import diffrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree


# 1. Divergence: exact and Hutchinson (twins in practice_torch.cnf) ---------------------------------------------------
def divergence_exact(f, x):
    """tr(df/dx) = sum_i d f_i / d x_i per example, from the per-example Jacobian. f acts per example; x: (B, ...)
    -> (B,)."""
    b, d = x.shape[0], math.prod(x.shape[1:])
    jac = jax.vmap(jax.jacfwd(lambda xi: f(xi[None])[0]))(x)
    return jnp.trace(jac.reshape(b, d, d), axis1=1, axis2=2)


def divergence_hutchinson(f, x, v):
    """v^T (df/dx) v from one vector-Jacobian product: unbiased for tr(df/dx) when E[v v^T] = I. x, v: (B, ...)
    -> (B,)."""
    _, vjp = jax.vjp(f, x)
    (vj,) = vjp(v)
    return jnp.sum((vj * v).reshape(x.shape[0], -1), axis=1)


# 2. The augmented dynamics and one solver step -----------------------------------------------------------------------
def cnf_dynamics(f, t, x, v=None):
    """(dx/dt, d log p(x_t)/dt) = (f(t, x), -tr(df/dx)) (Chen et al. 2018, Theorem 1); exact trace when v is None,
    Hutchinson's with probe v otherwise. x: (B, ...) -> ((B, ...), (B,))."""
    g = lambda y: f(t, y)  # noqa: E731
    div = divergence_exact(g, x) if v is None else divergence_hutchinson(g, x, v)
    return f(t, x), -div


def euler_step(f, t, x, h):
    """x_{n+1} = x_n + h f(t_n, x_n). x: (B, ...), t, h: () -> (B, ...)."""
    return x + h * f(t, x)


def midpoint_step(f, t, x, h):
    """x + h f(t + h/2, x + h/2 f(t, x)) (second order; torchdiffeq's 'midpoint')."""
    return x + h * f(t + h / 2, x + h / 2 * f(t, x))


def rk4_step(f, t, x, h):
    """Classic RK4 (Kutta 1901): k1 = f(t, x), k2 = f(t + h/2, x + h k1/2), k3 = f(t + h/2, x + h k2/2),
    k4 = f(t + h, x + h k3); x + h (k1 + 2 k2 + 2 k3 + k4) / 6."""
    k1 = f(t, x)
    k2 = f(t + h / 2, x + h / 2 * k1)
    k3 = f(t + h / 2, x + h / 2 * k2)
    k4 = f(t + h, x + h * k3)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def rk4_38_step(f, t, x, h):
    """Kutta's 3/8 rule (torchdiffeq's 'rk4'): stages at t, t + h/3, t + 2h/3, t + h; weights 1/8, 3/8, 3/8, 1/8."""
    k1 = f(t, x)
    k2 = f(t + h / 3, x + h * k1 / 3)
    k3 = f(t + 2 * h / 3, x + h * (k2 - k1 / 3))
    k4 = f(t + h, x + h * (k1 - k2 + k3))
    return x + h * (k1 + 3 * (k2 + k3) + k4) / 8


STEPS = {"euler": euler_step, "midpoint": midpoint_step, "rk4": rk4_38_step, "rk4_classic": rk4_step}


def odeint_fixed(f, x, t0: float, t1: float, steps: int, method: str = "rk4_classic"):
    """x at t1 from x at t0 by ``steps`` equal steps of ``method`` (a pytree state). Methods as torchdiffeq names
    them ('rk4' is the 3/8 rule) plus 'rk4_classic'."""
    step, h = STEPS[method], (t1 - t0) / steps
    return jax.lax.fori_loop(0, steps, lambda n, y: step(f, t0 + n * h, y, h), x)


# 3. The spec'd field: a small tanh MLP with time concatenated to its input -------------------------------------------
def mlp_field(t, x, w1, b1, w2, b2, w3, b3):
    """f(t, x) = W3 tanh(W2 tanh(W1 [x, t] + b1) + b2) + b3 (torch Linear layout). x: (B, D), t: () -> (B, D)."""
    tx = jnp.concatenate([x, jnp.full((x.shape[0], 1), t, dtype=x.dtype)], axis=1)
    h = jnp.tanh(tx @ w1.T + b1)
    h = jnp.tanh(h @ w2.T + b2)
    return h @ w3.T + b3


def _mlp(w1, b1, w2, b2, w3, b3):
    return lambda t, x: mlp_field(t, x, w1, b1, w2, b2, w3, b3)


def mlp_divergence_exact(t, x, w1, b1, w2, b2, w3, b3):
    """The divergence of the field f = ``mlp_field(t, .)`` at each example, tr(df/dx) = sum_i d f_i / d x_i, exactly:
    from each example's D x D Jacobian of f (the examples do not interact). t: () the time; x: (B, D); w1: (H, D + 1),
    b1: (H,), w2: (H, H), b2: (H,), w3: (D, H), b3: (D,) the MLP's weights in torch's Linear layout (``mlp_field``)
    -> (B,)."""
    return divergence_exact(lambda y: mlp_field(t, y, w1, b1, w2, b2, w3, b3), x)


def mlp_divergence_hutchinson(t, x, v, w1, b1, w2, b2, w3, b3):
    """``divergence_hutchinson`` of ``mlp_field(t, .)`` with probe v. x, v: (B, D) -> (B,)."""
    return divergence_hutchinson(lambda y: mlp_field(t, y, w1, b1, w2, b2, w3, b3), x, v)


def mlp_cnf_dynamics(t, x, w1, b1, w2, b2, w3, b3, v=None):
    """The CNF's augmented dynamics for the field f = ``mlp_field(t, .)`` (Chen et al. 2018, Theorem 1): (dx/dt,
    d log p(x_t)/dt) = (f(t, x), -tr(df/dx)), the trace exact when v is None, else Hutchinson's estimate v^T (df/dx) v
    with the probe v: (B, D) (``divergence_hutchinson``). t: () the time; x: (B, D); w1: (H, D + 1), b1: (H,),
    w2: (H, H), b2: (H,), w3: (D, H), b3: (D,) the MLP's weights in torch's Linear layout -> ((B, D), (B,))."""
    return cnf_dynamics(_mlp(w1, b1, w2, b2, w3, b3), t, x, v)


def mlp_euler_step(t, x, h, w1, b1, w2, b2, w3, b3):
    """``euler_step`` of ``mlp_field``. x: (B, D) -> (B, D)."""
    return euler_step(_mlp(w1, b1, w2, b2, w3, b3), t, x, h)


def mlp_rk4_step(t, x, h, w1, b1, w2, b2, w3, b3):
    """``rk4_step`` (classic) of ``mlp_field``. x: (B, D) -> (B, D)."""
    return rk4_step(_mlp(w1, b1, w2, b2, w3, b3), t, x, h)


def mlp_log_likelihood(x, w1, b1, w2, b2, w3, b3, method: str = "rk4", steps: int = 8):
    """``log_likelihood`` of ``mlp_field`` with a fixed-step method (torchdiffeq's names). x: (B, D) -> (B,)."""
    return log_likelihood(_mlp(w1, b1, w2, b2, w3, b3), x, method=method, steps=steps)


# The trained field's flax twin (practice_torch.cnf.field: the same layers, names and parameters) ----------------------
class ConcatSquashLinear(nn.Module):
    """y = (W x + b) * sigmoid(W_g t + b_g) + W_b t: a linear layer gated and shifted by the time (FFJORD's code).
    t: (), x: (B, d_in) -> (B, features)."""

    features: int

    @nn.compact
    def __call__(self, t, x):
        tt = jnp.reshape(t, (1, 1)).astype(x.dtype)
        gate = jax.nn.sigmoid(nn.Dense(self.features, name="gate")(tt))
        shift = nn.Dense(self.features, use_bias=False, name="shift")(tt)
        return nn.Dense(self.features, name="linear")(x) * gate + shift


class ConcatLinear(nn.Module):
    """y = W [x, t] + b: the time as one more input feature. t: (), x: (B, d_in) -> (B, features)."""

    features: int

    @nn.compact
    def __call__(self, t, x):
        tt = jnp.broadcast_to(jnp.reshape(t, (1, 1)).astype(x.dtype), (x.shape[0], 1))
        return nn.Dense(self.features, name="linear")(jnp.concatenate([x, tt], axis=1))


FIELD_ACTIVATIONS = {"tanh": jnp.tanh, "softplus": jax.nn.softplus, "silu": jax.nn.silu}


class ODEField(nn.Module):
    """f(t, x): an MLP of time-aware layers with a smooth activation between them (the twin of the PyTorch
    ``ODEField``). x: (B, dim) -> (B, dim)."""

    dim: int
    hidden: tuple[int, ...] = (64, 64, 64)
    time_input: str = "concatsquash"
    activation: str = "tanh"

    def setup(self):
        layer = {"concatsquash": ConcatSquashLinear, "concat": ConcatLinear}[self.time_input]
        self.layers = [layer(width) for width in (*self.hidden, self.dim)]

    def __call__(self, t, x):
        for i, layer in enumerate(self.layers):
            x = layer(t, x)
            if i < len(self.layers) - 1:
                x = FIELD_ACTIVATIONS[self.activation](x)
        return x


# 4. Log-likelihood by integrating the augmented ODE from t = 1 down to t = 0 -----------------------------------------
def standard_normal_log_prob(z):
    """log N(z; 0, I) summed over all but the batch dim. z: (B, ...) -> (B,)."""
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * jnp.sum(flat**2, axis=1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


def augmented(f, v=None):
    """The right-hand side on s = [x, l] (B, D + 1): (f(t, x), tr(df/dx)); from t = 1 (l = 0) down to t = 0 it leaves
    l = -int_0^1 tr dt."""
    def rhs(t, s):
        dx, dlogp = cnf_dynamics(f, t, s[:, :-1], v)
        return jnp.concatenate([dx, -dlogp[:, None]], axis=1)
    return rhs


def log_likelihood(f, x, *, method="dopri5", atol=1e-5, rtol=1e-5, steps=None, trace="exact", probe=None):
    """log p_1(x) = log N(z; 0, I) - int_0^1 tr(df/dx) dt. Fixed-step methods (torchdiffeq's names: 'euler',
    'midpoint', 'rk4' = 3/8 rule, and 'rk4_classic') take ``steps``; 'dopri5' is diffrax's with a PID controller.
    trace 'exact' or Hutchinson's with ``probe``. x: (B, D) -> (B,)."""
    v = None if trace == "exact" else probe
    s1 = jnp.concatenate([x, jnp.zeros((x.shape[0], 1), x.dtype)], axis=1)
    if method == "dopri5":
        s0 = solve_dopri5(augmented(f, v), s1, 1.0, 0.0, atol, rtol)
    else:
        s0 = odeint_fixed(augmented(f, v), s1, 1.0, 0.0, steps, method)
    return standard_normal_log_prob(s0[:, :-1]) + s0[:, -1]


def solve_dopri5(rhs, y0, t0, t1, atol=1e-8, rtol=1e-8):
    """y(t1) from y(t0) by diffrax's Dopri5 with a PID step-size controller (t1 < t0 runs backwards). rhs(t, y)."""
    sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, args: rhs(t, y)), diffrax.Dopri5(), t0, t1, (t1 - t0) / 20,
                              y0, stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=100_000)
    return sol.ys[-1]


# 5. The adjoint method by hand ---------------------------------------------------------------------------------------
def adjoint_gradients(f, params, x1, dloss_dz, steps: int):
    """Gradients of L(z) w.r.t. x1 and params, z the solution at t = 0 of dx/dt = f(t, x, params) from x1 at t = 1,
    by the adjoint ODE (Chen et al. 2018, eqs. 4-5) solved with classic RK4 alongside x, from t = 0 back to t = 1:
    dx/dt = f, da/dt = -a^T df/dx, dg/dt = -a^T df/dtheta, a(0) = dL/dz, g(0) = 0; then dL/dx1 = a(1),
    dL/dtheta = g(1). x1: (B, D); params: a pytree."""
    z = odeint_fixed(lambda t, x: f(t, x, params), x1, 1.0, 0.0, steps, "rk4_classic")
    flat, unravel = ravel_pytree((z, dloss_dz(z), jax.tree_util.tree_map(jnp.zeros_like, params)))

    def rhs(t, s):
        x, a, _ = unravel(s)
        fx, vjp = jax.vjp(lambda y, p: f(t, y, p), x, params)
        a_fx, a_fp = vjp(a)
        return ravel_pytree((fx, -a_fx, jax.tree_util.tree_map(jnp.negative, a_fp)))[0]

    _, a1, g1 = unravel(odeint_fixed(rhs, flat, 0.0, 1.0, steps, "rk4_classic"))
    return a1, g1


# 6. An independent RK4 (diffrax's solver, the classic tableau) for the derivation to check against -------------------
class ClassicRK4(diffrax.AbstractERK):
    """diffrax's explicit Runge-Kutta solver with the classic RK4 tableau: an independent twin of ``rk4_step``."""

    tableau = diffrax.ButcherTableau(c=np.array([0.5, 0.5, 1.0]), b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
                                     b_error=np.zeros(4),
                                     a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])))
    interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 4
