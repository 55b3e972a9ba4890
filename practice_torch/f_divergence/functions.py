"""f-divergences in PyTorch: generators, conjugates, output activations and the variational objective.

The twin of ``theory_jax/f_divergence.py`` (same names, same arguments; ``python -m theory_jax f_divergence``
proves what they compute). Nowozin, Cseke & Tomioka 2016 ("f-GAN"), Table 1 (generators f) and Table 2
(conjugates f* and output activations g_f); the "js" generator gives D_f = 2 JS as in their Table 1.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

DIVERGENCES = ("kl", "reverse_kl", "js", "tv", "pearson", "hellinger")
LOG2 = math.log(2.0)


def check_divergence(divergence: str) -> None:
    """A one-line ValueError naming the choices for an unknown divergence."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; choose from {', '.join(DIVERGENCES)}")


_GENERATORS = {  # Table 1: f(u), u = p/q >= 0
    "kl": lambda u: torch.xlogy(u, u),
    "reverse_kl": lambda u: -torch.log(u),
    "js": lambda u: torch.xlogy(u, u) - torch.xlogy(u + 1, (u + 1) / 2),
    "tv": lambda u: 0.5 * torch.abs(u - 1),
    "pearson": lambda u: (u - 1) ** 2,
    "hellinger": lambda u: (torch.sqrt(u) - 1) ** 2,
}
_DERIVATIVES = {  # f'(u): the optimal critic T* = f'(p/q)
    "kl": lambda u: torch.log(u) + 1,
    "reverse_kl": lambda u: -1 / u,
    "js": lambda u: LOG2 + torch.log(u) - torch.log1p(u),
    "tv": lambda u: 0.5 * torch.sign(u - 1),
    "pearson": lambda u: 2 * (u - 1),
    "hellinger": lambda u: 1 - torch.rsqrt(u),
}
_CONJUGATES = {  # Table 2: f*(t), its domain as (test, a point inside it)
    "kl": (lambda t: torch.exp(t - 1), None),
    "reverse_kl": (lambda t: -1 - torch.log(-t), (lambda t: t < 0, -1.0)),
    "js": (lambda t: -torch.log(2 - torch.exp(t)), (lambda t: t < LOG2, 0.0)),
    "tv": (lambda t: t, (lambda t: torch.abs(t) <= 0.5, 0.0)),
    "pearson": (lambda t: 0.25 * t**2 + t, None),
    "hellinger": (lambda t: t / (1 - t), (lambda t: t < 1, 0.0)),
}
_ACTIVATIONS = {  # Table 2: g_f maps R into dom f*; and f*(g_f(v)) in a form that does not overflow
    "kl": (lambda v: v, lambda v: torch.exp(v - 1)),
    "reverse_kl": (lambda v: -torch.exp(-v), lambda v: v - 1),
    "js": (lambda v: LOG2 - F.softplus(-v), lambda v: F.softplus(v) - LOG2),
    "tv": (lambda v: 0.5 * torch.tanh(v), lambda v: 0.5 * torch.tanh(v)),
    "pearson": (lambda v: v, lambda v: 0.25 * v**2 + v),
    "hellinger": (lambda v: 1 - torch.exp(-v), lambda v: torch.expm1(v)),
}


def f_generator(u, divergence: str):
    """f(u) of Table 1, u = p/q >= 0; convex with f(1) = 0. (...) -> (...)."""
    check_divergence(divergence)
    return _GENERATORS[divergence](u)


def f_derivative(u, divergence: str):
    """f'(u), the optimal critic T*(x) = f'(p(x)/q(x)) (tv: the subgradient sign(u - 1)/2). (...) -> (...)."""
    check_divergence(divergence)
    return _DERIVATIVES[divergence](u)


def f_conjugate(t, divergence: str):
    """f*(t) = sup_u (u t - f(u)) of Table 2; +inf outside dom f* (no NaN, no NaN gradient). (...) -> (...)."""
    check_divergence(divergence)
    closed, domain = _CONJUGATES[divergence]
    if domain is None:
        return closed(t)
    inside, safe = domain[0](t), domain[1]
    return torch.where(inside, closed(torch.where(inside, t, safe)), torch.inf)


def output_activation(v, divergence: str):
    """T = g_f(v), Table 2: the critic's unconstrained output v mapped into dom f*. (...) -> (...)."""
    check_divergence(divergence)
    return _ACTIVATIONS[divergence][0](v)


def conjugate_at_activation(v, divergence: str):
    """f*(g_f(v)) in closed form (js: softplus(v) - log 2; hellinger: e^v - 1; ...). (...) -> (...)."""
    check_divergence(divergence)
    return _ACTIVATIONS[divergence][1](v)


def variational_objective(v_p, v_q, divergence: str):
    """F = E_P[g_f(V)] - E_Q[f*(g_f(V))], the f-GAN's lower bound on D_f(P || Q) (Nowozin et al. 2016, eq. 6), with
    g_f = ``output_activation`` and f*(g_f(.)) = ``conjugate_at_activation`` (Table 2). v_p: (N,) the critic's raw
    outputs V on samples of P; v_q: (M,) on samples of Q; divergence: the f-divergence's name ('kl', 'reverse_kl',
    'js', 'tv', 'pearson', 'hellinger') -> ()."""
    return torch.mean(output_activation(v_p, divergence)) - torch.mean(conjugate_at_activation(v_q, divergence))


def f_divergence_discrete(p, q, divergence: str):
    """D_f(P || Q) = sum_k q_k f(p_k / q_k) for probability vectors (..., K), q > 0 -> (...)."""
    return torch.sum(q * f_generator(p / q, divergence), dim=-1)


def variational_bound_discrete(p, q, t, divergence: str):
    """sum_k p_k t_k - q_k f*(t_k): the bound of eq. 4 at the critic t (..., K), by exact sums -> (...)."""
    return torch.sum(p * t - q * f_conjugate(t, divergence), dim=-1)


def density_ratio(t, divergence: str):
    """p/q read off a critic value t: (f*)'(t) = (f')^{-1}(t), exact at T* = f'(p/q) (not for tv). (...) -> (...)."""
    if divergence == "tv":
        raise ValueError("total variation's critic only says where p > q (T* = sign(p - q)/2), not p/q")
    with torch.enable_grad():
        t = t.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(f_conjugate(t, divergence).sum(), t)
    return grad
