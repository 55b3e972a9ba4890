"""The ``score`` derivation (``python -m theory_jax score``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/score.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as
a notebook.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from scipy import stats

from theory_jax.derivation import Derivation, full_precision, new_figure, optimised_jit
from theory_jax.score import (
    alpha_bar_to_sigma,
    annealed_langevin,
    annealed_step_sizes,
    autodiff_score,
    denoise,
    dsm_loss,
    eps_to_score,
    geometric_sigmas,
    gmm_log_prob,
    gmm_noised,
    gmm_posterior_mean,
    gmm_score,
    ks_statistics,
    langevin_chain,
    perturb,
    score_to_eps,
)

# The chains below run up to 1 000 Langevin steps of thousands of samples, far longer than they take to compile: the
# same functions, compiled at XLA's default optimisation whatever the process asks (``optimised_jit``)
langevin_chain = optimised_jit(langevin_chain, static_argnames="score_fn")
annealed_langevin = optimised_jit(annealed_langevin, static_argnames="score_fn")

TITLE = "diffusion models as score predictors: epsilon <-> score, denoising score matching, Langevin dynamics"
LECTURES = "DDPMs as score predictors; alternate interpretations"


# 4. The derivation -------------------------------------------------------------------------------------------------
TARGET = (np.array([0.5, 0.3, 0.2]), np.array([[-1.2, -0.4], [1.2, 0.2], [0.0, 1.4]]),
          np.array([[[0.5, 0.2], [0.2, 0.4]], [[0.3, -0.1], [-0.1, 0.5]], [[0.6, 0.0], [0.0, 0.2]]]))


def _gauss_expect(expr, variables):
    """E[expr] for a polynomial in independent standard normals: u^k -> (k-1)!! for even k, 0 for odd."""
    poly = sp.Poly(sp.expand(expr), *variables)
    moment = [sp.Integer(1), sp.Integer(0), sp.Integer(1), sp.Integer(0), sp.Integer(3)]
    return sp.simplify(sum(coef * sp.prod([moment[k] for k in powers]) for powers, coef in poly.terms()))


@jax.jit
def _linear_score_objectives(A, b, mu, cov, sigma):
    """Closed forms for the linear score model s(x~) = A x~ + b on x ~ N(mu, cov), x~ = x + sigma z:
    (J_ESM, J_DSM, the model-free constant 1/2 (D / sigma^2 - tr C^-1)), C = cov + sigma^2 I."""
    d = mu.shape[0]
    c_inv = jnp.linalg.inv(cov + sigma**2 * jnp.eye(d))
    m = A + c_inv
    j_esm = 0.5 * (jnp.trace(m @ (cov + sigma**2 * jnp.eye(d)) @ m.T) + jnp.sum((m @ mu + b - c_inv @ mu) ** 2))
    j_dsm = 0.5 * (jnp.trace(A @ cov @ A.T) + jnp.sum((A @ mu + b) ** 2) + jnp.sum((sigma * A + jnp.eye(d) / sigma) ** 2))
    return j_esm, j_dsm, 0.5 * (d / sigma**2 - jnp.trace(c_inv))


def _optimal_eps_check(a, x_0, eps, mu, cov):
    """For x_0 ~ N(mu, cov): eps_to_score(E[eps | x_t]) - grad log p_t on 1000 draws (1000, 2), and the residuals
    eps - E[eps | x_t] with their products with x_t, whose means vanish (n, 6)."""
    w, mt, ct = gmm_noised(jnp.ones(1), mu[None], cov[None], jnp.sqrt(a), jnp.sqrt(1 - a))
    x_t = jnp.sqrt(a) * x_0 + jnp.sqrt(1 - a) * eps
    e_opt = jnp.sqrt(1 - a) * (x_t - mt[0]) @ jnp.linalg.inv(ct[0])  # Cov(eps, x_t) Var(x_t)^-1 (x_t - E x_t)
    err = eps_to_score(e_opt[:1000], jnp.full(1000, a)) - autodiff_score(x_t[:1000], w, mt, ct)
    resid = eps - e_opt
    return err, jnp.concatenate([resid, (resid[:, :, None] * x_t[:, None, :]).reshape(len(x_t), 4)], axis=1)


def _mixture_eps_check(a, y, target):
    """For x_0 from a mixture: eps_to_score of E[eps | x_t] (posterior means) - grad log p_t at points y (N, 2)."""
    e_opt = (y - jnp.sqrt(a) * gmm_posterior_mean(y, *target, jnp.sqrt(a), jnp.sqrt(1 - a))) / jnp.sqrt(1 - a)
    return eps_to_score(e_opt, jnp.full(len(y), a)) - autodiff_score(y, *gmm_noised(*target, jnp.sqrt(a), jnp.sqrt(1 - a)))


def _section_eps_score(d: Derivation, rng: np.random.Generator) -> None:
    """A noise predictor is a score model: epsilon <-> score, exactly for Gaussians and mixtures; Tweedie; NCSN."""
    x0, xt, e, m = sp.symbols("x_0 x_t epsilon m", real=True)
    ab, s = sp.symbols("abar s", positive=True)
    log_q = -(xt - sp.sqrt(ab) * x0) ** 2 / (2 * (1 - ab))
    d.say("## 1. A noise predictor is a score model\n$q(x_t|x_0) = \\mathcal N(\\sqrt{\\bar\\alpha}x_0, "
          "(1-\\bar\\alpha) I)$, $x_t = \\sqrt{\\bar\\alpha}x_0 + \\sqrt{1-\\bar\\alpha}\\,\\epsilon$.")
    d.symbolic("The conditional score is the scaled noise: "
               "$\\nabla_{x_t}\\log q(x_t|x_0) = -\\epsilon/\\sqrt{1-\\bar\\alpha}$",
               sp.diff(log_q, xt).subs(xt, sp.sqrt(ab) * x0 + sp.sqrt(1 - ab) * e), -e / sp.sqrt(1 - ab))
    v = ab * s**2 + 1 - ab  # Var x_t for x_0 ~ N(m, s^2)
    e_given_x = sp.sqrt(1 - ab) * (xt - sp.sqrt(ab) * m) / v  # Cov(eps, x_t) / Var(x_t) (x_t - E x_t)
    d.symbolic("Gaussian data $x_0 \\sim \\mathcal N(m, s^2)$: $x_t \\sim \\mathcal N(\\sqrt{\\bar\\alpha}m, v)$, "
               "$v = \\bar\\alpha s^2 + 1 - \\bar\\alpha$, and $E[\\epsilon|x_t] = \\sqrt{1-\\bar\\alpha}(x_t - "
               "\\sqrt{\\bar\\alpha}m)/v$ by Gaussian conditioning; then $-E[\\epsilon|x_t]/\\sqrt{1-\\bar\\alpha}$ is "
               "exactly the marginal score $\\partial_{x_t}\\log\\mathcal N(x_t; \\sqrt{\\bar\\alpha}m, v)$",
               -e_given_x / sp.sqrt(1 - ab), sp.diff(-(xt - sp.sqrt(ab) * m) ** 2 / (2 * v), xt))

    mu, low = jnp.array([0.7, -0.4]), jnp.array([[0.9, 0.0], [0.5, 0.6]])
    cov = low @ low.T
    abars = jnp.array([0.98, 0.7, 0.3, 0.02])
    n = 200_000
    x_0 = mu + jnp.asarray(rng.standard_normal((n, 2))) @ low.T
    eps = jnp.asarray(rng.standard_normal((n, 2)))
    errs, orth = jax.jit(jax.vmap(partial(_optimal_eps_check, x_0=x_0, eps=eps, mu=mu, cov=cov)))(abars)
    d.numeric("2-D Gaussian data, four $\\bar\\alpha \\in \\{0.98, 0.7, 0.3, 0.02\\}$: `eps_to_score` of the optimal "
              "predictor $E[\\epsilon|x_t] = \\sqrt{1-\\bar\\alpha}\\,C^{-1}(x_t - \\sqrt{\\bar\\alpha}\\mu)$ equals "
              "`jax.grad` of $\\log p_t$ at 1000 draws of $x_t$ each", errs, jnp.zeros((4, 1000, 2)))
    d.monte_carlo("...and $E[\\epsilon|x_t]$ is the least-squares noise predictor: the residual "
                  "$\\epsilon - E[\\epsilon|x_t]$ has mean 0 and is uncorrelated with $x_t$ (normal equations; "
                  "200 000 draws, every $\\bar\\alpha$)", jnp.moveaxis(orth, 0, 1).reshape(n, 24), jnp.zeros(24))

    w, m_, c_ = (jnp.asarray(t) for t in TARGET)
    y = jnp.asarray(rng.standard_normal((500, 2))) * 1.5
    gaps = jax.jit(jax.vmap(partial(_mixture_eps_check, y=y, target=(w, m_, c_))))(abars)
    d.numeric("Not only for Gaussians: for a 3-component mixture, $E[\\epsilon|x_t] = (x_t - \\sqrt{\\bar\\alpha}"
              "E[x_0|x_t])/\\sqrt{1-\\bar\\alpha}$ (posterior means by responsibilities) gives `jax.grad` $\\log p_t$ "
              "through `eps_to_score`, 500 points, four $\\bar\\alpha$", gaps, jnp.zeros((4, 500, 2)),
              atol=1e-11)
    d.gradient("The mixture's score in closed form, $-\\sum_k r_k(x)\\Sigma_k^{-1}(x - \\mu_k)$ (`gmm_score`, used by "
               "the chains below), equals `jax.grad` of $\\log p$", gmm_score(y, w, m_, c_), autodiff_score(y, w, m_, c_))
    sig = 0.6
    d.numeric("Tweedie's formula, the final denoising step: `denoise`$(\\tilde x, s_\\sigma(\\tilde x), \\sigma) = "
              "\\tilde x + \\sigma^2\\nabla\\log q_\\sigma(\\tilde x)$ equals $E[x|\\tilde x]$ of the mixture "
              "($\\sigma = 0.6$, 500 points)", denoise(y, gmm_score(y, *gmm_noised(w, m_, c_, 1.0, sig)), sig),
              gmm_posterior_mean(y, w, m_, c_, 1.0, sig), atol=1e-11)
    a = 0.4
    sigma = alpha_bar_to_sigma(a)
    s_t = gmm_score(y, *gmm_noised(w, m_, c_, jnp.sqrt(a), jnp.sqrt(1 - a)))
    s_ve = gmm_score(y / jnp.sqrt(a), *gmm_noised(w, m_, c_, 1.0, sigma))
    d.numeric("DDPM is NCSN rescaled: $x_t/\\sqrt{\\bar\\alpha} = x_0 + \\sigma\\epsilon$ with $\\sigma = "
              "\\sqrt{(1-\\bar\\alpha)/\\bar\\alpha}$ (`alpha_bar_to_sigma`), so $\\nabla\\log p_t(x) = "
              "\\nabla\\log q_\\sigma(x/\\sqrt{\\bar\\alpha})/\\sqrt{\\bar\\alpha}$ ($\\bar\\alpha = 0.4$) ...",
              s_t, s_ve / jnp.sqrt(a), atol=1e-11)
    d.numeric("... and the noise prediction is $\\epsilon = -\\sigma\\, s_\\sigma$ (`score_to_eps`): the "
              "NCSN score net times $-\\sigma$ is an $\\epsilon$-predictor", score_to_eps(s_t, jnp.full(500, a)),
              -sigma * s_ve, atol=1e-11)


def _section_dsm(d: Derivation) -> None:
    """Denoising score matching = explicit score matching + a constant free of the model, in 1-D by exact moments."""
    u, z, m, a, b = sp.symbols("u z m a b", real=True)
    s, sig = sp.symbols("s sigma", positive=True)
    x = m + s * u
    xt = x + sig * z
    true_score = -(xt - m) / (s**2 + sig**2)
    j_esm = _gauss_expect((a * xt + b - true_score) ** 2 / 2, (u, z))
    j_dsm = _gauss_expect((a * xt + b + z / sig) ** 2 / 2, (u, z))
    d.say("## 2. Denoising score matching = explicit score matching + a constant\n$x \\sim \\mathcal N(m, s^2)$, "
          "$\\tilde x = x + \\sigma z$, so $q_\\sigma = \\mathcal N(m, s^2+\\sigma^2)$; a linear score model "
          "$s_\\theta(\\tilde x) = a\\tilde x + b$. Both objectives by exact Gaussian moments.")
    d.symbolic("$J_{DSM}(a, b) - J_{ESM}(a, b) = \\frac12\\left(\\frac1{\\sigma^2} - \\frac1{s^2+\\sigma^2}\\right)$ for "
               "every $(a, b)$: the difference does not depend on the model", j_dsm - j_esm,
               (1 / sig**2 - 1 / (s**2 + sig**2)) / 2)
    sol = sp.solve([sp.diff(j_dsm, a), sp.diff(j_dsm, b)], [a, b], dict=True)[0]
    d.symbolic("...so DSM's minimiser is the true score: $a^* = -1/(s^2+\\sigma^2)$, $b^* = m/(s^2+\\sigma^2)$ "
               "(residual of both, squared and summed)",
               (sol[a] + 1 / (s**2 + sig**2)) ** 2 + (sol[b] - m / (s**2 + sig**2)) ** 2)
    fig, ax = new_figure()
    slope = np.linspace(-2.0, 0.6, 200)
    setting = {m: 0.5, s: 1.0, sig: 0.7, b: 0.5 / 1.49}  # b at its optimum m / (s^2 + sigma^2)
    for objective, name in ((j_esm, "$J_{ESM}(a, b^*)$"), (j_dsm, "$J_{DSM}(a, b^*)$")):
        ax.plot(slope, sp.lambdify(a, objective.subs(setting), "numpy")(slope), label=name)
    ax.axvline(-1 / 1.49, color="k", ls="--", lw=1, label="true score: $a^* = -1/(s^2+\\sigma^2)$")
    ax.set(xlabel="slope $a$ of the score model $a\\tilde x + b$", ylabel="objective",
           title="$m = 0.5$, $s = 1$, $\\sigma = 0.7$")
    ax.set_ylim(top=3.1)
    ax.legend(fontsize=8, loc="upper center")
    d.figure(fig, "The two objectives differ by a constant: the same curve shifted up, with the same minimiser, the "
             "true score of $q_\\sigma$.")


def _section_dsm_monte_carlo(d: Derivation, rng: np.random.Generator) -> None:
    """The same in 2-D for linear score models: closed forms, Monte Carlo, `dsm_loss` and equal gradients."""
    mu, low, sigma = jnp.array([0.5, -1.0]), jnp.array([[1.0, 0.0], [0.6, 0.5]]), 0.7
    cov = low @ low.T
    models = [(jnp.asarray(rng.standard_normal((2, 2))), jnp.asarray(rng.standard_normal(2))) for _ in range(5)]
    diffs = [(lambda e, dd, c: (dd - e, c))(*_linear_score_objectives(A, bb, mu, cov, sigma)) for A, bb in models]
    d.numeric("2-D, $\\sigma = 0.7$, five random linear models $s(\\tilde x) = A\\tilde x + b$: $J_{DSM} - J_{ESM}$ "
              "(trace closed forms) is the same constant $\\frac12(D/\\sigma^2 - \\mathrm{tr}\\,C^{-1})$ for all five",
              jnp.stack([p[0] for p in diffs]), jnp.stack([p[1] for p in diffs]))
    n = 200_000
    xs = mu + jnp.asarray(rng.standard_normal((n, 2))) @ low.T
    zs = jnp.asarray(rng.standard_normal((n, 2)))
    xt = perturb(xs, jnp.full(n, sigma), zs)
    w, mq, cq = gmm_noised(jnp.ones(1), mu[None], cov[None], 1.0, sigma)
    q_score = gmm_score(xt, w, mq, cq)
    per_sample = [0.5 * jnp.sum((xt @ A.T + bb + zs / sigma) ** 2, 1) - 0.5 * jnp.sum((xt @ A.T + bb - q_score) ** 2, 1)
                  for A, bb in models[:3]]
    d.monte_carlo("Monte Carlo, the same 200 000 pairs $(x, z)$ for three of the models: the mean of "
                  "$\\frac12\\|s + z/\\sigma\\|^2 - \\frac12\\|s - \\nabla\\log q_\\sigma\\|^2$ is that constant",
                  jnp.stack(per_sample, 1), jnp.stack([p[1] for p in diffs[:3]]))
    chunks = jnp.stack([jax.vmap(dsm_loss)((xt @ A.T + bb).reshape(200, 1000, 2), zs.reshape(200, 1000, 2),
                                           jnp.full((200, 1000), sigma)) for A, bb in models[:3]], axis=1)
    d.monte_carlo("`dsm_loss` (weight $\\lambda(\\sigma) = \\sigma^2$) estimates $\\sigma^2 J_{DSM}$: means of 200 "
                  "batches of 1000 against the closed form, three models",
                  chunks, jnp.stack([sigma**2 * _linear_score_objectives(A, bb, mu, cov, sigma)[1] for A, bb in models[:3]]))
    grad_e = jax.grad(lambda A, bb: _linear_score_objectives(A, bb, mu, cov, sigma)[0], argnums=(0, 1))
    grad_d = jax.grad(lambda A, bb: _linear_score_objectives(A, bb, mu, cov, sigma)[1], argnums=(0, 1))
    d.gradient("Equal objectives up to a constant have equal gradients: $\\nabla_{A,b} J_{DSM} = \\nabla_{A,b} J_{ESM}$ "
               "at the five models (jax.grad)",
               jnp.stack([jnp.concatenate([g.ravel() for g in grad_d(A, bb)]) for A, bb in models]),
               jnp.stack([jnp.concatenate([g.ravel() for g in grad_e(A, bb)]) for A, bb in models]))
    c_inv = jnp.linalg.inv(cq[0])
    d.gradient("...and at the true score $A = -C^{-1}$, $b = C^{-1}\\mu$ the DSM gradient vanishes",
               jnp.concatenate([g.ravel() for g in grad_d(-c_inv, c_inv @ mu)]), jnp.zeros(6))


def _langevin_noise(rng: np.random.Generator, n: int, *shape):
    """Standard normal draws (*shape, n, 2), float32 to halve the memory (promoted in the float64 chains)."""
    return jnp.asarray(rng.standard_normal((*shape, n, 2), dtype=np.float32))


def _noised_score(x, sigma, target):
    """The score of the mixture ``target`` convolved with N(0, sigma^2 I): what a noise-conditional model learns."""
    return gmm_score(x, *gmm_noised(*target, 1.0, sigma))


def _section_langevin(d: Derivation, rng: np.random.Generator, n: int) -> None:
    """Langevin dynamics on a Gaussian: its stationary variance, biased upward by alpha/4."""
    eps_, s = sp.symbols("epsilon s", positive=True)
    v = eps_ / (1 - (1 - eps_ / (2 * s**2)) ** 2)  # v = (1 - eps/(2 s^2))^2 v + eps
    d.say("## 3. Langevin dynamics samples the target\nOne step $x' = x + \\frac\\alpha2\\nabla\\log p(x) + "
          "\\sqrt\\alpha z$ (`langevin_step`). On $p = \\mathcal N(0, s^2)$ it is linear: $x' = (1 - \\frac{\\alpha}"
          "{2s^2})x + \\sqrt\\alpha z$, whose stationary variance solves $v = (1-\\frac\\alpha{2s^2})^2 v + \\alpha$.")
    d.symbolic("$v = s^2 / (1 - \\alpha/(4s^2))$: biased upward ...", v, s**2 / (1 - eps_ / (4 * s**2)))
    d.symbolic("... by $\\alpha/4 + O(\\alpha^2)$: the bias vanishes linearly with the step size",
               sp.series(v, eps_, 0, 2).removeO(), s**2 + eps_ / 4)
    var = jnp.array([1.0, 0.25])
    runs = []
    for alpha in (0.4, 0.1, 0.025):
        chains = langevin_chain(partial(_gaussian_score, var=var), jnp.zeros((n, 2)),
                                _langevin_noise(rng, n, int(10 / alpha)), alpha)
        runs.append((chains**2, var / (1 - alpha / (4 * var))))
    d.monte_carlo(f"{n} chains on $\\mathcal N(0, \\mathrm{{diag}}(1, 0.25))$ (jit, lax.scan, time 10): $E[x_i^2]$ "
                  "matches $s_i^2/(1-\\alpha/(4s_i^2))$ for $\\alpha = 0.4, 0.1, 0.025$",
                  jnp.concatenate([r[0] for r in runs], 1), jnp.concatenate([r[1] for r in runs]))


def _section_langevin_mixture(d: Derivation, rng: np.random.Generator, n: int):
    """Langevin on a 2-D mixture: a small step passes Kolmogorov-Smirnov tests, a large step's bias is caught."""
    w, m, c = (jnp.asarray(t) for t in TARGET)
    crit = stats.kstwo.ppf(1 - 1e-3, n)
    score = partial(gmm_score, weights=w, means=m, covs=c)
    start = 2.0 * jnp.asarray(rng.standard_normal((n, 2)))
    small = langevin_chain(score, start, _langevin_noise(rng, n, 1000), 0.025)
    big = langevin_chain(score, start, _langevin_noise(rng, n, 50), 0.6)
    d.say(f"A known 2-D target: the 3-component mixture $\\pi = (0.5, 0.3, 0.2)$ of `TARGET`. {n} chains from "
          "$\\mathcal N(0, 4I)$, Langevin time 25-30; Kolmogorov-Smirnov statistics of the projections on the "
          f"directions 0, 45, 90, 135 degrees against their exact CDFs; critical value at level $10^{{-3}}$: {crit:.4f}.")
    ks_small, ks_big = ks_statistics(small, w, m, c), ks_statistics(big, w, m, c)
    d.inequality(f"$\\alpha = 0.025$ (1000 steps): every projection passes, KS = {np.array2string(ks_small, precision=4)}",
                 ks_small, crit)
    d.inequality(f"$\\alpha = 0.6$ (50 steps): the step-size bias is caught, max KS = {ks_big.max():.4f}", crit,
                 ks_big.max())
    second = jnp.einsum("k,kij->ij", w, c + m[:, :, None] * m[:, None, :])
    err_small, err_big = (float(jnp.abs(jnp.einsum("ni,nj->ij", x, x) / n - second).max()) for x in (small, big))
    d.inequality(f"...and it shrinks with the step: max error of $E[xx^T]$ {err_big:.4f} at $\\alpha = 0.6$, "
                 f"{err_small:.4f} at $\\alpha = 0.025$ (at most a quarter)", err_small, err_big / 4)
    fig, axes = new_figure(columns=2)
    g1, g2 = np.meshgrid(np.linspace(-3.5, 3.5, 80), np.linspace(-3, 3.5, 80))
    density = np.exp(np.asarray(gmm_log_prob(jnp.asarray(np.stack([g1.ravel(), g2.ravel()], 1)), w, m, c)))
    for ax, chains, alpha in ((axes[0], small, 0.025), (axes[1], big, 0.6)):
        ax.contour(g1, g2, density.reshape(g1.shape), levels=6, colors="k", linewidths=0.7)
        ax.scatter(*np.asarray(chains[:2000]).T, s=2, alpha=0.4, color="C0")
        ax.set(xlabel="$x_1$", ylabel="$x_2$", title=f"Langevin, $\\alpha$ = {alpha}", xlim=(-3.5, 3.5), ylim=(-3, 3.5))
    d.figure(fig, "2000 of the chains' final states on the target's density contours: with $\\alpha = 0.025$ they "
             "follow the mixture; with $\\alpha = 0.6$ they spread too wide (the step-size bias).")
    return start, crit


def _section_annealed_langevin(d: Derivation, rng: np.random.Generator, n: int, start, crit) -> None:
    """Annealed Langevin (Algorithm 1): geometric noise levels, step sizes by level, and samples of the mixture."""
    w, m, c = (jnp.asarray(t) for t in TARGET)
    sigmas = geometric_sigmas(jnp.asarray(2.0), jnp.asarray(0.05), 10)
    d.numeric("`geometric_sigmas`: a constant ratio $\\sigma_i/\\sigma_{i+1}$, from $\\sigma_1 = 2$ to "
              "$\\sigma_{10} = 0.05$",
              sigmas[:-1] / sigmas[1:], jnp.full(9, 40 ** (1 / 9)))
    d.numeric("`annealed_step_sizes`: $\\alpha_i/\\sigma_i^2 = \\epsilon/\\sigma_L^2$ at every level",
              annealed_step_sizes(sigmas, 0.005) / sigmas**2, jnp.full(10, 0.005 / 0.05**2))
    annealed = annealed_langevin(partial(_noised_score, target=(w, m, c)), start, _langevin_noise(rng, n, 10, 100),
                                 sigmas, 0.005)
    ks_ann = ks_statistics(annealed, *gmm_noised(w, m, c, 1.0, 0.05))
    d.inequality("Annealed Langevin (Algorithm 1; $\\sigma$: 2 to 0.05, $L = 10$, $T = 100$, $\\epsilon = 0.005$) on the "
                 "same target, against $q_{\\sigma_L}$: every projection passes, "
                 f"KS = {np.array2string(ks_ann, precision=4)}",
                 ks_ann, crit)


def _section_separated_modes(d: Derivation, rng: np.random.Generator, n: int) -> None:
    """Separated modes: plain Langevin keeps the modes' shares where the chains start; annealing corrects them."""
    separated = (jnp.array([0.2, 0.8]), jnp.array([[-5.0], [5.0]]), jnp.ones((2, 1, 1)))
    start1 = jnp.asarray(rng.uniform(-8, 8, (n, 1)))
    noise1 = jnp.asarray(rng.standard_normal((10, 100, n, 1), dtype=np.float32))
    plain = langevin_chain(partial(gmm_score, weights=separated[0], means=separated[1], covs=separated[2]), start1,
                           noise1[:3].reshape(300, n, 1), 0.2)
    share = float(jnp.mean(plain > 0))
    d.say("Separated modes (Song & Ermon 2019, sec. 3.2.2 and fig. 3, here in 1-D): $0.2\\,\\mathcal N(-5, 1) + "
          "0.8\\,\\mathcal N(5, 1)$, chains from the uniform law on $[-8, 8]$. Langevin moves within a mode but almost "
          "never between them, so the share of a mode is set by where the chains start.")
    d.inequality(f"Plain Langevin ($\\alpha = 0.2$, 300 steps): {share:.3f} of the chains in the heavy mode, off "
                 "the true 0.8 by more than 0.2", 0.2, abs(share - 0.8))
    sigmas2 = geometric_sigmas(jnp.asarray(10.0), jnp.asarray(0.1), 10)
    ann = annealed_langevin(partial(_noised_score, target=separated), start1, noise1, sigmas2, 0.002)
    heavy = float(jnp.mean(ann > 0))
    d.inequality(f"Annealed Langevin ($\\sigma$: 10 to 0.1, $L = 10$, $T = 100$, $\\epsilon = 0.002$) lets the chains "
                 f"cross while the modes still overlap: {heavy:.3f} in the heavy mode, within 0.03 of 0.8 (the rest "
                 "is the finite annealing time: more steps per level bring it closer)", abs(heavy - 0.8), 0.03)
    ks_heavy = stats.kstest(np.asarray(ann[ann > 0]), stats.norm(5.0, math.sqrt(1.01)).cdf).statistic
    d.inequality(f"...and within the heavy mode the law is $\\mathcal N(5, 1 + \\sigma_L^2)$: KS = {ks_heavy:.4f} "
                 f"(critical value {stats.kstwo.ppf(1 - 1e-3, int((ann > 0).sum())):.4f})", ks_heavy,
                 stats.kstwo.ppf(1 - 1e-3, int((ann > 0).sum())))
    fig, ax = new_figure()
    line = np.linspace(-9, 9, 400)
    ax.hist(np.asarray(plain).ravel(), bins=90, range=(-9, 9), density=True, alpha=0.45, label="plain Langevin")
    ax.hist(np.asarray(ann).ravel(), bins=90, range=(-9, 9), density=True, alpha=0.45, label="annealed Langevin")
    ax.plot(line, 0.2 * stats.norm.pdf(line, -5, 1) + 0.8 * stats.norm.pdf(line, 5, 1), "k", lw=1.2,
            label="target $0.2\\,N(-5, 1) + 0.8\\,N(5, 1)$")
    ax.set(xlabel="$x$", ylabel="density")
    ax.legend(fontsize=7, loc="upper left")
    d.figure(fig, "Plain Langevin keeps the modes' shares of the uniform start (about half each); annealing lets the "
             "chains cross while the noised modes overlap and recovers the 0.2 / 0.8 split.")


def _gaussian_score(x, var):
    return -x / var


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("score", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    n_chains = 10_000  # Langevin chains (not ``n``: the steps' sample sizes are called n, and a notebook shares names)
    _section_eps_score(d, rng)
    _section_dsm(d)
    _section_dsm_monte_carlo(d, rng)
    _section_langevin(d, rng, n_chains)
    start, crit = _section_langevin_mixture(d, rng, n_chains)
    _section_annealed_langevin(d, rng, n_chains, start, crit)
    _section_separated_modes(d, rng, n_chains)
    return d
