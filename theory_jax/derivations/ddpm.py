"""The ``ddpm`` derivation (``python -m theory_jax ddpm``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/ddpm.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as
a notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from theory_jax.ddpm import (
    discretized_gaussian_log_likelihood,
    eps_loss,
    prior_kl,
    vlb_term,
    vlb_weight,
)
from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.diffusion import (
    alpha_bars,
    augment_condition,
    cosine_betas,
    ddpm_step,
    downsample,
    linear_betas,
    low_pass,
    posterior_mean_variance,
    predict_x0,
    q_sample,
    renoise,
    repaint_levels,
    replace_known,
    upsample,
)
from theory_jax.elbo import gaussian_kl, gaussian_log_prob

TITLE = "denoising diffusion probabilistic models"
LECTURES = ("DDPM: forward and reverse processes; ELBO for DDPM; optimising the loss; ELBO equivalence; training; "
            "U-Net; inference; noise estimation")


# 4. A 1-D Gaussian world where every term of the ELBO is closed form --------------------------------------------
def _linear_reverse_model(T: int, rng: np.random.Generator):
    """A reverse model p(x_{t-1}|x_t) = N(mu_tilde(x_t, x0_hat), beta_tilde) whose x0_hat = c_t x_t + d_t is an
    arbitrary linear guess (a network that is wrong in a known way), and the decoder variance at t = 0."""
    return rng.uniform(0.2, 1.2, T), rng.normal(0.0, 0.3, T)


def _elbo_terms(x0, ab, c, d, var0):
    """-ELBO(x_0) = L_T + sum_{t>=1} L_{t-1} + L_0 in closed form for the linear reverse model.
    x0: (N,) -> (L_T (N,), the L_{t-1} (N, T) with column 0 zero, L_0 (N,)).
    L_{t-1} = E_{x_t ~ q(x_t|x_0)} ||mu_tilde(x_t, x_0) - mu_theta(x_t)||^2 / (2 beta_tilde): the mean difference is
    affine in x_t, k x_t + m, so its expected square is (k m_t + m)^2 + k^2 v_t."""
    T = len(ab)
    prev = jnp.concatenate([jnp.ones(1), ab[:-1]])
    beta = 1 - ab / prev
    coef_x0 = jnp.sqrt(prev) * beta / (1 - ab)  # mu_tilde = coef_x0 x_0 + coef_xt x_t (coef_xt cancels below)
    var = (1 - prev) / (1 - ab) * beta
    prior = prior_kl(x0[:, None], ab[T - 1])
    m_t, v_t = jnp.sqrt(ab)[None] * x0[:, None], (1 - ab)[None]  # q(x_t|x_0), (N, T)
    k = -coef_x0 * c  # (mu_tilde - mu_theta) = coef_x0 (x_0 - c x_t - d)
    m = coef_x0 * (x0[:, None] - d)
    middle = (((k * m_t + m) ** 2 + k**2 * v_t) / (2 * jnp.where(var > 0, var, 1.0))).at[:, 0].set(0.0)
    # L_0 = -E_{x_1} log N(x_0; c_0 x_1 + d_0, var0), x_1 ~ N(m_0, v_0): Gaussian cross-entropy
    resid_mean = x0 - c[0] * m_t[:, 0] - d[0]
    decoder = 0.5 * (math.log(2 * math.pi) + jnp.log(var0) + (resid_mean**2 + c[0] ** 2 * v_t[:, 0]) / var0)
    return prior, middle, decoder


def _joint_gaussian_elbo(x0, ab, c, d, var0):
    """ELBO(x_0) = E_q[log p(x_{0:T}) - log q(x_{1:T}|x_0)] and log p(x_0), from the joint Gaussians of the two
    chains as (T+1)-dimensional normals (no per-term KLs). x0: (N,) -> ((N,), (N,))."""
    T = len(ab)
    prev = np.concatenate([[1.0], ab[:-1]])
    beta = 1 - ab / prev
    coef_x0 = np.sqrt(prev) * beta / (1 - ab)
    coef_xt = np.sqrt(1 - beta) * (1 - prev) / (1 - ab)
    var = (1 - prev) / (1 - ab) * beta
    # model: x_T ~ N(0, 1); x_{t-1} = a_t x_t + b_t + s_t z with a_t = coef_xt + coef_x0 c_t, b_t = coef_x0 d_t
    a, b = coef_xt + coef_x0 * c, coef_x0 * d
    s2 = np.where(np.arange(T) == 0, var0, var)  # x_0 | x_1 has variance var0 (the decoder)
    # write the model as X = A X + B + S Z in the order X = (x_0, ..., x_T): X = (I - A)^{-1} (B + S Z)
    n = T + 1
    lower = np.zeros((n, n))
    offset, noise = np.zeros(n), np.zeros(n)
    for t in range(T):  # x_t (index t) depends on x_{t+1}
        lower[t, t + 1] = a[t]
        offset[t], noise[t] = b[t], s2[t]
    noise[T] = 1.0
    inv = np.linalg.inv(np.eye(n) - lower)
    mean_p, cov_p = inv @ offset, inv @ np.diag(noise) @ inv.T
    # q(x_{1:T}|x_0): x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) e_t; mean sqrt(ab_t) x_0, cov by the same algebra
    alpha = 1 - beta
    lower_q = np.zeros((T, T))
    for t in range(1, T):
        lower_q[t, t - 1] = np.sqrt(alpha[t])
    inv_q = np.linalg.inv(np.eye(T) - lower_q)
    noise_q = beta.copy()
    cov_q = inv_q @ np.diag(noise_q) @ inv_q.T
    prec_p = np.linalg.inv(cov_p)
    _, logdet_p = np.linalg.slogdet(cov_p)
    _, logdet_q = np.linalg.slogdet(cov_q)
    elbos, evidences = [], []
    for x in np.asarray(x0):
        mean_q = np.concatenate([[x], np.sqrt(ab) * x])
        cov_full = np.zeros((n, n))
        cov_full[1:, 1:] = cov_q
        diff = mean_q - mean_p
        cross = -0.5 * (n * math.log(2 * math.pi) + logdet_p + np.trace(prec_p @ cov_full) + diff @ prec_p @ diff)
        entropy = 0.5 * (T * math.log(2 * math.pi * math.e) + logdet_q)
        elbos.append(cross + entropy)
        evidences.append(-0.5 * (math.log(2 * math.pi * cov_p[0, 0]) + (x - mean_p[0]) ** 2 / cov_p[0, 0]))
    return np.array(elbos), np.array(evidences)


# 5. SymPy: composition, the posterior, the reduction ------------------------------------------------------------
def _sympy_forward():
    """Two steps composed and the induction step: (mean coefficient, variance) of x_t | x_0."""
    a1, a2, ab_prev, alpha = sp.symbols("alpha_1 alpha_2 abar_prev alpha_t", positive=True)
    x0, e1, e2 = sp.symbols("x_0 e_1 e_2", real=True)
    x1 = sp.sqrt(a1) * x0 + sp.sqrt(1 - a1) * e1
    x2 = sp.expand(sp.sqrt(a2) * x1 + sp.sqrt(1 - a2) * e2)
    mean2 = x2.coeff(e1, 0).coeff(e2, 0)
    var2 = x2.coeff(e1) ** 2 + x2.coeff(e2) ** 2  # independent unit noises: variances add
    # induction: x_{t-1} = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) e, one more step with alpha_t
    step_mean = sp.sqrt(alpha) * sp.sqrt(ab_prev) * x0
    step_var = alpha * (1 - ab_prev) + (1 - alpha)
    return (mean2, sp.sqrt(a1 * a2) * x0, var2, 1 - a1 * a2), (step_mean, sp.sqrt(alpha * ab_prev) * x0, step_var,
                                                                  1 - alpha * ab_prev)


def _sympy_posterior():
    """Complete the square in x_{t-1} of log q(x_t|x_{t-1}) + log q(x_{t-1}|x_0)."""
    alpha, ab_prev = sp.symbols("alpha_t abar_prev", positive=True)
    x0, xt, y = sp.symbols("x_0 x_t x_prev", real=True)
    beta, ab_t = 1 - alpha, alpha * ab_prev
    exponent = -(xt - sp.sqrt(alpha) * y) ** 2 / (2 * beta) - (y - sp.sqrt(ab_prev) * x0) ** 2 / (2 * (1 - ab_prev))
    var = (1 - ab_prev) / (1 - ab_t) * beta
    mean = sp.sqrt(ab_prev) * beta / (1 - ab_t) * x0 + sp.sqrt(alpha) * (1 - ab_prev) / (1 - ab_t) * xt
    return exponent, y, mean, var, (alpha, ab_prev, x0, xt)


def _sympy_reduction():
    """mu_tilde(x_t, x_0) - mu_theta(x_t) with x_t = q_sample(x_0, eps) and the eps-parameterised mean (eq. 11)."""
    alpha, ab_prev, sigma2 = sp.symbols("alpha_t abar_prev sigma_t^2", positive=True)
    x0, eps, eps_theta = sp.symbols("x_0 epsilon epsilon_theta", real=True)
    beta, ab_t = 1 - alpha, alpha * ab_prev
    xt = sp.sqrt(ab_t) * x0 + sp.sqrt(1 - ab_t) * eps
    mu_tilde = sp.sqrt(ab_prev) * beta / (1 - ab_t) * x0 + sp.sqrt(alpha) * (1 - ab_prev) / (1 - ab_t) * xt
    mu_theta = (xt - beta / sp.sqrt(1 - ab_t) * eps_theta) / sp.sqrt(alpha)
    mu_at_x0_hat = (sp.sqrt(ab_prev) * beta / (1 - ab_t) * (xt - sp.sqrt(1 - ab_t) * eps_theta) / sp.sqrt(ab_t)
                    + sp.sqrt(alpha) * (1 - ab_prev) / (1 - ab_t) * xt)
    weight = beta**2 / (2 * sigma2 * alpha * (1 - ab_t))
    beta_tilde = (1 - ab_prev) / (1 - ab_t) * beta
    return (mu_tilde - mu_theta) ** 2 / (2 * sigma2), weight * (eps - eps_theta) ** 2, mu_theta, mu_at_x0_hat, (
        weight.subs(sigma2, beta_tilde), beta / (2 * alpha * (1 - ab_prev)))


# 6. The derivation ---------------------------------------------------------------------------------------------
def _section_forward_marginal(d: Derivation) -> None:
    """q(x_t|x_0) by composing one-step Gaussians: SymPy for two steps and the induction step, then T = 1000 steps."""
    d.say("Forward process: $q(x_t\\mid x_{t-1}) = \\mathcal N(\\sqrt{\\alpha_t}\\,x_{t-1}, \\beta_t I)$, "
          "$\\alpha_t = 1 - \\beta_t$, $\\bar\\alpha_t = \\prod_{s\\le t}\\alpha_s$. Claim: "
          "$q(x_t\\mid x_0) = \\mathcal N(\\sqrt{\\bar\\alpha_t}\\,x_0, (1-\\bar\\alpha_t) I)$ (Ho et al. eq. 4).")
    (m2, m2_expected, v2, v2_expected), (ms, ms_expected, vs, vs_expected) = _sympy_forward()
    d.symbolic("Two steps: $x_2 = \\sqrt{\\alpha_2}(\\sqrt{\\alpha_1}x_0 + \\sqrt{1-\\alpha_1}e_1) "
               "+ \\sqrt{1-\\alpha_2}e_2$ has mean $\\sqrt{\\alpha_1\\alpha_2}\\,x_0$", m2, m2_expected)
    d.symbolic("... and variance $\\alpha_2(1-\\alpha_1) + (1-\\alpha_2) = 1 - \\alpha_1\\alpha_2$ "
               "(independent Gaussian noises: variances add)", v2, v2_expected)
    d.symbolic("Induction step: if $x_{t-1}\\mid x_0$ has mean $\\sqrt{\\bar\\alpha_{t-1}}x_0$, one more step gives mean "
               "$\\sqrt{\\alpha_t\\bar\\alpha_{t-1}}\\,x_0 = \\sqrt{\\bar\\alpha_t}\\,x_0$", ms, ms_expected)
    d.symbolic("... and variance $\\alpha_t(1-\\bar\\alpha_{t-1}) + \\beta_t = 1 - \\bar\\alpha_t$", vs, vs_expected)
    for kind, betas in (("linear", linear_betas(1000)), ("cosine", cosine_betas(1000))):
        b = np.asarray(betas)
        mean_coef, var = np.empty(1000), np.empty(1000)
        m, v = 1.0, 0.0
        for t in range(1000):  # compose the one-step Gaussians one at a time
            m, v = math.sqrt(1 - b[t]) * m, (1 - b[t]) * v + b[t]
            mean_coef[t], var[t] = m, v
        d.numeric(f"{kind} schedule, T = 1000: composing the one-step Gaussians step by step gives mean coefficient "
                  "$\\sqrt{\\bar\\alpha_t}$ and variance $1-\\bar\\alpha_t$ with `alpha_bars(betas)` at every t",
                  np.stack([mean_coef**2, var]), np.stack([alpha_bars(betas), 1 - alpha_bars(betas)]))


def _section_forward_chain_simulated(d: Derivation, rng: np.random.Generator):
    """The chain itself, simulated: its marginals at t = 300 and t = T; predict_x0 inverts q_sample."""
    betas = np.asarray(linear_betas(1000))
    x0_value, paths = 0.8, 20_000
    x = np.full(paths, x0_value)
    for t in range(1000):  # simulate the chain itself
        x = math.sqrt(1 - betas[t]) * x + math.sqrt(betas[t]) * rng.standard_normal(paths)
    ab = np.asarray(alpha_bars(jnp.asarray(betas)))
    mid = np.full(paths, x0_value)
    for t in range(300):
        mid = math.sqrt(1 - betas[t]) * mid + math.sqrt(betas[t]) * rng.standard_normal(paths)
    d.monte_carlo("Monte Carlo: 20 000 simulated chains from $x_0 = 0.8$: after 300 steps the mean is "
                  "$\\sqrt{\\bar\\alpha_{t}}\\,x_0$", mid, math.sqrt(ab[299]) * x0_value)
    d.monte_carlo("... and the second moment about it is $1 - \\bar\\alpha_t$",
                  (mid - math.sqrt(ab[299]) * x0_value) ** 2, 1 - ab[299])
    d.monte_carlo("... and after all 1000 steps $x_T$ is close to $\\mathcal N(0, 1)$: variance $1-\\bar\\alpha_T$",
                  (x - math.sqrt(ab[-1]) * x0_value) ** 2, 1 - ab[-1])
    fig, ax = new_figure()
    line = np.linspace(-4, 4, 200)
    for samples, step, color in ((mid, 300, "C0"), (x, 1000, "C1")):
        mean, var = math.sqrt(ab[step - 1]) * x0_value, 1 - ab[step - 1]
        ax.hist(samples, bins=80, range=(-4, 4), density=True, color=color, alpha=0.35, label=f"chains, t = {step}")
        ax.plot(line, np.exp(-((line - mean) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var), color=color,
                label=f"$N(\\sqrt{{\\bar\\alpha_t}}x_0, 1-\\bar\\alpha_t)$, t = {step}")
    ax.axvline(x0_value, color="k", ls=":", lw=1)
    ax.set(xlabel="$x_t$ (from $x_0 = 0.8$, dotted)", ylabel="density")
    ax.legend(fontsize=7)
    d.figure(fig, "20 000 simulated forward chains from $x_0 = 0.8$ match $q(x_t|x_0)$ in closed form: at t = 300 the "
             "start still shows, after T = 1000 steps it is forgotten and $x_T$ is standard normal.")
    eps = rng.standard_normal((6, 3))
    x0 = rng.standard_normal((6, 3))
    a6 = jnp.asarray(ab[[0, 10, 100, 400, 800, 999]])
    d.numeric("`predict_x0` inverts `q_sample`: $x_0 = (x_t - \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon)/\\sqrt{\\bar\\alpha_t}$",
              predict_x0(q_sample(x0, a6, eps), a6, eps), x0, rtol=1e-9)
    d.gradient("$\\partial x_t / \\partial x_0 = \\sqrt{\\bar\\alpha_t}$ (jax.grad of `q_sample`)",
               jax.vmap(jax.grad(lambda x, a, e: q_sample(x, a, e)))(x0[:, 0], a6, eps[:, 0]), np.sqrt(a6))
    return ab, x0, eps, a6


def _section_posterior(d: Derivation, rng: np.random.Generator, x0, eps, a6) -> None:
    """The posterior q(x_{t-1}|x_t, x_0) by completing the square, and by conditioning the joint Gaussian."""
    d.say("The posterior $q(x_{t-1}\\mid x_t, x_0) \\propto q(x_t\\mid x_{t-1})\\,q(x_{t-1}\\mid x_0)$ is Gaussian: "
          "its log is quadratic in $x_{t-1}$. Completing the square gives "
          "$\\tilde\\mu_t = \\frac{\\sqrt{\\bar\\alpha_{t-1}}\\beta_t}{1-\\bar\\alpha_t}x_0 + "
          "\\frac{\\sqrt{\\alpha_t}(1-\\bar\\alpha_{t-1})}{1-\\bar\\alpha_t}x_t$ and "
          "$\\tilde\\beta_t = \\frac{1-\\bar\\alpha_{t-1}}{1-\\bar\\alpha_t}\\beta_t$ (eqs. 6-7).")
    exponent, y, mean, var, syms = _sympy_posterior()
    d.symbolic("The coefficient of $x_{t-1}^2$: $\\partial^2/\\partial x_{t-1}^2$ of the log-density is "
               "$-1/\\tilde\\beta_t$", sp.diff(exponent, y, 2), -1 / var)
    d.symbolic("The linear term: $\\partial/\\partial x_{t-1}$ of the log-density vanishes at $x_{t-1} = \\tilde\\mu_t$ "
               "(so $\\log q = -(x_{t-1}-\\tilde\\mu_t)^2/2\\tilde\\beta_t + $ const)", sp.diff(exponent, y).subs(y, mean))
    vals = rng.uniform(0.05, 0.95, (2, 40))
    pts = rng.standard_normal((2, 40))
    lam_mean, lam_var = sp.lambdify(syms, mean, "numpy"), sp.lambdify(syms, var, "numpy")
    alpha_t, ab_prev = vals
    got_mean, got_var = posterior_mean_variance(pts[0][:, None], pts[1][:, None], alpha_t * ab_prev, ab_prev)
    d.numeric("`posterior_mean_variance` implements the SymPy mean and variance (40 random settings)",
              np.stack([got_mean[:, 0], got_var]),
              np.stack([lam_mean(alpha_t, ab_prev, pts[0], pts[1]), lam_var(alpha_t, ab_prev, pts[0], pts[1])]))
    # an independent witness: Gaussian conditioning of the joint of (x_{t-1}, x_t) given x_0
    v_prev, v_t = 1 - ab_prev, 1 - alpha_t * ab_prev
    cov = np.sqrt(alpha_t) * v_prev
    cond_mean = np.sqrt(ab_prev) * pts[0] + cov / v_t * (pts[1] - np.sqrt(alpha_t * ab_prev) * pts[0])
    d.numeric("The same by conditioning the joint Gaussian of $(x_{t-1}, x_t)\\mid x_0$: "
              "$\\mu_{1|2} = \\mu_1 + \\Sigma_{12}\\Sigma_{22}^{-1}(x_t - \\mu_2)$, "
              "$\\Sigma_{1|2} = \\Sigma_{11} - \\Sigma_{12}^2/\\Sigma_{22}$",
              np.stack([got_mean[:, 0], got_var]), np.stack([cond_mean, v_prev - cov**2 / v_t]))
    d.numeric("At the first step ($\\bar\\alpha_{t-1} = 1$) the posterior variance is 0 and `ddpm_step` returns "
              "$\\hat x_0$ whatever the noise", ddpm_step(x0, eps, a6[0], 1.0, jnp.asarray(pts[0, :18].reshape(6, 3))),
              predict_x0(x0, a6[0], eps))


def _section_elbo_split(d: Derivation, rng: np.random.Generator) -> None:
    """The ELBO split L_T + sum L_{t-1} + L_0 on 1-D Gaussian data, every term closed form, against log p(x_0)."""
    d.say("The ELBO. $-\\log p(x_0) \\le \\mathbb E_q[-\\log \\frac{p(x_{0:T})}{q(x_{1:T}\\mid x_0)}] = "
          "L_T + \\sum_{t>1} L_{t-1} + L_0$ with $L_T = \\mathrm{KL}(q(x_T\\mid x_0)\\,\\|\\,p(x_T))$, "
          "$L_{t-1} = \\mathbb E_q \\mathrm{KL}(q(x_{t-1}\\mid x_t,x_0)\\,\\|\\,p_\\theta(x_{t-1}\\mid x_t))$ and "
          "$L_0 = -\\mathbb E_q\\log p_\\theta(x_0\\mid x_1)$ (eq. 5). Test case: 1-D data, T = 10, a reverse model "
          "$p_\\theta(x_{t-1}\\mid x_t) = \\mathcal N(\\tilde\\mu_t(x_t, \\hat x_0), \\tilde\\beta_t)$ whose "
          "$\\hat x_0 = c_t x_t + d_t$ is a wrong linear guess, so every term is a closed-form Gaussian expectation.")
    small_ab = alpha_bars(jnp.linspace(0.05, 0.5, 10))
    c, dd = _linear_reverse_model(10, rng)
    var0 = 0.05
    xs = jnp.asarray(rng.normal(0.0, 1.5, 12))
    prior, middle, decoder = _elbo_terms(xs, small_ab, jnp.asarray(c), jnp.asarray(dd), var0)
    elbo, evidence = _joint_gaussian_elbo(np.asarray(xs), np.asarray(small_ab), c, dd, var0)
    d.numeric("$L_T + \\sum L_{t-1} + L_0 = -\\mathrm{ELBO}$, the ELBO computed independently as "
              "$\\mathbb E_q[\\log p(x_{0:T})] + H[q(x_{1:T}\\mid x_0)]$ from the joint Gaussians of both chains "
              "(12 data points)", prior + middle.sum(axis=1) + decoder, -elbo, rtol=1e-9)
    d.inequality("$\\mathrm{ELBO}(x_0) \\le \\log p_\\theta(x_0)$, the model's exact marginal (12 data points)",
                 elbo, evidence)
    fig, (left, right) = new_figure(columns=2)
    order = np.argsort(np.asarray(xs))
    left.plot(np.asarray(xs)[order], evidence[order], "o-", label="$\\log p_\\theta(x_0)$")
    left.plot(np.asarray(xs)[order], elbo[order], "s--", label="ELBO$(x_0)$")
    left.set(xlabel="data point $x_0$", ylabel="nats")
    left.legend()
    terms = np.concatenate([[decoder[0]], middle[0, 1:], [prior[0]]])
    right.bar(np.arange(11), terms, color=["C2"] + ["C0"] * 9 + ["C3"])
    for i in (0, 10):
        right.annotate(f"{terms[i]:.3f}", (i, max(terms[i], 0.0)), ha="center", va="bottom", fontsize=7)
    right.axhline(0.0, color="k", lw=0.8)
    right.set(xticks=[0, 5, 10], xticklabels=["$L_0$", "$L_5$", "$L_T$"],
              ylabel=f"nats (sum {terms.sum():.2f} = -ELBO)", title=f"terms at $x_0$ = {float(xs[0]):.2f}")
    d.figure(fig, "Left: the ELBO lies below the model's exact $\\log p_\\theta(x_0)$ at every data point. Right: "
             "$-$ELBO split into the decoder term $L_0$, the nine denoising KLs $L_{t-1}$ and the prior term $L_T$.")
    t_mid = 4
    prev = small_ab[t_mid - 1]
    x_t = np.sqrt(small_ab[t_mid]) * np.asarray(xs) + np.sqrt(1 - small_ab[t_mid]) * rng.standard_normal((20000, 12))
    beta_t = 1 - small_ab[t_mid] / prev
    coef_x0 = np.sqrt(prev) * beta_t / (1 - small_ab[t_mid])
    coef_xt = np.sqrt(1 - beta_t) * (1 - prev) / (1 - small_ab[t_mid])
    mu_q = coef_x0 * np.asarray(xs) + coef_xt * x_t
    mu_p = coef_x0 * (c[t_mid] * x_t + dd[t_mid]) + coef_xt * x_t
    v = (1 - prev) / (1 - small_ab[t_mid]) * beta_t
    kl = gaussian_kl(mu_q.reshape(-1, 1), np.full((mu_q.size, 1), np.log(v)), mu_p.reshape(-1, 1),
                     np.full((mu_q.size, 1), np.log(v))).reshape(mu_q.shape)
    d.monte_carlo(f"One middle term, $L_{{{t_mid - 1}}}$ at the first data point: the closed form equals the average "
                  "over 20 000 draws of $x_t\\sim q(x_t\\mid x_0)$ of $\\mathrm{KL}(q\\|p_\\theta)$ (`elbo.gaussian_kl`)",
                  np.asarray(kl[:, 0]), middle[0, t_mid])
    x1 = np.sqrt(small_ab[0]) * float(xs[0]) + np.sqrt(1 - small_ab[0]) * rng.standard_normal(20000)
    d.monte_carlo("$L_0 = -\\mathbb E_{x_1}\\log \\mathcal N(x_0; \\hat x_0(x_1), \\sigma_1^2)$ by 20 000 draws",
                  -np.asarray(gaussian_log_prob(jnp.full((20000, 1), xs[0]), jnp.asarray(c[0] * x1 + dd[0])[:, None],
                                                jnp.full((20000, 1), math.log(var0)))), decoder[0])


def _section_reduction_to_eps_mse(d: Derivation, rng: np.random.Generator, ab) -> None:
    """L_{t-1} reduces to a weighted squared error in epsilon (eq. 12); L_simple drops the weight."""
    d.say("Reduction. With $\\mu_\\theta(x_t) = \\frac{1}{\\sqrt{\\alpha_t}}(x_t - "
          "\\frac{\\beta_t}{\\sqrt{1-\\bar\\alpha_t}}\\epsilon_\\theta)$ and "
          "$x_t = \\sqrt{\\bar\\alpha_t}x_0 + \\sqrt{1-\\bar\\alpha_t}\\epsilon$, the KL of two "
          "Gaussians of the same variance $\\sigma_t^2$ is a weighted squared error in $\\epsilon$ (eq. 12).")
    lhs, rhs, mu_theta, mu_at_x0_hat, (w_tilde, w_simple) = _sympy_reduction()
    d.symbolic("$\\mu_\\theta$ of eq. 11 is $\\tilde\\mu_t(x_t, \\hat x_0(x_t, \\epsilon_\\theta))$: the mean `ddpm_step` "
               "uses", mu_theta, mu_at_x0_hat)
    d.symbolic("$\\frac{\\|\\tilde\\mu_t - \\mu_\\theta\\|^2}{2\\sigma_t^2} = \\frac{\\beta_t^2}{2\\sigma_t^2\\alpha_t"
               "(1-\\bar\\alpha_t)}\\|\\epsilon - \\epsilon_\\theta\\|^2$", lhs, rhs)
    d.symbolic("With $\\sigma_t^2 = \\tilde\\beta_t$ the weight is $\\beta_t / (2\\alpha_t(1-\\bar\\alpha_{t-1}))$",
               w_tilde, w_simple)
    a_t, a_p = jnp.asarray(ab[[5, 50, 500, 900]]), jnp.asarray(ab[[4, 49, 499, 899]])
    x0b, epsb, predb = (rng.standard_normal((4, 2, 3)) for _ in range(3))
    xtb = q_sample(x0b, a_t, epsb)
    d.numeric("`vlb_term` (the KL from the two means) equals `vlb_weight` $\\times\\|\\epsilon-\\epsilon_\\theta\\|^2$",
              vlb_term(x0b, xtb, predb, a_t, a_p), vlb_weight(a_t, a_p) * ((epsb - predb) ** 2).sum(axis=(1, 2)),
              rtol=1e-8)
    grad = jax.grad(lambda p: vlb_term(x0b, xtb, p, a_t, a_p).sum())(jnp.asarray(predb))
    d.gradient("$\\nabla_{\\epsilon_\\theta} L_{t-1} = 2 w_t(\\epsilon_\\theta - \\epsilon)$ (jax.grad)",
               grad, 2 * vlb_weight(a_t, a_p)[:, None, None] * (predb - epsb), rtol=1e-7)
    d.numeric("L_simple drops the weight: `eps_loss` is the per-dimension mean of $(\\epsilon-\\epsilon_\\theta)^2$",
              eps_loss(epsb, predb), ((epsb - predb) ** 2).mean(axis=(1, 2)))
    grid = jnp.linspace(-1, 1, 256)
    masses = jnp.exp(discretized_gaussian_log_likelihood(grid, jnp.full(256, 0.13), jnp.full(256, math.log(0.3))))
    d.numeric("$L_0$'s discretised Gaussian (eq. 13) is a distribution on the 256 grid values of [-1, 1]: "
              "masses sum to 1", masses.sum(), 1.0)


def _section_schedules(d: Derivation) -> None:
    """The linear and cosine schedules: endpoints, the closed form of the cosine one, monotone SNR, small L_T."""
    d.say("Schedules. Linear: $\\beta_t$ from $10^{-4}$ to $0.02$ over T = 1000 (Ho et al.). Cosine: "
          "$\\bar\\alpha_t = f(t)/f(0)$, $f(t) = \\cos^2(\\frac{t/T+s}{1+s}\\frac{\\pi}{2})$, s = 0.008, with "
          "$\\beta_t$ clipped at 0.999 (Nichol & Dhariwal eq. 17).")
    lin, cos = linear_betas(1000), cosine_betas(1000)
    d.numeric("Linear endpoints $\\beta_1 = 10^{-4}$, $\\beta_T = 0.02$ and constant increments",
              np.array([lin[0], lin[-1], np.ptp(np.diff(np.asarray(lin)))]), np.array([1e-4, 0.02, 0.0]), atol=1e-15)
    f = np.cos((np.arange(1001) / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    unclipped = np.asarray(cos) < 0.999
    d.numeric("Cosine: $\\bar\\alpha_t = f(t)/f(0)$ wherever $\\beta_t$ is not clipped "
              f"({int(unclipped.sum())} of 1000 steps)", np.asarray(alpha_bars(cos))[unclipped],
              (f[1:] / f[0])[unclipped], rtol=1e-9)
    for kind, sched in (("linear", lin), ("cosine", cos)):
        abar = np.asarray(alpha_bars(sched))
        d.inequality(f"{kind}: $\\bar\\alpha_t$ strictly decreasing, so the SNR $\\bar\\alpha_t/(1-\\bar\\alpha_t)$ is too",
                     np.diff(abar), np.zeros(999), slack=-1e-300)
        d.inequality(f"{kind}: $\\bar\\alpha_T < 10^{{-4}}$, so $L_T$ is under $5\\cdot 10^{{-5}}$ nats per unit-variance "
                     "dimension", float(prior_kl(jnp.ones((1, 1)), abar[-1])[0]), 5e-5)
    u = sp.symbols("u", positive=True)
    d.symbolic("With s = 0 ($f(0) = 1$) the cosine schedule's SNR is $\\cot^2 u$, "
               "$u = \\frac{t}{T}\\frac{\\pi}{2}$: $\\log\\mathrm{SNR}$ falls like $-2\\log\\tan u$",
               sp.cos(u) ** 2 / (1 - sp.cos(u) ** 2), 1 / sp.tan(u) ** 2)
    d.inequality("The cosine schedule destroys information more slowly at the start: its $\\bar\\alpha_t$ is above the "
                 "linear one for every t < T/2", np.asarray(alpha_bars(lin))[:500], np.asarray(alpha_bars(cos))[:500])
    fig, (left, right) = new_figure(columns=2)
    steps = np.arange(1, 1001) / 1000
    for name, sched in (("linear", lin), ("cosine", cos)):
        abar = np.asarray(alpha_bars(sched))
        left.plot(steps, abar, label=name)
        right.plot(steps, np.log(abar / (1 - abar)), label=name)
    left.set(xlabel="$t/T$", ylabel="$\\bar\\alpha_t$")
    right.set(xlabel="$t/T$", ylabel="$\\log\\,\\mathrm{SNR} = \\log\\,\\bar\\alpha_t/(1-\\bar\\alpha_t)$")
    left.legend()
    d.figure(fig, "The cosine schedule keeps $\\bar\\alpha_t$ high for longer and lowers the log-SNR almost linearly; "
             "the linear schedule destroys the signal early, and both end near $\\bar\\alpha_T = 0$.")


def _gaussian_eps(x, alpha_bar, cov):
    """The exact noise predictor of zero-mean Gaussian data N(0, cov): eps*(x_t) = -sqrt(1 - a) grad log p_t(x_t) =
    sqrt(1 - a) (a cov + (1 - a) I)^{-1} x_t, since x_t ~ N(0, a cov + (1 - a) I). x: (N, D)."""
    marginal = alpha_bar * cov + (1 - alpha_bar) * jnp.eye(len(cov))
    return jnp.sqrt(1 - alpha_bar) * jnp.linalg.solve(marginal, x.T).T


def _restore_gaussian(cov, y, known, n: int, rng: np.random.Generator, chains: int, resample: int = 1,
                      replace: bool = True):
    """Chains (chains, D) of the restoration sampler with the exact eps* of N(0, cov), ``n`` steps respaced from the
    linear T = 1000 schedule: ancestral steps, ``replace_known`` with the mask ``known`` after each (unless not
    ``replace``: the unconditional sampler with the same noise), RePaint's resampling with jump 1."""
    full = np.asarray(alpha_bars(linear_betas(1000)))
    ab = full[np.unique(np.round(np.linspace(0, 999, n)).astype(int))]
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    @jax.jit
    def down(x, z, z_y, a_t, a_prev):  # the ancestral step, then the known part replaced
        x = ddpm_step(x, _gaussian_eps(x, a_t, cov), a_t, a_prev, z)
        return replace_known(x, q_sample(y, a_prev, z_y), known) if replace else x

    up = jax.jit(renoise)
    x = jnp.asarray(rng.standard_normal((chains, len(cov))))
    levels = repaint_levels(n, 1, resample)
    for here, there in zip(levels[:-1], levels[1:]):
        z, z_y = (jnp.asarray(rng.standard_normal(x.shape)) for _ in range(2))
        if there < here:
            x = down(x, z if here > 0 else 0 * z, z_y, ab[here], ab_prev[here])
        else:
            x = up(x, ab[there], ab_prev[there], z)
    return np.asarray(x)


def _section_restoration(d: Derivation, rng: np.random.Generator) -> None:
    """RePaint's replacement rule on a 2-D Gaussian: exact known part, independent unknown part right, correlated
    unknown part biased, resampling harmonises; the low-pass projection of ILVR is a projection."""
    d.say("Restoration without retraining (RePaint, Lugmayr et al. 2022; ILVR, Choi et al. 2021). Knowing a linear "
          "projection $P$ of the truth $y$ (the pixels under a mask $m$, or its low frequencies), each reverse step "
          "keeps the model's draw outside $P$'s range and puts a draw of the truth's forward process inside it: "
          "$x_{t-1} = (I - P)\\,x_{t-1}^{\\theta} + P\\,y_{t-1}$, $y_{t-1} \\sim q(y_{t-1}\\mid y)$. "
          "On $y \\sim \\mathcal N(0, \\Sigma)$ in 2-D, with the exact noise predictor "
          "$\\epsilon^*(x_t) = \\sqrt{1-\\bar\\alpha_t}\\,(\\bar\\alpha_t\\Sigma + (1-\\bar\\alpha_t)I)^{-1}x_t$, "
          "coordinate 1 known ($y_1 = 1.5$) and coordinate 2 to fill in, the answer is the conditional "
          "$\\mathcal N(\\rho y_1, 1 - \\rho^2)$.")
    known, chains, a = jnp.array([1.0, 0.0]), 4_000, 1.5
    y = jnp.array([a, 0.0])
    independent = jnp.eye(2)
    state = rng.bit_generator.state
    filled = _restore_gaussian(independent, y, known, 50, rng, chains)
    rng.bit_generator.state = state
    free = _restore_gaussian(independent, y, known, 50, rng, chains, replace=False)
    d.numeric("The known coordinate ends at the truth exactly: the last replacement draws $y_0 = y$ "
              f"($\\bar\\alpha_{{-1}} = 1$), {chains} chains", filled[:, 0], np.full(chains, a))
    d.numeric("Where the parts are independent ($\\rho = 0$) the replacement is exact: the unknown coordinate's chain "
              "is the unconditional sampler's, draw for draw (same noise), and $p(x_2\\mid y_1) = p(x_2)$",
              filled[:, 1], free[:, 1])
    rho = 0.9
    correlated = jnp.array([[1.0, rho], [rho, 1.0]])
    plain = _restore_gaussian(correlated, y, known, 50, rng, chains)[:, 1]
    longer = _restore_gaussian(correlated, y, known, 200, rng, chains)[:, 1]
    resampled = _restore_gaussian(correlated, y, known, 50, rng, chains, resample=10)[:, 1]
    exact_mean, exact_var = rho * a, 1 - rho ** 2
    d.inequality(f"Where they are correlated ($\\rho = {rho}$) it is not: the unknown coordinate's mean is "
                 f"{plain.mean():.3f} against the conditional's {exact_mean:.2f}, off by more than 0.3 (its standard "
                 f"error is {plain.std() / math.sqrt(chains):.4f}). Each step's known part is drawn from "
                 "$q(y_{t-1}\\mid y)$ without looking at the unknown one, so the model never sees a known part "
                 "consistent with the unknown part it drew", 0.3, abs(plain.mean() - exact_mean))
    d.inequality("...and it is not a discretisation error: 200 steps leave the mean "
                 f"{longer.mean():.3f}, as far off", 0.3, abs(longer.mean() - exact_mean))
    d.inequality("RePaint's resampling harmonises the two: going back up one level with $q(x_t\\mid x_{t-1})$ and "
                 f"stepping down again, 10 times per level, brings the mean to {resampled.mean():.3f}, within 0.1 of "
                 "the conditional's", abs(resampled.mean() - exact_mean), 0.1)
    d.say(f"The variances: {plain.var():.3f} without resampling, {resampled.var():.3f} with it, against the "
          f"conditional's {exact_var:.2f}; resampling moves the mean most of the way and overshoots the spread.")
    image = jnp.asarray(rng.standard_normal((2, 1, 8, 8)))
    once = low_pass(image, 2)
    d.numeric("ILVR's low-pass filter (2 x 2 block means, nearest upsampling) is a projection: $P^2 = P$",
              low_pass(once, 2), once)
    other = jnp.asarray(rng.standard_normal((2, 1, 8, 8)))
    d.numeric("...and an orthogonal one: $\\langle P u, v\\rangle = \\langle u, P v\\rangle$, so replacing $P x$ "
              "keeps the rest of $x$ untouched", jnp.sum(low_pass(image, 2) * other), jnp.sum(image * low_pass(other, 2)))
    fig, ax = new_figure()
    grid = np.linspace(-0.5, 3.0, 300)
    for draws, label in ((plain, "replacement alone"), (resampled, "with resampling (r = 10)")):
        ax.hist(draws, bins=60, range=(-0.5, 3.0), density=True, histtype="step", label=label)
    ax.plot(grid, np.exp(-(grid - exact_mean) ** 2 / (2 * exact_var)) / math.sqrt(2 * math.pi * exact_var), "k--",
            label="exact conditional")
    ax.set(xlabel="the unknown coordinate $x_2$ given $y_1 = 1.5$ ($\\rho = 0.9$)", ylabel="density")
    ax.legend(loc="upper left")
    d.figure(fig, "Inpainting one coordinate of a correlated 2-D Gaussian with the exact denoiser: replacement alone "
             "lands between the prior and the conditional; RePaint's resampling moves the draws onto the conditional's "
             "mean.")


def _cascade_stages(sigma, w, a):
    """The exact stages of a two-pixel cascade with x ~ N(0, Sigma), z = w^T x and z_s = sqrt(a) z + sqrt(1 - a) eps:
    the base's marginal variance v of z_s, and the super-resolution stage x | z_s ~ N(k z_s, c)."""
    sw = sigma @ w
    v = a * (w @ sw) + 1 - a
    return v, jnp.sqrt(a) * sw / v, sigma - a * jnp.outer(sw, sw) / v


def _cascade_bound(x, sigma, w, a, v_base):
    """E_q[log p_SR(x | z_s)] + E_q[log p_base(z_s)] + H[q(z_s | x)] in closed form, q = N(sqrt(a) w^T x, 1 - a),
    p_base = N(0, v_base), p_SR the exact stage. x: (N, 2) -> (N,)."""
    _, k, c = _cascade_stages(sigma, w, a)
    m_q, var_q = jnp.sqrt(a) * x @ w, 1 - a
    resid = x - m_q[:, None] * k
    cinv = jnp.linalg.inv(c)
    sr = (-0.5 * jnp.einsum("ni,ij,nj->n", resid, cinv, resid) - 0.5 * var_q * k @ cinv @ k
          - 0.5 * jnp.linalg.slogdet(2 * math.pi * c)[1])
    base = -0.5 * jnp.log(2 * math.pi * v_base) - (m_q**2 + var_q) / (2 * v_base)
    return sr + base + 0.5 * jnp.log(2 * math.pi * math.e * var_q)


def _section_cascade(d: Derivation, rng: np.random.Generator) -> None:
    """Cascades (Ho et al. 2021): the condition, its augmentation as a forward process, the cascade's bound."""
    d.say("Cascades (Ho et al. 2021, \"Cascaded diffusion models\"). A cascade samples a low-resolution image with "
          "a base model, then a super-resolution model conditioned on it, upsampled. Conditioning augmentation trains "
          "the second stage on a noised condition $z_s = \\sqrt{\\bar\\alpha_s}\\,z + \\sqrt{1-\\bar\\alpha_s}"
          "\\,\\epsilon$, so that it does not trust the base model's samples more than they deserve.")
    x = jnp.asarray(rng.standard_normal((3, 2, 6, 6)))
    d.numeric("The condition is `downsample` (block means), brought back to size by `upsample` (nearest); together "
              "they are ILVR's `low_pass`", upsample(downsample(x, 3), 3), low_pass(x, 3), rtol=0, atol=1e-15)
    z, a = jnp.asarray(rng.standard_normal((1, 1, 4, 4))), 0.6
    draws = augment_condition(jnp.broadcast_to(z, (40_000, 1, 4, 4)), jnp.full(40_000, a),
                              jnp.asarray(rng.standard_normal((40_000, 1, 4, 4))))
    dev = (draws - math.sqrt(a) * z).reshape(40_000, -1)
    d.monte_carlo("The augmentation is the forward process on the condition: $z_s \\mid z \\sim \\mathcal N("
                  "\\sqrt{\\bar\\alpha_s}z, (1-\\bar\\alpha_s)I)$ ($\\bar\\alpha_s = 0.6$; mean and variance of 16 "
                  "pixels, 40 000 draws)", jnp.concatenate([dev, dev**2], 1),
                  jnp.concatenate([jnp.zeros(16), jnp.full(16, 1 - a)]))
    sigma, w = jnp.array([[1.0, 0.6], [0.6, 0.8]]), jnp.array([0.5, 0.5])
    pts = jnp.asarray(rng.standard_normal((50, 2))) * 1.5
    exact = (-0.5 * jnp.einsum("ni,ij,nj->n", pts, jnp.linalg.inv(sigma), pts)
             - 0.5 * jnp.linalg.slogdet(2 * math.pi * sigma)[1])  # log N(x; 0, Sigma)
    bounds = jnp.stack([_cascade_bound(pts, sigma, w, a, _cascade_stages(sigma, w, a)[0]) for a in (0.3, 0.9)])
    d.say("Its likelihood: the cascade is a latent-variable model, $p(x) = \\int p_{SR}(x \\mid z_s)\\, p_{base}(z_s)"
          "\\,dz_s$, with the augmented condition $q(z_s \\mid x)$ as its posterior, so $\\log p(x) \\ge E_q[\\log "
          "p_{SR}(x \\mid z_s)] + E_q[\\log p_{base}(z_s)] + H[q]$: the stages' terms, summed.")
    d.numeric("On two Gaussian pixels ($z$ their mean) with exact stages the bound is tight at every point: "
              "$q(z_s \\mid x)$ is the model's posterior ($\\bar\\alpha_s$ = 0.3 and 0.9, 50 points)",
              bounds, jnp.stack([exact, exact]), rtol=1e-10, atol=1e-10)
    v, k, c = _cascade_stages(sigma, w, 0.9)
    model = k[:, None] * 1.3 * v * k[None, :] + c  # the cascade's p(x) with a base of 1.3 times the variance
    model_ll = (-0.5 * jnp.einsum("ni,ij,nj->n", pts, jnp.linalg.inv(model), pts)
                - 0.5 * jnp.linalg.slogdet(2 * math.pi * model)[1])
    gap = model_ll - _cascade_bound(pts, sigma, w, 0.9, 1.3 * v)
    d.inequality(f"With a base of 30% too much variance the sum stays below that cascade's own log-likelihood at "
                 f"every point, by {float(gap.min()):.1e} to {float(gap.max()):.1e} nats (the gap: the KL from $q$ to "
                 f"that model's posterior)", 1e-5, gap)


def _section_cascade_augmentation(d: Derivation) -> None:
    """Why augmentation helps: a base stage's error reaches the cascade's output less when the condition is noised."""
    sigma, w = jnp.array([[1.0, 0.6], [0.6, 0.8]]), jnp.array([0.5, 0.5])
    levels = np.linspace(0.1, 1.0, 10)
    kls = []
    for a in levels:
        v, k, c = _cascade_stages(sigma, w, float(a))
        generated = k[:, None] * (a * 1.3 * (w @ sigma @ w) + 1 - a) * k[None, :] + c  # base draws z with 1.3 x var
        kls.append(float(0.5 * (jnp.trace(jnp.linalg.solve(sigma, generated)) - 2 + jnp.linalg.slogdet(sigma)[1]
                                - jnp.linalg.slogdet(generated)[1])))  # KL(N(0, generated) || N(0, Sigma))
    d.say("Why it helps: give the super-resolution stage a base whose samples have 30% too much variance. Sampling "
          "augments the base's draw at the level the stage was trained with, and the stage, which learnt how far to "
          "trust a noised condition, passes on less of the base's error.")
    d.inequality(f"The KL from the cascade's samples to the data falls as the augmentation grows: {kls[-1]:.4f} "
                 f"without it ($\\bar\\alpha_s = 1$), {kls[4]:.4f} at 0.5, {kls[0]:.4f} at 0.1",
                 np.array(kls[:-1]), np.array(kls[1:]))
    fig, ax = new_figure()
    ax.plot(levels, kls, "o-")
    ax.set(xlabel="$\\bar\\alpha_s$ of the augmentation (1: none)", ylabel="KL(cascade's samples || data)")
    d.figure(fig, "A base stage with 30% too much variance: the more the super-resolution stage's condition is "
                  "augmented, the less of the base's error reaches the samples (exact Gaussian stages). A real stage "
                  "pays for it: it must then draw more of the image itself.")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("ddpm", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    _section_forward_marginal(d)
    ab, x0, eps, a6 = _section_forward_chain_simulated(d, rng)
    _section_posterior(d, rng, x0, eps, a6)
    _section_elbo_split(d, rng)
    _section_reduction_to_eps_mse(d, rng, ab)
    _section_schedules(d)
    _section_restoration(d, rng)
    _section_cascade(d, rng)
    _section_cascade_augmentation(d)
    return d
