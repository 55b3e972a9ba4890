"""The ``gan`` derivation (``python -m theory_jax gan``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/gan.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as a
notebook.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from scipy import integrate
from scipy.spatial.distance import jensenshannon
from scipy.stats import norm

from theory_jax.derivation import Derivation, as_float64, full_precision, new_figure, optimised_jit
from theory_jax.gan import (
    EqualizedLinear,
    ProgressiveDiscriminator,
    ProgressiveGenerator,
    discriminator_loss,
    downsample,
    expect_normal,
    fade_in,
    gauss_log_pdf,
    gaussian_value_at_optimum,
    generator_gradients,
    generator_loss_nonsaturating,
    generator_loss_saturating,
    js_discrete,
    minibatch_std,
    normal_rule,
    optimal_logit,
    pixel_norm,
    product_law,
    spectral_normalize,
    total_variation,
    unroll,
    upsample,
    value_discrete,
)

TITLE = "GANs: the optimal discriminator, the minimax value as 2 JS - log 4, saturating and non-saturating losses"
LECTURES = "GAN; GANs as classifier-guided models; progressive growing"
LOG4 = math.log(4.0)


# 4. The derivation -----------------------------------------------------------------------------------------------
def _section_optimal_discriminator(d: Derivation, rng: np.random.Generator):
    """For fixed G the discriminator's best response is pointwise, D* = p/(p + q), its logit the log density ratio."""
    d.say("A discriminator $D(x) = \\sigma(\\ell(x))$ says how likely $x$ is real; the generator's samples have law "
          "$q$, the data $p$. Goodfellow et al.'s game is $\\min_G \\max_D V(D, G)$ with $V = \\mathbb E_p[\\log D] + "
          "\\mathbb E_q[\\log(1 - D)]$ (eq. 1).")
    a, b, t = sp.symbols("a b t", positive=True)
    objective = a * sp.log(t) + b * sp.log(1 - t)
    d.symbolic("For fixed $G$, $V$ is maximised pointwise: $a \\log t + b \\log(1 - t)$ has its stationary point at "
               "$t = a/(a + b)$ (Proposition 1, with $a = p(x)$, $b = q(x)$)",
               sp.diff(objective, t).subs(t, a / (a + b)), 0)
    d.symbolic("...and it is a maximum: the second derivative there is $-(a + b)^3/(ab) < 0$",
               sp.diff(objective, t, 2).subs(t, a / (a + b)), -(a + b) ** 3 / (a * b))

    k = 12
    p = rng.dirichlet(np.ones(k), size=20)
    q = rng.dirichlet(np.ones(k), size=20)
    d_star = jax.nn.sigmoid(optimal_logit(jnp.log(p), jnp.log(q)))
    d.numeric("The logit of $D^*$ is the log density ratio: $\\sigma(\\log p - \\log q) = p/(p + q)$ (20 pairs of "
              "distributions on 12 points)", d_star, p / (p + q))
    d.gradient("$\\partial V/\\partial D = 0$ at $D^*$: `jax.grad` of `value_discrete` in $d$",
               jax.grad(lambda dd: jnp.sum(value_discrete(dd, p, q)))(d_star), np.zeros_like(p))
    others = np.clip(d_star[None] + 0.1 * rng.standard_normal((50, *p.shape)), 1e-3, 1 - 1e-3)
    d.inequality("$V(D, G) \\le V(D^*, G)$ for 50 random discriminators $D$ near $D^*$ on each of the 20 pairs",
                 value_discrete(others, p, q), value_discrete(d_star, p, q))
    return p, q, d_star


def _section_jensen_shannon(d: Derivation, p, q, d_star) -> None:
    """At D* the game's value is 2 JS(p || q) - log 4, least (-log 4) exactly when q = p."""
    d.say("At $D^*$: $V = \\mathbb E_p[\\log \\frac{p}{p+q}] + \\mathbb E_q[\\log \\frac{q}{p+q}] = "
          "\\mathrm{KL}(p \\| m) + \\mathrm{KL}(q \\| m) - \\log 4$ with $m = (p + q)/2$, that is "
          "$2\\,\\mathrm{JS}(p \\| q) - \\log 4$ (Theorem 1).")
    js_scipy = np.array([jensenshannon(pi, qi) ** 2 for pi, qi in zip(p, q, strict=True)])
    d.numeric("$V(D^*, G) = 2\\,\\mathrm{JS}(p\\|q) - \\log 4$ on the 20 pairs, with JS from SciPy "
              "(`scipy.spatial.distance.jensenshannon`, squared: natural-log JS) as the witness",
              value_discrete(d_star, p, q), 2 * js_scipy - LOG4, rtol=1e-9)
    d.numeric("...the same by `js_discrete`", js_discrete(p, q), js_scipy, rtol=1e-9)
    d.numeric("At $q = p$: $D^* = 1/2$ and $V(D^*, G) = -\\log 4$, the least value, as $\\mathrm{JS} \\ge 0$",
              value_discrete(jax.nn.sigmoid(optimal_logit(jnp.log(p), jnp.log(p))), p, p), np.full(20, -LOG4))


def _section_gaussian_value(d: Derivation, rng: np.random.Generator, rule, gp, gq) -> None:
    """Between two Gaussians: V(D*, G) = 2 JS - log 4 by quadrature, and as the batch objective on samples."""
    d.say("Gaussians: $p = \\mathcal N(0.3, 0.9^2)$, $q = \\mathcal N(-0.5, 1.4^2)$. Expectations under a Gaussian "
          "by the trapezoid rule on 160 001 points of $[-40, 40]$ standard deviations (`normal_rule`), JS by SciPy's "
          "adaptive quadrature (`scipy.integrate.quad`) as the witness.")

    def m_pdf(x):
        return 0.5 * (norm.pdf(x, *gp) + norm.pdf(x, *gq))

    js_quad = 0.5 * sum(integrate.quad(lambda x, g=g: norm.pdf(x, *g) * math.log(norm.pdf(x, *g) / m_pdf(x)),
                                       -30, 30, limit=200, epsabs=1e-13, epsrel=1e-12)[0] for g in (gp, gq))
    v_star = gaussian_value_at_optimum(*gp, *gq, rule)
    d.numeric("$V(D^*, G) = 2\\,\\mathrm{JS} - \\log 4$ between the two Gaussians", v_star, 2 * js_quad - LOG4,
              rtol=1e-9)
    n = 200_000
    xp = gp[0] + gp[1] * rng.standard_normal(n)
    xq = gq[0] + gq[1] * rng.standard_normal(n)
    lp = optimal_logit(gauss_log_pdf(xp, *gp), gauss_log_pdf(xp, *gq))
    lq = optimal_logit(gauss_log_pdf(xq, *gp), gauss_log_pdf(xq, *gq))
    d.monte_carlo("...and estimated from samples as the discriminator's batch objective: "
                  "$-$`discriminator_loss` on 200 000 real and 200 000 fake draws, per pair of draws",
                  -(jax.nn.softplus(-lp) + jax.nn.softplus(lq)), 2 * js_quad - LOG4)


def _section_classifier(d: Derivation, rule, gp, gq) -> None:
    """Minimising the discriminator's cross-entropy over quadratic logits recovers log p - log q exactly."""
    def fitted(coef):  # the population BCE over the quadratic logits l(x) = c0 + c1 x + c2 x^2
        def logit(x):
            return coef[0] + coef[1] * x + coef[2] * x**2
        return (expect_normal(lambda x: jax.nn.softplus(-logit(x)), *gp, rule)
                + expect_normal(lambda x: jax.nn.softplus(logit(x)), *gq, rule))

    newton = optimised_jit(lambda c: c - jnp.linalg.solve(jax.hessian(fitted)(c), jax.grad(fitted)(c)))
    coef = jnp.zeros(3)
    for _ in range(30):  # Newton's method: the population BCE is convex in the coefficients
        coef = newton(coef)
    # log N(x; 0.3, 0.9^2) - log N(x; -0.5, 1.4^2) as a quadratic in x
    exact = np.array([-0.5 * gp[0] ** 2 / gp[1] ** 2 + 0.5 * gq[0] ** 2 / gq[1] ** 2 + math.log(gq[1] / gp[1]),
                      gp[0] / gp[1] ** 2 - gq[0] / gq[1] ** 2, -0.5 / gp[1] ** 2 + 0.5 / gq[1] ** 2])
    d.numeric("A GAN's discriminator is a classifier: minimising the population cross-entropy `discriminator_loss` "
              "over quadratic logits (Newton's method, 30 steps) recovers $\\log p(x) - \\log q(x)$'s three "
              "coefficients", coef, exact, rtol=1e-8, atol=1e-10)
    fig, ax = new_figure()
    xs = np.linspace(-5, 5, 401)
    ax.plot(xs, norm.pdf(xs, *gp), label="data $p$")
    ax.plot(xs, norm.pdf(xs, *gq), label="generator $q$")
    ax.plot(xs, norm.pdf(xs, *gp) / (norm.pdf(xs, *gp) + norm.pdf(xs, *gq)), "k", label="$D^* = p/(p + q)$")
    ax.plot(xs[::20], jax.nn.sigmoid(np.polyval(np.asarray(coef)[::-1], xs[::20])), "ko", mfc="none", ms=5,
            label="$\\sigma$(fitted quadratic logit)")
    ax.axhline(0.5, color="0.6", ls=":", lw=1)
    ax.set(xlabel="$x$", ylabel="density / probability real", ylim=(0, 1.25))
    ax.legend(fontsize="small", loc="upper left")
    d.figure(fig, "The discriminator trained by cross-entropy (circles) is the optimal one, $p/(p + q)$: above 1/2 "
                  "where the data are denser than the generator's samples, below where they are sparser.")


def _section_generator_objective(d: Derivation, rule, gp) -> None:
    """C(G) = V(D*_G, G) is least at q = p; its gradient equals that of V with D held at D* (envelope theorem)."""
    mus = np.linspace(-2.0, 2.0, 41)
    values = np.array([gaussian_value_at_optimum(0.3, 0.9, 0.3 + m, 0.9, rule) for m in mus])
    off = np.abs(mus) > 0.05
    d.inequality("The generator's objective at $D^*$, $C(G) = 2\\,\\mathrm{JS} - \\log 4$, is above $-\\log 4$ for "
                 "$q = \\mathcal N(0.3 + \\delta, 0.9^2)$, $\\delta \\in [-2, 2] \\setminus \\{0\\}$...",
                 np.full(off.sum(), -LOG4), values[off])
    d.numeric("...and reaches it at $\\delta = 0$, $q = p$", values[20], -LOG4)
    fig, ax = new_figure()
    ax.plot(mus, values, "o-", ms=3, label="$C(G) = V(D^*, G)$")
    ax.axhline(-LOG4, color="k", ls="--", lw=1, label="$-\\log 4$")
    ax.set(xlabel="generator shift $\\delta$, $q = N(0.3 + \\delta, 0.9^2)$", ylabel="nats")
    ax.legend(fontsize="small")
    d.figure(fig, "Against its optimal discriminator the generator's objective $2\\,\\mathrm{JS} - \\log 4$ is least, "
                  "$-\\log 4$, exactly when its law matches the data ($\\delta = 0$).")

    def c_of_g(mu, hold):  # C(G) for q = N(mu, 1.4^2), D* either followed or held at the current mu
        logit_mu = jax.lax.stop_gradient(mu) if hold else mu

        def f_fake(x):
            return -jax.nn.softplus(optimal_logit(gauss_log_pdf(x, *gp), gauss_log_pdf(x, logit_mu, 1.4)))

        def f_real(x):
            return -jax.nn.softplus(-optimal_logit(gauss_log_pdf(x, *gp), gauss_log_pdf(x, logit_mu, 1.4)))
        return expect_normal(f_real, *gp, rule) + expect_normal(f_fake, mu, 1.4, rule)

    at = jnp.array([-1.0, -0.5, 0.0, 0.8])
    d.gradient("Why alternating steps work (an envelope theorem): the gradient of $C(G) = V(D^*_G, G)$ in the "
               "generator's mean equals the gradient of $V(D, G)$ with $D$ held at $D^*$, since "
               "$\\partial V/\\partial D = 0$ there (4 means of $q = \\mathcal N(\\mu, 1.4^2)$)",
               jax.vmap(jax.grad(lambda m: c_of_g(m, hold=True)))(at),
               jax.vmap(jax.grad(lambda m: c_of_g(m, hold=False)))(at))


def _section_saturation(d: Derivation, rule):
    """Against a confident D* the saturating loss's gradient vanishes like mu exp(-mu^2/8); the non-saturating one grows."""
    d.say("Saturation (sec. 3 of the paper): take $p = \\mathcal N(0, 1)$ and a generator $x = \\mu + z$, so "
          "$q = \\mathcal N(\\mu, 1)$, against its optimal discriminator, logit $\\ell(x) = -\\mu x + \\mu^2/2$. "
          "With $\\ell$ held fixed, $\\frac{d}{d\\mu} \\mathbb E_q[\\log(1 - D)] = -\\mathbb E_q[D^* \\ell'] = "
          "\\mu\\,\\mathbb E_q[D^*]$ and $\\frac{d}{d\\mu}(-\\mathbb E_q[\\log D]) = \\mu\\,\\mathbb E_q[1 - D^*]$. "
          "From $\\frac12 \\min(p, q) \\le q\\,D^* \\le \\min(p, q)$ and $\\int \\min(p, q) = 2\\Phi(-\\mu/2)$: "
          "$\\mu\\Phi(-\\mu/2) \\le |g_{\\mathrm{sat}}| \\le 2\\mu\\Phi(-\\mu/2)$, which vanishes like "
          "$\\mu e^{-\\mu^2/8}$, while $|g_{\\mathrm{ns}}| \\ge \\mu(1 - 2\\Phi(-\\mu/2))$ grows like $\\mu$.")
    mus = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0])
    sat, nonsat = (np.array(g) for g in zip(*[generator_gradients(jnp.float64(m), rule) for m in mus], strict=True))
    e_dstar = np.array([expect_normal(lambda x, m=m: jax.nn.sigmoid(-m * x + m**2 / 2), m, 1.0, rule) for m in mus])
    d.gradient("`jax.grad` of the saturating loss is $\\mu\\,\\mathbb E_q[D^*]$ and of the non-saturating loss "
               "$\\mu\\,\\mathbb E_q[1 - D^*]$ at $\\mu \\in \\{0.5, 1, 2, 4, 8, 12\\}$",
               np.concatenate([sat, nonsat]), np.concatenate([mus * e_dstar, mus * (1 - e_dstar)]))
    overlap = norm.cdf(-mus / 2)
    d.inequality("The saturating gradient lies in $[\\mu\\Phi(-\\mu/2), 2\\mu\\Phi(-\\mu/2)]$: the lower bound...",
                 mus * overlap, np.abs(sat))
    d.inequality("...the upper bound (at $\\mu = 12$ it is below $3 \\cdot 10^{-8}$: the generator, rejected, "
                 "learns nothing)", np.abs(sat), 2 * mus * overlap)
    d.inequality("The non-saturating gradient is at least $\\mu(1 - 2\\Phi(-\\mu/2))$: of order $\\mu$ exactly "
                 "where the saturating one vanishes", mus * (1 - 2 * overlap), np.abs(nonsat))
    fig, ax = new_figure()
    dense = np.linspace(0.3, 12.5, 200)
    ax.fill_between(dense, dense * norm.cdf(-dense / 2), 2 * dense * norm.cdf(-dense / 2), color="C0", alpha=0.2,
                    label="$[\\mu\\Phi(-\\mu/2), 2\\mu\\Phi(-\\mu/2)]$")
    ax.plot(mus, np.abs(sat), "o-", color="C0", label="saturating $|g_{\\mathrm{sat}}|$")
    ax.plot(mus, np.abs(nonsat), "s-", color="C1", label="non-saturating $|g_{\\mathrm{ns}}|$")
    ax.plot(dense, dense * (1 - 2 * norm.cdf(-dense / 2)), ":", color="C1", label="$\\mu(1 - 2\\Phi(-\\mu/2))$")
    ax.set(xlabel="generator offset $\\mu$ (data at 0)", ylabel="gradient magnitude", yscale="log", ylim=(1e-9, 50))
    ax.legend(fontsize="small", loc="lower left")
    d.figure(fig, "As the generator's samples move away from the data, the saturating loss's gradient collapses "
                  "(inside its shaded bounds) while the non-saturating one grows like $\\mu$.")
    return e_dstar


def _section_reparameterised(d: Derivation, rng: np.random.Generator, e_dstar) -> None:
    """What a generator's optimiser sees: the per-draw reparameterised gradient of the saturating loss, mu sigma(l(x))."""
    z = rng.standard_normal(100_000)
    mu = 2.0
    logit_at = -mu * (mu + z) + mu**2 / 2
    per_sample = jax.vmap(jax.grad(lambda m, zz: generator_loss_saturating(
        jnp.reshape(-mu * (m + zz) + mu**2 / 2, (1,)))), in_axes=(None, 0))(jnp.float64(mu), z)
    d.monte_carlo("The reparameterised estimate a generator's optimiser sees, `jax.grad` of "
                  "`generator_loss_saturating` per draw $x = \\mu + z$ ($\\mu = 2$, 100 000 draws), is unbiased for "
                  "$\\mu\\,\\mathbb E_q[D^*]$", per_sample, mu * e_dstar[2])
    d.numeric("...and per draw it equals $\\mu\\,\\sigma(\\ell(x))$, the saturating factor $D$ made explicit",
              per_sample, mu * jax.nn.sigmoid(logit_at))


def _section_spectral_norm(d: Derivation, rng: np.random.Generator):
    """Spectral normalisation: one power iteration a step finds the top singular value; W / sigma has norm 1.
    -> (w, its normalised weight, the converged u and v, w's singular values) for the next section."""
    d.say("Spectral normalisation (Miyato et al. 2018) keeps the discriminator from growing steep: each layer's weight "
          "is divided by its largest singular value $\\sigma(W) = \\max_{\\|h\\|=1} \\|Wh\\|$, estimated by power "
          "iteration, $u \\leftarrow Wv/\\|Wv\\|$, $v \\leftarrow W^\\top u/\\|W^\\top u\\|$, "
          "$\\hat\\sigma = u^\\top W v$, one step per training step from the vectors the last step left. "
          "$\\|W h\\| \\le \\sigma(W)\\|h\\|$, so $W/\\sigma(W)$ stretches no vector, and LeakyReLU's slopes are at "
          "most 1: a network of such layers is 1-Lipschitz.")
    w = jnp.asarray(rng.standard_normal((8, 5)))
    singular = np.linalg.svd(np.asarray(w), compute_uv=False)
    u0, v0 = jnp.asarray(rng.standard_normal(8)), jnp.asarray(rng.standard_normal(5))
    errors, (u, v) = [], (u0, v0)
    for _ in range(40):  # one iteration per call, as training makes one per step
        w_sn, u, v = spectral_normalize(w, u, v, n_iter=1)
        errors.append(abs(float(u @ (w @ v)) - singular[0]) / singular[0])
    d.numeric("After 40 steps of one iteration each, $\\hat\\sigma = u^\\top W v$ is the largest singular value "
              "(`numpy.linalg.svd`) of a random 8 x 5 matrix", float(u @ (w @ v)), singular[0])
    d.numeric("...so the normalised weight's own largest singular value is 1", np.linalg.svd(np.asarray(w_sn),
                                                                                               compute_uv=False)[0], 1.0)
    rate = (singular[1] / singular[0]) ** 4
    d.inequality(f"The error falls geometrically, by $(\\sigma_2/\\sigma_1)^4 = {rate:.3f}$ per step (steps 5-25): "
                 "the vectors converge by $(\\sigma_2/\\sigma_1)^2$ a step, one power step of $W^\\top W$, and "
                 "the bilinear $u^\\top W v$ squares their error",
                 np.array(errors[5:25]), 4 * errors[4] * rate ** np.arange(1, 21))
    fig, ax = new_figure()
    ax.semilogy(np.arange(1, 41), errors, "o-", ms=3, label="$|\\hat\\sigma - \\sigma_1| / \\sigma_1$")
    ax.semilogy(np.arange(5, 31), errors[4] * rate ** np.arange(0, 26), "k--",
                label="$(\\sigma_2/\\sigma_1)^{4k}$ from step 5")
    ax.set(xlabel="training steps (one power iteration each)", ylabel="relative error of $\\hat\\sigma$")
    ax.legend()
    d.figure(fig, "One power iteration per step is enough: the estimate of the largest singular value converges at "
             "the power method's rate while the weight stays put.")
    return w, w_sn, u, v, singular


def _section_lipschitz(d: Derivation, rng: np.random.Generator, w, w_sn, u, v, singular) -> None:
    """W / sigma moves no two points further apart, nor does a network of such layers; stale vectors break it."""
    x, y = (jnp.asarray(rng.standard_normal((1000, 5))) for _ in range(2))
    d.inequality("$W/\\hat\\sigma$ is 1-Lipschitz: $\\|W_{SN}x - W_{SN}y\\| \\le \\|x - y\\|$ on 1000 random pairs",
                 jnp.linalg.norm((x - y) @ w_sn.T, axis=1), jnp.linalg.norm(x - y, axis=1), slack=1e-12)
    layers = [jnp.asarray(rng.standard_normal(shape)) * 3.0 for shape in ((16, 5), (16, 16), (1, 16))]
    normalised = []
    for layer in layers:
        uu, vv = jnp.asarray(rng.standard_normal(layer.shape[0])), jnp.asarray(rng.standard_normal(layer.shape[1]))
        normalised.append(spectral_normalize(layer, uu, vv, n_iter=60)[0])

    def network(h, weights):
        for i, weight in enumerate(weights):
            h = weight @ h
            h = jax.nn.leaky_relu(h, 0.2) if i < len(weights) - 1 else h
        return h[0]

    grads = jax.vmap(jax.grad(network), in_axes=(0, None))(jnp.asarray(rng.standard_normal((500, 5))), normalised)
    d.inequality("A discriminator of three such layers with LeakyReLU(0.2) between has $\\|\\nabla_x D(x)\\| \\le 1$ at "
                 "500 random points (`jax.grad`), though its raw weights have norms near 10",
                 jnp.linalg.norm(grads, axis=1), np.ones(500), slack=1e-12)
    # training grows the weight along a direction the stored vectors do not see: a @ b^T with a _|_ u and b _|_ v
    a = jnp.asarray(rng.standard_normal(8))
    b = jnp.asarray(rng.standard_normal(5))
    a, b = a - (a @ u) * u, b - (b @ v) * v
    grown = w + 3 * singular[0] * jnp.outer(a / jnp.linalg.norm(a), b / jnp.linalg.norm(b))
    stale = np.linalg.svd(np.asarray(spectral_normalize(grown, u, v, n_iter=0)[0]), compute_uv=False)[0]
    fresh = np.linalg.svd(np.asarray(spectral_normalize(grown, u, v, n_iter=60)[0]), compute_uv=False)[0]
    d.inequality("Without the power iteration's update the bound fails: after the weight grows by "
                 "$3\\sigma_1\\,ab^\\top$ along directions orthogonal to the stored $u$ and $v$, the stale "
                 f"$u^\\top W v$ is still the old $\\sigma_1$ and the 'normalised' weight stretches a vector by "
                 f"{stale:.2f}; iterating again brings it back to {fresh:.3f}", 2.0, stale)


def _section_minibatch_std(d: Derivation, rng: np.random.Generator) -> None:
    """The minibatch standard deviation: what the feature is, that it reads a collapsed batch, and its gradient."""
    d.say("Minibatch standard deviation (Karras et al. 2018, sec. 3): a discriminator that judges one example at a "
          "time cannot see that a batch of samples is all alike. Append to every example's features $h_i \\in "
          "\\mathbb R^F$ one more, the same for the whole batch, $s = \\frac1F \\sum_f \\sqrt{\\mathrm{Var}_i(h_{if}) "
          "+ \\epsilon}$ (the population variance over the $B$ examples), and the next layer can read the spread.")
    h = jnp.asarray(rng.standard_normal((16, 8)))
    feature = minibatch_std(h)[:, -1]
    d.numeric("`minibatch_std` appends $s$, the mean over 8 features of NumPy's population standard deviation over "
              "a batch of 16 ($\\epsilon = 10^{-8}$), to every example", feature,
              np.full(16, np.mean(np.sqrt(np.var(np.asarray(h), axis=0) + 1e-8))))
    collapsed = jnp.broadcast_to(h[:1], h.shape)
    d.numeric("A collapsed batch (16 copies of one sample) shows $s = \\sqrt\\epsilon = 10^{-4}$: the feature "
              "tells the discriminator a batch has collapsed", minibatch_std(collapsed)[:, -1], np.full(16, 1e-4))

    def spread(x):
        return minibatch_std(x)[0, -1]

    var = jnp.var(h, axis=0)
    d.gradient("Its gradient pushes each sample away from the batch mean: $\\partial s/\\partial h_{if} = "
               "(h_{if} - \\bar h_f) / (BF\\sqrt{\\mathrm{Var}_i(h_{if}) + \\epsilon})$ (`jax.grad`)",
               jax.grad(spread)(h), (h - h.mean(0)) / (16 * 8 * jnp.sqrt(var + 1e-8)))
    scales = (1.0, 0.1, 0.01)
    norms = [jnp.sum(jax.grad(spread)(c * h) ** 2) for c in scales]
    d.numeric("...and its size does not fade as the batch collapses: $\\|\\nabla s\\|^2 = \\frac{1}{BF^2}\\sum_f "
              "\\frac{\\mathrm{Var}_f}{\\mathrm{Var}_f + \\epsilon} \\approx \\frac{1}{BF}$ at spreads 1, 0.1 and "
              f"0.01 ({', '.join(f'{float(n):.6f}' for n in norms)}; 1/(BF) = {1 / 128:.6f}), vanishing only at an "
              "exact collapse", jnp.stack(norms),
              jnp.stack([jnp.sum(c**2 * var / (c**2 * var + 1e-8)) / (16 * 8**2) for c in scales]))


def _section_progressive(d: Derivation, rng: np.random.Generator) -> None:
    """Progressive growing: the fade-in is continuous at each transition, pixel norm's unit RMS, and what the
    equalised learning rate equalises."""
    d.say("Progressive growing (Karras et al. 2018): both players start at a quarter of the image's side and double "
          "it twice, each new block faded in: at stage $s$ with weight $\\alpha$ the picture is "
          "$(1 - \\alpha)\\,\\mathrm{up}(\\sigma(\\mathrm{rgb}_{s-1}(h_{s-1}))) + \\alpha\\,\\sigma(\\mathrm{rgb}_s(h_s))$ "
          "(`fade_in`, in pixels), and the discriminator blends its new block's features with the old `from_rgb` of "
          "the halved image alike. Training is continuous only if at $\\alpha = 0$ each player computes what it did "
          "at the stage before.")
    g = ProgressiveGenerator(latent_dim=6, image_shape=(1, 16, 16), channels=4, stages=3, unit_interval=True)
    disc = ProgressiveDiscriminator(image_shape=(1, 16, 16), channels=4, stages=3)
    z, x = jnp.asarray(rng.standard_normal((5, 6))), jnp.asarray(rng.uniform(size=(5, 16, 16, 1)))
    def weights(module, inputs):  # every variable drawn from N(0, 1) in float64 (traced, not run: a fast start)
        shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), inputs, method=type(module).init_all))
        return jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape)), shapes)

    pg, pd = weights(g, z), weights(disc, x)
    draw = jax.jit(g.apply, static_argnums=(2, 3))
    jumps = [np.max(np.abs(np.asarray(draw(pg, z, s, 0.0) - upsample(draw(pg, z, s - 1, 1.0))))) for s in (1, 2)]
    d.numeric("The generator at stage $s$, $\\alpha = 0$, draws the previous stage's picture with each pixel doubled, "
              "at both transitions (4 -> 8 -> 16 pixels; float64 weights): the fade-in starts where the last stage "
              "ended", np.array(jumps), np.zeros(2))
    _fakes_fade_as_reals(d, draw, pg, z)
    halved = [x, downsample(x), downsample(downsample(x))]
    score = jax.jit(disc.apply, static_argnums=(2, 3))
    gaps = [np.max(np.abs(np.asarray(score(pd, halved[2 - s], s, 0.0) - score(pd, halved[3 - s], s - 1, 1.0))))
            for s in (1, 2)]
    d.numeric("...and the discriminator at stage $s$, $\\alpha = 0$, scores an image as the previous stage scores it "
              "halved (2 x 2 averages)", np.array(gaps), np.zeros(2))
    h = np.asarray(rng.standard_normal((4, 3, 3, 8)) * 5.0)
    square = np.mean(h**2, axis=-1)
    d.numeric("`pixel_norm` leaves every pixel's feature vector with root mean square 1 over its 8 channels, "
              "$\\sqrt{m / (m + \\epsilon)}$ for mean square $m$ ($\\epsilon = 10^{-8}$)",
              np.sqrt(np.mean(np.asarray(pixel_norm(jnp.asarray(h))) ** 2, axis=-1)), np.sqrt(square / (square + 1e-8)))
    # the equalised learning rate: the layer scales what the optimizer moves by He's constant, at run time
    seen = {}
    for fan_in in (64, 1024):
        layer, eye = EqualizedLinear(32), jnp.eye(fan_in)
        params = as_float64(layer.init(jax.random.key(fan_in), eye))["params"]
        moved = {**params, "kernel": params["kernel"] + 1e-3}  # an optimizer's step of 1e-3 on every stored weight
        seen[fan_in] = np.asarray(layer.apply({"params": moved}, eye) - layer.apply({"params": params}, eye)) / 1e-3
    d.numeric("The equalised learning rate (sec. 4.1): `EqualizedLinear` stores its weights as $N(0, 1)$ and multiplies "
              "them by He's $c = \\sqrt{2 / \\mathrm{fan\\,in}}$ at run time, so a step of the stored weights moves "
              "the effective ones by $c$ times it (fan-in 64 and 1024). Adam's step hardly depends on a gradient's "
              "size, so every layer's effective weights move by the same share of their scale $c$; initialised at "
              f"$N(0, c^2)$ instead, a layer of fan-in 1024 would move {math.sqrt(1024 / 64):.0f} times slower, "
              "relative to its scale, than one of fan-in 64",
              np.concatenate([seen[64].ravel(), seen[1024].ravel()]),
              np.concatenate([np.full(64 * 32, math.sqrt(2 / 64)), np.full(1024 * 32, math.sqrt(2 / 1024))]))


def _fakes_fade_as_reals(d: Derivation, draw, pg, z) -> None:
    """The generator's fade-in is the reals' (``real_at``): two stages' pictures blended in pixels, after the sigmoid.
    ``draw(params, z, stage, alpha)``: the generator, jitted; pg: its float64 weights."""
    old, new = ([upsample(draw(pg, z, s - 1, 1.0)) for s in (1, 2)], [draw(pg, z, s, 1.0) for s in (1, 2)])
    real_fade = [np.max(np.abs(np.asarray(draw(pg, z, s, 0.5) - fade_in(0.5, old[s - 1], new[s - 1])))) for s in (1, 2)]
    d.numeric("While a resolution fades in, the generator's picture is the two stages' pictures blended in pixels, "
              "$G(z, s, \\alpha) = (1 - \\alpha)\\,\\mathrm{up}(G(z, s - 1)) + \\alpha\\,G(z, s)$ ($\\alpha = 1/2$): "
              "the blend the reals get (their halved image doubled, against themselves), so the discriminator cannot "
              "tell fakes from reals by how they were faded", np.array(real_fade), np.zeros(2))
    logit = jax.scipy.special.logit  # sigma^-1: a picture back to the to_rgb output it came from
    before = [np.max(np.abs(np.asarray(jax.nn.sigmoid(fade_in(0.5, logit(old[i]), logit(new[i])))
                                       - fade_in(0.5, old[i], new[i])))) for i in (0, 1)]
    d.inequality("...which a blend of the `to_rgb` outputs before the sigmoid is not: "
                 f"$\\sigma((\\mathrm{{up}}(a) + b) / 2)$ is off the reals' blend by up to {max(before):.3f} a pixel here "
                 "(at least 0.01 at both transitions)", np.full(2, 0.01), np.array(before))


def _unrolled_game(rng: np.random.Generator):
    """A 1-D game for the unrolled discriminator: 64 real points, fakes mu + z (64 fixed z), a logistic discriminator
    (w, b) with an L2 term (lambda = 0.5, so its loss has one minimiser) -> (discriminator loss, generator loss)."""
    real, z = jnp.asarray(rng.standard_normal(64)), jnp.asarray(rng.standard_normal(64))

    def d_loss(p, mu):
        return (discriminator_loss(p["w"] * real + p["b"], p["w"] * (mu + z) + p["b"])
                + 0.25 * (p["w"] ** 2 + p["b"] ** 2))

    def g_loss(p, mu):
        return generator_loss_nonsaturating(p["w"] * (mu + z) + p["b"])
    return d_loss, g_loss


P0 = {"w": 0.3, "b": -0.2}  # the discriminator's weights where every look-ahead starts


def _flat(u):
    """(w, b) as a vector (2,) -> the parameter dict."""
    return {"w": u[0], "b": u[1]}


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _unrolled_gradients(mu, d_loss, g_loss, steps: int, lr: float):
    """d/dmu L_G(theta_k(mu), mu) for k = 0..steps, theta_k after k ``unroll`` steps from P0: forward mode through a
    scan of the look-ahead steps. -> (steps + 1,)."""
    def losses(m):
        def body(p, _):
            return unroll(lambda q: d_loss(q, m), p, 1, lr), g_loss(p, m)
        p, out = jax.lax.scan(body, jax.tree.map(jnp.float64, P0), None, length=steps)
        return jnp.append(out, g_loss(p, m))
    return jax.jvp(losses, (mu,), (jnp.ones_like(mu),))[1]


@partial(jax.jit, static_argnums=(1, 2, 3))
def _one_step_gradients(mu, d_loss, g_loss, lr: float):
    """The gradient through one look-ahead step from P0: jax.grad through ``unroll``, and the chain rule written out,
    dL_G/dmu + grad_theta L_G . dtheta_1/dmu with dtheta_1/dmu = -lr d/dmu grad_theta f_D. -> two ()."""
    p0 = jax.tree.map(jnp.float64, P0)
    reverse = jax.grad(lambda m: g_loss(unroll(lambda q: d_loss(q, m), p0, 1, lr), m))(mu)
    p1 = unroll(lambda q: d_loss(q, mu), p0, 1, lr)
    cross = jax.jacfwd(jax.grad(d_loss), argnums=1)(p0, mu)  # d/dmu of grad_theta f_D
    pull = jax.grad(g_loss)(p1, mu)
    return reverse, jax.grad(g_loss, argnums=1)(p1, mu) - lr * (pull["w"] * cross["w"] + pull["b"] * cross["b"])


@partial(jax.jit, static_argnums=(1, 2))
def _best_response(mu, d_loss, g_loss):
    """The discriminator's best response theta*(mu) by 20 Newton steps, the Hessian H of f_D there, and the implicit
    function theorem's gradient dL_G/dmu - grad_theta L_G^T H^-1 d/dmu grad_theta f_D. -> ((), (2, 2))."""
    def f(u, m):
        return d_loss(_flat(u), m)

    def newton(_, u):
        return u - jnp.linalg.solve(jax.hessian(f)(u, mu), jax.grad(f)(u, mu))
    v = jax.lax.fori_loop(0, 20, newton, jnp.array([P0["w"], P0["b"]]))
    hessian = jax.hessian(f)(v, mu)
    mixed = jax.jacfwd(jax.grad(f), argnums=1)(v, mu)
    best = (jax.grad(lambda m: g_loss(_flat(v), m))(mu)
            - jax.grad(lambda u: g_loss(_flat(u), mu))(v) @ jnp.linalg.solve(hessian, mixed))
    return best, hessian


def _section_unrolled(d: Derivation, rng: np.random.Generator) -> None:
    """Unrolled GAN: the gradient through one look-ahead step, and the best response in the limit."""
    d.say("Unrolled GAN (Metz et al. 2017): the generator plays against the discriminator $K$ gradient steps ahead, "
          "$\\theta_{k+1} = \\theta_k - \\eta \\nabla_\\theta f_D(\\theta_k, \\mu)$, and differentiates through the steps "
          "(eq. 6), so it sees how the discriminator would answer its move. On a 1-D game: 64 data points, fakes "
          "$\\mu + z$, a logistic discriminator $(w, b)$ with an L2 term, the non-saturating $L_G$; $\\mu = 1.5$.")
    d_loss, g_loss = _unrolled_game(rng)
    mu, lr = jnp.float64(1.5), 1.0
    grads = _unrolled_gradients(mu, d_loss, g_loss, 60, lr)
    reverse, by_hand = _one_step_gradients(mu, d_loss, g_loss, lr)
    d.gradient("One look-ahead step: `jax.grad` through `unroll` (reverse mode) and `jax.jvp` through a scan of the "
               "same step (forward mode) both give $\\partial_\\mu L_G + \\nabla_\\theta L_G \\cdot "
               "d\\theta_1/d\\mu$ with $d\\theta_1/d\\mu = -\\eta\\,\\partial_\\mu\\nabla_\\theta f_D$",
               jnp.stack([reverse, grads[1]]), jnp.stack([by_hand, by_hand]))
    best, hessian = _best_response(mu, d_loss, g_loss)
    d.numeric("After 60 look-ahead steps the generator's gradient is the best-response gradient of the implicit "
              "function theorem, $\\partial_\\mu L_G - \\nabla_\\theta L_G^\\top H^{-1} \\partial_\\mu\\nabla_\\theta f_D$ "
              f"at $\\theta^*(\\mu)$ (Newton's method); the plain gradient ($K = 0$) is off by {abs(grads[0] - best):.3f}",
              grads[-1], best)
    errors = np.abs(np.asarray(grads) - float(best))
    rate = float(np.max(np.abs(1 - lr * np.linalg.eigvalsh(np.asarray(hessian)))))
    ratios = errors[11:31] / errors[10:30]
    d.inequality("The gap closes geometrically: each of steps 10-30 shrinks it by a factor that falls toward "
                 f"$\\max_i |1 - \\eta\\lambda_i(H)| = {rate:.3f}$, the look-ahead's own rate near $\\theta^*$ "
                 f"({ratios[0]:.3f} at step 10, {ratios[-1]:.3f} at step 30); the first steps can widen it "
                 f"($K = 1$: {errors[1]:.3f})", np.concatenate([np.full(20, rate), ratios[1:]]),
                 np.concatenate([ratios, ratios[:-1]]))
    fig, ax = new_figure()
    ax.semilogy(np.arange(61), np.maximum(errors, 1e-17), "o-", ms=3, label="$|g_K - g^*|$")
    ax.semilogy(np.arange(10, 41), errors[10] * rate ** np.arange(31), "k--", label=f"${rate:.3f}^K$ (local rate)")
    ax.set(xlabel="look-ahead steps $K$", ylabel="gap to the best-response gradient")
    ax.legend()
    d.figure(fig, "The unrolled generator's gradient tends to the gradient against the discriminator's best response "
                  "as the look-ahead grows; with $K = 0$ the generator ignores how the discriminator will answer.")


def _section_packing(d: Derivation) -> None:
    """Packing (PacGAN): a discriminator of m samples plays the game of P^m against Q^m, and the product laws grow
    apart faster for a generator that drops a mode than for one that reweights them by as much."""
    d.say("Packing (PacGAN, Lin et al. 2018): the discriminator reads $m$ samples at once, $D(x_1, \\dots, x_m)$, "
          "all real or all generated (`pack` concatenates $m$ consecutive examples). Nothing else changes, so "
          "Proposition 1 applies to the product laws: the packed game is the game of $P^m$ against $Q^m$, and at its "
          "optimal discriminator the generator minimises $2\\,\\mathrm{JS}(P^m \\| Q^m) - \\log 4$.")
    p = jnp.full(4, 0.25)
    lost = jnp.array([1 / 3, 1 / 3, 1 / 3, 0.0])  # one mode of four dropped
    spread = jnp.array([3 / 8, 3 / 8, 1 / 8, 1 / 8])  # every mode kept, reweighted as far
    pairs_p, pairs_q = product_law(p, 2), product_law(lost, 2)
    d_star = pairs_p / (pairs_p + pairs_q)
    d.numeric("With $m = 2$ on 4 modes, the packed value at $D^* = P^2 / (P^2 + Q^2)$ over the 16 pairs is "
              "$2\\,\\mathrm{JS}(P^2 \\| Q^2) - \\log 4$ (Theorem 1 on the product laws; eq. 1 summed over "
              "the pairs, 0 log 0 = 0 where $Q^2$ has no mass)",
              jnp.sum(pairs_p * jnp.log(d_star)) + jnp.sum(jnp.where(pairs_q > 0, pairs_q * jnp.log1p(-d_star), 0.0)),
              2 * jensenshannon(np.asarray(pairs_p), np.asarray(pairs_q)) ** 2 - LOG4)
    d.numeric("Two generators as far from the uniform data law $P$ on 4 modes: $Q_{\\mathrm{lost}}$ drops a mode, "
              "$Q_{\\mathrm{spread}} = (3, 3, 1, 1)/8$ keeps all four; both at total variation 1/4",
              jnp.stack([total_variation(p, lost), total_variation(p, spread)]), np.array([0.25, 0.25]))
    ms = (1, 2, 3, 4)
    tv_lost = jnp.stack([total_variation(product_law(p, m), product_law(lost, m)) for m in ms])
    tv_spread = jnp.stack([total_variation(product_law(p, m), product_law(spread, m)) for m in ms])
    d.numeric("Packed, the lost mode shows in every one of the $m$ draws: $Q_{\\mathrm{lost}}^m$ lives inside $P^m$'s "
              "support, so $\\mathrm{TV}(P^m, Q_{\\mathrm{lost}}^m) = P^m(\\text{a draw from the lost mode}) = "
              "1 - (3/4)^m$ (by enumerating the $4^m$ outcomes, $m = 1, \\dots, 4$)", tv_lost,
              1 - 0.75 ** np.array(ms))
    d.inequality("...while the reweighted generator, as far at $m = 1$, falls behind by more than 0.1 for every "
                 "$m = 2, 3, 4$: packing makes mode collapse cost the generator more than an equal error that keeps "
                 "every mode (the point of PacGAN's analysis of packed total variation)", tv_spread[1:], tv_lost[1:],
                 slack=-0.1)
    fig, ax = new_figure()
    ax.plot(ms, tv_lost, "o-", label="$Q_{\\mathrm{lost}}$: a mode dropped")
    ax.plot(ms, tv_spread, "s-", label="$Q_{\\mathrm{spread}}$: all modes, reweighted")
    ax.plot(ms, 1 - 0.75 ** np.array(ms), "k:", label="$1 - (3/4)^m$")
    ax.set(xlabel="packing $m$", ylabel="$\\mathrm{TV}(P^m, Q^m)$", xticks=ms)
    ax.legend(fontsize="small")
    d.figure(fig, "Equally far from the data one sample at a time, a generator that drops a mode is seen ever more "
                  "clearly by a discriminator of $m$ samples; one that reweights the modes, much less.")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("gan", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    rule = normal_rule()
    p, q, d_star = _section_optimal_discriminator(d, rng)
    _section_jensen_shannon(d, p, q, d_star)
    gp, gq = (0.3, 0.9), (-0.5, 1.4)
    _section_gaussian_value(d, rng, rule, gp, gq)
    _section_classifier(d, rule, gp, gq)
    _section_generator_objective(d, rule, gp)
    e_dstar = _section_saturation(d, rule)
    _section_reparameterised(d, rng, e_dstar)
    _section_lipschitz(d, rng, *_section_spectral_norm(d, rng))
    _section_minibatch_std(d, rng)
    _section_unrolled(d, rng)
    _section_packing(d)
    _section_progressive(d, rng)
    return d
