"""The ``ebm`` derivation (``python -m theory_jax ebm``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/ebm.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as a
notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from jax.scipy.special import logsumexp
from scipy import stats

from theory_jax.derivation import Derivation, float64_params, full_precision, new_figure, optimised_jit
from theory_jax.ebm import (
    MLPEnergy,
    cd_loss,
    double_well_cdfs,
    double_well_energy,
    langevin_chain,
    langevin_temperature,
    refresh_buffer,
)

# The chains below run up to 1 000 Langevin steps of thousands of samples, far longer than they take to compile: the
# same function, compiled at XLA's default optimisation whatever the process asks (``optimised_jit``)
langevin_chain = optimised_jit(langevin_chain, static_argnames="energy")

TITLE = "energy-based models: the two-phase likelihood gradient, Langevin MCMC, contrastive divergence"
LECTURES = "energy-based models; Langevin MCMC; replay buffer; contrastive divergence"


# 4. The derivation ---------------------------------------------------------------------------------------------------
def _grid_model(rng: np.random.Generator):
    """A 2-D EBM on a finite grid: the 41 x 41 points of [-3, 3]^2, an MLP energy (float64 weights), and 300 data
    points drawn from a ring of radius 2 (snapped to the grid). p(x_g) = exp(-E(x_g)) / sum_g' exp(-E(x_g')) exactly."""
    axis = np.linspace(-3.0, 3.0, 41)
    grid = jnp.asarray(np.stack(np.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2))
    net = MLPEnergy(dim=2, hidden=(16, 16))
    params = float64_params(net, rng, jnp.zeros((1, 2)))["params"]
    angle = rng.uniform(0, 2 * np.pi, 300)
    ring = 2 * np.stack([np.cos(angle), np.sin(angle)], 1) + 0.3 * rng.standard_normal((300, 2))
    data = jnp.asarray(np.clip(np.round(ring / 0.15) * 0.15, -3, 3))
    return net, params, grid, data


def _noise(rng: np.random.Generator, steps: int, n: int, dim: int):
    """Standard normal noise for ``steps`` Langevin steps of ``n`` chains in ``dim`` dimensions: (steps, n, dim)."""
    return jnp.asarray(rng.standard_normal((steps, n, dim)))


def _section_two_phases(d: Derivation) -> None:
    """The likelihood gradient of p = e^{-E}/Z has a data phase and a model phase (SymPy, Gaussian energy)."""
    x, mu, s, c, alpha, ep, en = sp.symbols("x mu s c alpha E_+ E_-", real=True)
    s = sp.Symbol("s", positive=True)
    energy = (x - mu) ** 2 / (2 * s**2)
    z = sp.integrate(sp.exp(-energy), (x, -sp.oo, sp.oo))
    d.say("## 1. An energy defines a law; its likelihood gradient has two phases\n$p_\\theta(x) = e^{-E_\\theta(x)}"
          "/Z(\\theta)$, $Z(\\theta) = \\int e^{-E_\\theta}$. Differentiating $\\log Z$ under the integral gives "
          "$\\nabla_\\theta\\log Z = -E_{p_\\theta}[\\nabla_\\theta E_\\theta]$, hence $\\nabla_\\theta \\log p_\\theta(x) "
          "= -\\nabla_\\theta E_\\theta(x) + E_{x'\\sim p_\\theta}[\\nabla_\\theta E_\\theta(x')]$: lower the energy of the "
          "data (positive phase), raise it where the model puts its mass (negative phase).")
    d.symbolic("A Gaussian energy $E = (x-\\mu)^2/(2s^2)$ has $Z = \\sqrt{2\\pi}\\,s$", z, sp.sqrt(2 * sp.pi) * s)
    for theta in (mu, s):
        model_phase = sp.integrate(sp.diff(energy, theta) * sp.exp(-energy) / z, (x, -sp.oo, sp.oo))
        d.symbolic(f"$\\partial_{{{sp.latex(theta)}}}\\log p(x) = -\\partial_{{{sp.latex(theta)}}}E(x) + "
                   f"E_p[\\partial_{{{sp.latex(theta)}}}E]$ for that energy (the model phase integrated by SymPy)",
                   sp.diff(-energy - sp.log(z), theta), -sp.diff(energy, theta) + model_phase)
    d.symbolic("Energies are defined up to a constant ($E + c$ gives the same $p$); the L2 term "
               "$\\alpha((E_+ + c)^2 + (E_- + c)^2)$ of `cd_loss` pins it: its minimiser is $c = -(E_+ + E_-)/2$, "
               "energies centred on 0",
               sp.solve(sp.diff(alpha * ((ep + c) ** 2 + (en + c) ** 2), c), c)[0], -(ep + en) / 2)


def _section_grid_gradient(d: Derivation, rng: np.random.Generator):
    """On a grid Z is a finite sum: autodiff through log Z equals the two-phase gradient, and sampling estimates it."""
    net, params, grid, data = _grid_model(rng)

    def energy(p, y):
        return net.apply({"params": p}, y)

    def mean_log_lik(p):
        return jnp.mean(-energy(p, data)) - logsumexp(-energy(p, grid))

    @jax.jit
    def per_point_grad(y):  # grad_theta E(x) for each row of y, flattened: (N, P)
        g = jax.vmap(lambda row: jax.grad(lambda p: energy(p, row[None])[0])(params))(y)
        return jnp.concatenate([leaf.reshape(len(y), -1) for leaf in jax.tree.leaves(g)], 1)

    probs = jax.jit(lambda p: jax.nn.softmax(-energy(p, grid)))(params)
    exact = jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(jax.jit(jax.grad(mean_log_lik))(params))])
    data_phase, grid_grads = per_point_grad(data).mean(0), per_point_grad(grid)
    model_phase = probs @ grid_grads
    d.say(f"A 2-D EBM whose $Z$ is a finite sum: an MLP energy ({exact.size} float64 weights) on the 41 x 41 points of "
          "$[-3, 3]^2$, 300 data points from a noisy ring snapped to the grid.")
    d.gradient("$\\nabla_\\theta \\frac1N\\sum_n\\log p(x_n)$ by autodiff through $\\log Z$ (logsumexp over the grid) = "
               "$-E_{data}[\\nabla_\\theta E] + E_{p_\\theta}[\\nabla_\\theta E]$ (the model phase summed over the grid)",
               exact, -data_phase + model_phase)
    n = 20_000
    negatives = grid[rng.choice(len(grid), size=n, p=np.asarray(probs) / float(np.sum(probs)))]
    neg_grads = per_point_grad(negatives)
    spread = np.asarray(neg_grads.std(0)) > 1e-6  # the output bias has grad_theta E = 1 everywhere: no spread
    picked = np.flatnonzero(spread)[np.argsort(-np.abs(np.asarray(model_phase)[spread]))[:8]]
    d.monte_carlo(f"The model phase by sampling: {n} exact draws $x^-\\sim p_\\theta$ give $\\frac1n\\sum\\nabla_\\theta "
                  "E(x^-) \\to E_{p_\\theta}[\\nabla_\\theta E]$ (its 8 largest components that vary with $x$)",
                  neg_grads[:, picked], model_phase[picked])
    return energy, per_point_grad, params, data, negatives, data_phase, neg_grads


def _section_cd_loss(d: Derivation, energy, per_point_grad, params, data, negatives, data_phase, neg_grads) -> None:
    """`cd_loss` is the surrogate whose gradient is the two-phase estimate, plus the L2 term's."""
    def cd(p, pos, neg, a):
        return cd_loss(energy(p, pos), energy(p, neg), a)

    def flat(tree):
        return jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(tree)])

    cd_grad = jax.jit(jax.grad(cd))
    d.gradient("`cd_loss` with $\\alpha = 0$ is the surrogate whose gradient is minus the two-phase estimate: "
               "$\\nabla_\\theta\\,$`cd_loss` $= E_{data}[\\nabla_\\theta E] - \\frac1n\\sum\\nabla_\\theta E(x^-)$",
               flat(cd_grad(params, data, negatives, 0.0)), data_phase - neg_grads.mean(0))
    e_pos, e_neg = energy(params, data), energy(params, negatives)
    reg = 2 * 0.1 * ((e_pos[:, None] * per_point_grad(data)).mean(0) + (e_neg[:, None] * neg_grads).mean(0))
    d.gradient("...and the L2 term adds $2\\alpha(E_{data}[E\\,\\nabla_\\theta E] + \\frac1n\\sum E(x^-)\\nabla_\\theta "
               "E(x^-))$ ($\\alpha = 0.1$)",
               flat(cd_grad(params, data, negatives, 0.1)), data_phase - neg_grads.mean(0) + reg)


def _section_langevin_gaussian(d: Derivation, rng: np.random.Generator) -> None:
    """Langevin's stationary variance on a Gaussian energy is too wide by eps/2: the step-size bias."""
    eps, s = sp.symbols("epsilon s", positive=True)
    v = sp.Symbol("v", positive=True)
    d.say("## 2. Langevin dynamics samples $p \\propto e^{-E}$, up to a step-size bias\n`langevin_step`: "
          "$x' = x - \\epsilon\\nabla E(x) + \\sqrt{2\\epsilon}\\,z$. On $E = x^2/(2s^2)$ it is linear, "
          "$x' = (1 - \\epsilon/s^2)x + \\sqrt{2\\epsilon}z$, and its stationary variance solves "
          "$v = (1 - \\epsilon/s^2)^2 v + 2\\epsilon$.")
    v_eps = sp.solve(sp.Eq(v, (1 - eps / s**2) ** 2 * v + 2 * eps), v)[0]
    d.symbolic("$v = s^2/(1 - \\epsilon/(2s^2))$: the discretised chain is too wide ...", v_eps,
               s**2 / (1 - eps / (2 * s**2)))
    d.symbolic("... by $\\epsilon/2 + O(\\epsilon^2)$, vanishing with the step", sp.series(v_eps, eps, 0, 2).removeO(),
               s**2 + eps / 2)
    n = 20_000

    def gauss(y):
        return jnp.sum(y**2, axis=1) / 2

    runs = {e: langevin_chain(gauss, jnp.zeros((n, 1)), _noise(rng, int(20 / e) if e < 0.5 else 60, n, 1), e,
                              math.sqrt(2 * e))[:, 0] ** 2 for e in (0.02, 0.5)}
    d.monte_carlo(f"{n} chains on $\\mathcal N(0, 1)$ at $\\epsilon = 0.5$ (60 steps): $E[x^2]$ matches the "
                  "discretised chain's $1/(1 - \\epsilon/2) = 4/3$", runs[0.5], 4 / 3)
    se = float(np.std(runs[0.5]) / math.sqrt(n))
    d.inequality(f"...which is not the target's 1: the bias ({float(np.mean(runs[0.5])) - 1:.3f}) is over 20 standard "
                 "errors", 20 * se, float(np.mean(runs[0.5])) - 1)
    d.monte_carlo("At $\\epsilon = 0.02$ (1000 steps) $E[x^2]$ matches $1/(1 - 0.01)$", runs[0.02], 1 / 0.99)
    steps = np.linspace(0.0, 0.8, 81)
    fig, ax = new_figure()
    ax.plot(steps, 1 / (1 - steps / 2), label="chain's $1/(1 - \\epsilon/2)$")
    ax.axhline(1.0, color="k", ls="--", lw=1, label="target's $E[x^2] = 1$")
    ax.errorbar(list(runs), [float(np.mean(r)) for r in runs.values()],
                yerr=[2 * float(np.std(r)) / math.sqrt(n) for r in runs.values()], fmt="o", capsize=3,
                label=f"{n} chains (mean $\\pm$ 2 SE)")
    ax.set(xlabel="step size $\\epsilon$", ylabel="stationary $E[x^2]$ on $N(0, 1)$")
    ax.legend()
    d.figure(fig, "Unadjusted Langevin samples a law wider than $p$ by about $\\epsilon/2$: the chains' variance "
             "follows the discretised chain's curve, reaching the target only as $\\epsilon \\to 0$.")


def _x1_density(u, temperature: float = 1.0):
    """The density of x1 under exp(-E / T) for ``double_well_energy``, normalised on the grid ``u`` (trapezoid)."""
    dens = np.exp(-((u**2 - 1) ** 2) / temperature)
    return dens / np.trapezoid(dens, u)


def _section_langevin_double_well(d: Derivation, rng: np.random.Generator):
    """Langevin chains on a bimodal, curved 2-D energy: both marginals pass KS at a small step, not at a big one."""
    f1, f2 = double_well_cdfs()
    n = 10_000
    crit = stats.kstwo.ppf(1 - 1e-3, n)
    start = jnp.asarray(rng.uniform(-1.5, 1.5, (n, 2)))
    small = np.asarray(langevin_chain(double_well_energy, start, _noise(rng, 1000, n, 2), 0.01, math.sqrt(0.02)))
    big = np.asarray(langevin_chain(double_well_energy, start, _noise(rng, 300, n, 2), 0.04, math.sqrt(0.08)))
    ks_small = np.array([stats.kstest(small[:, 0], f1).statistic, stats.kstest(small[:, 1], f2).statistic])
    ks_big = np.array([stats.kstest(big[:, 0], f1).statistic, stats.kstest(big[:, 1], f2).statistic])
    d.say(f"A known 2-D energy, `double_well_energy` $E = (x_1^2 - 1)^2 + 2(x_2 - x_1^2/2)^2$: two wells joined by a "
          "curved valley, with marginals $x_1 \\propto e^{-(x_1^2-1)^2}$ and $x_2 = x_1^2/2 + \\mathcal N(0, 1/4)$ (CDFs by "
          f"quadrature). {n} chains from the uniform law on $[-1.5, 1.5]^2$, Langevin time 10-15; Kolmogorov-Smirnov "
          f"statistics of both marginals, critical value at level $10^{{-3}}$: {crit:.4f}.")
    d.inequality(f"$\\epsilon = 0.01$ (1000 steps): both marginals pass, KS = {np.array2string(ks_small, precision=4)}",
                 ks_small, crit)
    d.inequality(f"$\\epsilon = 0.04$ (300 steps): the step-size bias is caught, max KS = {ks_big.max():.4f}", crit,
                 ks_big.max())
    u = np.linspace(-2.2, 2.2, 221)
    x1_grid, x2_grid = np.meshgrid(u, np.linspace(-1.0, 2.6, 181))
    fig, axes = new_figure(columns=2)
    axes[0].contour(x1_grid, x2_grid, double_well_energy(np.stack([x1_grid.ravel(), x2_grid.ravel()], 1)).reshape(
        x1_grid.shape), levels=[0.1, 0.5, 1, 2, 4, 8], colors="gray", linewidths=0.8)
    axes[0].plot(small[:2000, 0], small[:2000, 1], ".", ms=1.5, alpha=0.5)
    axes[0].set(xlabel="$x_1$", ylabel="$x_2$", title="2000 chains after 1000 steps")
    for sample, label in ((small, "$\\epsilon = 0.01$"), (big, "$\\epsilon = 0.04$")):
        sorted_x1 = np.sort(sample[:, 0])
        axes[1].plot(sorted_x1, np.arange(1, n + 1) / n - f1(sorted_x1), lw=1, label=label)
    axes[1].axhspan(-crit, crit, color="gray", alpha=0.2, label="KS critical band")
    axes[1].set(xlabel="$x_1$", ylabel="empirical CDF - $F_1$", title="$x_1$ marginal against $p$")
    axes[1].legend(fontsize=8)
    d.figure(fig, "Langevin chains fill both wells of the energy along its curved valley (left, contours of $E$); "
             "their $x_1$ CDF stays within the KS band at $\\epsilon = 0.01$ and leaves it at $\\epsilon = 0.04$ "
             "(right).")
    return start, f1, f2, crit


def _section_tempered(d: Derivation, rng: np.random.Generator, start, f1, f2, crit) -> None:
    """Noise decoupled from the step samples the tempered law e^{-E/T}, T = sigma^2/(2a), not e^{-E}."""
    s, a, sig, temp = sp.symbols("s a sigma T", positive=True)
    v = sp.Symbol("v", positive=True)
    n = len(start)
    d.say("## 3. Noise decoupled from the step samples a tempered law\n`tempered_langevin_step`: $x' = x - a\\nabla E "
          "+ \\sigma z$ with $\\sigma \\ne \\sqrt{2a}$ (the course's sampler: step $a = 10$, noise $\\sigma = 0.005$). "
          "Writing $\\sigma = \\sqrt{2aT}$ makes it `langevin_step` on $E/T$ with step $aT$: it samples "
          "$e^{-E/T}$, $T = \\sigma^2/(2a)$ (`langevin_temperature`), not $e^{-E}$.")
    v_t = sp.solve(sp.Eq(v, (1 - a / s**2) ** 2 * v + sig**2), v)[0]
    d.symbolic("On $E = x^2/(2s^2)$ the stationary variance tends to $T s^2$ as $a \\to 0$ at fixed "
               "$T = \\sigma^2/(2a)$: the law $\\mathcal N(0, Ts^2) \\propto e^{-E/T}$",
               sp.limit(v_t.subs(sig, sp.sqrt(2 * a * temp)), a, 0), temp * s**2)
    d.numeric("The course's sampler ($a = 10$, $\\sigma = 0.005$) runs at $T = 1.25\\cdot10^{-6}$: gradient descent on "
              "$E$ with a little jitter, a mode seeker rather than a sampler of $p$",
              langevin_temperature(jnp.asarray(10.0), jnp.asarray(0.005)), 1.25e-6)
    half = np.asarray(langevin_chain(double_well_energy, start, _noise(rng, 1000, n, 2), 0.01, math.sqrt(0.01)))
    g1, g2 = double_well_cdfs(temperature=0.5)
    ks_half = np.array([stats.kstest(half[:, 0], g1).statistic, stats.kstest(half[:, 1], g2).statistic])
    ks_wrong = np.array([stats.kstest(half[:, 0], f1).statistic, stats.kstest(half[:, 1], f2).statistic])
    d.inequality("Langevin without the 2, $\\sigma = \\sqrt{a}$ ($a = 0.01$, 1000 steps), is the tempered sampler at "
                 f"$T = 1/2$: both marginals of $e^{{-2E}}$ pass, KS = {np.array2string(ks_half, precision=4)}",
                 ks_half, crit)
    d.inequality(f"...and those of $e^{{-E}}$ fail, max KS = {ks_wrong.max():.4f}", crit, ks_wrong.max())
    u = np.linspace(-2.2, 2.2, 221)
    fig, ax = new_figure()
    ax.hist(half[:, 0], bins=60, density=True, alpha=0.5, label="$\\sigma = \\sqrt{a}$ chains")
    ax.plot(u, _x1_density(u, 0.5), "k-", lw=1.2, label="$T = 1/2$: $e^{-2E}$")
    ax.plot(u, _x1_density(u), "r--", lw=1.2, label="$T = 1$: $e^{-E}$")
    ax.set(xlabel="$x_1$", ylabel="density")
    ax.legend(fontsize=8)
    d.figure(fig, "Dropping the 2 from Langevin's noise samples the colder law $e^{-2E}$: the $x_1$ histogram has the "
             "sharper wells of $T = 1/2$, not those of $p \\propto e^{-E}$.")


def _section_buffer(d: Derivation, rng: np.random.Generator) -> None:
    """The replay buffer's refresh replaces a Bernoulli(0.05) share of its rows by fresh noise."""
    d.say("## 4. The replay buffer\nPersistent chains: the negatives of a step are the buffer's rows after a few "
          "Langevin steps, and they go back into the buffer. `refresh_buffer` first replaces each row, with "
          "probability $\\rho$ (5%), by fresh uniform noise, so that new modes keep being explored.")
    n, dim = 40_000, 3
    samples, fresh = jnp.asarray(rng.standard_normal((n, dim))), jnp.asarray(rng.uniform(0, 1, (n, dim)))
    mask = jnp.asarray((rng.uniform(size=n) < 0.05).astype(np.float64))
    out = refresh_buffer(samples, fresh, mask)
    d.numeric("`refresh_buffer` takes the fresh row where the mask is 1 and keeps the chain where it is 0",
              out, jnp.where(mask[:, None] > 0, fresh, samples))
    d.monte_carlo(f"With Bernoulli(0.05) masks, a share 0.05 of the {n} rows is refreshed",
                  np.asarray(jnp.all(out == fresh, axis=1), dtype=np.float64), 0.05)


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("ebm", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    _section_two_phases(d)
    energy, per_point_grad, params, data, negatives, data_phase, neg_grads = _section_grid_gradient(d, rng)
    _section_cd_loss(d, energy, per_point_grad, params, data, negatives, data_phase, neg_grads)
    _section_langevin_gaussian(d, rng)
    start, f1, f2, crit = _section_langevin_double_well(d, rng)
    _section_tempered(d, rng, start, f1, f2, crit)
    _section_buffer(d, rng)
    return d
