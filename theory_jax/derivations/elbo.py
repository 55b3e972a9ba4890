"""The ``elbo`` derivation (``python -m theory_jax elbo``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/elbo.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as
a notebook.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.elbo import (
    gaussian_kl,
    iwae_bound,
    linear_gaussian_elbo,
    linear_gaussian_evidence,
    linear_gaussian_log_joint,
    linear_gaussian_posterior,
    log_mean_exp,
    mvn_kl,
    mvn_log_prob,
    sample_gaussian,
)

TITLE = "the evidence lower bound"
LECTURES = "evidence lower bound; Jensen's inequality; importance-weighted bounds (IWAE)"


# 4. The derivation -------------------------------------------------------------------------------
def _model(seed: int = 0, big_d: int = 5, d: int = 3):
    """A fixed linear-Gaussian model and one observation x drawn from it (float64)."""
    rng = np.random.default_rng(seed)
    weight = jnp.asarray(rng.standard_normal((big_d, d)) / np.sqrt(d))
    bias = jnp.asarray(0.5 * rng.standard_normal(big_d))
    sigma = jnp.asarray(0.7)
    z = rng.standard_normal(d)
    x = jnp.asarray(np.asarray(weight) @ z + np.asarray(bias) + 0.7 * rng.standard_normal(big_d))
    return x, weight, bias, sigma


def _random_q(rng: np.random.Generator, d: int):
    low = np.tril(0.3 * rng.standard_normal((d, d)), -1) + np.diag(np.exp(0.3 * rng.standard_normal(d)))
    return jnp.asarray(rng.standard_normal(d)), jnp.asarray(low)


def _sympy_kl():
    """KL between univariate Gaussians by integrating q log(q/p) over the real line, with z = mu_q + sigma_q u
    (q dz = phi(u) du), term by term: each term is a moment of the standard normal."""
    u, m1, m2 = sp.symbols("u mu_q mu_p", real=True)
    s1, s2 = sp.symbols("sigma_q sigma_p", positive=True)
    z = m1 + s1 * u
    phi = sp.exp(-(u**2) / 2) / sp.sqrt(2 * sp.pi)
    log_ratio = sp.expand(sp.log(s2 / s1) - (z - m1) ** 2 / (2 * s1**2) + (z - m2) ** 2 / (2 * s2**2))
    integral = sum(sp.integrate(phi * term, (u, -sp.oo, sp.oo)) for term in sp.Add.make_args(log_ratio))
    closed = sp.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - sp.Rational(1, 2)
    return integral, closed, (m1, s1, m2, s2)


def _iwae_estimates(key, x, weight, bias, sigma, mean, tril, ks, replicates):
    """L_K estimates: for each K, ``replicates`` independent draws of log (1/K) sum_k w_k -> {K: (R,)}."""
    @jax.jit
    def bound(eps):
        z = sample_gaussian(mean, tril, eps)
        return iwae_bound(linear_gaussian_log_joint(x, z, weight, bias, sigma) - mvn_log_prob(z, mean, tril))

    keys = jax.random.split(key, len(ks))
    return {k: np.asarray(bound(jax.random.normal(sub, (replicates, k, mean.shape[-1]), dtype=jnp.float64)))
            for k, sub in zip(ks, keys)}


def _section_kl(d: Derivation, rng: np.random.Generator, latent: int) -> None:
    """The Gaussian KL divergence, the term every bound is made of: closed form = SymPy integral = Monte Carlo."""
    integral, closed, syms = _sympy_kl()
    d.symbolic("$\\mathrm{KL}(\\mathcal N(\\mu_q,\\sigma_q^2)\\,\\|\\,\\mathcal N(\\mu_p,\\sigma_p^2)) = "
               "\\int q \\log \\frac{q}{p}\\,dz = \\log\\frac{\\sigma_p}{\\sigma_q} + "
               "\\frac{\\sigma_q^2 + (\\mu_q-\\mu_p)^2}{2\\sigma_p^2} - \\frac12$ (SymPy's integral, with "
               "$z = \\mu_q + \\sigma_q u$, of each term against the standard normal)", integral, closed)
    vals = rng.standard_normal((4, 50))
    vals[1], vals[3] = np.exp(0.5 * vals[1]), np.exp(0.5 * vals[3])
    kl_sympy = sp.lambdify(syms, closed, "numpy")(*vals)
    kl_jax = gaussian_kl(*(jnp.asarray(v)[:, None] for v in (vals[0], 2 * np.log(vals[1]), vals[2], 2 * np.log(vals[3]))))
    d.numeric("`gaussian_kl` implements that formula (50 random parameter sets, one dimension each)", kl_jax, kl_sympy)

    mq, lq = _random_q(rng, latent)
    mp, lp = _random_q(rng, latent)
    z = sample_gaussian(mq, lq, jax.random.normal(jax.random.key(0), (20000, latent), dtype=jnp.float64))
    d.monte_carlo("Full-covariance $\\mathrm{KL}(q\\|p) = \\mathbb E_q[\\log q(z) - \\log p(z)]$: "
                  "`mvn_kl` closed form vs 20 000 samples of $q$",
                  mvn_log_prob(z, mq, lq) - mvn_log_prob(z, mp, lp), mvn_kl(mq, lq, mp, lp))
    diag_q, diag_p = jnp.diag(jnp.diag(lq)), jnp.diag(jnp.diag(lp))
    d.numeric("For diagonal covariances the full-covariance KL reduces to the sum of per-coordinate KLs",
              mvn_kl(mq, diag_q, mp, diag_p),
              gaussian_kl(mq, 2 * jnp.log(jnp.diag(lq)), mp, 2 * jnp.log(jnp.diag(lp))))


def _section_decomposition(d: Derivation, rng: np.random.Generator, x, weight, bias, sigma) -> None:
    """log p(x) = ELBO(q) + KL(q || p(z|x)) for Gaussian q, every term in closed form, and Jensen's step."""
    latent = weight.shape[1]
    post_mean, post_tril = linear_gaussian_posterior(x, weight, bias, sigma)
    log_px = linear_gaussian_evidence(x, weight, bias, sigma)
    zs = jnp.asarray(rng.standard_normal((10, latent)))
    d.numeric("Bayes' rule: $\\log p(x) = \\log p(x, z) - \\log p(z\\mid x)$ at 10 arbitrary $z$ "
              "(checks the evidence $\\mathcal N(x; b, WW^\\top + \\sigma^2 I)$ and the posterior together)",
              linear_gaussian_log_joint(x, zs, weight, bias, sigma) - mvn_log_prob(zs, post_mean, post_tril),
              jnp.full(10, log_px))

    # The decomposition log p(x) = ELBO + KL.
    qs = [_random_q(rng, latent) for _ in range(20)]
    elbos = jnp.stack([linear_gaussian_elbo(x, weight, bias, sigma, m, t) for m, t in qs])
    kls = jnp.stack([mvn_kl(m, t, post_mean, post_tril) for m, t in qs])
    d.say("Write $\\log p(x) = \\mathbb E_q[\\log \\frac{p(x,z)}{q(z)}] + \\mathbb E_q[\\log\\frac{q(z)}{p(z\\mid x)}]$: "
          "the first term is the ELBO, the second $\\mathrm{KL}(q \\| p(z\\mid x)) \\ge 0$.")
    d.numeric("$\\log p(x) = \\mathrm{ELBO}(q) + \\mathrm{KL}(q\\,\\|\\,p(z\\mid x))$ for 20 random Gaussian $q$, "
              "every term in closed form", elbos + kls, jnp.full(20, log_px))
    fig, ax = new_figure()
    ax.plot(kls, log_px - elbos, "o", label="20 Gaussian $q$")
    ax.plot([0, float(kls.max())], [0, float(kls.max())], "k--", lw=1, label="gap = KL")
    ax.set(xlabel="KL$(q \\| p(z|x))$ (nats)", ylabel="$\\log p(x)$ - ELBO$(q)$ (nats)")
    ax.legend()
    d.figure(fig, "The ELBO's gap to $\\log p(x)$ is exactly the KL from $q$ to the posterior: every $q$ on the line.")
    m0, t0 = qs[0]
    eps = jax.random.normal(jax.random.key(1), (20000, latent), dtype=jnp.float64)
    z = sample_gaussian(m0, t0, eps)
    log_w = linear_gaussian_log_joint(x, z, weight, bias, sigma) - mvn_log_prob(z, m0, t0)
    d.monte_carlo("The closed-form ELBO equals $\\mathbb E_q[\\log p(x,z) - \\log q(z)]$ (20 000 samples)",
                  log_w, elbos[0])

    # Jensen's step.
    wide_tril = jnp.sqrt(1.5) * post_tril
    z = sample_gaussian(post_mean + 0.2, wide_tril, eps)
    log_w = linear_gaussian_log_joint(x, z, weight, bias, sigma) - mvn_log_prob(z, post_mean + 0.2, wide_tril)
    d.monte_carlo("Importance sampling is unbiased: $\\mathbb E_q[p(x,z)/q(z)] = p(x)$ "
                  "(estimate of $w / p(x)$, $q$ 1.5x wider than the posterior so the variance is finite)",
                  jnp.exp(log_w - log_px), 1.0)
    groups = log_w.reshape(200, 100)
    d.inequality("Jensen's step, $\\log \\mathbb E[w] \\ge \\mathbb E[\\log w]$ ($\\log$ concave), holds for "
                 "each of 200 empirical distributions of 100 weights", jnp.mean(groups, axis=1),
                 log_mean_exp(groups, axis=1))
    d.inequality("Hence ELBO $\\le \\log p(x)$ for every $q$; the gap is the KL above", elbos, jnp.full(20, log_px))


def _section_optimum(d: Derivation, rng: np.random.Generator, x, weight, bias, sigma) -> None:
    """The bound is tight, and stationary, at the posterior; its gradient in closed form elsewhere."""
    latent = weight.shape[1]
    post_mean, post_tril = linear_gaussian_posterior(x, weight, bias, sigma)
    d.numeric("At $q = p(z\\mid x)$ the bound is tight: ELBO $= \\log p(x)$",
              linear_gaussian_elbo(x, weight, bias, sigma, post_mean, post_tril),
              linear_gaussian_evidence(x, weight, bias, sigma))
    grad_m, grad_l = jax.grad(linear_gaussian_elbo, argnums=(4, 5))(x, weight, bias, sigma, post_mean, post_tril)
    d.gradient("...and a stationary point: $\\nabla_{m, L}\\,\\mathrm{ELBO} = 0$ at the posterior (jax.grad)",
               jnp.concatenate([grad_m, jnp.tril(grad_l).ravel()]), jnp.zeros(latent + latent**2))
    m, tril = _random_q(rng, latent)
    closed_grad = weight.T @ (x - bias - weight @ m) / sigma**2 - m
    d.gradient("$\\nabla_m \\mathrm{ELBO} = W^\\top(x - b - Wm)/\\sigma^2 - m$ at a random $q$ "
               "(jax.grad vs the closed form)",
               jax.grad(linear_gaussian_elbo, argnums=4)(x, weight, bias, sigma, m, tril), closed_grad)


def _section_iwae(d: Derivation, x, weight, bias, sigma) -> None:
    """The importance-weighted bound: monotone in K, tending to log p(x)."""
    post_mean, post_tril = linear_gaussian_posterior(x, weight, bias, sigma)
    log_px = linear_gaussian_evidence(x, weight, bias, sigma)
    m_iw, t_iw = post_mean + 0.3, 1.3 * post_tril
    ks = (1, 2, 4, 16, 64, 256)
    est = _iwae_estimates(jax.random.key(2), x, weight, bias, sigma, m_iw, t_iw, ks, replicates=4000)
    d.say("The importance-weighted bound $\\mathcal L_K = \\mathbb E[\\log \\frac1K \\sum_k w_k]$, "
          "$z_k \\sim q$, with $q$ the posterior shifted by 0.3 and 1.3x wider; 4000 replicates per $K$.")
    d.monte_carlo("$\\mathcal L_1$ (one importance sample) is the ELBO", est[1],
                  linear_gaussian_elbo(x, weight, bias, sigma, m_iw, t_iw))
    means = np.array([est[k].mean() for k in ks])
    ses = np.array([est[k].std(ddof=1) / np.sqrt(len(est[k])) for k in ks])
    d.inequality(f"$\\mathcal L_K$ increases with $K$ = {', '.join(map(str, ks))} (Burda et al., Thm. 1): "
                 "each step up, to within 4 standard errors of the difference",
                 means[:-1] - 4 * np.hypot(ses[:-1], ses[1:]), means[1:])
    d.inequality("$\\mathcal L_K \\le \\log p(x)$ for every K (within 4 standard errors)",
                 means - 4 * ses, np.full(len(ks), float(log_px)))
    fig, ax = new_figure()
    ax.errorbar(ks, means, yerr=2 * ses, fmt="o-", capsize=3, label="$L_K$ (mean $\\pm$ 2 SE)")
    ax.axhline(float(log_px), color="k", ls="--", lw=1, label="$\\log p(x)$")
    ax.set(xscale="log", xlabel="importance samples $K$", ylabel="nats")
    ax.legend()
    d.figure(fig, "The importance-weighted bound climbs towards $\\log p(x)$ as $K$ grows; $K = 1$ is the ELBO.")
    gaps = float(log_px) - means
    d.inequality(f"...and tends to $\\log p(x)$: the gap falls from {gaps[0]:.3f} nats (K = 1, the KL) to "
                 f"{gaps[-1]:.4f} nats (K = 256), below 2% of the K = 1 gap", gaps[-1], 0.02 * gaps[0])


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("elbo", TITLE, LECTURES, echo=echo)
    x, weight, bias, sigma = _model()
    latent = weight.shape[1]
    rng = np.random.default_rng(1)

    d.say("Setting: $z \\sim \\mathcal N(0, I_d)$, $x\\mid z \\sim \\mathcal N(Wz + b, \\sigma^2 I_D)$ "
          "with $d = 3$, $D = 5$, $\\sigma = 0.7$ and one observation $x$. Any $q(z) = \\mathcal N(m, LL^\\top)$.")

    _section_kl(d, rng, latent)
    _section_decomposition(d, rng, x, weight, bias, sigma)
    _section_optimum(d, rng, x, weight, bias, sigma)
    _section_iwae(d, x, weight, bias, sigma)
    return d
