"""The ``domain_adversarial`` derivation (``python -m theory_jax domain_adversarial``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/domain_adversarial.py``. ``--markdown FILE`` writes it as a document,
``--notebook FILE`` as a notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate
from scipy.stats import norm

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.domain_adversarial import (
    dann_objective,
    domain_loss,
    gradient_reversal,
    label_loss,
    lambda_schedule,
)

TITLE = "domain-adversarial networks: the gradient reversal layer and the DANN saddle point"
LECTURES = "domain-adversarial networks"


# 3. The derivation -----------------------------------------------------------------------------------------------
def _parts(x_source, labels, x_target, w_f, w_y, w_d):
    """(L_y, L_d) without any reversal, for the saddle point's two gradients taken separately."""
    fs, ft = jnp.tanh(x_source @ w_f.T), jnp.tanh(x_target @ w_f.T)
    return label_loss(fs @ w_y.T, labels), domain_loss((fs @ w_d.T)[:, 0], (ft @ w_d.T)[:, 0])


def _best_domain_loss(shift, rule):
    """The optimal domain classifier's cross-entropy between 1-D features N(0, 1) (source) and N(shift, 1)
    (target), by quadrature: its logit is the log density ratio."""
    z, w = rule
    def bce(zz, src):
        logit = norm.logpdf(zz, shift, 1) - norm.logpdf(zz, 0, 1)  # log p_t / p_s: target is class 1
        return np.logaddexp(0, logit) if src else np.logaddexp(0, -logit)
    return 0.5 * (np.sum(w * bce(z, True)) + np.sum(w * bce(z + shift, False)))


def _section_reversal(d: Derivation, rng: np.random.Generator) -> None:
    """The gradient reversal layer: the identity forward, -lambda times the cotangent backward."""
    d.say("The gradient reversal layer is the identity on the way forward and multiplies the gradient by "
          "$-\\lambda$ on the way back (eq. 13-14): no parameters, one line of custom VJP.")
    x = rng.standard_normal((5, 4))
    a = rng.standard_normal((4, 3))

    def head(v):
        return jnp.sum(jnp.sin(v @ a))

    d.numeric("Forward, $R_\\lambda(x) = x$", gradient_reversal(jnp.asarray(x), 0.7), x)
    d.gradient("Backward, $\\nabla_x\\, h(R_\\lambda(x)) = -\\lambda \\nabla_x h(x)$ ($\\lambda = 0.7$)",
               jax.grad(lambda v: head(gradient_reversal(v, 0.7)))(jnp.asarray(x)), -0.7 * jax.grad(head)(jnp.asarray(x)))
    d.gradient("Applied twice it becomes $+\\lambda^2$: a reversal applied twice (a bug peers have shipped) trains the "
               "extractor to help the domain classifier", jax.grad(lambda v: head(gradient_reversal(
                   gradient_reversal(v, 0.7), 0.7)))(jnp.asarray(x)), 0.49 * jax.grad(head)(jnp.asarray(x)))


def _section_two_players(d: Derivation, rng: np.random.Generator) -> None:
    """One loss, two players: the gradient of L_y + L_d through the reversal is each player's saddle-point update."""
    d.say("One loss, two players. With the reversal between features and domain classifier, the gradient of "
          "$L_y + L_d$ is, in the domain classifier's weights, $\\nabla L_d$ (it gets better at telling domains "
          "apart); in the label classifier's, $\\nabla L_y$; in the extractor's, $\\nabla L_y - \\lambda \\nabla L_d$ "
          "(eq. 13-14's updates for the saddle point of eq. 9-10).")
    dim, feat, k, lam = 3, 5, 4, 0.6
    xs, xt = rng.standard_normal((16, dim)), rng.standard_normal((12, dim)) + 0.8
    labels = rng.integers(0, k, 16)
    w_f, w_y, w_d = 0.7 * rng.standard_normal((feat, dim)), rng.standard_normal((k, feat)), rng.standard_normal((1, feat))
    g_f, g_y, g_d = jax.grad(dann_objective, argnums=(3, 4, 5))(xs, labels, xt, w_f, w_y, w_d, lam)
    ly_f, ly_y = jax.grad(lambda f, y: _parts(xs, labels, xt, f, y, w_d)[0], argnums=(0, 1))(w_f, w_y)
    ld_f, ld_d = jax.grad(lambda f, dd: _parts(xs, labels, xt, f, w_y, dd)[1], argnums=(0, 1))(w_f, w_d)
    d.gradient("...in the domain classifier's weights: $\\nabla_{\\theta_d} L_d$", g_d, ld_d)
    d.gradient("...in the label classifier's weights: $\\nabla_{\\theta_y} L_y$", g_y, ly_y)
    d.gradient("...in the extractor's weights: $\\nabla_{\\theta_f} L_y - \\lambda \\nabla_{\\theta_f} L_d$", g_f,
               ly_f - lam * ld_f)


def _section_best_domain_classifier(d: Derivation, rng: np.random.Generator):
    """The best domain classifier's cross-entropy is log 2 - JS: it falls as the feature distributions separate."""
    d.say("What the extractor maximises. For features with densities $p_s$ (source, domain label 0) and $p_t$ "
          "(target, 1), the best domain classifier has logit $\\log p_t - \\log p_s$, and its averaged cross-entropy "
          "is $\\log 2 - \\mathrm{JS}(p_s \\| p_t)$: largest, $\\log 2$, exactly when the feature distributions "
          "coincide. 1-D features $\\mathcal N(0, 1)$ against $\\mathcal N(\\delta, 1)$, by quadrature.")
    grid = np.linspace(-40, 40, 80_001)
    rule = (grid, norm.pdf(grid) * (grid[1] - grid[0]))
    shifts = np.array([0.0, 0.5, 1.0, 2.0, 4.0])
    best = np.array([_best_domain_loss(s, rule) for s in shifts])

    def js(shift):
        def kl_to_mix(z, mean):
            p = norm.pdf(z, mean, 1)
            mix = 0.5 * (norm.pdf(z, 0, 1) + norm.pdf(z, shift, 1))
            return p * (np.log(p) - np.log(mix)) if p > 0 else 0.0
        return 0.5 * sum(integrate.quad(kl_to_mix, -30, 30 + shift, args=(m,), epsabs=1e-13, epsrel=1e-12, limit=200)[0]
                         for m in (0.0, shift))

    js_values = np.array([js(s) for s in shifts])
    d.numeric("The best domain classifier's loss is $\\log 2 - \\mathrm{JS}$, JS by SciPy's adaptive quadrature, "
              "for $\\delta \\in \\{0, 0.5, 1, 2, 4\\}$", best, math.log(2) - js_values, rtol=1e-9)
    d.inequality("...so it falls as the domains separate: the extractor, ascending it, pulls them together",
                 best[1:], best[:-1])
    fig, ax = new_figure()
    ax.plot(shifts, best, "o-", label="best classifier's loss (Gauss quadrature)")
    ax.plot(shifts, math.log(2) - js_values, "kx", ms=9, label="$\\log 2 - \\mathrm{JS}$ (SciPy quad)")
    ax.axhline(math.log(2), color="gray", ls="--", lw=1, label="$\\log 2$: domains indistinguishable")
    ax.set(xlabel="shift $\\delta$ between source and target features", ylabel="domain cross-entropy (nats)")
    ax.legend(fontsize=8)
    d.figure(fig, "The best domain classifier's loss equals $\\log 2 - \\mathrm{JS}$ and is largest, $\\log 2$, only "
                  "when the two feature distributions coincide ($\\delta = 0$).")
    n = 100_000
    zs, zt = rng.standard_normal(n), 1.0 + rng.standard_normal(n)
    logit_s, logit_t = norm.logpdf(zs, 1, 1) - norm.logpdf(zs, 0, 1), norm.logpdf(zt, 1, 1) - norm.logpdf(zt, 0, 1)
    d.monte_carlo("`domain_loss` on 100 000 features from each domain ($\\delta = 1$), per pair, estimates it",
                  0.5 * (np.logaddexp(0, logit_s) + np.logaddexp(0, -logit_t)), best[2])
    return rule


def _section_saddle_toy(d: Derivation, rng: np.random.Generator, rule) -> None:
    """A toy saddle point: the domain loss wants the feature angle at 0, the labels want it at pi/4."""
    d.say("The saddle point on a toy. Source $x \\sim \\mathcal N(0, I_2)$, target $\\mathcal N((0, 2), I_2)$, a "
          "1-D feature $u_\\theta \\cdot x$ with $u_\\theta = (\\cos\\theta, \\sin\\theta)$, and the labels "
          "$y = [x_1 + x_2 > 0]$. Source features are $\\mathcal N(0, 1)$, target ones "
          "$\\mathcal N(2 \\sin\\theta, 1)$: only $\\theta = 0$ (or $\\pi$) confuses the domain classifier, while "
          "$\\theta = \\pi/4$ would suit the labels best.")

    def best_domain_at(theta):
        return _best_domain_loss(2 * math.sin(theta), rule)

    thetas = np.linspace(-1.2, 1.2, 25)
    values = np.array([best_domain_at(t) for t in thetas])
    d.numeric("The best domain classifier's loss over $\\theta$ peaks at $\\theta = 0$, at $\\log 2$", values[12],
              math.log(2))
    d.inequality("...and is lower at every other $\\theta$ of the sweep", np.delete(values, 12), np.full(24, values[12]))

    xx = rng.standard_normal((200_000, 2))
    label_sign = np.sign(xx @ np.array([1.0, 1.0]))
    disagree = (np.sign(xx[:, 0]) != label_sign).astype(np.float64)
    d.monte_carlo("The labels pull the other way: thresholding the feature at $\\theta = 0$ disagrees with the labels "
                  "on a share $\\angle(u_0, (1, 1))/\\pi = 1/4$ of examples (200 000 draws), against 0 at "
                  "$\\theta = \\pi/4$; the reversal's $\\lambda$ sets the trade-off", disagree, 0.25)
    fig, axes = new_figure(columns=2)
    axes[0].plot(thetas, values, "o-", ms=3, label="best domain classifier")
    axes[0].axhline(math.log(2), color="gray", ls="--", lw=1, label="$\\log 2$")
    axes[0].set(xlabel="feature angle $\\theta$", ylabel="domain cross-entropy (nats)",
                title="domain loss: the extractor ascends it")
    axes[0].legend(fontsize=8)
    fine = np.linspace(-1.2, 1.2, 241)
    axes[1].plot(fine, np.abs(fine - math.pi / 4) / math.pi, label="$|\\theta - \\pi/4| / \\pi$")
    axes[1].plot([0.0], [disagree.mean()], "kx", ms=9, label="200 000 draws at $\\theta = 0$")
    axes[1].set(xlabel="feature angle $\\theta$", ylabel="share disagreeing with the labels",
                title="label error: the extractor descends it")
    axes[1].legend(fontsize=8)
    d.figure(fig, "The two players pull the feature apart: the domain loss peaks at $\\theta = 0$ (domains "
                  "indistinguishable) while the labels are best served at $\\theta = \\pi/4$; $\\lambda$ weighs them.")


def _section_schedule(d: Derivation) -> None:
    """The schedule of lambda over training: 0 at the start, about 1 at the end, slope gamma/2 at 0."""
    d.numeric("$\\lambda_p = 2/(1 + e^{-10 p}) - 1$ starts at 0 (the domain loss is off while features are random) "
              "and ends within $10^{-4}$ of 1", lambda_schedule(jnp.array([0.0, 1.0])),
              np.array([0.0, 2 / (1 + math.exp(-10)) - 1]))
    slope = jax.grad(lambda p: lambda_schedule(p))(0.0)
    d.gradient("...with slope $\\gamma/2 = 5$ at $p = 0$ (`jax.grad`)", slope, 5.0)
    progress = np.linspace(0.0, 1.0, 101)
    fig, ax = new_figure()
    ax.plot(progress, np.asarray(lambda_schedule(jnp.asarray(progress))), label="$\\lambda_p$")
    ax.plot(progress[:21], float(slope) * progress[:21], "k--", lw=1, label="slope $\\gamma/2 = 5$ at $p = 0$")
    ax.set(xlabel="training progress $p$", ylabel="reversal weight $\\lambda$", ylim=(0, 1.05))
    ax.legend()
    d.figure(fig, "The reversal weight rises from 0 (no adversarial signal while features are random) to almost 1 "
                  "within the first half of training.")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("domain_adversarial", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)

    _section_reversal(d, rng)
    _section_two_players(d, rng)
    rule = _section_best_domain_classifier(d, rng)
    _section_saddle_toy(d, rng, rule)
    _section_schedule(d)
    return d
