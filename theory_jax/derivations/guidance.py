"""The ``guidance`` derivation (``python -m theory_jax guidance``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/guidance.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE``
as a notebook.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from jax.scipy.special import logsumexp
from scipy import stats

from theory_jax.derivation import Derivation, full_precision, new_figure, optimised_jit
from theory_jax.diffusion import (
    alpha_bars,
    cfg_eps,
    classifier_guided_eps,
    ddpm_step,
    implicit_classifier_grad,
    linear_betas,
)
from theory_jax.guidance import (
    class_log_prob,
    mixture_log_joint,
    mixture_log_prob,
    mixture_noised,
    noisy_classifier_loss,
    optimal_eps,
)

TITLE = "classifier and classifier-free guidance"
LECTURES = "guided diffusion; classifier guidance; classifier-free guidance; implementation of guided DDPM"


# 3. The derivation ----------------------------------------------------------------------------------------------
PI = np.array([0.5, 0.3, 0.2])
MEANS = np.array([[-2.0, 0.5], [1.5, 1.5], [0.5, -2.0]])
VARS = np.array([[0.3, 0.6], [0.5, 0.2], [0.4, 0.4]])


def _noised(a):
    m, v = mixture_noised(jnp.asarray(MEANS), jnp.asarray(VARS), a)
    return jnp.log(jnp.asarray(PI)), m, v


def _log_p(x, a):
    return mixture_log_prob(x, *_noised(a))


def _log_p_cond(x, y, a):
    lw, m, v = _noised(a)
    return mixture_log_joint(x, lw, m, v)[y] - lw[y]


def _log_p_class(x, y, a):
    return class_log_prob(mixture_log_joint(x[None], *_noised(a)), jnp.asarray([y]))[0]


@jax.jit
def _scores(x, y, a):
    """Per-example gradients at level a: (grad log p_t(x), grad log p_t(x|y), grad log p_t(y|x)), each (B, D)."""
    def each(fn, *args):
        return jax.vmap(jax.grad(fn), in_axes=(0,) * (1 + len(args)) + (None,))(x, *args, a)
    return each(_log_p), each(_log_p_cond, y), each(_log_p_class, y)


@jax.jit
def _eps_models(x, y, a):
    """The optimal (conditional, unconditional) noise predictions on the 2-D data at level a, each (B, D)."""
    data = (jnp.log(jnp.asarray(PI)), jnp.asarray(MEANS), jnp.asarray(VARS))
    return optimal_eps(x, *data, a, y), optimal_eps(x, *data, a)


@jax.jit
def _bayes_logits(x, y, a):
    """log p_t(x | y) + log pi_y - log p_t(x) per example: Bayes' rule for log p_t(y | x). (B,)"""
    return jax.vmap(_log_p_cond, (0, 0, None))(x, y, a) + jnp.log(jnp.asarray(PI))[y] - _log_p(x, a)


@jax.jit
def _tilted_grad(x, y, a, w):
    """grad_x [log p_t(x) + w log p_t(y|x)] per example (jax.grad of the closed forms). (B, D)."""
    return jax.vmap(jax.grad(lambda xi, yi: _log_p(xi, a) + w * _log_p_class(xi, yi, a)))(x, y)


def _bayes_sympy():
    """d/dx log p(x|y=1) - d/dx log p(x) - d/dx log p(y=1|x) for a 1-D two-class Gaussian mixture (symbols)."""
    x, m1, m2 = sp.symbols("x mu_1 mu_2", real=True)
    s1, s2, p1 = sp.symbols("sigma_1 sigma_2 pi_1", positive=True)
    n1 = sp.exp(-(x - m1) ** 2 / (2 * s1**2)) / sp.sqrt(2 * sp.pi * s1**2)
    n2 = sp.exp(-(x - m2) ** 2 / (2 * s2**2)) / sp.sqrt(2 * sp.pi * s2**2)
    p_x = p1 * n1 + (1 - p1) * n2
    return sp.diff(sp.log(n1), x), sp.diff(sp.log(p_x), x) + sp.diff(sp.log(p1 * n1 / p_x), x)


def _noising_integral(x_t, a, mean, var):
    """int N(x_t; sqrt(a) x0, 1 - a) N(x0; mean, var) dx0 by the trapezoid rule on a fine grid (1-D)."""
    x0 = np.linspace(mean - 12 * np.sqrt(var), mean + 12 * np.sqrt(var), 20001)
    f = stats.norm.pdf(x_t[:, None], np.sqrt(a) * x0, np.sqrt(1 - a)) * stats.norm.pdf(x0, mean, np.sqrt(var))
    return np.trapezoid(f, x0, axis=1)


LINE = np.linspace(-2.5, 2.5, 11)  # 1-D evaluation points of the tilt claims
SAMPLES, STEPS = 4000, 1000


def _data_1d():
    """The first coordinate of the data: log pi, means (K, 1), variances (K, 1)."""
    return jnp.log(jnp.asarray(PI)), jnp.asarray(MEANS[:, :1]), jnp.asarray(VARS[:, :1])


def _tilted_noised_log_density(x_t, a, y, s, grid):
    """log of the noising of the tilted clean density p_0(x) p_0(y|x)^s at a scalar x_t (1-D, trapezoid rule on the
    uniform ``grid``), up to a constant: what guidance would have to follow to sample the tilt exactly."""
    joint = mixture_log_joint(grid[:, None], *_data_1d())
    log_p0 = logsumexp(joint, -1)
    kernel = -0.5 * (x_t - jnp.sqrt(a) * grid) ** 2 / (1 - a)
    return logsumexp(log_p0 + s * (joint[:, y] - log_p0) + kernel)


@jax.jit
def _tilted_score(w, a):
    """d/dx of the noised tilt with exponent 1 + w, class 1, at the points LINE. (11,)"""
    grid = jnp.linspace(-9.0, 9.0, 4001)
    return jax.vmap(jax.grad(_tilted_noised_log_density), (0, None, None, None, None))(
        jnp.asarray(LINE), a, 1, 1 + w, grid)


@jax.jit
def _guided_score_1d(w, a):
    """-cfg_eps(eps*_c, eps*_u, w) / sqrt(1 - a) for class 1 at the points LINE. (11,)"""
    xs, labels = jnp.asarray(LINE)[:, None], jnp.ones(len(LINE), dtype=jnp.int32)
    eps = cfg_eps(optimal_eps(xs, *_data_1d(), a, labels), optimal_eps(xs, *_data_1d(), a), w)
    return -eps[:, 0] / jnp.sqrt(1 - a)


@partial(jax.jit, static_argnums=1)
def _cross_entropy_gaps(key, n, levels):
    """Per draw, CE of the clean classifier p_0(y | x_t / sqrt(a)) minus CE of the true p_t(y | x_t): (levels, n)."""
    k1, k2, k3 = jax.random.split(key, 3)
    lw, means, variances = jnp.log(jnp.asarray(PI)), jnp.asarray(MEANS), jnp.asarray(VARS)
    ys = jax.random.choice(k1, 3, (n,), p=jnp.asarray(PI))
    x0 = means[ys] + jnp.sqrt(variances[ys]) * jax.random.normal(k2, (n, 2), dtype=jnp.float64)
    eps = jax.random.normal(k3, (n, 2), dtype=jnp.float64)

    def gap(a):
        x_t = jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * eps
        aware = class_log_prob(mixture_log_joint(x_t, *_noised(a)), ys)
        return aware - class_log_prob(mixture_log_joint(x_t / jnp.sqrt(a), lw, means, variances), ys)

    return jax.vmap(gap)(levels)


@optimised_jit
def _sample_guided(w, key):
    """SAMPLES draws of ancestral DDPM (theory_jax.ddpm, linear schedule, STEPS steps) on the 1-D data, class 1,
    with cfg_eps of the exact conditional and unconditional noise predictions. -> (SAMPLES,)"""
    ab = alpha_bars(linear_betas(STEPS))
    ab_prev = jnp.concatenate([jnp.ones(1), ab[:-1]])
    labels = jnp.ones(SAMPLES, dtype=jnp.int32)
    k_init, k_steps = jax.random.split(key)

    def step(x, inputs):
        a, a_prev, z = inputs
        eps = cfg_eps(optimal_eps(x, *_data_1d(), a, labels), optimal_eps(x, *_data_1d(), a), w)
        return ddpm_step(x, eps, a, a_prev, z), None

    zs = jax.random.normal(k_steps, (STEPS, SAMPLES, 1), dtype=jnp.float64)
    x_T = jax.random.normal(k_init, (SAMPLES, 1), dtype=jnp.float64)
    x0, _ = jax.lax.scan(step, x_T, (ab[::-1], ab_prev[::-1], zs))
    return x0[:, 0]


def _section_bayes_scores(d: Derivation, levels, scores, eps) -> None:
    """Bayes' rule for scores, symbolically and on the noised 2-D mixture; the optimal eps is the scaled score."""
    lhs, rhs = _bayes_sympy()
    d.symbolic("Bayes' rule for scores: $\\nabla_x \\log p(x\\mid y) = \\nabla_x \\log p(x) + \\nabla_x \\log p(y\\mid x)$ "
               "($\\log p(y)$ does not depend on $x$); SymPy on a 1-D two-class mixture with symbolic parameters",
               lhs, rhs)
    x1 = np.linspace(-3, 3, 7)
    d.numeric("Noised classes stay Gaussian: $\\int \\mathcal N(x_t; \\sqrt{\\bar\\alpha}x_0, 1-\\bar\\alpha)\\,"
              "\\mathcal N(x_0; \\mu, v)\\,dx_0 = "
              "\\mathcal N(x_t; \\sqrt{\\bar\\alpha}\\mu, \\bar\\alpha v + 1 - \\bar\\alpha)$ "
              "(quadrature, 7 points, $\\bar\\alpha = 0.5$)", _noising_integral(x1, 0.5, -2.0, 0.3),
              stats.norm.pdf(x1, np.sqrt(0.5) * -2.0, np.sqrt(0.5 * 0.3 + 0.5)), rtol=1e-9)
    d.numeric("...so in 2-D at every level: $\\nabla \\log p_t(x\\mid y) = \\nabla\\log p_t(x) + "
              "\\nabla \\log p_t(y\\mid x)$ (jax.grad of the closed forms, 3 levels x 64 points)",
              jnp.stack([scores[a][1] for a in levels]), jnp.stack([scores[a][0] + scores[a][2] for a in levels]))

    # The eps <-> score identity on the mixture (Tweedie).
    d.gradient("The optimal noise prediction is the scaled score (Tweedie): $\\epsilon^*(x_t) = E[\\epsilon\\mid x_t] = "
               "-\\sqrt{1-\\bar\\alpha_t}\\,\\nabla \\log p_t(x_t)$, with and without $y$ (posterior means of $x_0$ vs "
               "jax.grad of the log-densities)", jnp.stack([jnp.stack(eps[a]) for a in levels]),
               jnp.stack([-jnp.sqrt(1 - a) * jnp.stack(scores[a][1::-1]) for a in levels]))


def _section_classifier_guidance(d: Derivation, x, y, levels, scores, eps) -> None:
    """Classifier guidance follows the score of the tilted density p_t(x) p_t(y|x)^w; w = 1 gives the conditional."""
    d.say("Classifier guidance samples with the score of $p_t(x)\\,p_t(y\\mid x)^w$: "
          "$\\nabla\\log p_t(x) + w\\,\\nabla \\log p_t(y\\mid x)$; multiplying by $-\\sqrt{1-\\bar\\alpha_t}$ gives the "
          "epsilon form $\\hat\\epsilon = \\epsilon(x_t) - w\\sqrt{1-\\bar\\alpha_t}\\,\\nabla\\log p_t(y\\mid x_t)$.")
    got, want = [], []
    for a in levels:
        for w in (0.5, 2.0):
            got.append(classifier_guided_eps(eps[a][1], scores[a][2], a, w))
            want.append(-jnp.sqrt(1 - a) * _tilted_grad(x, y, a, w))
    d.gradient("`classifier_guided_eps` is $-\\sqrt{1-\\bar\\alpha_t}\\,\\nabla_x \\log[p_t(x)\\,p_t(y\\mid x)^w]$ "
               "(jax.grad of the tilted log-density; $w \\in \\{0.5, 2\\}$, 3 levels)", jnp.stack(got), jnp.stack(want))
    eps_c, eps_u = eps[0.5]
    d.numeric("With $w = 1$ and the true noisy classifier, classifier guidance of the unconditional model is the "
              "conditional model: $\\epsilon(x_t) - \\sqrt{1-\\bar\\alpha}\\,\\nabla\\log p_t(y\\mid x_t) = "
              "\\epsilon(x_t, y)$",
              classifier_guided_eps(eps_u, scores[0.5][2], 0.5, 1.0), eps_c)
    logits = mixture_log_joint(x, *_noised(0.5))
    d.numeric("The Bayes classifier's logits are the class log-joints: `class_log_prob`$(\\log \\pi_k + \\log "
              "p_t(x\\mid k), y) = \\log p_t(x\\mid y) + \\log \\pi_y - \\log p_t(x)$",
              class_log_prob(logits, y), _bayes_logits(x, y, 0.5))


def _section_classifier_free(d: Derivation, rng: np.random.Generator, levels, scores, eps) -> None:
    """Classifier-free guidance is guidance by the implicit classifier p(x|y)/p(x), which is exact for optimal models."""
    ec, eu, w_, s_ = sp.symbols("epsilon_c epsilon_u w sigma", real=True)
    implicit = -(ec - eu) / s_  # grad log p_i(y|x) = score(x|y) - score(x), score = -eps / sigma
    d.symbolic("Implicit classifier $p_i(y\\mid x) \\propto p(x\\mid y)/p(x)$: its gradient is "
               "$-(\\epsilon_c - \\epsilon_u)/\\sigma$ ($\\sigma = \\sqrt{1-\\bar\\alpha_t}$), and guiding the conditional "
               "model by it with scale $w$ is classifier-free guidance: $\\epsilon_c - w\\sigma\\nabla\\log p_i = "
               "(1+w)\\epsilon_c - w\\epsilon_u$", ec - w_ * s_ * implicit, (1 + w_) * ec - w_ * eu)
    d.symbolic("...equally, guiding the unconditional model with scale $1 + w$: $\\epsilon_u - (1+w)\\sigma\\nabla\\log p_i "
               "= (1+w)\\epsilon_c - w\\epsilon_u$ (Dhariwal-Nichol scale $s = 1 + w$)",
               eu - (1 + w_) * s_ * implicit, (1 + w_) * ec - w_ * eu)
    d.gradient("For the optimal models the implicit classifier is the true noisy classifier: "
               "`implicit_classifier_grad`$(\\epsilon^*_c, \\epsilon^*_u) = \\nabla\\log p_t(y\\mid x_t)$ (jax.grad)",
               jnp.stack([implicit_classifier_grad(*eps[a], a) for a in levels]),
               jnp.stack([scores[a][2] for a in levels]))
    cfg, cg_c, cg_u = [], [], []
    for a in levels:
        for w in (0.5, 1.0, 3.0):
            cfg.append(cfg_eps(*eps[a], w))
            cg_c.append(classifier_guided_eps(eps[a][0], scores[a][2], a, w))
            cg_u.append(classifier_guided_eps(eps[a][1], scores[a][2], a, 1 + w))
    d.numeric("On the mixture, `cfg_eps`$(\\epsilon^*_c, \\epsilon^*_u, w)$ = `classifier_guided_eps`"
              "$(\\epsilon^*_c, \\nabla\\log p_t(y\\mid x), \\bar\\alpha, w)$ ($w \\in \\{0.5, 1, 3\\}$, 3 levels)",
              jnp.stack(cfg), jnp.stack(cg_c))
    d.numeric("...= `classifier_guided_eps`$(\\epsilon^*_u, \\nabla\\log p_t(y\\mid x), \\bar\\alpha, 1 + w)$",
              jnp.stack(cfg), jnp.stack(cg_u))
    eps_c, eps_u = eps[0.5]
    d.numeric("$w = 0$ recovers the conditional model and $w = -1$ the unconditional one",
              jnp.stack([cfg_eps(eps_c, eps_u, 0.0), cfg_eps(eps_c, eps_u, -1.0)]), jnp.stack([eps_c, eps_u]))
    w_b = jnp.asarray(rng.uniform(0, 4, 64))
    d.numeric("Per-example scales: `cfg_eps` with $w$ of shape (B,) equals the scalar formula row by row",
              cfg_eps(eps_c, eps_u, w_b), (1 + w_b[:, None]) * eps_c - w_b[:, None] * eps_u)


def _section_noise_aware_classifier(d: Derivation, x, y) -> None:
    """The noise-aware classifier's loss and why the clean classifier will not do on noised inputs."""
    logits = mixture_log_joint(x, *_noised(0.5))
    d.gradient("The noise-aware classifier's cross-entropy: $\\nabla_{\\text{logits}}$ `noisy_classifier_loss` "
               "$= (\\mathrm{softmax} - \\mathrm{onehot}(y))/B$ (jax.grad)", jax.grad(noisy_classifier_loss)(logits, y),
               (jax.nn.softmax(logits) - jax.nn.one_hot(y, 3)) / 64)
    ce_levels = (0.5, 0.2, 0.05)
    gaps = np.asarray(_cross_entropy_gaps(jax.random.key(0), 20000, jnp.asarray(ce_levels)))
    se = gaps.std(axis=1, ddof=1) / np.sqrt(gaps.shape[1])
    d.inequality("A classifier must be noise-aware: at every level the true $p_t(y\\mid x_t)$ has a lower "
                 "cross-entropy than the clean classifier $p_0(y\\mid x_t/\\sqrt{\\bar\\alpha_t})$, by more than 4 SE "
                 f"(gaps {', '.join(f'{g:.3f}' for g in gaps.mean(1))} nats at $\\bar\\alpha$ = 0.5, 0.2, 0.05; "
                 "20 000 draws)", 4 * se, gaps.mean(axis=1))


def _section_tilt(d: Derivation) -> None:
    """What guided sampling targets: the tilt of each noised marginal, not the noising of the tilted data."""
    d.say("Classifier-free guidance with scale $w$ follows the score of $p_t(x\\mid y)^{1+w} p_t(x)^{-w} \\propto "
          "p_t(x)\\,p_t(y\\mid x)^{1+w}$: it tilts each noised marginal. The noising of the tilted data "
          "$p_0(x)\\,p_0(y\\mid x)^{1+w}$ is another family, so for $w > 0$ the sampler only approximates the tilt "
          "(1-D, first coordinate, class $y = 1$; quadrature on 4001 points).")
    tilted_0, guided_0 = _tilted_score(0.0, 0.5), _guided_score_1d(0.0, 0.5)
    d.numeric("$w = 0$: the score of the noised class density (quadrature) is the guided score (closed form)",
              tilted_0, guided_0, rtol=1e-8, atol=1e-8)
    tilted, guided = _tilted_score(3.0, 0.5), _guided_score_1d(3.0, 0.5)
    gap = float(jnp.max(jnp.abs(tilted - guided)))
    d.inequality(f"$w = 3$: they differ (max score gap {gap:.3f} at $\\bar\\alpha = 0.5$): guidance does not sample "
                 "$p_0(x)\\,p_0(y\\mid x)^{1+w}$ exactly", 0.05, gap)
    fig, ax = new_figure()
    ax.plot(LINE, guided_0, "o-", color="C0", label="guided, $w = 0$")
    ax.plot(LINE, tilted_0, "k+", ms=9, label="noised tilt, $w = 0$")
    ax.plot(LINE, guided, "o-", color="C3", label="guided, $w = 3$")
    ax.plot(LINE, tilted, "s--", color="C1", mfc="none", label="noised tilt, $w = 3$")
    ax.set(xlabel="$x_t$ (first coordinate)", ylabel="score at $\\bar\\alpha = 0.5$, class 1")
    ax.legend(fontsize=7)
    d.figure(fig, "At $w = 0$ the guided score and the score of the noised class density coincide; at $w = 3$ the "
                  "guided score (tilt of the noised marginal) departs from the score of the noised tilted data.")


def _section_guided_sampling(d: Derivation) -> None:
    """Ancestral DDPM with the exact guided eps: w = 0 samples the class, w = -1 the data, larger w sharpens."""
    samples = {w: np.asarray(_sample_guided(w, jax.random.key(7))) for w in (-1.0, 0.0, 1.0, 3.0)}
    p_cond = stats.kstest(samples[0.0], stats.norm(MEANS[1, 0], np.sqrt(VARS[1, 0])).cdf).pvalue
    d.inequality(f"Ancestral DDPM (T = 1000) with $w = 0$ samples the class: KS p = {p_cond:.3f} against "
                 "$\\mathcal N(\\mu_1, v_1)$ (4000 samples)", 0.01, p_cond)

    d.monte_carlo("...its sample mean is the class mean $\\mu_1$", samples[0.0], MEANS[1, 0])
    d.monte_carlo("...and with $w = -1$ the mixture mean $\\sum_k \\pi_k \\mu_k$", samples[-1.0], PI @ MEANS[:, 0])

    def mixture_cdf(z):
        return sum(p * stats.norm.cdf(z, mu, np.sqrt(var)) for p, mu, var in zip(PI, MEANS[:, 0], VARS[:, 0]))

    p_uncond = stats.kstest(samples[-1.0], mixture_cdf).pvalue
    d.inequality(f"...and its distribution is the unconditional data's: KS p = {p_uncond:.3f} against the mixture",
                 0.01, p_uncond)
    lw, means, variances = _data_1d()
    labels = jnp.ones(SAMPLES, dtype=jnp.int32)
    confidence = [float(np.mean(np.exp(np.asarray(class_log_prob(
        mixture_log_joint(jnp.asarray(samples[w])[:, None], lw, means, variances), labels)))))
        for w in (0.0, 1.0, 3.0)]
    d.inequality("Guidance trades diversity for class confidence: the mean $p_0(y\\mid x_0)$ of the samples rises "
                 f"with $w$ = 0, 1, 3 ({', '.join(f'{c:.3f}' for c in confidence)})", confidence[:-1], confidence[1:])
    grid = np.linspace(-4.5, 4.5, 400)
    class_pdf = stats.norm.pdf(grid, MEANS[1, 0], np.sqrt(VARS[1, 0]))
    mixture_pdf = sum(p * stats.norm.pdf(grid, mu, np.sqrt(var)) for p, mu, var in zip(PI, MEANS[:, 0], VARS[:, 0]))
    fig, axes = new_figure(columns=2)
    axes[0].hist(samples[-1.0], bins=60, density=True, alpha=0.5, color="C0", label="samples, $w = -1$")
    axes[0].hist(samples[0.0], bins=60, density=True, alpha=0.5, color="C1", label="samples, $w = 0$")
    axes[0].plot(grid, mixture_pdf, "C0", label="data $p_0(x)$")
    axes[0].plot(grid, class_pdf, "C1", label="class $p_0(x|y=1)$")
    for w, color in ((0.0, "C1"), (1.0, "C2"), (3.0, "C3")):
        axes[1].hist(samples[w], bins=60, density=True, histtype="step", color=color, label=f"$w = {w:g}$")
    axes[1].plot(grid, class_pdf, "k--", lw=1, label="class $p_0(x|y=1)$")
    axes[1].set(xlim=(-1, 4))
    for ax in axes:
        ax.set(xlabel="$x_0$ (first coordinate)", ylabel="density")
        ax.legend(fontsize=7)
    d.figure(fig, "Left: guided DDPM samples with $w = -1$ match the data mixture and with $w = 0$ the class density. "
                  "Right: raising $w$ pushes the samples away from the other classes and narrows them: more "
                  "confident, less diverse.")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("guidance", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((64, 2)) * 1.5)
    y = jnp.asarray(rng.integers(0, 3, 64))
    levels = (0.9, 0.5, 0.1)
    scores = {a: _scores(x, y, a) for a in levels}  # (grad log p_t(x), grad log p_t(x|y), grad log p_t(y|x))
    eps = {a: _eps_models(x, y, a) for a in levels}  # (eps*(x_t, y), eps*(x_t))

    d.say("Data: three classes in 2-D, $p_0(x\\mid y=k) = \\mathcal N(\\mu_k, \\mathrm{diag}\\,v_k)$, prior "
          "$\\pi = (0.5, 0.3, 0.2)$; $x_t = \\sqrt{\\bar\\alpha_t} x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon$. "
          "64 points $x_t$ and labels $y$, at $\\bar\\alpha_t \\in \\{0.9, 0.5, 0.1\\}$.")

    _section_bayes_scores(d, levels, scores, eps)
    _section_classifier_guidance(d, x, y, levels, scores, eps)
    _section_classifier_free(d, rng, levels, scores, eps)
    _section_noise_aware_classifier(d, x, y)
    _section_tilt(d)
    _section_guided_sampling(d)
    return d
