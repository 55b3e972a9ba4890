"""The CNF functions in PyTorch: the twins of ``theory_jax/cnf.py`` (same names, same arguments).

``python -m theory_jax cnf`` proves what they compute: the instantaneous change of variables
d log p(x_t)/dt = -tr(df/dx) (Chen et al. 2018, Theorem 1), Hutchinson's unbiased trace estimator (Grathwohl et al.
2019, FFJORD eq. 7) and its variance, one Euler and one classic RK4 step.

Convention of issue 6: t = 0 is the base N(0, I), t = 1 is data; a field ``f(t, x) -> dx/dt`` with t a 0-d tensor
and x: (B, ...) pushes noise to data, and

    log p_1(x) = log N(z; 0, I) - int_0^1 tr(df/dx)(x_t, t) dt,    z = x_0 (the ODE run backwards from x_1 = x).

The probe noise v of Hutchinson's estimator is an argument (docs/ARCHITECTURE.md rule 1). The ``mlp_*`` functions fix
the field to a small tanh MLP whose weights are arguments (torch ``Linear`` layout, (out, in)), so the spec cases
can hand the same field to both backends.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

Field = Callable[[Tensor, Tensor], Tensor]
TRACES = ("exact", "hutchinson", "hutchinson_gaussian")
FIXED_STEP = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams")


# 1. Divergence: exact and Hutchinson --------------------------------------------------------------------------------
def field_and_divergence(f: Callable[[Tensor], Tensor], x: Tensor, v: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(f(x), tr(df/dx)) with the exact trace (v None: one vector-Jacobian product per dimension) or Hutchinson's
    v^T (df/dx) v (FFJORD eq. 7). f acts per example; x, v: (B, ...) -> ((B, ...), (B,)).

    Works inside ``torch.no_grad()`` (autograd is switched on locally, results detached); with grad enabled the
    graph is kept (create_graph) so a loss on the divergence reaches the weights of f."""
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        xg = x if x.requires_grad else x.detach().requires_grad_(True)
        fx = f(xg)
        b = fx.shape[0]
        if v is None:
            flat = fx.reshape(b, -1)
            columns = []
            for i in range(flat.shape[1]):
                (row,) = torch.autograd.grad(flat[:, i].sum(), xg, create_graph=keep_graph, retain_graph=True,
                                             allow_unused=True)
                columns.append(torch.zeros(b, dtype=x.dtype, device=x.device) if row is None
                               else row.reshape(b, -1)[:, i])  # d f_i / d x_i
            div = torch.stack(columns, dim=1).sum(dim=1)
        else:
            (vjp,) = torch.autograd.grad(fx, xg, v, create_graph=keep_graph, allow_unused=True)  # v^T J
            div = torch.zeros(b, dtype=x.dtype, device=x.device) if vjp is None else (vjp * v).reshape(b, -1).sum(1)
    if not keep_graph:
        fx, div = fx.detach(), div.detach()
    return fx, div


def divergence_exact(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """tr(df/dx) = sum_i d f_i / d x_i at each example. x: (B, ...) -> (B,)."""
    return field_and_divergence(f, x)[1]


def divergence_hutchinson(f: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> Tensor:
    """v^T (df/dx) v: unbiased for tr(df/dx) when E[v v^T] = I (Rademacher or Gaussian v). x, v: (B, ...) -> (B,)."""
    return field_and_divergence(f, x, v)[1]


# 2. The augmented dynamics and one solver step ----------------------------------------------------------------------
def cnf_dynamics(f: Field, t: Tensor, x: Tensor, v: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(dx/dt, d log p(x_t)/dt) = (f(t, x), -tr(df/dx)) (Chen et al. 2018, Theorem 1); exact trace when v is None,
    Hutchinson's with probe v otherwise. x: (B, ...) -> ((B, ...), (B,))."""
    fx, div = field_and_divergence(lambda y: f(t, y), x, v)
    return fx, -div


def euler_step(f: Field, t: Tensor, x: Tensor, h: Tensor) -> Tensor:
    """x_{n+1} = x_n + h f(t_n, x_n). x: (B, ...), t, h: () -> (B, ...)."""
    return x + h * f(t, x)


def rk4_step(f: Field, t: Tensor, x: Tensor, h: Tensor) -> Tensor:
    """Classic RK4 (Kutta 1901): k1 = f(t, x), k2 = f(t + h/2, x + h k1/2), k3 = f(t + h/2, x + h k2/2),
    k4 = f(t + h, x + h k3); x + h (k1 + 2 k2 + 2 k3 + k4) / 6. (torchdiffeq's "rk4" is the 3/8 rule instead.)"""
    k1 = f(t, x)
    k2 = f(t + h / 2, x + h / 2 * k1)
    k3 = f(t + h / 2, x + h / 2 * k2)
    k4 = f(t + h, x + h * k3)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


# 3. The spec'd field: a small tanh MLP with time concatenated to its input ------------------------------------------
def mlp_field(t, x, w1, b1, w2, b2, w3, b3):
    """f(t, x) = W3 tanh(W2 tanh(W1 [x, t] + b1) + b2) + b3. x: (B, D), t: (), w1: (H, D + 1) -> (B, D)."""
    tx = torch.cat([x, torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0], 1)], dim=1)
    h = torch.tanh(tx @ w1.T + b1)
    h = torch.tanh(h @ w2.T + b2)
    return h @ w3.T + b3


def _mlp(w1, b1, w2, b2, w3, b3) -> Field:
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
    """``log_likelihood`` of ``mlp_field`` with a fixed-step torchdiffeq method ('rk4' is the 3/8 rule). x: (B, D)
    -> (B,)."""
    return log_likelihood(_mlp(w1, b1, w2, b2, w3, b3), x, method=method, steps=steps)


# 4. Log-likelihood by integrating the augmented ODE from t = 1 down to t = 0 ----------------------------------------
def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over all but the batch dim. z: (B, ...) -> (B,)."""
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * (flat**2).sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


def draw_probe(shape, kind: str, *, generator: torch.Generator | None = None, like: Tensor) -> Tensor:
    """Hutchinson probe v with E[v v^T] = I: Rademacher (+-1, kind 'hutchinson') or N(0, I) ('hutchinson_gaussian')."""
    device = generator.device if generator is not None else like.device
    if kind == "hutchinson":
        v = torch.randint(0, 2, tuple(shape), generator=generator, device=device) * 2 - 1
    else:
        v = torch.randn(tuple(shape), generator=generator, device=device)
    return v.to(like)


class CountingField(nn.Module):
    """A field that counts its evaluations (``nfe``; one per dynamics call, whatever the trace costs)."""

    def __init__(self, field: Field) -> None:
        super().__init__()
        self.field = field
        self.nfe = 0

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        self.nfe += 1
        return self.field(t, x)


class AugmentedDynamics(nn.Module):
    """The ODE right-hand side on the state (x, l): (dx/dt, dl/dt) = (f(t, x), tr(df/dx)), so that integrating from
    t = 1 (l = 0) to t = 0 leaves l(0) = -int_0^1 tr dt. A module so odeint_adjoint finds the field's weights."""

    def __init__(self, field: Field, probe: Tensor | None = None) -> None:
        super().__init__()
        self.field = field
        self.probe = probe

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        dx, dlogp = cnf_dynamics(self.field, t, state[0], self.probe)
        return dx, -dlogp


def solver_options(method: str, steps: int | None) -> dict:
    """torchdiffeq options: fixed-step methods take ``steps`` equal steps over [0, 1] (a linspace grid); adaptive
    ones ignore ``steps``."""
    if method not in FIXED_STEP:
        return {}
    if steps is None:
        raise ValueError(f"the fixed-step method {method!r} needs steps")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return {"grid_constructor": lambda func, y0, t: torch.linspace(float(t[0]), float(t[-1]), steps + 1,
                                                                   dtype=t.dtype, device=t.device)}


def log_likelihood(field: Field, x: Tensor, *, method: str = "dopri5", atol: float = 1e-5, rtol: float = 1e-5,
                   steps: int | None = None, trace: str = "exact", generator: torch.Generator | None = None,
                   adjoint: bool = False, probe: Tensor | None = None) -> Tensor:
    """log p_1(x) = log N(z; 0, I) - int_0^1 tr(df/dx)(x_t, t) dt (instantaneous change of variables), integrating
    (x, l) with torchdiffeq from t = 1 down to t = 0. x: (B, ...) -> (B,).

    trace: 'exact' (D vector-Jacobian products per evaluation), 'hutchinson' (one Rademacher probe per example, drawn
    from ``generator`` once per solve, FFJORD) or 'hutchinson_gaussian'; ``probe`` (B, ...) passes the probe in instead.
    Fixed-step methods ('euler', 'midpoint', 'rk4' = torchdiffeq's 3/8 rule) need ``steps``. ``adjoint``: gradients
    by the adjoint ODE (odeint_adjoint) instead of backpropagation through the solver's operations."""
    if trace not in TRACES:
        raise ValueError(f"trace must be one of {TRACES}, got {trace!r}")
    if trace == "exact":
        probe = None
    elif probe is None:
        probe = draw_probe(x.shape, trace, generator=generator, like=x)
    dynamics = AugmentedDynamics(field, probe)
    t = torch.tensor([1.0, 0.0], dtype=x.dtype, device=x.device)
    state = (x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))
    kwargs = {"method": method, "atol": atol, "rtol": rtol, "options": solver_options(method, steps)}
    if adjoint:
        params = tuple(p for p in dynamics.parameters() if p.requires_grad)
        zs, ls = odeint_adjoint(dynamics, state, t, adjoint_params=params, **kwargs)
    else:
        zs, ls = odeint(dynamics, state, t, **kwargs)
    return standard_normal_log_prob(zs[-1]) + ls[-1]


def transport(field: Field, z: Tensor, *, times: Tensor | None = None, method: str = "dopri5", atol: float = 1e-5,
              rtol: float = 1e-5, steps: int | None = None) -> Tensor:
    """Solve dx/dt = f(t, x) from noise z at t = 0 to the data side: x at each of ``times`` (default [0, 1]).
    z: (B, ...) -> (T, B, ...)."""
    times = torch.tensor([0.0, 1.0]) if times is None else times
    times = times.to(dtype=z.dtype, device=z.device)
    return odeint(field, z, times, method=method, atol=atol, rtol=rtol, options=solver_options(method, steps))
