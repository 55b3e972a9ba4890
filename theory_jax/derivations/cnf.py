"""The ``cnf`` derivation (``python -m theory_jax cnf``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/cnf.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as a
notebook.
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from jax.flatten_util import ravel_pytree

from theory_jax.cnf import (
    ClassicRK4,
    _mlp,
    adjoint_gradients,
    augmented,
    divergence_exact,
    divergence_hutchinson,
    euler_step,
    log_likelihood,
    mlp_field,
    odeint_fixed,
    standard_normal_log_prob,
)
from theory_jax.derivation import Derivation, full_precision, new_figure

TITLE = "continuous normalizing flows: instantaneous change of variables, Hutchinson's trace, solvers and the adjoint"
LECTURES = "neural ODEs; continuous normalizing flows (FFJORD)"


def _mlp_params(rng, d=2, hidden=16, scale=1.0):
    """Weights of ``mlp_field`` (torch layout), N(0, scale^2 / fan_in), biases N(0, 0.1^2)."""
    shapes = {"w1": (hidden, d + 1), "b1": (hidden,), "w2": (hidden, hidden), "b2": (hidden,), "w3": (d, hidden),
              "b3": (d,)}
    return {k: jnp.asarray(scale * rng.standard_normal(s) / math.sqrt(s[-1]) if k[0] == "w"
                           else 0.1 * rng.standard_normal(s)) for k, s in shapes.items()}


def _mlp_jacobian(t, x, p):
    """The MLP's Jacobian by the chain rule: W3 diag(1 - h2^2) W2 diag(1 - h1^2) W1[:, :D]. x: (B, D) -> (B, D, D)."""
    d = x.shape[1]
    tx = jnp.concatenate([x, jnp.full((x.shape[0], 1), t)], axis=1)
    h1 = jnp.tanh(tx @ p["w1"].T + p["b1"])
    h2 = jnp.tanh(h1 @ p["w2"].T + p["b2"])
    return jnp.einsum("oj,bj,jk,bk,ki->boi", p["w3"], 1 - h2**2, p["w2"], 1 - h1**2, p["w1"][:, :d])


def _linear_gaussian(a, x):
    """log N(x; 0, e^A e^{A^T}): where dx/dt = A x takes N(0, I) at t = 0 by t = 1."""
    m = jax.scipy.linalg.expm(a)
    return jax.scipy.stats.multivariate_normal.logpdf(x, jnp.zeros(a.shape[0]), m @ m.T)


def _section_change_of_variables(d: Derivation, rng) -> None:
    """Theorem 1 symbolically in 1-D, then the augmented ODE against a linear field's Gaussian in 3-D."""
    d.say("## 1. The instantaneous change of variables\n\n"
          "Along a solution of $dx/dt = f(t, x)$, $\\frac{d}{dt}\\log p_t(x_t) = -\\mathrm{tr}\\,\\frac{\\partial f}"
          "{\\partial x}(t, x_t)$ (Chen et al. 2018, Theorem 1). With noise at $t = 0$ and data at $t = 1$: "
          "$\\log p_1(x) = \\log \\mathcal N(z; 0, I) - \\int_0^1 \\mathrm{tr}\\,\\frac{\\partial f}{\\partial x}\\,dt$, "
          "$z$ the solution at $t = 0$ of the ODE run backwards from $x$.")
    a, t, z = sp.symbols("a t z", real=True)
    var = sp.exp(2 * a * t)
    log_p = -(sp.exp(a * t) * z) ** 2 / (2 * var) - sp.log(2 * sp.pi * var) / 2
    d.symbolic("1-D linear field $f = a x$: $x_t = e^{at} z$ has density $\\mathcal N(0, e^{2at})$, and "
               "$\\frac{d}{dt}\\log p_t(x_t) = -a = -\\partial f/\\partial x$", sp.diff(log_p, t), -a)
    dim = 3
    amat = jnp.asarray(0.5 * rng.standard_normal((dim, dim)))
    x = jnp.asarray(rng.standard_normal((6, dim)))
    linear = lambda t, y: y @ amat.T  # noqa: E731
    exact = _linear_gaussian(amat, x)
    d.numeric("Linear field $f = A x$ in 3-D (A not symmetric): the CNF log-density by the augmented ODE (classic "
              "RK4, 200 steps, exact trace) equals $\\log\\mathcal N(x; 0, e^A e^{A^T})$",
              jax.jit(lambda y: log_likelihood(linear, y, method="rk4_classic", steps=200))(x), exact, rtol=1e-10,
              atol=1e-10)
    d.numeric("... and with diffrax's adaptive Dopri5 at tolerance $10^{-10}$",
              log_likelihood(linear, x, method="dopri5", atol=1e-10, rtol=1e-10), exact, rtol=1e-8, atol=1e-8)


def _section_discrete_to_continuous(d: Derivation, rng) -> None:
    """Euler steps with exact log-dets (a ResNet flow) converge to the CNF, whose density is normalised."""
    p = _mlp_params(rng, scale=1.5)
    f = _mlp(**p)
    z0 = jnp.asarray(rng.standard_normal((8, 2)))

    @jax.jit
    def euler_flow(n):
        """N Euler steps x <- x + h f(t, x) from z, each a map with log|det(I + h J)|: the discrete change of variables."""
        def step(i, state):
            xi, logp = state
            jac = jax.vmap(jax.jacfwd(lambda y, ti: f(ti, y[None])[0]), (0, None))(xi, i / n)
            logdet = jnp.linalg.slogdet(jnp.eye(2) + jac / n)[1]
            return euler_step(f, i / n, xi, 1.0 / n), logp - logdet
        return jax.lax.fori_loop(0, n, step, (z0, standard_normal_log_prob(z0)))

    flows = [euler_flow(n) for n in (100, 200, 400)]
    continuous = jax.jit(lambda y: log_likelihood(f, y, method="rk4_classic", steps=200))(
        jnp.concatenate([xn for xn, _ in flows]))
    errors = np.abs(np.concatenate([lp for _, lp in flows]) - np.asarray(continuous)).reshape(3, -1).max(axis=1)
    d.numeric("A nonlinear field (tanh MLP of $[x, t]$): N Euler steps with their exact log-dets "
              "$\\log|\\det(I + hJ)|$ (the discrete change of variables, a ResNet flow) converge to the CNF's "
              "$\\log p_1$ (classic RK4, 200 steps) at first order: the error halves as N doubles (N = 100, 200, 400)",
              errors[:-1] / errors[1:], np.full(2, 2.0), rtol=0.0, atol=0.1)
    d.inequality("... and at N = 400 the two log-densities agree to better than 0.01 nats", errors[-1], 0.01)
    xs = np.linspace(-6, 6, 121)
    grid = jnp.asarray(np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2))
    density = jnp.exp(jax.jit(lambda g: log_likelihood(f, g, method="rk4_classic", steps=20))(grid))
    mass = jnp.sum(density)
    d.numeric("The CNF density is normalised: $\\sum \\exp\\log p_1$ over a 121 x 121 grid on $[-6, 6]^2$ "
              "(classic RK4, 20 steps) times the cell area is 1", mass * (xs[1] - xs[0]) ** 2, 1.0, rtol=0.0,
              atol=2e-3)
    fig, (ax_err, ax_p) = new_figure(columns=2)
    ns = np.array([100, 200, 400])
    ax_err.loglog(ns, errors, "o-", label="Euler flow vs CNF")
    ax_err.loglog(ns, errors[0] * ns[0] / ns, "k--", lw=1, label="slope $-1$")
    ax_err.set(xlabel="Euler steps $N$", ylabel="max $|\\log p_N - \\log p_1|$ (nats)")
    ax_err.legend()
    ax_p.imshow(np.asarray(density).reshape(len(xs), len(xs)), origin="lower", extent=(-6, 6, -6, 6), cmap="viridis")
    ax_p.set(xlabel="$x_1$", ylabel="$x_2$", xlim=(-3, 3), ylim=(-3, 3), title="$p_1(x)$ of the MLP field")
    d.figure(fig, "Left: the discrete change of variables converges to the CNF's log-density at first order; right: "
                  "the CNF density on the grid whose mass is 1.")


def _section_hutchinson(d: Derivation, rng) -> None:
    """Hutchinson's v^T J v: unbiased for tr J, with the closed-form variances of Gaussian and Rademacher probes."""
    d.say("## 2. Exact trace vs Hutchinson's estimator\n\n"
          "The exact $\\mathrm{tr}\\,J$ costs D vector-Jacobian products; $v^T J v$ with $E[v v^T] = I$ costs one "
          "and is unbiased: $E[v^T J v] = \\mathrm{tr}(J E[v v^T]) = \\mathrm{tr} J$. With $S = (J + J^T)/2$: "
          "$\\mathrm{Var} = 2\\|S\\|_F^2$ for Gaussian $v$ and $2\\|S\\|_F^2 - 2\\sum_i J_{ii}^2$ for Rademacher $v$.")
    dim = 5
    p = _mlp_params(rng, d=dim, hidden=24, scale=1.5)
    t = 0.3
    x = jnp.asarray(rng.standard_normal((4, dim)))
    g = lambda y: mlp_field(t, y, **p)  # noqa: E731
    jac = _mlp_jacobian(t, x, p)
    trace = jnp.trace(jac, axis1=1, axis2=2)
    d.numeric("``divergence_exact`` (per-example autodiff Jacobian) equals the trace of the MLP's Jacobian by the "
              "chain rule, $W_3\\,\\mathrm{diag}(1 - h_2^2)\\,W_2\\,\\mathrm{diag}(1 - h_1^2)\\,W_1$",
              jax.jit(partial(divergence_exact, g))(x), trace)
    signs = jnp.asarray(list(itertools.product((-1.0, 1.0), repeat=dim)))  # all 2^D Rademacher probes
    per_probe = jax.jit(jax.vmap(lambda v: divergence_hutchinson(g, x, jnp.broadcast_to(v, x.shape))))(signs)  # (2^D, B)
    sym = (jac + jnp.swapaxes(jac, 1, 2)) / 2
    var_gauss = 2 * jnp.sum(sym**2, axis=(1, 2))
    var_rad = var_gauss - 2 * jnp.sum(jnp.diagonal(jac, axis1=1, axis2=2) ** 2, axis=1)
    d.numeric("Unbiased, exactly: the mean of $v^T J v$ over all $2^5$ Rademacher probes is $\\mathrm{tr} J$",
              per_probe.mean(0), trace)
    d.numeric("... and their variance is $2\\|S\\|_F^2 - 2\\sum_i J_{ii}^2$", per_probe.var(0), var_rad)
    n = 40_000
    estimates = {}
    for name, probes, var in (("Gaussian", rng.standard_normal((n, dim)), var_gauss),
                              ("Rademacher", rng.choice([-1.0, 1.0], (n, dim)), var_rad)):
        est = jax.jit(jax.vmap(lambda v: divergence_hutchinson(g, x[:1], v[None])[0]))(jnp.asarray(probes))
        estimates[name] = np.asarray(est), float(var[0])
        d.monte_carlo(f"{name} probes: the mean of {n} estimates $v^T J v$ is $\\mathrm{{tr}} J$", est, trace[0])
        d.monte_carlo(f"... and their measured variance, the mean of $(v^T J v - \\mathrm{{tr}} J)^2$, is the closed "
                      f"form ({float(var[0]):.3f})", (est - trace[0]) ** 2, var[0])
    d.inequality("Rademacher probes have the smaller variance (by $2\\sum_i J_{ii}^2$)", var_rad, var_gauss)
    fig, ax = new_figure()
    counts = np.arange(1, n + 1)
    for (name, (est, var)), color in zip(estimates.items(), ("C0", "C1")):
        band = 2 * np.sqrt(var / counts)
        ax.plot(counts, np.cumsum(est) / counts, color=color, lw=1, label=f"running mean, {name} $v$")
        ax.plot(counts, float(trace[0]) + np.stack([-band, band], 1), color=color, lw=0.8, ls=":")
    ax.axhline(float(trace[0]), color="k", ls="--", lw=1, label="$\\mathrm{tr}\\,J$")
    ax.set(xscale="log", ylim=(float(trace[0]) - 1.5, float(trace[0]) + 1.5), xlabel="number of probes $n$",
           ylabel="mean of $v^T J v$")
    ax.legend(fontsize="small")
    d.figure(fig, "The running means of Hutchinson's estimates converge to $\\mathrm{tr}\\,J$ at the rate of their "
                  f"closed-form $\\pm 2\\sigma/\\sqrt{{n}}$ bands (dotted; variances {estimates['Gaussian'][1]:.2f} and "
                  f"{estimates['Rademacher'][1]:.2f}, close here because $J$'s diagonal is small).")
    f = _mlp(**_mlp_params(rng, scale=1.5))
    x2 = jnp.asarray(rng.standard_normal((3, 2)))
    probes = jnp.asarray(rng.choice([-1.0, 1.0], (2000, 3, 2)))
    draws = jax.jit(jax.vmap(lambda v: log_likelihood(f, x2, method="rk4_classic", steps=8, trace="hutchinson",
                                                      probe=v)))(probes)
    d.monte_carlo("A whole solve with one Rademacher probe per example held fixed over t (FFJORD) is an unbiased "
                  "estimate of the exact-trace $\\log p_1(x)$ (2000 solves, classic RK4, 8 steps)", draws,
                  log_likelihood(f, x2, method="rk4_classic", steps=8))


@partial(jax.jit, static_argnums=(0, 1))
def _global_errors(f, method: str, x0, ns, reference):
    """max |x_1 - reference| after n steps of ``method`` from x0 at t = 0, for each n of ``ns``."""
    return jnp.stack([jnp.max(jnp.abs(odeint_fixed(f, x0, 0.0, 1.0, n, method) - reference)) for n in ns])


def _section_solvers(d: Derivation, rng) -> None:
    """One RK4 step matches diffrax's classic tableau; the measured global orders are 1, 2 and 4."""
    d.say("## 3. Solvers: one Euler and one RK4 step, and their order\n\n"
          "Classic RK4 has local error $O(h^5)$, global $O(h^4)$: halving $h$ divides the error by 16; Euler by 2, "
          "midpoint by 4. torchdiffeq's 'rk4' is Kutta's 3/8 rule, also of order 4.")
    f = _mlp(**_mlp_params(rng, scale=1.5))
    x = jnp.asarray(rng.standard_normal((5, 2)))
    term = diffrax.ODETerm(lambda t, y, args: f(t, y))
    sol = diffrax.diffeqsolve(term, ClassicRK4(), 0.2, 1.0, 0.1, x, stepsize_controller=diffrax.ConstantStepSize())
    d.numeric("Eight ``rk4_step``s of h = 0.1 from t = 0.2 equal diffrax's explicit Runge-Kutta solver with the "
              "classic tableau (c = 1/2, 1/2, 1; b = 1/6, 1/3, 1/3, 1/6)",
              odeint_fixed(f, x, 0.2, 1.0, 8, "rk4_classic"), sol.ys[-1])
    x0 = jnp.asarray(rng.standard_normal((4, 2)))
    reference = jax.jit(lambda y: odeint_fixed(f, y, 0.0, 1.0, 2048, "rk4_classic"))(x0)
    fig, ax = new_figure()
    for name, order, ns in (("euler", 1, (32, 64, 128)), ("midpoint", 2, (16, 32, 64)), ("rk4_classic", 4, (16, 32, 64)),
                            ("rk4", 4, (16, 32, 64))):
        errs = np.asarray(_global_errors(f, name, x0, jnp.asarray(ns), reference))
        measured = np.log2(errs[:-1] / errs[1:])
        d.numeric(f"Measured order of {name} on the MLP field (error at t = 1 against classic RK4 with 2048 steps, "
                  f"N = {ns}): {', '.join(f'{m:.2f}' for m in measured)}", measured, np.full(2, float(order)),
                  rtol=0.0, atol=0.2)
        ax.loglog(1.0 / np.asarray(ns), errs, "o-", label=f"{name} (order {order})")
    ax.minorticks_off()
    ax.set_xticks([1 / 128, 1 / 64, 1 / 32, 1 / 16], ["1/128", "1/64", "1/32", "1/16"])
    ax.set(xlabel="step size $h$", ylabel="max error at $t = 1$")
    ax.legend(fontsize="small", loc="lower right")
    d.figure(fig, "Global error against step size on log-log axes: the slopes are the orders, 1 for Euler, 2 for "
                  "midpoint and 4 for both RK4 rules.")


def _cnf_rhs(t, s, p):
    """The augmented CNF dynamics on s = [x, l] with the MLP's weights p as an argument (exact trace)."""
    return augmented(_mlp(**p))(t, s)


def _nll_of_state(s0):
    """-mean log p_1 from the state at t = 0: -(log N(z) + l(0))."""
    return -jnp.mean(standard_normal_log_prob(s0[:, :-1]) + s0[:, -1])


def _section_adjoint(d: Derivation, rng) -> None:
    """The adjoint ODE's gradient equals backprop through the solver, which equals a central difference."""
    d.say("## 4. Gradients: through the solver vs the adjoint method\n\n"
          "For $L(z)$ with $z$ the solution at $t = 0$, the adjoint $a(t) = \\partial L/\\partial x_t$ solves "
          "$da/dt = -a^T \\partial f/\\partial x$ and $dL/d\\theta = \\int a^T \\partial f/\\partial\\theta\\,dt$, "
          "run backwards with $x_t$ recomputed (Chen et al. 2018, eqs. 4-5): memory O(1) in the number of steps. "
          "Backpropagating through the solver's operations differentiates the discrete solution instead; both give "
          "the gradient of the exact solution to the solver's accuracy. The loss here is the CNF's negative "
          "log-likelihood of 6 points (exact trace), the parameters the MLP's weights.")
    p = _mlp_params(rng, scale=1.5)
    x = jnp.asarray(rng.standard_normal((6, 2)))
    s1 = jnp.concatenate([x, jnp.zeros((6, 1))], axis=1)
    steps = 40
    flat = lambda tree: ravel_pytree(tree)[0]  # noqa: E731

    def loss_rk4(params):
        return _nll_of_state(odeint_fixed(partial(_rhs_swap, params), s1, 1.0, 0.0, steps, "rk4_classic"))

    g_backprop = jax.jit(jax.grad(loss_rk4))(p)
    _, g_adjoint = jax.jit(lambda params: adjoint_gradients(_cnf_rhs, params, s1, jax.grad(_nll_of_state), steps))(p)
    d.gradient(f"Our own adjoint ODE (classic RK4, {steps} steps, x re-solved backwards beside a and g) equals "
               f"backprop through our RK4 with the same steps, for all {flat(p).size} weights, to the solver's "
               "accuracy", flat(g_adjoint), flat(g_backprop), rtol=1e-6, atol=1e-7)
    direction = jax.tree_util.tree_map(lambda w: jnp.asarray(rng.standard_normal(w.shape)), p)
    direction = jax.tree_util.tree_map(lambda u: u / jnp.linalg.norm(flat(direction)), direction)  # unit length
    eps = 1e-5
    along = jax.jit(lambda e: loss_rk4(jax.tree_util.tree_map(lambda w, u: w + e * u, p, direction)))
    fd = (along(eps) - along(-eps)) / (2 * eps)
    d.gradient("Third witness: backprop through RK4 is the exact gradient of the discrete solution, so it matches the "
               "central difference of that loss along a random direction", jnp.dot(flat(g_backprop), flat(direction)),
               fd, rtol=1e-8, atol=1e-8)


def _rhs_swap(params, t, s):
    return _cnf_rhs(t, s, params)


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("cnf", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    _section_change_of_variables(d, rng)
    _section_discrete_to_continuous(d, rng)
    _section_hutchinson(d, rng)
    _section_solvers(d, rng)
    _section_adjoint(d, rng)
    return d
