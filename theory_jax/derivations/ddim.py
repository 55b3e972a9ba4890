"""The ``ddim`` derivation (``python -m theory_jax ddim``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/ddim.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as
a notebook.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from theory_jax.ddim import (
    _jit_step,
    ddim_decode,
    ddim_encode,
    even_timesteps,
    gaussian_eps,
    gaussian_flow,
    respace_alpha_bars,
    respaced_schedule,
)
from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.diffusion import (
    alpha_bars,
    cosine_betas,
    ddim_reverse_step,
    ddim_step,
    ddpm_step,
    linear_betas,
)

TITLE = "DDIM: DDPM's marginals without the Markov chain, the deterministic sampler and its inversion"
LECTURES = "DDIM; inference in DDIM; implementation"


# 4. The derivation ------------------------------------------------------------------------------------------------
def _sympy_setting():
    """Symbols with 0 < a_t < a_prev < 1 by construction (a_prev = 1/(1+u), a_t = a_prev/(1+v), u, v > 0)."""
    u, v = sp.symbols("u v", positive=True)
    a_p = 1 / (1 + u)
    a_t = a_p / (1 + v)
    x0, xt, eps, eta = sp.symbols("x_0 x_t epsilon eta", real=True)
    return a_t, a_p, x0, xt, eps, eta


def _pf_ode_in_ddim_variables():
    """d xbar / ds - eps for the probability-flow ODE dx/dtau = -beta/2 (x + score), score = -eps / sqrt(1 - a)."""
    tau = sp.symbols("tau", real=True)
    w = sp.Function("w", positive=True)(tau)  # a(tau) = 1/(1 + w(tau)) in (0, 1)
    a = 1 / (1 + w)
    e, x = sp.Function("epsilon", real=True)(tau), sp.Function("x", real=True)(tau)
    beta = -sp.diff(a, tau) / a  # beta(tau) = -d log a / dtau
    dx = -beta / 2 * (x - e / sp.sqrt(1 - a))
    dxbar = sp.diff(x / sp.sqrt(a), tau).subs(sp.Derivative(x, tau), dx)
    return dxbar / sp.diff(sp.sqrt(1 / a - 1), tau), e


def _fitted_order(steps, errors) -> float:
    """The slope -d log(error) / d log(steps) of a least-squares line: the order of the method."""
    return float(-np.polyfit(np.log(steps), np.log(errors), 1)[0])


def _section_family_marginals(d: Derivation, a_t, a_p, x0, eta, sig2) -> None:
    """A. The family q_sigma has DDPM's marginals for every sigma (SymPy)."""
    d.say("The DDIM family (eq. 7): $q_\\sigma(x_{t-1}|x_t,x_0) = \\mathcal N(\\sqrt{\\bar a_{t-1}}x_0 + "
          "\\sqrt{1-\\bar a_{t-1}-\\sigma_t^2}\\,\\frac{x_t - \\sqrt{\\bar a_t}x_0}{\\sqrt{1-\\bar a_t}}, \\sigma_t^2 I)$. "
          "Composed with $q(x_t|x_0) = \\mathcal N(\\sqrt{\\bar a_t}x_0, (1-\\bar a_t)I)$ it must give "
          "$q(x_{t-1}|x_0) = \\mathcal N(\\sqrt{\\bar a_{t-1}}x_0, (1-\\bar a_{t-1})I)$ whatever $\\sigma_t$. Symbols: "
          "$0 < \\bar a_t < \\bar a_{t-1} < 1$, $\\sigma_t = \\eta\\sqrt{(1-\\bar a_{t-1})/(1-\\bar a_t)}"
          "\\sqrt{1-\\bar a_t/\\bar a_{t-1}}$ (eq. 16).")
    c = sp.sqrt(1 - a_p - sig2)
    d.symbolic("Mean: $\\mathbb E[x_{t-1}|x_0] = \\sqrt{\\bar a_{t-1}}x_0 + c\\,(\\mathbb E[x_t|x_0] - \\sqrt{\\bar a_t}x_0)"
               "/\\sqrt{1-\\bar a_t} = \\sqrt{\\bar a_{t-1}}x_0$", sp.sqrt(a_p) * x0 + c * 0 / sp.sqrt(1 - a_t),
               sp.sqrt(a_p) * x0)
    d.symbolic("Variance: $c^2\\,\\mathrm{Var}[x_t|x_0]/(1-\\bar a_t) + \\sigma_t^2 = (1-\\bar a_{t-1}-\\sigma_t^2) + "
               "\\sigma_t^2 = 1 - \\bar a_{t-1}$, for every $\\eta$", c**2 * (1 - a_t) / (1 - a_t) + sig2, 1 - a_p)
    d.symbolic("The square root is real for $\\eta \\le 1$: $1 - \\bar a_{t-1} - \\sigma_t^2(1) = (1-\\bar a_{t-1})^2 "
               "\\bar a_t / (\\bar a_{t-1}(1-\\bar a_t)) \\ge 0$", 1 - a_p - sig2.subs(eta, 1),
               (1 - a_p) ** 2 * a_t / (a_p * (1 - a_t)))


def _section_family_samples(d: Derivation, rng: np.random.Generator, T, ab, ab_prev) -> None:
    """A. ...checked by sampling one step, and by composing the whole chain (Theorem 1)."""
    n, t_mc = 40_000, 600
    x0_mc = 0.7
    e_mc, z_mc = rng.standard_normal((2, n, 1))
    x_t_mc = np.sqrt(ab[t_mc]) * x0_mc + np.sqrt(1 - ab[t_mc]) * e_mc  # x_t ~ q(x_t|x_0); its true eps is e_mc
    etas = (0.0, 0.5, 1.0)
    steps = np.stack([np.asarray(ddim_step(jnp.asarray(x_t_mc), jnp.asarray(e_mc), ab[t_mc], ab_prev[t_mc], e,
                                           jnp.asarray(z_mc)))[:, 0] for e in etas], 1)
    d.monte_carlo(f"One `ddim_step` with the true noise from $x_t \\sim q(x_t|x_0)$ ($t = {t_mc}$, $x_0 = {x0_mc}$, "
                  f"{n} draws): the mean of $x_{{t-1}}$ is $\\sqrt{{\\bar a_{{t-1}}}}x_0$ for $\\eta = 0, 0.5, 1$",
                  steps, np.full(3, np.sqrt(ab_prev[t_mc]) * x0_mc))
    d.monte_carlo("...and its variance $\\mathbb E(x_{t-1} - \\sqrt{\\bar a_{t-1}}x_0)^2 = 1 - \\bar a_{t-1}$ for all three",
                  (steps - np.sqrt(ab_prev[t_mc]) * x0_mc) ** 2, np.full(3, 1 - ab_prev[t_mc]))
    grid = np.linspace(-4.0, 4.0, 200)
    fig, ax = new_figure()
    for column, e in enumerate(etas):
        ax.hist(steps[:, column], bins=80, range=(-4, 4), density=True, histtype="step", label=f"$\\eta = {e}$")
    ax.plot(grid, np.exp(-(grid - np.sqrt(ab_prev[t_mc]) * x0_mc) ** 2 / (2 * (1 - ab_prev[t_mc])))
            / np.sqrt(2 * np.pi * (1 - ab_prev[t_mc])), "k--", lw=1, label="$q(x_{t-1}|x_0)$")
    ax.set(xlabel=f"$x_{{t-1}}$ (t = {t_mc}, $x_0$ = {x0_mc})", ylabel="density")
    ax.legend()
    d.figure(fig, "One DDIM step from $x_t \\sim q(x_t|x_0)$ lands on the same marginal $q(x_{t-1}|x_0)$ whatever "
             "$\\eta$: deterministic ($\\eta = 0$) or DDPM's ancestral step ($\\eta = 1$).")

    # The whole chain: x_{t-1} = A x_t + B x_0 + S z is affine; its coefficients by jax.grad of ddim_step itself.
    def step_true_eps(x_t, x_0, z, a_t_, a_p_, eta_):
        return ddim_step(x_t, (x_t - jnp.sqrt(a_t_) * x_0) / jnp.sqrt(1 - a_t_), a_t_, a_p_, eta_, z)

    coefficients = jax.jit(jax.vmap(jax.grad(step_true_eps, argnums=(0, 1, 2)), in_axes=(None, None, None, 0, 0, None)))
    moments_ok, moments_want = [], []
    for eta_ in etas:
        for ts in (np.arange(T), even_timesteps(T, 50)):
            sch = respaced_schedule(ab, ts)
            A, B, S = (np.asarray(g) for g in coefficients(0.3, 0.7, 0.0, sch.alpha_bars, sch.alpha_bars_prev, eta_))
            mean, var = np.sqrt(sch.alpha_bars[-1]) * 0.7, 1 - sch.alpha_bars[-1]
            for i in reversed(range(len(ts))):  # propagate the moments of q(x_{t_i}|x_0) down the chain
                mean, var = A[i] * mean + B[i] * 0.7, A[i] ** 2 * var + S[i] ** 2
                moments_ok.append((mean, var))
                moments_want.append((np.sqrt(sch.alpha_bars_prev[i]) * 0.7, 1 - sch.alpha_bars_prev[i]))
    d.numeric("Composing the whole chain from $q(x_{T-1}|x_0)$ down to $t = 0$ with the true noise (the affine "
              "coefficients of `ddim_step` by jax.grad) gives back the mean and variance of $q(x_t|x_0)$ at every step, "
              "for $\\eta = 0, 0.5, 1$, on the full linear schedule ($T = 1000$) and on a 50-step respacing of it: one "
              "training objective serves every member of the family (Theorem 1)", moments_ok, moments_want)


def _section_eta_one(d: Derivation, rng: np.random.Generator, T, a_t, a_p, xt, eps, eta, sig2, ab, ab_prev):
    """B. eta = 1 is DDPM's ancestral step."""
    beta = 1 - a_t / a_p
    beta_tilde = (1 - a_p) / (1 - a_t) * beta
    x0_hat = (xt - sp.sqrt(1 - a_t) * eps) / sp.sqrt(a_t)
    ddim_mean = sp.sqrt(a_p) * x0_hat + sp.sqrt(1 - a_p - sig2.subs(eta, 1)) * eps
    d.say("$\\eta = 1$: the DDIM step is DDPM's (Ho et al. eq. 6-7, 11) with $\\beta_t = 1 - \\bar a_t/\\bar a_{t-1}$.")
    d.symbolic("$\\sigma_t^2(\\eta = 1) = \\tilde\\beta_t = \\frac{1-\\bar a_{t-1}}{1-\\bar a_t}\\beta_t$, the "
               "posterior variance", sig2.subs(eta, 1), beta_tilde)
    d.symbolic("The DDIM mean $\\sqrt{\\bar a_{t-1}}\\hat x_0 + \\sqrt{1-\\bar a_{t-1}-\\tilde\\beta_t}\\,\\epsilon$ is "
               "the posterior mean $\\tilde\\mu_t(x_t, \\hat x_0) = \\frac{\\sqrt{\\bar a_{t-1}}\\beta_t}{1-\\bar a_t}"
               "\\hat x_0 + \\frac{\\sqrt{\\alpha_t}(1-\\bar a_{t-1})}{1-\\bar a_t}x_t$ at $\\hat x_0 = "
               "(x_t - \\sqrt{1-\\bar a_t}\\epsilon)/\\sqrt{\\bar a_t}$", ddim_mean,
               sp.sqrt(a_p) * beta / (1 - a_t) * x0_hat + sp.sqrt(a_t / a_p) * (1 - a_p) / (1 - a_t) * xt)
    d.symbolic("...which is Ho et al.'s eq. 11, $\\frac{1}{\\sqrt{\\alpha_t}}(x_t - \\frac{\\beta_t}{\\sqrt{1-\\bar a_t}}"
               "\\epsilon)$", ddim_mean, (xt - beta / sp.sqrt(1 - a_t) * eps) / sp.sqrt(a_t / a_p))
    b = 16
    x_b, e_b, z_b = (jnp.asarray(rng.standard_normal((T, b))) for _ in range(3))
    a_t_b, a_p_b = jnp.asarray(ab), jnp.asarray(ab_prev)
    x0_b = (x_b - jnp.sqrt(1 - a_t_b)[:, None] * e_b) / jnp.sqrt(a_t_b)[:, None]
    beta_b = 1 - a_t_b / a_p_b
    post_mean = (jnp.sqrt(a_p_b) * beta_b / (1 - a_t_b))[:, None] * x0_b + (
        jnp.sqrt(1 - beta_b) * (1 - a_p_b) / (1 - a_t_b))[:, None] * x_b
    post_std = jnp.sqrt((1 - a_p_b) / (1 - a_t_b) * beta_b)[:, None]
    d.numeric("Numerically, at all 1000 timesteps (16 draws each, per-example $\\bar a$ of shape (B,)): "
              "`ddim_step(eta=1, z)` $= \\tilde\\mu_t + \\sqrt{\\tilde\\beta_t}\\,z$ with the same $z$; at $t = 0$ "
              "($\\bar a_{\\rm prev} = 1$) both return $\\hat x_0$", ddim_step(x_b, e_b, a_t_b, a_p_b, 1.0, z_b),
              post_mean + post_std * z_b)
    d.numeric("...and equals the ddpm topic's own ancestral step `theory_jax.ddpm.ddpm_step(x_t, eps, a_t, a_prev, z)` "
              "on the same inputs", ddim_step(x_b, e_b, a_t_b, a_p_b, 1.0, z_b), ddpm_step(x_b, e_b, a_t_b, a_p_b, z_b))
    return x_b, e_b, z_b, a_t_b, a_p_b


def _section_eta_zero(d: Derivation, T, a_t, a_p, xt, eps, x_b, e_b, z_b, a_t_b, a_p_b) -> None:
    """C. eta = 0: deterministic, the Euler step of the probability-flow ODE, exactly invertible."""
    x0_hat = (xt - sp.sqrt(1 - a_t) * eps) / sp.sqrt(a_t)
    d.say("$\\eta = 0$: $\\sigma_t = 0$, the step is a deterministic map. In $\\bar x = x/\\sqrt{\\bar a}$, "
          "$s = \\sqrt{1/\\bar a - 1}$ it is Euler's method for $d\\bar x = \\epsilon\\,ds$ (eq. 13-14).")
    dz = jax.vmap(jax.grad(lambda z_, x_, e_, at, ap: ddim_step(x_, e_, at, ap, 0.0, z_)))(
        z_b[:, 0], x_b[:, 0], e_b[:, 0], a_t_b, a_p_b)
    d.gradient("$\\partial x_{t-1}/\\partial z = \\sigma_t = 0$ at every timestep (jax.grad): no noise enters",
               dz, jnp.zeros(T))
    s_of = lambda a: sp.sqrt(1 / a - 1)  # noqa: E731
    step0 = sp.sqrt(a_p) * x0_hat + sp.sqrt(1 - a_p) * eps
    d.symbolic("$x_{t-1}/\\sqrt{\\bar a_{t-1}} = x_t/\\sqrt{\\bar a_t} + (s_{t-1} - s_t)\\,\\epsilon$: one Euler step "
               "of $d\\bar x/ds = \\epsilon$ from $s_t$ to $s_{t-1}$", step0 / sp.sqrt(a_p),
               xt / sp.sqrt(a_t) + (s_of(a_p) - s_of(a_t)) * eps)
    lhs, rhs = _pf_ode_in_ddim_variables()
    d.symbolic("...of the probability-flow ODE: with $\\bar a(\\tau)$ any schedule, $\\beta = -d\\log\\bar a/d\\tau$ "
               "and the score $-\\epsilon/\\sqrt{1-\\bar a}$, $dx/d\\tau = -\\frac{\\beta}{2}(x + \\nabla\\log p_\\tau)$ "
               "becomes $d\\bar x/ds = \\epsilon$", lhs, rhs)
    xp_, xe_ = sp.symbols("x_prev epsilon_", real=True)
    rev = (sp.sqrt(a_t) * (xp_ - sp.sqrt(1 - a_p) * xe_) / sp.sqrt(a_p) + sp.sqrt(1 - a_t) * xe_)
    d.symbolic("Inversion: `ddim_reverse_step` is the forward Euler step $\\bar x_t = \\bar x_{t-1} + (s_t - s_{t-1})"
               "\\,\\epsilon$", rev / sp.sqrt(a_t), xp_ / sp.sqrt(a_p) + (s_of(a_t) - s_of(a_p)) * xe_)
    d.numeric("For a fixed $\\epsilon$ it inverts the step exactly: `ddim_reverse_step(ddim_step(x, eps, eta=0), eps)` "
              "$= x$ at all 1000 timesteps; the only error of encode-then-decode is that $\\epsilon$ is evaluated at "
              "different points (the ODE error)",
              ddim_reverse_step(ddim_step(x_b, e_b, a_t_b, a_p_b, 0.0, z_b), e_b, a_t_b, a_p_b), x_b)


def _section_gaussian_data(d: Derivation, rng: np.random.Generator, T, a_t_b):
    """D. Gaussian data: the optimal eps in closed form, and the exact flow it drives."""
    dim = 4
    mu, s0 = jnp.asarray(rng.standard_normal(dim)), jnp.asarray(rng.uniform(0.2, 1.0, dim))
    x0_g = mu + s0 * jnp.asarray(rng.standard_normal((64, dim)))
    d.say(f"Gaussian data $x_0 \\sim \\mathcal N(\\mu, \\mathrm{{diag}}(s_0^2))$ in {dim} dimensions: $x_t$ and "
          "$\\epsilon$ are jointly Gaussian, so the optimal (MSE) predictor $\\mathbb E[\\epsilon|x_t]$ is linear.")
    cc, a_s, s0_s = sp.symbols("c a s_0", positive=True)
    mse = 1 - 2 * cc * sp.sqrt(1 - a_s) + cc**2 * (a_s * s0_s**2 + 1 - a_s)  # E(eps - c (x_t - sqrt(a) mu))^2
    (c_star,) = sp.solve(sp.diff(mse, cc), cc)
    d.symbolic("$\\min_c \\mathbb E(\\epsilon - c(x_t - \\sqrt{\\bar a}\\mu))^2$ is at $c = \\sqrt{1-\\bar a}/"
               "(\\bar a s_0^2 + 1 - \\bar a)$ (`gaussian_eps`)", c_star, sp.sqrt(1 - a_s) / (a_s * s0_s**2 + 1 - a_s))
    xs = jnp.asarray(rng.standard_normal((T, dim)))
    score = jax.vmap(jax.grad(lambda x_, a_: jnp.sum(jax.scipy.stats.norm.logpdf(
        x_, jnp.sqrt(a_) * mu, jnp.sqrt(a_ * s0**2 + 1 - a_)))))(xs, a_t_b)
    d.gradient("...and it is $-\\sqrt{1-\\bar a}\\,\\nabla\\log q(x_t)$ with $q(x_t) = \\mathcal N(\\sqrt{\\bar a}\\mu, "
               "\\bar a s_0^2 + 1 - \\bar a)$ (jax.grad of the log density, all 1000 timesteps)",
               gaussian_eps(xs, a_t_b, mu, s0), -jnp.sqrt(1 - a_t_b)[:, None] * score)
    sv, m_s, x0_s = sp.symbols("s mu_s x_0s", real=True)
    flow_bar = m_s + sp.sqrt(s0_s**2 + sv**2) / s0_s * (x0_s - m_s)  # gaussian_flow / sqrt(a), s^2 = 1/a - 1
    eps_on_flow = sv * (flow_bar - m_s) / (s0_s**2 + sv**2)  # gaussian_eps in the xbar, s variables
    d.symbolic("The exact flow $\\bar x(s) = \\mu + \\sqrt{s_0^2 + s^2}/s_0\\,(x_0 - \\mu)$ (`gaussian_flow`) solves "
               "$d\\bar x/ds = \\epsilon(\\bar x, s) = s(\\bar x - \\mu)/(s_0^2 + s^2)$, with $\\bar x(0) = x_0$",
               sp.diff(flow_bar, sv) - eps_on_flow + (flow_bar.subs(sv, 0) - x0_s) ** 2, 0)
    return mu, s0, x0_g


def _section_point_mass(d: Derivation, rng: np.random.Generator, T, ab, mu, x0_g) -> None:
    """D. ...for point-mass data eps is constant along the paths, so 10 DDIM steps are exact."""
    @jax.jit
    def eps_point_mass(x, t):
        return gaussian_eps(x, jnp.asarray(ab)[t], mu, 0.0)

    ten = respaced_schedule(ab, even_timesteps(T, 10))
    x_T_any = jnp.asarray(rng.standard_normal(x0_g.shape))
    d.numeric("Point-mass data ($s_0 = 0$): $\\epsilon$ is constant along every ODE path, so Euler is exact and "
              "10 DDIM steps from any $x_T$ land on $\\mu$", ddim_decode(eps_point_mass, ten, x_T_any),
              jnp.broadcast_to(mu, x_T_any.shape))


def _section_inversion(d: Derivation, T, ab, mu, s0, x0_g) -> None:
    """D. ...DDIM decoding and inversion of Gaussian data: a first-order (Euler) error in the number of steps."""
    @jax.jit
    def eps_fn(x, t):
        return gaussian_eps(x, jnp.asarray(ab)[t], mu, s0)

    grid = (10, 20, 50, 100, 200, 1000)
    x_T_exact = gaussian_flow(x0_g, ab[-1], mu, s0)
    enc_err, round_err = [], []
    for steps in grid:
        sch = respaced_schedule(ab, even_timesteps(T, steps))
        x_T = ddim_encode(eps_fn, sch, x0_g)
        enc_err.append(float(jnp.max(jnp.abs(x_T - x_T_exact))))
        round_err.append(float(jnp.max(jnp.abs(ddim_decode(eps_fn, sch, x_T) - x0_g))))
    table = ", ".join(f"{s}: {e:.2g}" for s, e in zip(grid, round_err))
    d.say(f"DDIM inversion of 64 Gaussian data points, then decoding, on respacings of the linear schedule; max "
          f"|decode(encode(x_0)) - x_0| by number of steps: {table}.")
    d.inequality("Encode-then-decode recovers $x_0$ within the ODE error: below 0.01 at 1000 steps "
                 f"({round_err[-1]:.2g}), for data of unit scale", round_err[-1], 0.01)
    d.inequality("The error shrinks at every refinement 10 -> 20 -> 50 -> 100 -> 200 -> 1000, for the encoder "
                 "(against the exact flow $x_T$) and the round trip", np.r_[enc_err[1:], round_err[1:]],
                 np.r_[enc_err[:-1], round_err[:-1]])
    orders = [_fitted_order(grid[2:], enc_err[2:]), _fitted_order(grid[2:], round_err[2:])]
    d.numeric(f"Measured order (slope of log error vs log steps, 50 to 1000 steps): encoder {orders[0]:.3f}, round "
              f"trip {orders[1]:.3f}; Euler's method is first order (1 +- 0.1)", orders, [1.0, 1.0], rtol=0.0, atol=0.1)
    fig, axes = new_figure(columns=2)
    axes[0].loglog(grid, enc_err, "o-", label="encoder vs exact $x_T$")
    axes[0].loglog(grid, round_err, "s-", label="round trip vs $x_0$")
    axes[0].loglog(grid, enc_err[2] * grid[2] / np.asarray(grid), "k--", lw=1, label="slope $-1$ (Euler)")
    axes[0].set(xlabel="DDIM steps", ylabel="max abs error")
    axes[0].legend(fontsize=8)
    ten, path = respaced_schedule(ab, even_timesteps(T, 10)), [x_T_exact]  # 10 decoding steps from the exact x_T
    for i in reversed(range(10)):
        path.append(_jit_step(path[-1], eps_fn(path[-1], np.full(64, ten.timesteps[i])), ten.alpha_bars[i],
                              ten.alpha_bars_prev[i], 0.0, jnp.zeros_like(x_T_exact)))
    exact = np.stack([np.asarray(gaussian_flow(x0_g, a, mu, s0))[:5, 0] for a in ab[::10]])  # every 10th t
    axes[1].plot(np.arange(T)[::10], exact, color="gray", lw=1)
    axes[1].plot(np.r_[ten.timesteps[::-1], 0], np.stack(path)[:, :5, 0], "o-", ms=3)
    axes[1].set(xlabel="timestep $t$ (decoding runs from $T$ to 0)", ylabel="$x_t$ (first coordinate)",
                title="10 DDIM steps vs the exact flow")
    axes[1].invert_xaxis()
    d.figure(fig, "DDIM inversion is Euler's method on the probability-flow ODE: its error falls like 1/steps (left); "
             "10 deterministic steps from the exact $x_T$ track the exact flow paths (grey) to the data (right).")


def _section_conditioning(d: Derivation, T, x_b, e_b, a_t_b, a_p_b) -> None:
    """Conditioning: how an error in eps at the first decoding step reaches x_{t-1}."""
    sens = jax.vmap(jax.grad(lambda e_, x_, at, ap: ddim_step(x_, e_, at, ap, 0.0, 0.0)))(
        e_b[:, 0], x_b[:, 0], a_t_b, a_p_b)
    d.gradient("Sensitivity of the deterministic step to its noise prediction (jax.grad, all 1000 steps): "
               "$\\partial x_{t-1}/\\partial\\epsilon = \\sqrt{1-\\bar a_{t-1}} - \\sqrt{\\bar a_{t-1}}"
               "\\sqrt{(1-\\bar a_t)/\\bar a_t}$", sens, jnp.sqrt(1 - a_p_b) - jnp.sqrt(a_p_b * (1 - a_t_b) / a_t_b))
    gains = {}
    for name, betas in (("linear", linear_betas(T)), ("cosine", cosine_betas(T))):
        sch = respaced_schedule(np.asarray(alpha_bars(betas)), even_timesteps(T, 10))
        a_last, a_before = sch.alpha_bars[-1], sch.alpha_bars_prev[-1]
        gains[name] = float(abs(np.sqrt(1 - a_before) - np.sqrt(a_before * (1 - a_last) / a_last)))
    d.inequality(f"Hence decoding from $x_T$ is ill-conditioned where $\\bar a_{{T-1}}$ is tiny: at the first of 10 "
                 f"steps an error in $\\epsilon$ is multiplied by {gains['cosine']:.0f} with the cosine schedule "
                 f"($\\bar a_{{T-1}} = {float(alpha_bars(cosine_betas(T))[-1]):.1e}$, from its clip at 0.999) and by "
                 f"{gains['linear']:.1f} with the linear one. A network's $\\epsilon$ at pure noise is never that "
                 "consistent, so inversion of a trained cosine-schedule model is measured with the ODE stopped at "
                 "$\\bar a \\ge 0.01$ (`python -m benchmarks ddim_steps`)", [gains["linear"], 100.0],
                 [100.0, gains["cosine"]])


def _section_respacing(d: Derivation, T, ab) -> None:
    """E. Respaced schedules: DDIM needs only the kept alpha_bar values."""
    d.say("Respacing (Nichol & Dhariwal 2021): keep the indices $\\tau_1 < \\dots < \\tau_S$, set "
          "$\\beta'_i = 1 - \\bar a_{\\tau_i}/\\bar a_{\\tau_{i-1}}$; DDIM needs only the kept $\\bar a$.")
    r1, r2, r3 = sp.symbols("r1 r2 r3", positive=True)
    kept = [r1, r1 * r2, r1 * r2 * r3]  # any decreasing alpha_bar values
    d.symbolic("The respaced chain's $\\prod_{j \\le i}(1 - \\beta'_j)$ telescopes to $\\bar a_{\\tau_i}$ (three steps)",
               (1 - (1 - kept[0] / 1)) * (1 - (1 - kept[1] / kept[0])) * (1 - (1 - kept[2] / kept[1])), kept[2])
    for steps in (10, 100):
        ts = even_timesteps(T, steps)
        kept_ab, prev_ab, betas = respace_alpha_bars(jnp.asarray(ab), jnp.asarray(ts))
        d.numeric(f"{steps} steps: `respace_alpha_bars` keeps $\\bar a$ at the kept indices (first 0, last {T - 1}), "
                  "and the cumulative product of its betas gives them back",
                  jnp.stack([kept_ab, jnp.cumprod(1 - betas), prev_ab]),
                  np.stack([ab[ts], ab[ts], np.r_[1.0, ab[ts][:-1]]]))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("ddim", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    a_t, a_p, x0, xt, eps, eta = _sympy_setting()
    sig2 = eta**2 * (1 - a_p) / (1 - a_t) * (1 - a_t / a_p)
    T = 1000
    ab = np.asarray(alpha_bars(linear_betas(T)))  # Ho et al.'s linear schedule, from the ddpm topic
    ab_prev = np.concatenate([[1.0], ab[:-1]])

    _section_family_marginals(d, a_t, a_p, x0, eta, sig2)
    _section_family_samples(d, rng, T, ab, ab_prev)
    x_b, e_b, z_b, a_t_b, a_p_b = _section_eta_one(d, rng, T, a_t, a_p, xt, eps, eta, sig2, ab, ab_prev)
    _section_eta_zero(d, T, a_t, a_p, xt, eps, x_b, e_b, z_b, a_t_b, a_p_b)
    mu, s0, x0_g = _section_gaussian_data(d, rng, T, a_t_b)
    _section_point_mass(d, rng, T, ab, mu, x0_g)
    _section_inversion(d, T, ab, mu, s0, x0_g)
    _section_conditioning(d, T, x_b, e_b, a_t_b, a_p_b)
    _section_respacing(d, T, ab)
    return d
