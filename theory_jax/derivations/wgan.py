"""The ``wgan`` derivation (``python -m theory_jax wgan``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/wgan.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as
a notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, optimize, stats

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.wgan import (
    clip_weights,
    critic_gradient_penalty,
    critic_objective,
    gradient_penalty,
    interpolates,
    lipschitz_penalty,
    mlp_critic,
    optimal_critic_1d,
    w1_sorted,
)

TITLE = "Wasserstein GANs: the Kantorovich-Rubinstein dual, weight clipping and the gradient penalty"
LECTURES = "Wasserstein GAN; gradient penalty"


def _abs_normal_mean(mu, sigma):
    """E|X| for X ~ N(mu, sigma^2)."""
    return sigma * math.sqrt(2 / math.pi) * np.exp(-mu**2 / (2 * sigma**2)) + mu * (1 - 2 * stats.norm.cdf(-mu / sigma))


# 3. The derivation -----------------------------------------------------------------------------------------------
def _section_empirical_w1(d: Derivation, rng: np.random.Generator):
    """W1 of two 1-D samples three ways (sorted samples, CDFs, Hungarian coupling) and its dual's critic f*."""
    d.say("One dimension, where everything is explicit. Two samples of 400 points each: $p$ a mixture of "
          "$\\mathcal N(-1, 0.5^2)$ and $\\mathcal N(2, 0.3^2)$, $q = \\mathcal N(0.5, 1)$.")
    n = 400
    xp = np.where(rng.uniform(size=n) < 0.5, -1 + 0.5 * rng.standard_normal(n), 2 + 0.3 * rng.standard_normal(n))
    xq = 0.5 + rng.standard_normal(n)
    w1 = w1_sorted(xp, xq)
    d.numeric("$W_1$ by sorted samples (the monotone coupling) equals SciPy's `wasserstein_distance` (the CDF "
              "formula $\\int |F_p - F_q|$)", w1, stats.wasserstein_distance(xp, xq))
    grid = np.sort(np.concatenate([xp, xq]))
    cdf_p = np.searchsorted(np.sort(xp), grid, side="right") / n
    cdf_q = np.searchsorted(np.sort(xq), grid, side="right") / n
    d.numeric("...and $\\int |F_p(t) - F_q(t)|\\,dt$ summed exactly over the 800 steps of the two empirical CDFs",
              np.sum(np.abs(cdf_p - cdf_q)[:-1] * np.diff(grid)), w1)
    cost = np.abs(xp[:, None] - xq[None, :])
    rows, cols = optimize.linear_sum_assignment(cost)
    d.numeric("The primal: the optimal coupling of the two samples by the Hungarian algorithm "
              "(`scipy.optimize.linear_sum_assignment`, no ordering assumed) costs the same", cost[rows, cols].mean(),
              w1)
    f_star = optimal_critic_1d(grid, grid, cdf_p, cdf_q)
    d.numeric("The dual (Kantorovich-Rubinstein): $f^*(x) = \\int^x \\mathrm{sign}(F_q - F_p)$ attains "
              "$\\mathbb E_p f^* - \\mathbb E_q f^* = W_1$", critic_objective(
                  optimal_critic_1d(xp, grid, cdf_p, cdf_q), optimal_critic_1d(xq, grid, cdf_p, cdf_q)), w1)
    fig, axes = new_figure(columns=2)
    axes[0].step(grid, cdf_p, where="post", label="$F_p$")
    axes[0].step(grid, cdf_q, where="post", label="$F_q$")
    axes[0].fill_between(grid, cdf_p, cdf_q, step="post", color="0.8", label=f"area $= W_1 = {float(w1):.3f}$")
    axes[0].set(xlabel="$x$", ylabel="empirical CDF", title="the primal")
    bins = np.linspace(grid[0], grid[-1], 50)
    axes[1].hist(xp, bins=bins, density=True, alpha=0.4, label="$p$ samples")
    axes[1].hist(xq, bins=bins, density=True, alpha=0.4, label="$q$ samples")
    axes[1].set(xlabel="$x$", ylabel="density", title="the dual: critic $f^*$")
    twin = axes[1].twinx()
    twin.plot(grid, f_star, "k", label="$f^*(x)$")
    twin.set(ylabel="$f^*(x)$")
    axes[0].legend(fontsize="small")
    axes[1].legend(*(a + b for a, b in zip(axes[1].get_legend_handles_labels(), twin.get_legend_handles_labels())),
                   fontsize="small", loc="upper center")
    d.figure(fig, "Left: $W_1$ is the area between the two CDFs. Right: the optimal critic rises with slope 1 where "
                  "$F_q > F_p$ and falls with slope 1 where $F_p > F_q$, so it scores $p$'s samples above $q$'s.")
    s_pts, t_pts = rng.uniform(grid[0], grid[-1], (2, 2000))
    d.inequality("...and $f^*$ is 1-Lipschitz: $|f^*(s) - f^*(t)| \\le |s - t|$ at 2000 random pairs (slack 1e-12 "
                 "for rounding)", np.abs(optimal_critic_1d(s_pts, grid, cdf_p, cdf_q)
                                         - optimal_critic_1d(t_pts, grid, cdf_p, cdf_q)), np.abs(s_pts - t_pts),
                 slack=1e-12)
    return grid, cdf_p, cdf_q, f_star


def _section_linear_program(d: Derivation, rng: np.random.Generator) -> None:
    """The sup over 1-Lipschitz critics as a linear program on 60 points equals the primal W1."""
    m = 60  # the dual as a linear program over the critic's values at 60 support points
    sp_ = np.sort(rng.uniform(-2, 3, m))
    wp, wq = rng.dirichlet(np.ones(m)), rng.dirichlet(np.ones(m))
    gaps = np.diff(sp_)
    lipschitz = np.zeros((2 * (m - 1), m))
    for i in range(m - 1):  # |f_{i+1} - f_i| <= x_{i+1} - x_i for neighbours suffices on a line
        lipschitz[2 * i, [i, i + 1]] = (-1, 1)
        lipschitz[2 * i + 1, [i, i + 1]] = (1, -1)
    lp = optimize.linprog(-(wp - wq), A_ub=lipschitz, b_ub=np.repeat(gaps, 2), bounds=[(None, None)] * m,
                          method="highs")
    cdf_gap = np.cumsum(wp - wq)[:-1]
    d.numeric("The sup over 1-Lipschitz critics, as a linear program (SciPy's HiGHS) between two distributions on "
              "60 points, equals the primal $\\sum |F_p - F_q|\\,\\Delta x$", -lp.fun,
              np.sum(np.abs(cdf_gap) * gaps), rtol=1e-9)
    slopes = np.clip(rng.standard_normal((50, m - 1)), -1, 1)  # 50 random 1-Lipschitz critics on the same points
    values = np.concatenate([np.zeros((50, 1)), np.cumsum(slopes * gaps, axis=1)], axis=1)
    d.inequality("...and 50 random 1-Lipschitz critics score below it", values @ (wp - wq),
                 np.full(50, -lp.fun))


def _section_gaussians(d: Derivation) -> None:
    """Between Gaussians the CDF and quantile integrals for W1 agree; equal scales give |m - m'|."""
    d.say("Gaussians: $W_1(\\mathcal N(m, s^2), \\mathcal N(m', s^2)) = |m - m'|$ for equal scales; for unequal "
          "ones, no closed form, but the quantile and CDF integrals must agree.")
    pairs = [(0.0, 1.0, 1.5, 1.0), (0.3, 0.8, -0.4, 1.7), (1.0, 2.0, 1.0, 0.5)]
    by_cdf = [integrate.quad(lambda t, a=a: abs(stats.norm.cdf(t, a[0], a[1]) - stats.norm.cdf(t, a[2], a[3])),
                             -40, 40, limit=400, epsabs=1e-13, epsrel=1e-12, points=[a[0], a[2]])[0] for a in pairs]
    by_quantile = [integrate.quad(lambda u, a=a: abs(stats.norm.ppf(u, a[0], a[1]) - stats.norm.ppf(u, a[2], a[3])),
                                  0, 1, limit=400, epsabs=1e-13, epsrel=1e-12)[0] for a in pairs]
    d.numeric("$\\int |F_p - F_q|\\,dt = \\int_0^1 |F_p^{-1}(u) - F_q^{-1}(u)|\\,du$ for three Gaussian pairs "
              "(the first, equal scales, is $|m - m'| = 1.5$)", np.array(by_cdf), np.array(by_quantile), rtol=1e-8)
    d.numeric("...and the equal-scale pair gives $|m - m'|$", by_cdf[0], 1.5, rtol=1e-9)


def _section_weight_clipping(d: Derivation, rng: np.random.Generator, dim: int) -> None:
    """Clipping every weight to [-c, c] bounds a linear critic's Lipschitz constant by c sqrt(D) without fixing it."""
    d.say("Weight clipping (WGAN): a linear critic $f(x) = w \\cdot x$ with $|w_i| \\le c$ has Lipschitz constant "
          "$\\|w\\|_2 \\le c\\sqrt{D}$, and the sup over such critics is $c\\,\\|\\mathbb E_p x - \\mathbb E_q x\\|_1$: "
          "for equal-scale Gaussians in 1-D, $c \\cdot W_1$. Clipping bounds the Lipschitz constant without "
          "fixing it, so the critic estimates $K\\,W_1$ for an unknown $K$.")
    c = 0.01
    w = np.asarray(clip_weights(rng.standard_normal((200, dim)), c))
    d.inequality("$\\|$`clip_weights`$(w, c)\\|_2 \\le c\\sqrt{D}$ for 200 random $w$, $D = 16$, $c = 0.01$",
                 np.linalg.norm(w, axis=1), np.full(200, c * math.sqrt(dim)), slack=1e-15)
    mp, mq = rng.standard_normal(dim), rng.standard_normal(dim)
    best = c * np.sign(mp - mq)
    d.numeric("The best clipped linear critic between $\\mathcal N(m_p, I)$ and $\\mathcal N(m_q, I)$ is "
              "$c\\,\\mathrm{sign}(m_p - m_q)$, worth $c\\,\\|m_p - m_q\\|_1$", best @ mp - best @ mq,
              c * np.abs(mp - mq).sum())


def _section_gradient_penalty(d: Derivation, rng: np.random.Generator, grid, cdf_p, cdf_q, f_star, dim: int):
    """The gradient penalty: unit slope of f*, one alpha per example, the norm over all of an example's values."""
    d.say("The gradient penalty (WGAN-GP). An optimal critic has gradient norm 1 on the segments between coupled "
          "points (Gulrajani et al., Proposition 1), so the penalty pulls $\\|\\nabla f\\|$ to 1 at interpolates "
          "$\\hat x = \\alpha x + (1 - \\alpha) \\tilde x$, one $\\alpha \\sim U[0, 1]$ per example.")
    active = np.abs(cdf_p - cdf_q)[:-1] > 0
    d.numeric("In 1-D, $|f^{*\\prime}| = 1$ wherever $F_p \\ne F_q$: $|\\Delta f^*| = \\Delta x$ between "
              "neighbouring grid points there", np.abs(np.diff(f_star))[active], np.diff(grid)[active])
    x_img, y_img = rng.standard_normal((4, 3, 5, 5)), rng.standard_normal((4, 3, 5, 5))
    alpha = rng.uniform(size=4)
    hat = interpolates(x_img, y_img, alpha)
    d.numeric("`interpolates` uses one $\\alpha$ per example: each $\\hat x_b$ lies on the segment from $\\tilde x_b$ "
              "to $x_b$ at fraction $\\alpha_b$, the same in every pixel and channel",
              np.sum((hat - y_img) * (x_img - y_img), axis=(1, 2, 3)) / np.sum((x_img - y_img) ** 2, axis=(1, 2, 3)),
              alpha)
    g = rng.standard_normal((4, 3, 5, 5))
    d.numeric("`gradient_penalty` takes each norm over all of an example's $C \\cdot H \\cdot W$ values",
              gradient_penalty(g), np.mean((np.linalg.norm(g.reshape(4, -1), axis=1) - 1) ** 2))
    one_axis = np.mean((np.linalg.norm(g, axis=-1) - 1) ** 2)
    d.inequality("...not over one axis: the norm over the last axis alone (a mistake peers have shipped) gives a "
                 "different penalty, off here by more than 5", np.array(5.0),
                 np.abs(one_axis - np.asarray(gradient_penalty(g))))
    u = rng.standard_normal(dim)
    lin_w = 2.5 * u / np.linalg.norm(u)

    def linear(x):
        return x @ lin_w

    grads = jax.vmap(jax.grad(linear))(jnp.asarray(rng.standard_normal((8, dim))))
    d.numeric("For a linear critic $f(x) = w \\cdot x$ the penalty is $(\\|w\\|_2 - 1)^2$ everywhere: 2.25 for "
              "$\\|w\\| = 2.5$", gradient_penalty(grads), (2.5 - 1) ** 2)
    return g


def _section_one_sided_penalty(d: Derivation, g) -> None:
    """The one-sided penalty counts only norms above 1, so a 1-D critic can turn its slope without a barrier."""
    d.numeric("`lipschitz_penalty`, the one-sided penalty, counts only norms above 1 (same norm over all of an "
              "example's values)", lipschitz_penalty(0.3 * g),
              np.mean(np.maximum(np.linalg.norm(0.3 * g.reshape(4, -1), axis=1) - 1, 0) ** 2))
    slopes = np.linspace(-1, 1, 201)  # a 1-D critic f(x) = s x turning from slope -1 to +1
    two_sided = np.array([gradient_penalty(np.full((8, 1), s)) for s in slopes])
    one_sided = np.array([lipschitz_penalty(np.full((8, 1), s)) for s in slopes])
    d.numeric("In 1-D a critic cannot turn its slope from $-1$ to $+1$ without passing slope 0: along that path the "
              "two-sided penalty rises to a barrier of $(0 - 1)^2 = 1$ (so gradient descent on a 1-D critic can stall "
              "on the wrong side of a kink), while the one-sided penalty stays 0 all the way",
              np.array([two_sided.max(), one_sided.max()]), np.array([1.0, 0.0]))
    fig, ax = new_figure()
    wide = np.linspace(-2, 2, 401)  # the same penalties, drawn also beyond slope 1 where both are active
    ax.plot(wide, jax.vmap(lambda s: gradient_penalty(jnp.full((1, 1), s)))(wide), label="two-sided $(|f'| - 1)^2$")
    ax.plot(wide, jax.vmap(lambda s: lipschitz_penalty(jnp.full((1, 1), s)))(wide), "--",
            label="one-sided $\\max(0, |f'| - 1)^2$")
    ax.axvspan(-1, 1, color="0.9", label="the path from slope $-1$ to $+1$")
    ax.set(xlabel="critic slope $f'$", ylabel="penalty (without $\\lambda$)", ylim=(-0.05, 1.7))
    ax.legend(fontsize="small")
    d.figure(fig, "Along the path from slope $-1$ to $+1$ the two-sided penalty has a barrier of height 1 at slope 0; "
                  "the one-sided penalty is flat there and only punishes slopes steeper than 1.")


def _section_penalty_estimates(d: Derivation, rng: np.random.Generator) -> None:
    """The batch penalty is unbiased for its expectation; an MLP critic's penalty and its double backward vs FD."""
    a_coef, (mu_p, s_p), (mu_q, s_q) = 0.7, (1.0, 0.6), (-0.5, 1.2)
    count = 200_000
    xr = mu_p + s_p * rng.standard_normal(count)
    xf = mu_q + s_q * rng.standard_normal(count)
    al = rng.uniform(size=count)
    hat1 = np.asarray(interpolates(xr, xf, al))
    per_example = (np.abs(a_coef * hat1) - 1) ** 2  # f(x) = a x^2 / 2, f'(x) = a x

    def exact_at(t):  # x^ | alpha ~ N(alpha mu_p + (1 - alpha) mu_q, alpha^2 s_p^2 + (1 - alpha)^2 s_q^2)
        mean, std = t * mu_p + (1 - t) * mu_q, math.sqrt(t**2 * s_p**2 + (1 - t) ** 2 * s_q**2)
        return a_coef**2 * (std**2 + mean**2) - 2 * a_coef * _abs_normal_mean(mean, std) + 1

    exact = integrate.quad(exact_at, 0, 1, epsabs=1e-13, epsrel=1e-12)[0]
    d.monte_carlo("The batch penalty is an unbiased estimate of $\\mathbb E_{\\alpha, x, \\tilde x}(|f'(\\hat x)| - 1)^2$: "
                  "for $f(x) = 0.7 x^2/2$, $p = \\mathcal N(1, 0.6^2)$, $q = \\mathcal N(-0.5, 1.2^2)$, 200 000 draws "
                  "against the integral over $\\alpha$ of the folded-normal moments", per_example, exact)
    weights = [rng.standard_normal((6, 3)) * 0.8, rng.standard_normal(6) * 0.3, rng.standard_normal((1, 6)) * 0.8,
               rng.standard_normal(1)]
    real, fake, alpha3 = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.uniform(size=5)
    h = np.finfo(np.float64).eps ** (1 / 3)

    def fd_input_grad(x):
        eye = np.eye(3)
        return np.stack([(np.asarray(mlp_critic(x + h * eye[k], *weights))
                          - np.asarray(mlp_critic(x - h * eye[k], *weights))) / (2 * h) for k in range(3)], axis=1)

    fd_penalty = np.mean((np.linalg.norm(fd_input_grad(np.asarray(interpolates(real, fake, alpha3))), axis=1) - 1) ** 2)
    d.numeric("`critic_gradient_penalty` of a tanh MLP critic (input gradients by `jax.grad`) against central "
              "finite differences of the critic", critic_gradient_penalty(real, fake, alpha3, *weights), fd_penalty,
              rtol=1e-8, atol=1e-9)
    d.gradient("...and its gradient in the first layer's weights (a double backward) against finite differences of "
               "the penalty", jax.grad(lambda w_: critic_gradient_penalty(real, fake, alpha3, w_, *weights[1:]))(
                   weights[0]), _fd(lambda w_: float(critic_gradient_penalty(real, fake, alpha3, w_, *weights[1:])),
                                    weights[0]), rtol=1e-6, atol=1e-7)


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("wgan", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    dim = 16
    grid, cdf_p, cdf_q, f_star = _section_empirical_w1(d, rng)
    _section_linear_program(d, rng)
    _section_gaussians(d)
    _section_weight_clipping(d, rng, dim)
    g = _section_gradient_penalty(d, rng, grid, cdf_p, cdf_q, f_star, dim)
    _section_one_sided_penalty(d, g)
    _section_penalty_estimates(d, rng)
    return d


def _fd(f, w):
    """Central finite differences of a scalar function of an array, step eps^(1/3) scaled to each entry."""
    out = np.zeros_like(w)
    for idx in np.ndindex(*w.shape):
        step = np.finfo(np.float64).eps ** (1 / 3) * max(1.0, abs(w[idx]))
        up, down = w.copy(), w.copy()
        up[idx] += step
        down[idx] -= step
        out[idx] = (f(up) - f(down)) / (2 * step)
    return out
