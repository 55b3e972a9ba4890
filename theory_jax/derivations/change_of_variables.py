"""The ``change_of_variables`` derivation (``python -m theory_jax change_of_variables``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/change_of_variables.py``. ``--markdown FILE`` writes it as a document,
``--notebook FILE`` as a notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from jax.scipy.special import ndtr, ndtri
from scipy import integrate, stats

from theory_jax.change_of_variables import (
    LOG_2PI,
    _gaussianize_terms,
    box_muller,
    box_muller_inverse,
    box_muller_log_det,
    exponential_icdf,
    flow_forward,
    flow_inverse,
    flow_log_prob,
    gaussian_icdf,
    gaussianize,
    gaussianize_inverse,
    logistic_icdf,
    logistic_mixture_log_cdf,
    logistic_mixture_log_pdf,
    lu_linear,
    standard_normal_log_prob,
)
from theory_jax.derivation import Derivation, full_precision, new_figure

TITLE = "change of variables: Box-Muller, inverse CDF, Jacobians of composed maps"
LECTURES = "Box-Muller transform; Jacobians"


# 6. The derivation -----------------------------------------------------------------------------------
def _sympy_box_muller():
    """det d(z1, z2)/d(u1, u2), det d(u1, u2)/d(z1, z2) and the symbols, from eq. 3 and its inverse."""
    u1, u2 = sp.symbols("u1 u2", positive=True)
    z1, z2 = sp.symbols("z1 z2", real=True)
    radius = sp.sqrt(-2 * sp.log(u1))
    forward = sp.Matrix([radius * sp.cos(2 * sp.pi * u2), radius * sp.sin(2 * sp.pi * u2)])
    inverse = sp.Matrix([sp.exp(-(z1**2 + z2**2) / 2), sp.atan2(z2, z1) / (2 * sp.pi)])
    return sp.simplify(forward.jacobian([u1, u2]).det()), sp.simplify(inverse.jacobian([z1, z2]).det()), (u1, z1, z2)


def _sympy_inverse_cdfs():
    """(name, F(x), F^{-1}(u), f(x), symbols) for the three inverse-CDF samplers."""
    x, u = sp.symbols("x", real=True), sp.symbols("u", positive=True)
    rate, scale, std = sp.symbols("lambda s sigma", positive=True)
    loc = sp.symbols("mu", real=True)
    t = (x - loc) / scale
    return [("exponential", 1 - sp.exp(-rate * x), -sp.log(1 - u) / rate, rate * sp.exp(-rate * x), x, u),
            ("logistic", 1 / (1 + sp.exp(-t)), loc + scale * sp.log(u / (1 - u)),
             sp.exp(-t) / (scale * (1 + sp.exp(-t)) ** 2), x, u),
            ("Gaussian", (1 + sp.erf((x - loc) / (std * sp.sqrt(2)))) / 2, loc + std * sp.sqrt(2) * sp.erfinv(2 * u - 1),
             sp.exp(-(x - loc) ** 2 / (2 * std**2)) / (std * sp.sqrt(2 * sp.pi)), x, u)]


def _random_flow(rng: np.random.Generator, layers: int, d: int, k: int):
    """Stacked float64 flow parameters (logits, means, log_scales, lower, upper, log_diag, shift)."""
    def g(*shape, scale=1.0):
        return jnp.asarray(scale * rng.standard_normal(shape))
    return (g(layers, d, k), g(layers, d, k, scale=1.5), g(layers, d, k, scale=0.3) - 0.5,
            g(layers - 1, d, d, scale=0.5), g(layers - 1, d, d, scale=0.5), g(layers - 1, d, scale=0.3),
            g(layers - 1, d, scale=0.3))


def _twist(x, strength=0.4):
    """Rotate each point by strength |x|^2: (r, theta) -> (r, theta + strength r^2), volume-preserving."""
    angle = strength * jnp.sum(x**2, axis=-1)
    c, s = jnp.cos(angle), jnp.sin(angle)
    return jnp.stack([c * x[..., 0] - s * x[..., 1], s * x[..., 0] + c * x[..., 1]], axis=-1)


def _det2(jac):
    """det of each 2 x 2 matrix in jac (N, 2, 2): ad - bc."""
    return jac[:, 0, 0] * jac[:, 1, 1] - jac[:, 0, 1] * jac[:, 1, 0]


def _log_abs_det_of(fn, points):
    """log |det J_fn| at each row of ``points`` (N, 2), by jax.jacfwd (2 x 2: det = ad - bc)."""
    return jnp.log(jnp.abs(_det2(jax.vmap(jax.jacfwd(fn))(points))))


@jax.jit
def _box_muller_study(u, z, grid):
    """Round trips u -> z -> u and z -> u -> z; log|det| of jax.jacfwd(box_muller) at u; on the grid: u(z), the pushed
    density |det J_u(z)| (p_U = 1) and J_u(z) J_z(u(z))."""
    u_grid = box_muller_inverse(grid)
    jac_inv = jax.vmap(jax.jacfwd(box_muller_inverse))(grid)
    jac_fwd = jax.vmap(jax.jacfwd(box_muller))(u_grid)
    return {"round_trips": jnp.concatenate([box_muller_inverse(box_muller(u)), box_muller(box_muller_inverse(z))]),
            "forward_log_det": _log_abs_det_of(box_muller, u), "u_grid": u_grid,
            "pushed_density": jnp.abs(_det2(jac_inv)), "jacobian_product": jac_inv @ jac_fwd}


def _five_maps(flow):
    """LU, twist, elementwise flow, sigmoid, Box-Muller: R^2 -> R^2 each, and their closed-form log-dets."""
    lu, elem = tuple(p[0] for p in flow[3:]), tuple(p[0] for p in flow[:3])
    maps = (lambda p: lu_linear(p, *lu)[0], _twist, lambda p: gaussianize(p, *elem)[0], jax.nn.sigmoid, box_muller)
    closed = (lambda p: lu_linear(p, *lu)[1], lambda p: jnp.zeros(p.shape[:-1]), lambda p: gaussianize(p, *elem)[1],
              lambda p: jnp.sum(jax.nn.log_sigmoid(p) + jax.nn.log_sigmoid(-p), -1), box_muller_log_det)
    return maps, closed


@jax.jit
def _composition_study(x, x_flow, flow):
    """Per-map closed-form and autodiff log-dets along the five-map chain from x (N, 2), the chain's own autodiff
    log-det, the elementwise map's Jacobians, and the flow's log-det, autodiff log-det and inverse at x_flow."""
    maps, closed = _five_maps(flow)
    points = [x]
    for fn in maps[:-1]:
        points.append(fn(points[-1]))

    def chain(p):
        for fn in maps:
            p = fn(p)
        return p

    z, log_det = flow_forward(x_flow, *flow)
    jacobians = [jax.vmap(jax.jacfwd(fn))(p) for fn, p in zip(maps, points)]
    return {"closed": jnp.stack([c(p) for c, p in zip(closed, points)]),
            "autodiff": jnp.log(jnp.abs(jnp.stack([_det2(j) for j in jacobians]))),
            "composed": _log_abs_det_of(chain, x), "elementwise_jacobian": jacobians[2],
            "flow_log_det": log_det, "flow_autodiff": _log_abs_det_of(lambda p: flow_forward(p, *flow)[0], x_flow),
            "flow_inverse": flow_inverse(z, *flow), "flow_x": x_flow}


@jax.jit
def _one_dim_study(x_line, xs, ends, flow):
    """On the first coordinate: one elementwise layer's flow density vs its mixture density on x_line (N, 1); the
    whole flow's density on xs (I, M) and Phi(T(b)) - Phi(T(a)) for the intervals ends (I, 2)."""
    one = tuple(p[:1, :1] for p in flow[:3])
    flow1d = tuple(p[:, :1] for p in flow[:3]) + tuple(p[:, :1, :1] for p in flow[3:5]) + tuple(p[:, :1] for p in flow[5:])
    no_mixing = tuple(p[:0] for p in flow1d[3:])
    z_ends = flow_forward(ends.reshape(-1, 1), *flow1d)[0].reshape(ends.shape)
    return {"one_layer": flow_log_prob(x_line, *one, *no_mixing),
            "mixture": logistic_mixture_log_pdf(x_line, *(p[0] for p in one))[:, 0],
            "densities": jnp.exp(flow_log_prob(xs.reshape(-1, 1), *flow1d)).reshape(xs.shape),
            "interval_probs": ndtr(z_ends[:, 1]) - ndtr(z_ends[:, 0])}


def _ks_pvalue(samples, cdf) -> float:
    return float(stats.kstest(np.asarray(samples), cdf).pvalue)


_jit_inverse = jax.jit(gaussianize_inverse)


@jax.jit
def _inverse_gradients(z, logits, means, log_scales):
    """jax.grad of gaussianize_inverse w.r.t. z (per point) and w.r.t. the means (summed over points), and the
    implicit-function-theorem values -(dz/dtheta) / (dz/dx) at x = inverse(z)."""
    grad_z = jax.vmap(jax.grad(lambda q: jnp.sum(gaussianize_inverse(q, logits, means, log_scales))))(z)
    grad_means = jax.grad(lambda m: jnp.sum(gaussianize_inverse(z, logits, m, log_scales)))(means)
    x = gaussianize_inverse(z, logits, means, log_scales)
    log_pi = jax.nn.log_softmax(logits, axis=-1)
    slope = jnp.exp(_gaussianize_terms(x, log_pi, means, log_scales)[1])  # dz/dx, (N, d)
    dz_dmeans = jax.vmap(lambda p: jax.jacfwd(lambda m: _gaussianize_terms(p, log_pi, m, log_scales)[0])(means))(x)
    return grad_z, grad_means, 1 / slope, -jnp.einsum("niik,ni->ik", dz_dmeans, 1 / slope)


def _section_box_muller_jacobian(d: Derivation, rng: np.random.Generator) -> None:
    """Box-Muller's Jacobian in SymPy, then the change-of-variables density on a grid."""
    d.say("Box-Muller (eq. 3): $z = \\sqrt{-2\\ln u_1}\\,(\\cos 2\\pi u_2, \\sin 2\\pi u_2)$ with $u$ uniform on "
          "$(0, 1]^2$. Its inverse is $u_1 = e^{-|z|^2/2}$, $u_2 = \\mathrm{atan2}(z_2, z_1)/2\\pi \\bmod 1$.")
    det_fwd, det_inv, (u1, z1, z2) = _sympy_box_muller()
    d.symbolic("$\\det \\partial(z_1, z_2)/\\partial(u_1, u_2) = -2\\pi / u_1$ (SymPy), so "
               "$\\log|\\det| = \\log 2\\pi - \\log u_1$ (`box_muller_log_det`)", det_fwd, -2 * sp.pi / u1)
    normal = sp.exp(-z1**2 / 2) / sp.sqrt(2 * sp.pi) * sp.exp(-z2**2 / 2) / sp.sqrt(2 * sp.pi)
    d.symbolic("Eq. 1 with $p_U = 1$: $p(z) = |\\det \\partial(u_1, u_2)/\\partial(z_1, z_2)| = "
               "e^{-(z_1^2 + z_2^2)/2} / 2\\pi = \\mathcal N(z_1; 0, 1)\\,\\mathcal N(z_2; 0, 1)$ (SymPy)",
               sp.Abs(det_inv), normal)
    d.symbolic("Inverse function theorem: the two determinants multiply to 1 at $u_1 = e^{-|z|^2/2}$",
               det_fwd.subs(u1, sp.exp(-(z1**2 + z2**2) / 2)) * det_inv, 1)

    u = jnp.asarray(np.stack([1.0 - rng.uniform(size=1000), rng.uniform(size=1000)], axis=1))
    zs = jnp.asarray(rng.standard_normal((1000, 2)) * 2.0)
    axis = jnp.linspace(-4.0, 4.0, 40)  # an even count keeps the grid off the cut z2 = 0 of atan2
    grid = jnp.stack(jnp.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    bm = _box_muller_study(u, zs, grid)
    d.numeric("`box_muller_inverse` inverts `box_muller` both ways (1000 random $u$ and 1000 random $z$)",
              bm["round_trips"], jnp.concatenate([u, zs]))
    d.numeric("`box_muller_log_det` equals $\\log|\\det|$ of the autodiff Jacobian (jax.jacfwd of `box_muller`)",
              box_muller_log_det(u), bm["forward_log_det"])
    d.inequality("Every grid point maps into the unit square, where $p_U = 1$",
                 jnp.concatenate([-bm["u_grid"].ravel(), bm["u_grid"].ravel() - 1.0]), 0.0)
    d.numeric("Change of variables on a 40 x 40 grid over $[-4, 4]^2$: $p_U(u(z))\\,|\\det J_{u}(z)|$ "
              "(jax.jacfwd) equals $\\mathcal N(z; 0, I)$", bm["pushed_density"], jnp.exp(standard_normal_log_prob(grid)))
    d.numeric("...and $J_{u}(z)\\,J_{z}(u(z)) = I$ at every grid point", bm["jacobian_product"],
              jnp.broadcast_to(jnp.eye(2), bm["jacobian_product"].shape), atol=1e-10)


def _section_box_muller_samples(d: Derivation, n: int, key_bm) -> None:
    """Box-Muller samples: their moments and KS tests, and a test with the power to catch a wrong transform."""
    draws = jax.random.uniform(key_bm, (n, 2), dtype=jnp.float64)
    z = box_muller(jnp.stack([1.0 - draws[:, 0], draws[:, 1]], axis=1))  # u1 in (0, 1]
    d.monte_carlo(f"Sample mean of {n:,} Box-Muller pairs is 0", z, jnp.zeros(2))
    d.monte_carlo("Second moments: $\\mathbb E[z_1^2] = \\mathbb E[z_2^2] = 1$, $\\mathbb E[z_1 z_2] = 0$ "
                  "(covariance $I$)", jnp.stack([z[:, 0] ** 2, z[:, 1] ** 2, z[:, 0] * z[:, 1]], 1),
                  jnp.array([1.0, 1.0, 0.0]))
    d.monte_carlo("Fourth moments: $\\mathbb E[z_i^4] = 3$, $\\mathbb E[z_1^2 z_2^2] = 1$ (Gaussian and independent)",
                  jnp.stack([z[:, 0] ** 4, z[:, 1] ** 4, z[:, 0] ** 2 * z[:, 1] ** 2], 1), jnp.array([3.0, 3.0, 1.0]))
    pvalues = [_ks_pvalue(z[:, 0], "norm"), _ks_pvalue(z[:, 1], "norm"),
               _ks_pvalue((z[:, 0] + z[:, 1]) / math.sqrt(2), "norm"), _ks_pvalue(0.5 * jnp.sum(z**2, 1), "expon")]
    d.inequality("Kolmogorov-Smirnov p-values >= 0.001 for $z_1$, $z_2$, $(z_1 + z_2)/\\sqrt 2$ against "
                 "$\\mathcal N(0, 1)$ and for $|z|^2/2$ against Exp(1): "
                 + ", ".join(f"{p:.3f}" for p in pvalues), 1e-3, jnp.array(pvalues))
    wrong = jnp.sqrt(-jnp.log(1.0 - draws[:, 0])) * jnp.cos(2 * jnp.pi * draws[:, 1])
    d.inequality("The test has power: dropping the 2 in $\\sqrt{-2 \\ln u_1}$ gives a KS p-value below 1e-10",
                 _ks_pvalue(wrong, "norm"), 1e-10)
    line = np.linspace(-4.5, 4.5, 301)
    fig, ax = new_figure()
    ax.hist(np.asarray(z[:, 0]), bins=90, range=(-4.5, 4.5), density=True, alpha=0.5, label="Box-Muller $z_1$")
    ax.hist(np.asarray(wrong), bins=90, range=(-4.5, 4.5), density=True, histtype="step", color="C3",
            label="without the 2")
    ax.plot(line, stats.norm.pdf(line), "k", lw=1.2, label="$N(0, 1)$ density")
    ax.set(xlabel="$z_1$", ylabel="density")
    ax.legend(fontsize=8)
    d.figure(fig, f"{n:,} Box-Muller samples of $z_1$ follow the standard normal density; dropping the 2 in "
                  "$\\sqrt{-2 \\ln u_1}$ gives a visibly too narrow distribution.")


def _section_inverse_cdf(d: Derivation, n: int, key_icdf) -> None:
    """Inverse-CDF sampling: F(F^{-1}(u)) = u, the density of F^{-1}(u) is f, and the samples match their laws."""
    d.say("Inverse CDF (eq. 4): if $u \\sim U(0, 1)$ then $P(F^{-1}(u) \\le x) = P(u \\le F(x)) = F(x)$, and "
          "the change-of-variables density of $x = F^{-1}(u)$ is $|du/dx| = F'(x) = f(x)$.")
    for name, cdf, icdf, pdf, x, uu in _sympy_inverse_cdfs():
        d.symbolic(f"{name}: $F(F^{{-1}}(u)) = u$ (SymPy)", cdf.subs(x, icdf), uu)
        d.symbolic(f"{name}: eq. 1 for $x = F^{{-1}}(u)$, $p(x) = |dF^{{-1}}/du|^{{-1}}$ at $u = F(x)$, is $f(x)$",
                   1 / sp.diff(icdf, uu).subs(uu, cdf), pdf)
    grid_u = jnp.linspace(1e-6, 1 - 1e-6, 2001)
    d.numeric("`gaussian_icdf` (ndtri) equals $\\sqrt 2\\,\\mathrm{erfinv}(2u - 1)$ and SciPy's norm.ppf on "
              "$u \\in [10^{-6}, 1 - 10^{-6}]$", jnp.stack([gaussian_icdf(grid_u, 0.0, 1.0)] * 2),
              jnp.stack([math.sqrt(2) * jax.scipy.special.erfinv(2 * grid_u - 1), stats.norm.ppf(np.asarray(grid_u))]))
    d.gradient("$d F^{-1}/du = 1/f(F^{-1}(u))$ by jax.grad: Gaussian ($\\sigma/\\phi$), exponential "
               "($1/(\\lambda(1-u))$), logistic ($s/(u(1-u))$)",
               jnp.stack([jax.jit(jax.vmap(jax.grad(f)))(grid_u[::10]) for f in (
                   lambda v: gaussian_icdf(v, 0.3, 1.7), lambda v: exponential_icdf(v, 2.5),
                   lambda v: logistic_icdf(v, -1.0, 0.6))]),
               jnp.stack([1.7 / jnp.exp(-0.5 * ndtri(grid_u[::10]) ** 2 - 0.5 * LOG_2PI),
                          1 / (2.5 * (1 - grid_u[::10])), 0.6 / (grid_u[::10] * (1 - grid_u[::10]))]), rtol=1e-9)
    v = jax.random.uniform(key_icdf, (3, n), dtype=jnp.float64)  # one stream each: KS is invariant to monotone maps
    expo, logi, gaus = exponential_icdf(v[0], 2.5), logistic_icdf(v[1], -1.0, 0.6), gaussian_icdf(v[2], 0.3, 1.7)
    d.monte_carlo("Moments of the samples: exponential mean $1/\\lambda$, logistic mean $\\mu$ and variance "
                  "$\\pi^2 s^2 / 3$, Gaussian mean and variance", jnp.stack(
                      [expo, logi, (logi + 1.0) ** 2, gaus, (gaus - 0.3) ** 2], 1),
                  jnp.array([0.4, -1.0, math.pi**2 * 0.36 / 3, 0.3, 1.7**2]))
    laws = (stats.expon(scale=0.4), stats.logistic(-1.0, 0.6), stats.norm(0.3, 1.7))
    pvalues = [_ks_pvalue(expo, laws[0].cdf), _ks_pvalue(logi, laws[1].cdf), _ks_pvalue(gaus, laws[2].cdf)]
    d.inequality("KS p-values >= 0.001 against SciPy's exponential, logistic and normal CDFs: "
                 + ", ".join(f"{p:.3f}" for p in pvalues), 1e-3, jnp.array(pvalues))
    line = np.linspace(-5.0, 5.0, 401)
    fig, ax = new_figure()
    for samples, law, label, color in zip((expo, logi, gaus), laws, ("exponential", "logistic", "Gaussian"),
                                          ("C0", "C1", "C2")):
        ax.hist(np.asarray(samples), bins=100, range=(-5, 5), density=True, histtype="step", color=color,
                label=f"{label} $F^{{-1}}(u)$")
        ax.plot(line, law.pdf(line), color=color, ls="--", lw=1, label="dashed: densities $f$" if color == "C2" else None)
    ax.set(xlabel="$x$", ylabel="density", ylim=(0, 2.6))
    ax.legend(fontsize=8)
    d.figure(fig, "Inverse-CDF samples (histograms) lie on the densities $f$ they were built from (dashed): "
                  "exponential (rate 2.5), logistic (-1, 0.6) and Gaussian (0.3, 1.7).")


def _section_composition(d: Derivation, rng: np.random.Generator):
    """Jacobians of composed maps: eq. 2, checked on a chain of five maps and on a 2-layer flow."""
    a, b = sp.Matrix(2, 2, sp.symbols("a:4")), sp.Matrix(2, 2, sp.symbols("b:4"))
    d.symbolic("$\\det(AB) = \\det A \\det B$ (SymPy, generic 2 x 2): with the chain rule "
               "$J_{g\\circ f} = J_g J_f$ this gives eq. 2", (a * b).det(), a.det() * b.det())
    flow = _random_flow(rng, layers=2, d=2, k=5)
    comp = _composition_study(jnp.asarray(rng.standard_normal((200, 2))), jnp.asarray(rng.standard_normal((300, 2)) * 2.0),
                              flow)
    d.numeric("Each map's own log-det formula equals its autodiff $\\log|\\det J|$: LU ($\\sum \\log$ diag), the twist "
              "$(r, \\theta) \\mapsto (r, \\theta + 0.4 r^2)$ (0: volume-preserving), the elementwise flow (eq. 6), "
              "sigmoid, Box-Muller", comp["closed"], comp["autodiff"], atol=1e-10)
    d.numeric("Eq. 2: $\\log|\\det|$ of the five-map composition (jax.jacfwd of the whole) equals the sum of the "
              "closed forms along the way (200 points)", comp["composed"], jnp.sum(comp["closed"], 0), atol=1e-10)
    d.inequality("The elementwise flow's Jacobian is diagonal: every off-diagonal entry is exactly 0",
                 jnp.abs(comp["elementwise_jacobian"] * (1 - jnp.eye(2))), 0.0)
    d.numeric("A 2-layer flow (elementwise, LU, elementwise): its summed log-det equals "
              "$\\log|\\det|$ of jax.jacfwd of `flow_forward`", comp["flow_log_det"], comp["flow_autodiff"],
              atol=1e-10)
    d.numeric("...and `flow_inverse` inverts it (bisection + one Newton step, 300 points)", comp["flow_inverse"],
              comp["flow_x"])
    return flow


def _section_flow_density(d: Derivation, flow) -> None:
    """The elementwise flow's density: one layer is the logistic mixture; a 2-layer flow integrates like its CDF."""
    ends = jnp.array([[-40.0, 40.0], [-3.0, 1.0], [0.5, 6.0]])
    xs = np.linspace(ends[:, 0], ends[:, 1], 20_001, axis=1)  # (3, 20 001)
    one_d = _one_dim_study(jnp.linspace(-8.0, 8.0, 401)[:, None], jnp.asarray(xs), ends, flow)
    d.numeric("One elementwise layer: $\\log \\mathcal N(z) + \\log dz/dx$ is the logistic mixture's log-density "
              "($\\Phi^{-1}$ cancels in eq. 1)", one_d["one_layer"], one_d["mixture"])
    probs = [integrate.simpson(np.asarray(p), x=x) for p, x in zip(one_d["densities"], xs)]
    d.numeric("Probabilities of intervals two ways, for a 2-layer 1-D flow: Simpson's rule on its density over "
              "$[a, b]$ equals $\\Phi(T(b)) - \\Phi(T(a))$, for $[-40, 40]$, $[-3, 1]$, $[0.5, 6]$",
              jnp.array(probs), one_d["interval_probs"], rtol=1e-9, atol=1e-10)
    d.say(f"(The first interval holds {100 * probs[0]:.4f}% of the mass. The tails are heavier than Gaussian: each "
          "layer turns Gaussian tails into logistic ones, so $L$ layers give $\\log p(x) \\sim -|x|^{2^{1-L}}$.)")


def _section_flow_inverse(d: Derivation, rng: np.random.Generator, n: int, key_flow, flow) -> None:
    """The flow's inverse: gradients by the implicit function theorem, and sampling by x = T^{-1}(z)."""
    elem = tuple(p[0] for p in flow[:3])
    one = tuple(p[:1, :1] for p in flow[:3])  # one elementwise layer on one coordinate
    zg = jnp.asarray(rng.standard_normal((50, 2)))
    grad_z, grad_means, expected_z, expected_means = _inverse_gradients(zg, *elem)
    d.gradient("Gradients through the inverse follow the implicit function theorem: $dx/dz = 1 / (dz/dx)$ "
               "(jax.grad of `gaussianize_inverse` vs eq. 6 at $x = T^{-1}(z)$)", grad_z, expected_z)
    d.gradient("...and $dx/d\\mu = -(\\partial z/\\partial \\mu) / (dz/dx)$ for the component means "
               "(summed over 50 points)", grad_means, expected_means)
    x_samples = _jit_inverse(jax.random.normal(key_flow, (n // 10, 1), dtype=jnp.float64), *one)
    pi = jax.nn.softmax(one[0][0, 0])
    d.monte_carlo("Sampling by the inverse: $x = F^{-1}(\\Phi(z))$, $z \\sim \\mathcal N(0, 1)$ has the mixture's "
                  "mean $\\sum_k \\pi_k \\mu_k$", x_samples[:, 0], jnp.sum(pi * one[1][0, 0]))

    def mixture_cdf(t):
        return np.exp(np.asarray(logistic_mixture_log_cdf(jnp.asarray(t)[:, None], *(p[0] for p in one))[0][:, 0]))

    p_mix = _ks_pvalue(x_samples[:, 0], mixture_cdf)
    d.inequality(f"...and passes a KS test against the mixture CDF $F$ (p = {p_mix:.3f} >= 0.001)", 1e-3, p_mix)
    line = jnp.linspace(-8.0, 8.0, 401)
    fig, ax = new_figure()
    ax.hist(np.asarray(x_samples[:, 0]), bins=80, range=(-8, 8), density=True, alpha=0.5,
            label=f"$F^{{-1}}(\\Phi(z))$, {n // 10:,} samples")
    ax.plot(line, np.exp(np.asarray(logistic_mixture_log_pdf(line[:, None], *one)[:, 0])), "k", lw=1.2,
            label="mixture density $f$")
    ax.plot(np.asarray(one[1][0, 0]), np.zeros(one[1].shape[-1]), "|", color="C3", ms=12, label="component means")
    ax.set(xlabel="$x$", ylabel="density")
    ax.set_ylim(0, 1.4 * ax.get_ylim()[1])  # room for the legend above the histogram
    ax.legend(fontsize=8)
    d.figure(fig, "Pushing Gaussian noise through the inverse of one elementwise flow layer samples its "
                  "logistic-mixture density: the histogram follows $f$.")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("change_of_variables", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    _section_box_muller_jacobian(d, rng)

    # Moments and KS tests on samples; one key each for Box-Muller, inverse-CDF and flow samples.
    n = 200_000
    key_bm, key_icdf, key_flow = jax.random.split(jax.random.key(0), 3)
    _section_box_muller_samples(d, n, key_bm)
    _section_inverse_cdf(d, n, key_icdf)
    flow = _section_composition(d, rng)
    _section_flow_density(d, flow)
    _section_flow_inverse(d, rng, n, key_flow, flow)
    return d
