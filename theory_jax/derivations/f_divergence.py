"""The ``f_divergence`` derivation (``python -m theory_jax f_divergence``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/f_divergence.py``. ``--markdown FILE`` writes it as a document, ``--notebook
FILE`` as a notebook.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from jax.scipy.stats import norm

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.f_divergence import (
    DIVERGENCES,
    LOG2,
    conjugate_at_activation,
    f_conjugate,
    f_derivative,
    f_divergence_discrete,
    f_generator,
    gaussian_f_divergence,
    output_activation,
    variational_bound_discrete,
)

TITLE = "f-divergences and the variational bound of the f-GAN"
LECTURES = "f-divergences; variational divergence minimisation; f-GAN; Jensen's inequality"


# 4. The derivation -------------------------------------------------------------------------------------
def _sympy_table():
    """SymPy generators, Table 2's conjugates, a parametrisation t(r) of dom f* (r > 0) and f''(u)."""
    u, r = sp.symbols("u r", positive=True)
    t = sp.symbols("t", real=True)
    table = {
        "kl": (u * sp.log(u), sp.exp(t - 1), r - 1, 1 / u),
        "reverse_kl": (-sp.log(u), -1 - sp.log(-t), -r, 1 / u**2),
        "js": (u * sp.log(u) - (u + 1) * sp.log((u + 1) / 2), -sp.log(2 - sp.exp(t)), sp.log(2 / (1 + r)),
               1 / (u * (u + 1))),
        "tv": (sp.Abs(u - 1) / 2, t, None, None),
        "pearson": ((u - 1) ** 2, t**2 / 4 + t, r - 2, sp.Integer(2)),
        "hellinger": ((sp.sqrt(u) - 1) ** 2, t / (1 - t), 1 - r, 1 / (2 * u ** sp.Rational(3, 2))),
    }
    return u, r, t, table


def _conjugate_by_stationarity(f, conj, t_of_r, u, t):
    """Solve f'(u) = t for u on dom f* (t = t(r), r > 0), substitute into u t - f(u): (derived, table's)."""
    (u_star,) = sp.solve(sp.Eq(sp.diff(f, u), t_of_r), u)
    return sp.simplify(u_star * t_of_r - f.subs(u, u_star)), conj.subs(t, t_of_r)


_T_RANGES = {"kl": (-2, 2), "reverse_kl": (-3, -0.3), "js": (-2, 0.6), "tv": (-0.5, 0.5), "pearson": (-2, 3),
             "hellinger": (-2, 0.6)}  # t values whose maximiser u*(t) lies inside the u grid [0, 12]


@partial(jax.jit, static_argnames="divergence")
def _grid_sup(t, u_grid, divergence):
    """max_u (u t - f(u)) over the grid, for each t (T,) -> (T,)."""
    return jnp.max(t[:, None] * u_grid[None] - f_generator(u_grid, divergence)[None], axis=1)


@partial(jax.jit, static_argnames="divergence")
def _curvatures(t, divergence):
    """(f*)''(t) and (f*)'''(t) by jax.grad, elementwise. t: (N,) -> two (N,)."""
    second = jax.grad(jax.grad(lambda s: f_conjugate(s, divergence)))
    return jax.vmap(second)(t), jax.vmap(jax.grad(second))(t)


def _section_generators(d: Derivation, rng: np.random.Generator, u, table, names) -> None:
    """Table 1's generators: f(1) = 0 and convex, symbolically and numerically."""
    d.say("$D_f(P\\|Q) = \\mathbb E_Q[f(p/q)]$ for convex $f$ with $f(1) = 0$; Nowozin et al.'s Table 1 "
          "generators, Table 2 conjugates $f^*(t) = \\sup_{u \\ge 0} ut - f(u)$ and output activations $g_f$.")
    for k in DIVERGENCES:  # generators: normalised and convex
        f, _, _, f2 = table[k]
        d.symbolic(f"{names[k]}: $f(u) = {sp.latex(f)}$ has $f(1) = 0$", f.subs(u, 1), 0)
        if f2 is None:
            a = sp.symbols("a", positive=True)
            d.symbolic("total variation: $f = |u-1|/2$ is affine on each side of 1, $f(1 \\pm a) = a/2$: the "
                       "maximum of two affine functions, hence convex",
                       (f.subs(u, 1 + a) - a / 2) ** 2 + (f.subs(u, 1 - a) - a / 2) ** 2, 0)
        else:
            d.symbolic(f"{names[k]}: $f''(u) = {sp.latex(f2)} > 0$ for $u > 0$, so $f$ is convex",
                       sp.diff(f, u, 2), f2)
    a_, b_, lam = rng.uniform(0, 5, 1000), rng.uniform(0, 5, 1000), rng.uniform(0, 1, 1000)
    mix = lam * a_ + (1 - lam) * b_
    d.inequality("Convexity, numerically: $f(\\lambda a + (1-\\lambda) b) \\le \\lambda f(a) + (1-\\lambda) f(b)$ "
                 "for all six generators at 1000 random $(a, b, \\lambda)$",
                 jnp.stack([f_generator(mix, k) for k in DIVERGENCES]),
                 jnp.stack([lam * f_generator(a_, k) + (1 - lam) * f_generator(b_, k) for k in DIVERGENCES]), 1e-12)
    fig, ax = new_figure()
    grid = jnp.linspace(0.01, 4.0, 400)
    for k in DIVERGENCES:
        ax.plot(grid, f_generator(grid, k), label=names[k])
    ax.plot([1.0], [0.0], "ko", ms=4)
    ax.set(xlabel="$u = p/q$", ylabel="$f(u)$", ylim=(-0.6, 2.5))
    ax.legend(fontsize="x-small", ncols=2, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    d.figure(fig, "The six generators: convex, and all zero at $u = 1$, where $p = q$.")


def _section_conjugates(d: Derivation, rng: np.random.Generator, u, t, table, names):
    """Table 2's conjugates by stationarity and by a grid maximum, and Legendre duality."""
    d.say("Conjugates: solve the stationarity condition $f'(u) = t$ for $u^*(t)$, substitute into $ut - f(u)$, "
          "simplify. $t$ is parametrised by $r > 0$ so that SymPy knows it lies in $\\mathrm{dom} f^*$.")
    u_grid = jnp.linspace(0.0, 12.0, 240_001)  # step 5e-5, u = 1 on it
    sups = {}
    for k in DIVERGENCES:
        f, conj, t_of_r, _ = table[k]
        if t_of_r is None:  # tv: u t - |u-1|/2 is piecewise linear with slopes t + 1/2 (u < 1), t - 1/2 (u > 1)
            d.symbolic("total variation: for $|t| \\le 1/2$ the objective $ut - |u-1|/2$ rises up to $u = 1$ "
                       "and falls after it, so $f^*(t) = 1\\cdot t - f(1) = t$ (Table 2, on $[-1/2, 1/2]$)",
                       t * 1 - f.subs(u, 1), conj)
        else:
            derived, closed = _conjugate_by_stationarity(f, conj, t_of_r, u, t)
            d.symbolic(f"{names[k]}: $f^*(t) = {sp.latex(conj)}$ (dom: $t = {sp.latex(t_of_r)}$, $r > 0$)",
                       derived, closed)
        ts = jnp.linspace(*_T_RANGES[k], 25)
        sups[k] = ts, _grid_sup(ts, u_grid, k)
        d.numeric(f"{names[k]}: the maximum of $ut - f(u)$ over a grid of 240 001 $u \\in [0, 12]$ equals "
                  f"`f_conjugate` at 25 $t \\in [{_T_RANGES[k][0]}, {_T_RANGES[k][1]}]$",
                  sups[k][1], f_conjugate(ts, k), rtol=0.0, atol=1e-7)
    fig, ax = new_figure()
    for i, (k, (ts, sup)) in enumerate(sups.items()):
        fine = jnp.linspace(*_T_RANGES[k], 200)
        ax.plot(fine, f_conjugate(fine, k), color=f"C{i}", label=names[k])
        ax.plot(ts, sup, "o", color=f"C{i}", ms=2.5)
    ax.set(xlabel="$t$", ylabel="$f^*(t)$")
    ax.legend(fontsize="x-small", ncols=2, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    d.figure(fig, "Table 2's conjugates (lines) run through the grid maxima of $ut - f(u)$ (dots) for all six.")
    us = jnp.asarray(rng.uniform(0.1, 5.0, 50))
    dual = {k: jax.vmap(jax.grad(lambda s, k=k: f_conjugate(s, k)))(f_derivative(us, k)) for k in DIVERGENCES if k != "tv"}
    d.gradient("Legendre duality: $(f^*)'(f'(u)) = u$ (jax.grad of `f_conjugate`) at 50 random $u$, for all but "
               "total variation, whose $f$ has no invertible derivative", jnp.stack(list(dual.values())),
               jnp.stack([us] * len(dual)))
    return u_grid


def _section_domains(d: Derivation, u_grid) -> None:
    """The domain of f*: Pearson's sup over u >= 0, and the output activations g_f that land inside dom f*."""
    low = jnp.linspace(-5.0, -2.5, 11)
    d.numeric("Mind the domain: for Pearson, $u^* = 1 + t/2 < 0$ when $t < -2$; over $u \\ge 0$ the sup is at "
              "$u = 0$, $-f(0) = -1$ (grid maximum at $t \\in [-5, -2.5]$) ...", _grid_sup(low, u_grid, "pearson"),
              -jnp.ones(11))
    d.inequality("... below Table 2's $t^2/4 + t$ (the conjugate of $(u-1)^2$ over all of $\\mathbb R$): the "
                 "bound built with Table 2's $f^*$ stays a lower bound, only looser there",
                 -jnp.ones(11), f_conjugate(low, "pearson"))
    v = jnp.linspace(-8.0, 8.0, 161)
    d.numeric("`conjugate_at_activation(v)` is $f^*(g_f(v))$ for all six (its stable closed forms, e.g. JS: "
              "$\\mathrm{softplus}(v) - \\log 2$, Hellinger: $e^v - 1$), $v \\in [-8, 8]$",
              jnp.stack([conjugate_at_activation(v, k) for k in DIVERGENCES]),
              jnp.stack([f_conjugate(output_activation(v, k), k) for k in DIVERGENCES]))
    d.inequality("...and $g_f$ maps $v \\in [-8, 8]$ into $\\mathrm{dom} f^*$: $-e^{-v} < 0$ (reverse KL), "
                 "$\\log 2 - \\mathrm{softplus}(-v) < \\log 2$ (JS), $1 - e^{-v} < 1$ (Hellinger), "
                 "$|\\tanh(v)/2| < 1/2$ (TV)",
                 jnp.stack([output_activation(v, "reverse_kl"), output_activation(v, "js"),
                            output_activation(v, "hellinger"), jnp.abs(output_activation(v, "tv"))]),
                 jnp.asarray([0.0, LOG2, 1.0, 0.5])[:, None] - 1e-12)


def _section_jensen(d: Derivation, rng: np.random.Generator, names):
    """D_f >= 0 by Jensen on random discrete distributions, with equality at P = Q."""
    # Jensen: D_f >= 0 on random discrete distributions.
    p = jnp.asarray(rng.dirichlet(np.ones(10), 200))
    q = jnp.asarray(rng.dirichlet(np.ones(10), 200))
    d.say("$D_f \\ge 0$ by Jensen: $D_f(P\\|Q) = \\mathbb E_Q[f(p/q)] \\ge f(\\mathbb E_Q[p/q]) = f(1) = 0$. "
          "200 random pairs of distributions on 10 points (Dirichlet(1)).")
    d.numeric("$\\mathbb E_Q[p/q] = \\sum_k q_k p_k/q_k = \\sum_k p_k = 1$", jnp.sum(q * (p / q), -1), jnp.ones(200))
    with np.errstate(divide="ignore"):
        direct = {"kl": np.sum(p * np.log(p / q), -1), "reverse_kl": np.sum(q * np.log(q / p), -1),
                  "js": np.sum(p * np.log(2 * p / (p + q)) + q * np.log(2 * q / (p + q)), -1),
                  "tv": 0.5 * np.sum(np.abs(p - q), -1), "pearson": np.sum((p - q) ** 2 / q, -1),
                  "hellinger": np.sum((np.sqrt(p) - np.sqrt(q)) ** 2, -1)}
    formulas = {"kl": "\\sum p \\log p/q", "reverse_kl": "\\sum q \\log q/p",
                "js": "\\sum p \\log\\frac{2p}{p+q} + q \\log\\frac{2q}{p+q}", "tv": "\\frac12\\sum|p-q|",
                "pearson": "\\sum (p-q)^2/q", "hellinger": "\\sum(\\sqrt p - \\sqrt q)^2"}
    for k in DIVERGENCES:
        value = f_divergence_discrete(p, q, k)
        d.numeric(f"{names[k]}: $\\sum_k q_k f(p_k/q_k) = {formulas[k]}$", value, direct[k])
        gap = value - f_generator(jnp.sum(q * (p / q), -1), k)
        d.inequality(f"{names[k]}: the Jensen gap $\\mathbb E_Q f(p/q) - f(\\mathbb E_Q\\, p/q) = D_f \\ge 0$ "
                     f"(smallest of 200: {float(gap.min()):.3g})", -gap, 0.0)
    d.numeric("...with equality when $P = Q$: $D_f(P\\|P) = 0$ for all six", jnp.stack(
        [f_divergence_discrete(p, p, k) for k in DIVERGENCES]), jnp.zeros((len(DIVERGENCES), 200)))
    return p, q


def _section_discrete_bound(d: Derivation, rng: np.random.Generator, names, p, q) -> None:
    """The variational bound on discrete distributions: tight at T* = f'(p/q), strictly lower elsewhere."""
    # The variational bound on discrete distributions: exact sums.
    d.say("Fenchel-Young, $f(u) \\ge ut - f^*(t)$, gives $D_f \\ge \\sum_k p_k T_k - q_k f^*(T_k)$ for every critic "
          "$T$; at $T^* = f'(p/q)$ it is an equality. 200 pairs as above, exact sums.")
    for k in DIVERGENCES:
        t_star = f_derivative(p / q, k)
        exact = f_divergence_discrete(p, q, k)
        d.numeric(f"{names[k]}: the bound at $T^* = f'(p/q)$ equals $D_f$", variational_bound_discrete(p, q, t_star, k),
                  exact)
        grad = jax.grad(lambda tt, k=k: jnp.sum(variational_bound_discrete(p, q, tt, k)))(t_star)
        sign = jnp.asarray(rng.choice([-1.0, 1.0], t_star.shape))
        rho = jnp.asarray(rng.uniform(0.02, 0.1, t_star.shape))
        if k == "tv":  # T* = sign(p - q)/2 sits on the boundary of dom f* = [-1/2, 1/2]: a KKT point
            d.numeric("total variation: the gradient $p - q$ points out of $[-1/2, 1/2]$ at each $T^*_k$: "
                      "$\\nabla_T \\cdot T^* = |p - q|/2$ (a maximum on the boundary, not a stationary point)",
                      grad * t_star, jnp.abs(p - q) / 2)
            lower = variational_bound_discrete(p, q, t_star * (1 - 2 * rho), k)  # moved inward by rho_k
            drop = 0.5 * jnp.sum(rho * jnp.abs(p - q), -1)
            how = "linear drop $\\sum_k |p_k - q_k| \\rho_k$ of $T^*(1 - 2\\rho)$, $\\rho_k \\in [0.02, 0.1]$"
        else:
            d.gradient(f"{names[k]}: $\\nabla_T$ bound $= p - q\\,(f^*)'(T^*) = 0$ at $T^*$ (jax.grad)", grad,
                       jnp.zeros_like(grad))
            c2, c3 = (c.reshape(p.shape) for c in _curvatures(t_star.ravel(), k))
            delta = sign * rho * jnp.minimum(1.0, c2 / jnp.abs(c3))  # where (f*)'' changes by < 10%
            lower = variational_bound_discrete(p, q, t_star + delta, k)
            drop = 0.25 * jnp.sum(q * c2 * delta**2, -1)
            how = ("second-order drop $\\frac12\\sum_k q_k (f^*)''\\delta_k^2$; $\\delta_k = \\pm\\rho_k "
                   "\\min(1, (f^*)''/|(f^*)'''|)$, $\\rho_k \\in [0.02, 0.1]$")
        d.inequality(f"{names[k]}: a perturbed critic gives a strictly lower bound, by at least half the {how}",
                     lower, exact - drop)


def _perturbed_bounds(x, dens_p, dens_q, divergence, eps):
    """The quadrature bound int p T - q f*(T) at the critics T = T* + e cos x, for each e of ``eps`` -> (E,)."""
    t_grid = f_derivative(dens_p / dens_q, divergence)

    def bound(e):
        critic = t_grid + e * jnp.cos(x)
        return jnp.trapezoid(dens_p * critic - dens_q * f_conjugate(critic, divergence), x)
    return jax.vmap(bound)(eps)


def _section_gaussian_bound(d: Derivation, rng: np.random.Generator, names) -> None:
    """The variational bound between two Gaussians, by closed forms, quadrature and Monte Carlo."""
    # The variational bound between Gaussians: quadrature and Monte Carlo.
    m_p, s_p, m_q, s_q = jnp.asarray(0.4), jnp.asarray(0.8), jnp.asarray(-0.3), jnp.asarray(1.1)
    x = jnp.linspace(-16.0, 16.0, 64_001)
    dens_p, dens_q = norm.pdf(x, m_p, s_p), norm.pdf(x, m_q, s_q)
    n = 200_000
    xp, xq = m_p + s_p * jnp.asarray(rng.standard_normal(n)), m_q + s_q * jnp.asarray(rng.standard_normal(n))
    d.say("Gaussians: $P = \\mathcal N(0.4, 0.8^2)$, $Q = \\mathcal N(-0.3, 1.1^2)$. Quadrature: the trapezoid rule "
          "on 64 001 points of $[-16, 16]$; Monte Carlo: 200 000 draws of each.")

    def t_star_at(z, k):
        return f_derivative(norm.pdf(z, m_p, s_p) / norm.pdf(z, m_q, s_q), k)

    for k in DIVERGENCES:
        quad = jnp.trapezoid(dens_q * f_generator(dens_p / dens_q, k), x)
        if k == "js":
            samples = jnp.log(2 * norm.pdf(xp, m_p, s_p) / (norm.pdf(xp, m_p, s_p) + norm.pdf(xp, m_q, s_q))) + jnp.log(
                2 * norm.pdf(xq, m_q, s_q) / (norm.pdf(xq, m_p, s_p) + norm.pdf(xq, m_q, s_q)))
            d.monte_carlo("Jensen-Shannon (no closed form): the quadrature of $\\int q f(p/q)$ against Monte Carlo "
                          "$\\mathbb E_P \\log\\frac{2p}{p+q} + \\mathbb E_Q \\log\\frac{2q}{p+q}$", samples, quad)
        else:
            closed = gaussian_f_divergence(m_p, s_p, m_q, s_q, k)
            kink = k == "tv"  # |p - q| has kinks where the densities cross: the trapezoid rule is O(h^2) there
            d.numeric(f"{names[k]}: the closed form between Gaussians equals the quadrature of $\\int q f(p/q)$"
                      + (" (kinks: atol 1e-7)" if kink else ""), quad, closed, **({"rtol": 0, "atol": 1e-7} if kink else {}))
        t_grid = f_derivative(dens_p / dens_q, k)
        d.numeric(f"{names[k]}: the bound at $T^*$, $\\int p T^* - q f^*(T^*)$ by quadrature, equals $D_f$",
                  jnp.trapezoid(dens_p * t_grid - dens_q * f_conjugate(t_grid, k), x), quad, rtol=1e-9, atol=1e-10)
        d.monte_carlo(f"{names[k]}: ... and by Monte Carlo, $T^*(x_P) - f^*(T^*(x_Q))$ over independent pairs",
                      t_star_at(xp, k) - f_conjugate(t_star_at(xq, k), k), quad)
        if k == "tv":
            shrunk = jnp.trapezoid(dens_p * 0.9 * t_grid - dens_q * f_conjugate(0.9 * t_grid, k), x)
            d.inequality("total variation: the shrunk critic $0.9\\,T^*$ gives $0.9\\,D_{TV}$, strictly lower",
                         shrunk, 0.91 * quad)
        else:
            bumps = [jnp.trapezoid(dens_p * (t_grid + e * jnp.cos(x)) - dens_q * f_conjugate(t_grid + e * jnp.cos(x), k), x)
                     for e in (-0.05, 0.05)]
            curv = _curvatures(t_grid, k)[0]
            drop = 0.25 * 0.05**2 * jnp.trapezoid(dens_q * curv * jnp.cos(x) ** 2, x)
            d.inequality(f"{names[k]}: the critics $T^* \\pm 0.05 \\cos x$ give strictly lower bounds (by at least "
                         "half the second-order drop)", jnp.stack(bumps), quad - drop)
    fig, ax = new_figure()
    eps = jnp.linspace(-0.3, 0.3, 21)
    for k in DIVERGENCES:
        if k != "tv":
            bounds = _perturbed_bounds(x[::8], dens_p[::8], dens_q[::8], k, eps)
            ax.plot(eps, bounds / bounds[10], label=names[k])
    ax.set(xlabel="critic $T^* + \\epsilon \\cos x$: $\\epsilon$", ylabel="bound / $D_f$")
    ax.legend(fontsize="small")
    d.figure(fig, "Between the two Gaussians the variational bound, as a fraction of $D_f$, peaks at 1 exactly at the "
                  "optimal critic $T^* = f'(p/q)$ and falls off on both sides.")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("f_divergence", TITLE, LECTURES, echo=echo)
    u, r, t, table = _sympy_table()
    rng = np.random.default_rng(0)
    names = {"kl": "KL", "reverse_kl": "reverse KL", "js": "Jensen-Shannon (2 JS)", "tv": "total variation",
             "pearson": "Pearson chi^2", "hellinger": "squared Hellinger"}

    _section_generators(d, rng, u, table, names)
    u_grid = _section_conjugates(d, rng, u, t, table, names)
    _section_domains(d, u_grid)
    p, q = _section_jensen(d, rng, names)
    _section_discrete_bound(d, rng, names, p, q)
    _section_gaussian_bound(d, rng, names)
    return d
