"""The ``ssm`` derivation (``python -m theory_jax ssm``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/ssm.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as a
notebook.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from scipy import integrate, linalg, special

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.ssm import (
    causal_convolution,
    diagonal_kernel,
    diagonal_recurrence,
    discretize_bilinear,
    discretize_zoh,
    hippo_legs,
    s4d_imag_init,
    selective_scan,
    selective_scan_sequential,
)

TITLE = "state-space models: discretisation, the convolution kernel, HiPPO-LegS, S4D and the selective scan"
LECTURES = "state-space models"


# 3. The derivation -----------------------------------------------------------------------------------------------
def _legendre_coefficients(f, t, n, nodes=200):
    """c_n(t) = int_0^t f(s) sqrt(2n+1) P_n(2s/t - 1) ds / t: f's scaled Legendre coefficients on [0, t]."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    s = (x + 1) * t / 2
    basis = np.stack([np.sqrt(2 * k + 1) * special.eval_legendre(k, x) for k in range(n)])
    return basis @ (w * f(s)) / 2


def _section_scalar_discretisation(d: Derivation) -> None:
    """Zero-order hold and the bilinear transform derived symbolically for a scalar SSM."""
    t, a, b, u, x0, dl = sp.symbols("t a b u x_0 Delta", real=True)
    x = sp.Function("x")
    solution = sp.dsolve(sp.Eq(x(t).diff(t), a * x(t) + b * u), x(t), ics={x(0): x0}).rhs
    d.symbolic("Zero-order hold, scalar case (SymPy's `dsolve` with $u$ constant over the step): "
               "$x(\\Delta) = e^{a\\Delta} x_0 + \\frac{e^{a\\Delta} - 1}{a} b u$", solution.subs(t, dl),
               sp.exp(a * dl) * x0 + (sp.exp(a * dl) - 1) / a * b * u)
    x1 = sp.symbols("x_1")
    trapezoid = sp.solve(sp.Eq(x1 - x0, dl / 2 * ((a * x0 + b * u) + (a * x1 + b * u))), x1)[0]
    d.symbolic("Bilinear, scalar case: the trapezoid rule $x_1 - x_0 = \\frac\\Delta2 (f(x_0) + f(x_1))$ solved for "
               "$x_1$ is $\\frac{1 + a\\Delta/2}{1 - a\\Delta/2} x_0 + \\frac{\\Delta b}{1 - a\\Delta/2} u$",
               trapezoid, (1 + a * dl / 2) / (1 - a * dl / 2) * x0 + dl * b / (1 - a * dl / 2) * u)


def _section_matrix_discretisation(d: Derivation, rng: np.random.Generator) -> None:
    """Matrix zero-order hold is exact for piecewise-constant input; the bilinear transform is third order."""
    n, m = 4, 2
    a_mat = rng.standard_normal((n, n)) - 2 * np.eye(n)
    b_mat = rng.standard_normal((n, m))
    delta = 0.3
    a_bar, b_bar = discretize_zoh(jnp.asarray(a_mat), jnp.asarray(b_mat), delta)
    block = linalg.expm(delta * np.block([[a_mat, b_mat], [np.zeros((m, n + m))]]))
    d.numeric("Matrix zero-order hold against Van Loan's block exponential, $\\exp(\\Delta [[A, B], [0, 0]]) = "
              "[[\\bar A, \\bar B], [0, I]]$ (SciPy's `expm`, no inverse of $A$)",
              jnp.concatenate([a_bar, b_bar], 1), block[:n], rtol=1e-10, atol=1e-12)
    u_steps = rng.standard_normal((5, m))
    state = np.zeros(n)
    for u_k in u_steps:  # the exact solution for piecewise-constant input, by an ODE solver
        state = integrate.solve_ivp(lambda _, z, uu=u_k: a_mat @ z + b_mat @ uu, (0, delta), state, rtol=1e-12,
                                    atol=1e-14, method="DOP853").y[:, -1]
    zoh_state = np.zeros(n)
    for u_k in u_steps:
        zoh_state = np.asarray(a_bar) @ zoh_state + np.asarray(b_bar) @ u_k
    d.numeric("...and it is exact for inputs constant over each step: 5 steps against SciPy's DOP853 at rtol 1e-12 "
              "(its own error sets the tolerance)", zoh_state, state, rtol=1e-9, atol=1e-11)

    def one_step_error(step):
        exact = discretize_zoh(jnp.asarray(a_mat), jnp.asarray(b_mat), step)
        approx = discretize_bilinear(jnp.asarray(a_mat), jnp.asarray(b_mat), step)
        return float(jnp.linalg.norm(exact[0] - approx[0]))

    ratios = np.array([one_step_error(s) / one_step_error(s / 2) for s in (0.005, 0.0025)])
    d.numeric("The bilinear transform approximates $e^{\\Delta A}$ to third order per step: halving $\\Delta$ "
              "divides its error by 8 (at $\\Delta$ = 0.005 and 0.0025; the next order's correction is under 1% "
              "there, which sets the tolerance)", ratios, np.full(2, 8.0), rtol=0.01)


def _section_convolution(d: Derivation, rng: np.random.Generator) -> None:
    """The diagonal SSM as a convolution with its Vandermonde kernel, equal to the recurrence."""
    d.say("The convolution view: a diagonal SSM with $N = 8$ states, discretised by zero-order hold.")
    n_diag, length = 8, 64
    lam = -np.exp(rng.standard_normal(n_diag) * 0.5)  # stable real eigenvalues (S4D-Real)
    step = 0.1
    a_bar_d = np.exp(step * lam)
    b_bar_d = (a_bar_d - 1) / lam  # B = 1
    c_vec = rng.standard_normal(n_diag)
    u_seq = rng.standard_normal(length)
    kernel = diagonal_kernel(jnp.asarray(a_bar_d), jnp.asarray(b_bar_d), jnp.asarray(c_vec), length)
    d.numeric("The S4D kernel by the Vandermonde product equals $K_j = C \\bar A^j \\bar B$ by repeated "
              "multiplication", kernel, np.array([c_vec @ (a_bar_d**j * b_bar_d) for j in range(length)]))
    d.numeric("The convolution $y = K * u$ equals the recurrence unrolled from $x_{-1} = 0$ (64 steps): training "
              "in parallel, generating one state update per token",
              causal_convolution(kernel, jnp.asarray(u_seq)),
              diagonal_recurrence(jnp.asarray(a_bar_d), jnp.asarray(b_bar_d), jnp.asarray(c_vec), jnp.asarray(u_seq)))
    d.numeric("...and NumPy's full convolution, truncated to the causal part, is the third witness",
              causal_convolution(kernel, jnp.asarray(u_seq)), np.convolve(np.asarray(kernel), u_seq)[:length])
    fig, (ax_k, ax_y) = new_figure(columns=2)
    lags = np.arange(length)
    ax_k.plot(lags, ((c_vec * b_bar_d)[:, None] * a_bar_d[:, None] ** lags).T, lw=0.6, color="0.7")
    ax_k.plot(lags, kernel, "C0", lw=2, label="$K_j = C \\bar A^j \\bar B$")
    ax_k.plot([], [], lw=0.6, color="0.7", label="its 8 modes $C_n \\bar B_n \\bar A_n^j$")
    ax_k.set(xlabel="lag $j$", ylabel="kernel")
    ax_k.legend(fontsize="small")
    ax_y.plot(lags, causal_convolution(kernel, jnp.asarray(u_seq)), "C0", label="convolution $K * u$")
    ax_y.plot(lags, diagonal_recurrence(jnp.asarray(a_bar_d), jnp.asarray(b_bar_d), jnp.asarray(c_vec),
                                        jnp.asarray(u_seq)), "C3.", ms=4, label="recurrence")
    ax_y.set(xlabel="step $k$", ylabel="output $y_k$")
    ax_y.legend(fontsize="small")
    d.figure(fig, "Left: the SSM's convolution kernel, a sum of decaying exponentials; right: convolving the input "
                  "with it gives the recurrence's outputs, point for point.")

    paths = 20_000
    noise = rng.standard_normal((paths, length))
    finals = np.asarray(jax.vmap(lambda v: diagonal_recurrence(jnp.asarray(a_bar_d), jnp.asarray(b_bar_d),
                                                               jnp.asarray(c_vec), v)[-1])(jnp.asarray(noise)))
    d.monte_carlo("Driven by white noise, the output's variance is the kernel's energy $\\sum_j K_j^2$ (the "
                  "convolution view again): the last of 64 outputs over 20 000 noise sequences", finals**2,
                  float(np.sum(np.asarray(kernel) ** 2)))


def _section_hippo_legs(d: Derivation) -> None:
    """HiPPO-LegS: the state is the input's Legendre coefficients, from which its history is rebuilt."""
    d.say("HiPPO-LegS: the state holds the coefficients of the input's history in scaled Legendre polynomials, "
          "$c_n(t) = \\frac1t \\int_0^t f(s) \\sqrt{2n+1} P_n(2s/t - 1)\\,ds$, and Theorem 1 says they obey "
          "$c'(t) = \\frac1t A c(t) + \\frac1t B f(t)$ with the LegS matrices ($A$ here with the minus sign inside).")
    n_legs = 12
    a_legs, b_legs = hippo_legs(n_legs)

    def signal(s):
        return np.sin(3 * s) + 0.5 * np.cos(7 * s) * np.exp(-s / 2)

    t0, h = 1.7, 1e-4
    derivative = (_legendre_coefficients(signal, t0 + h, n_legs) - _legendre_coefficients(signal, t0 - h, n_legs)) / (2 * h)
    c_t = _legendre_coefficients(signal, t0, n_legs)
    d.numeric("The exact coefficients (Gauss-Legendre quadrature) satisfy the LegS ODE at $t = 1.7$ (the derivative "
              "by central differences, step $10^{-4}$: tolerance $10^{-6}$)", derivative,
              (a_legs @ c_t + b_legs * signal(t0)) / t0, rtol=1e-6, atol=1e-7)
    n_steps = 4000
    dt = 2.0 / n_steps
    state = np.zeros(n_legs)
    eye = np.eye(n_legs)
    for k in range(1, n_steps + 1):  # the bilinear transform of the time-varying LegS system, step k
        tk = k * dt
        mid = tk - dt / 2
        left, right = eye - dt / (2 * mid) * a_legs, eye + dt / (2 * mid) * a_legs
        state = np.linalg.solve(left, right @ state + dt / mid * b_legs * signal(mid))
    d.numeric("Run as a recurrence (bilinear steps, 4000 over $[0, 2]$), the state is the input's Legendre "
              "coefficients at $t = 2$: the SSM has memorised its history", state,
              _legendre_coefficients(signal, 2.0, n_legs), rtol=0, atol=1e-5)
    grid = np.linspace(0.0, 2.0, 401)
    basis = np.stack([np.sqrt(2 * k + 1) * special.eval_legendre(k, grid - 1.0) for k in range(n_legs)], 1)
    recon = basis @ state
    d.inequality("...from which the whole history $f(s)$, $s \\in [0, 2]$, is reconstructed to within 0.01 "
                 "(12 coefficients)", np.abs(recon - signal(grid)), np.full(401, 0.01))
    fig, ax = new_figure()
    ax.plot(grid, signal(grid), "k", lw=2.5, alpha=0.4, label="input history $f(s)$")
    ax.plot(grid, recon, "C1", lw=1, label="rebuilt from the 12-dim state at $t = 2$")
    ax.set(xlabel="time $s$", ylabel="$f(s)$")
    ax.legend(fontsize="small")
    d.figure(fig, "The LegS state after reading $f$ up to $t = 2$ holds its whole history: the 12 Legendre "
                  "coefficients redraw it.")


def _section_s4d_inv(d: Derivation) -> None:
    """S4D-Inv's frequencies follow the eigenvalues of LegS's normal part."""
    d.say("S4D's diagonal starts come from LegS: with $P_n = \\sqrt{n + 1/2}$, the normal part $A + P P^T = "
          "-\\frac12 I + S$ ($S$ skew-symmetric) has eigenvalues $-\\frac12 + i \\omega$. S4D-Inv keeps the real part "
          "and the inverse law $\\mathrm{Im}\\,A_n = \\frac N\\pi (\\frac N{2n+1} - 1)$, $n < N/2$, for the "
          "frequencies, $N$ the real state size (one value per conjugate pair); $N = 64$ here.")
    n_inv = 64
    a_normal = hippo_legs(n_inv)[0] + np.outer(np.sqrt(np.arange(n_inv) + 0.5), np.sqrt(np.arange(n_inv) + 0.5))
    eig = np.linalg.eigvals(a_normal)
    d.numeric("The normal part's eigenvalues all have real part $-1/2$ (S4D's $\\mathrm{Re}\\,A$)", eig.real,
              np.full(n_inv, -0.5), atol=1e-12)
    legs_freq = np.sort(eig.imag[eig.imag > 0])[::-1]
    inv_freq = np.asarray(s4d_imag_init(n_inv, "inv", jnp.float64))
    d.inequality("S4D-Inv's 32 frequencies follow LegS's positive ones, largest first, within 30% "
                 "($|\\log(\\omega_{\\mathrm{Inv}} / \\omega_{\\mathrm{LegS}})| \\le 0.3$; with $N/2$ in place of $N$ "
                 "the law is 4 times too small at the top and negative for half the pairs)",
                 np.abs(np.log(inv_freq / legs_freq)), np.full(n_inv // 2, 0.3))
    d.inequality("...and are all positive, one per conjugate pair (the smallest is "
                 f"{inv_freq[-1]:.3f}, LegS's {legs_freq[-1]:.3f})", -inv_freq, np.zeros(n_inv // 2))
    fig, ax = new_figure()
    pairs = np.arange(n_inv // 2)
    ax.semilogy(pairs, legs_freq, "o", ms=4, label="LegS normal part, $\\mathrm{Im}\\,\\lambda > 0$")
    ax.semilogy(pairs, inv_freq, "-", label="S4D-Inv $\\frac{N}{\\pi}(\\frac{N}{2n+1} - 1)$")
    ax.set(xlabel="pair $n$ (largest frequency first)", ylabel="frequency $\\mathrm{Im}\\,A_n$")
    ax.legend(fontsize="small")
    d.figure(fig, "S4D-Inv's closed-form frequencies trace the eigenvalues of LegS's normal part across nearly "
                  "four decades.")


def _section_selective_scan(d: Derivation, rng: np.random.Generator) -> None:
    """The selective scan: parallel equals sequential, and Euler's B against the zero-order hold's."""
    d.say("The selective SSM (Mamba): $\\Delta_t$, $B_t$, $C_t$ depend on the input; $A$ by zero-order hold, $B$ by "
          "Euler, $\\bar B_t = \\Delta_t B_t$ (the convention of Algorithm 2).")
    steps, channels, n_sel = 32, 3, 4
    u_sel = rng.standard_normal((steps, channels))
    delta_sel = np.log1p(np.exp(rng.standard_normal((steps, channels))))  # softplus: positive steps
    a_sel = -np.exp(rng.standard_normal((channels, n_sel)) * 0.5)
    b_sel, c_sel = rng.standard_normal((steps, n_sel)), rng.standard_normal((steps, n_sel))
    args = tuple(jnp.asarray(v) for v in (u_sel, delta_sel, a_sel, b_sel, c_sel))
    parallel, sequential = jax.jit(selective_scan), jax.jit(selective_scan_sequential)
    d.numeric("The parallel associative scan equals the sequential loop (32 steps, 3 channels, 4 states)",
              parallel(*args), sequential(*args))
    cot = jnp.asarray(rng.standard_normal((steps, channels)))
    grads = jax.jit(jax.grad(lambda *v: jnp.sum(parallel(*v) * cot), argnums=(0, 1, 2, 3, 4)))(*args)
    grads_seq = jax.jit(jax.grad(lambda *v: jnp.sum(sequential(*v) * cot), argnums=(0, 1, 2, 3, 4)))(*args)
    d.gradient("...and so do their gradients in $u$, $\\Delta$, $A$, $B$ and $C$",
               jnp.concatenate([g.ravel() for g in grads]), jnp.concatenate([g.ravel() for g in grads_seq]))

    def b_gap(step_size):
        zoh_b = (np.exp(step_size * a_sel) - 1) / a_sel
        return np.max(np.abs(zoh_b - step_size))

    d.numeric("Euler's $\\Delta B$ and the zero-order hold's $A^{-1}(e^{\\Delta A} - 1) B$ differ at second order: "
              "halving $\\Delta$ divides the gap by 4 (from $\\Delta$ = 0.02 and 0.01; the next order's correction, "
              "under 2%, sets the tolerance), so the convention must be stated and both backends must follow it",
              np.array([b_gap(0.02) / b_gap(0.01), b_gap(0.01) / b_gap(0.005)]), np.full(2, 4.0), rtol=0.02)
    d.inequality("...and at the steps a trained Mamba uses ($\\Delta \\approx 1$) the two differ by more than 0.1",
                 np.array(0.1), np.array(b_gap(1.0)))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("ssm", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)

    _section_scalar_discretisation(d)
    _section_matrix_discretisation(d, rng)
    _section_convolution(d, rng)
    _section_hippo_legs(d)
    _section_s4d_inv(d)
    _section_selective_scan(d, rng)
    return d
