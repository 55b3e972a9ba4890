"""The ``latent_diffusion`` derivation (``python -m theory_jax latent_diffusion``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/latent_diffusion.py``. ``--markdown FILE`` writes it as a document,
``--notebook FILE`` as a notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.elbo import gaussian_kl, gaussian_log_prob, mvn_kl
from theory_jax.latent_diffusion import (
    gaussian_data_reverse,
    latent_ddpm_bound,
    latent_eps_loss,
    latent_scale,
    latent_snr,
    ldm_betas,
    linear_evidence,
    prior_kl,
    reverse_chain_sample,
    reverse_marginal,
    scale_latents,
    two_stage_elbo,
    unscale_latents,
)

TITLE = "latent diffusion: a DDPM on scaled latents of a frozen autoencoder"
LECTURES = "latent diffusion models; scaling of latents; two-stage bound"


@jax.jit
def _bound_samples(u0, alpha_bars, rev_a, rev_b, rev_var, prior_mean, prior_var, e):
    """One-sample estimates of -L(u0): log p(x_{0:T}) - log q(x_{1:T}|x_0) along forward chains. e: (N, T, d)."""
    def one(noise):
        x, log_q, xs = u0, 0.0, []
        for t in range(alpha_bars.shape[0]):  # forward: x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) e
            alpha = alpha_bars[t] / (alpha_bars[t - 1] if t else 1.0)
            mean = jnp.sqrt(alpha) * x
            x = mean + jnp.sqrt(1 - alpha) * noise[t]
            log_q += gaussian_log_prob(x, mean, jnp.log(1 - alpha) * jnp.ones_like(x))
            xs.append(x)
        log_p = gaussian_log_prob(xs[-1], prior_mean, jnp.log(prior_var))
        for t in range(alpha_bars.shape[0]):
            prev = xs[t - 1] if t else u0
            log_p += gaussian_log_prob(prev, rev_a[t] * xs[t] + rev_b[t], jnp.log(rev_var[t]))
        return log_p - log_q

    return jax.vmap(one)(e)


_bound, _two_stage, _evidence = jax.jit(latent_ddpm_bound), jax.jit(two_stage_elbo), jax.jit(linear_evidence)


# The setting of the claims -----------------------------------------------------------------------------------
def _encoder(rng, big_d=8, d=4):
    """x ~ N(m_x, L L^T) in R^8 and a linear encoder z = E x + c whose latents are independent with standard
    deviations 3..8, like an unregularised autoencoder's (LDM's KL-f8 latents have std ~5.5)."""
    low = np.tril(0.3 * rng.standard_normal((big_d, big_d)), -1) + np.diag(np.exp(0.3 * rng.standard_normal(big_d)))
    q, _ = np.linalg.qr(rng.standard_normal((big_d, d)))
    lam = np.array([3.0, 5.0, 6.0, 8.0])
    enc = np.diag(lam) @ q.T @ np.linalg.inv(low)
    m_x, c = rng.standard_normal(big_d), rng.standard_normal(d)
    return m_x, low, enc, c, enc @ m_x + c, lam**2  # ..., the latents' mean and variances


def _sympy_effective_schedule():
    a, s = sp.symbols("alpha_bar s", positive=True)
    a_eff = s**2 * a / (1 + (s**2 - 1) * a)
    c = sp.sqrt(s**2 * a + 1 - a)
    signal, noise = (sp.sqrt(a) * s / c) ** 2 - a_eff, (sp.sqrt(1 - a) / c) ** 2 - (1 - a_eff)
    return signal, noise, a_eff / (1 - a_eff), s**2 * a / (1 - a)


def _section_scale_is_a_schedule(d: Derivation) -> None:
    """The scale is a change of schedule: it multiplies the SNR of every step by s^2."""
    r1, r2, snr_eff, snr = _sympy_effective_schedule()
    d.symbolic("With $c = \\sqrt{s^2\\bar\\alpha + 1 - \\bar\\alpha}$: $u_t / c = \\sqrt{\\bar\\alpha'}\\, z + "
               "\\sqrt{1-\\bar\\alpha'}\\,\\epsilon$ with $\\bar\\alpha' = s^2\\bar\\alpha / (1 + (s^2-1)\\bar\\alpha)$ "
               "(`effective_alpha_bar`): the signal coefficient", r1)
    d.symbolic("...and the noise coefficient match, so scaling the latents by $s$ is running the DDPM on $z$ with "
               "the schedule $\\bar\\alpha'$", r2)
    d.symbolic("Its SNR $\\bar\\alpha'/(1-\\bar\\alpha') = s^2\\,\\bar\\alpha/(1-\\bar\\alpha)$: the scale multiplies "
               "the signal-to-noise ratio of every step by $s^2$ (`latent_snr`)", snr_eff, snr)


def _section_latent_scale(d: Derivation, rng: np.random.Generator, m_x, low, enc, c, mu_z, var_z):
    """latent_scale estimates the pooled std of the latents; the scaled latents have unit variance."""
    x = m_x + rng.standard_normal((20000, 8)) @ low.T
    z = x @ enc.T + c
    pooled = np.mean(var_z) + np.var(mu_z)
    d.monte_carlo("All entries of the latents pooled have variance $\\bar v = \\frac1d\\sum_j v_j + "
                  "\\mathrm{Var}_j(\\mu_j)$, the quantity `latent_scale` $= 1/\\mathrm{std}$ estimates "
                  "(20 000 encoded $x$)",
                  np.mean((z - np.mean(mu_z)) ** 2, axis=1), pooled)
    s_hat = float(latent_scale(jnp.asarray(z)))
    s = 1 / math.sqrt(pooled)
    d.numeric(f"`unscale_latents`(`scale_latents`$(z, s), s) = z$ and the scaled latents have std 1 (estimated "
              f"$s$ = {s_hat:.4f}, population {s:.4f})",
              np.append(np.asarray(unscale_latents(scale_latents(z, s_hat), s_hat)) - z, np.std(z * s_hat, ddof=1) - 1),
              np.zeros(z.size + 1), atol=1e-12)
    return x, z, pooled, s


def _section_terminal_snr(d: Derivation, z, mu_z, var_z, pooled, s, dim: int) -> None:
    """Terminal KL and SNR with and without scaling, on LDM's schedule: only scaled latents end near N(0, I)."""
    ab = np.cumprod(1 - np.asarray(ldm_betas(1000)))
    a_T = ab[-1]
    second = np.mean(var_z + mu_z**2)  # mean second moment of an unscaled latent entry
    kl = {k: 0.5 * dim * (a_T * k**2 * second - a_T - math.log1p(-a_T)) for k in (1.0, s)}
    d.monte_carlo("$\\mathbb E_{z}\\,$`prior_kl`$(s z, \\bar\\alpha_T) = \\frac d2[\\bar\\alpha_T s^2 "
                  "\\overline{z^2} - \\bar\\alpha_T - \\log(1-\\bar\\alpha_T)]$ (unscaled latents, LDM's schedule)",
                  np.asarray(prior_kl(jnp.asarray(z), a_T)), kl[1.0])
    d.numeric("`prior_kl` is `gaussian_kl`$(\\mathcal N(\\sqrt{\\bar\\alpha_T}u_0, 1-\\bar\\alpha_T)\\,\\|\\,"
              "\\mathcal N(0, I))$", prior_kl(jnp.asarray(z[:50] * s), a_T),
              gaussian_kl(jnp.asarray(math.sqrt(a_T) * z[:50] * s), jnp.full((50, dim), math.log1p(-a_T)),
                          jnp.zeros((50, dim)), jnp.zeros((50, dim))))
    snr_un, snr_sc = latent_snr(a_T, 1.0, pooled), latent_snr(a_T, s, pooled)
    d.inequality(f"On LDM's scaled-linear schedule ($\\bar\\alpha_T$ = {a_T:.4f}) unscaled latents keep a terminal "
                 f"SNR of {snr_un:.3f} and $L_T$ = {kl[1.0] / dim:.4f} nats per dimension; scaled: SNR "
                 f"{snr_sc:.4f}, {kl[s] / dim:.5f} nats: the scaled prior mismatch is over 10x smaller",
                 10 * np.array([kl[s], snr_sc]), np.array([kl[1.0], snr_un]))
    t_half = {k: int(np.argmax(latent_snr(ab, k, pooled) < 1)) for k in (1.0, s)}
    d.numeric(f"At every step $\\log\\mathrm{{SNR}}$ differs by $2\\log\\,$std = {math.log(pooled):.3f}: the step "
              f"where the SNR falls below 1 moves from t = {t_half[s]} (scaled) to t = {t_half[1.0]} (unscaled), "
              f"so unscaled latents spend most of the chain at SNR > 1",
              np.log(latent_snr(ab, 1.0, pooled)) - np.log(latent_snr(ab, s, pooled)), np.full(1000, math.log(pooled)))
    fig, ax = new_figure()
    for k, name in ((1.0, "unscaled latents, $s = 1$"), (s, f"scaled latents, $s$ = {s:.3f}")):
        ax.plot(np.arange(1000), np.log(latent_snr(ab, k, pooled)), label=name)
        ax.plot(t_half[k], 0.0, "ko", ms=4)
    ax.axhline(0.0, color="k", ls=":", lw=1, label="SNR = 1")
    ax.set(xlabel="step $t$ (LDM's scaled-linear schedule, T = 1000)", ylabel="$\\log\\,\\mathrm{SNR}_t$")
    ax.legend(fontsize=8)
    d.figure(fig, "Scaling the latents shifts the whole log-SNR curve down by $2\\log\\,$std: unscaled latents stay "
             "above SNR = 1 for most of the chain and are far from pure noise at $t = T$.")


def _section_eps_loss_at_optimum(d: Derivation, rng: np.random.Generator, dim: int) -> None:
    """The latent epsilon loss at its optimum: MMSE = SNR / (1 + SNR), so the scale shapes the loss; label dropout."""
    n, k_cls, t_big = 40000, 3, 50
    means = rng.standard_normal((k_cls, dim)) * 4.0
    y = rng.integers(0, k_cls, n)
    v_cls = 4.0
    zc = means[y] + math.sqrt(v_cls) * rng.standard_normal((n, dim))
    ab50 = jnp.asarray(np.cumprod(1 - np.linspace(1e-3, 0.2, t_big)))
    sc = 0.5

    def optimal_eps(u_t, t, lab):  # E[eps | u_t, y] for u = s z, z | y ~ N(mu_y, v I)
        a = ab50[t][:, None]
        return jnp.sqrt(1 - a) * (u_t - jnp.sqrt(a) * sc * jnp.asarray(means)[lab]) / (a * sc**2 * v_cls + 1 - a)

    t = rng.integers(0, t_big, n)
    losses = latent_eps_loss(optimal_eps, jnp.asarray(zc), jnp.asarray(y), jnp.asarray(t),
                             jnp.asarray(rng.standard_normal((n, dim))), jnp.zeros(n, bool), ab50, sc, k_cls)
    snr_t = latent_snr(np.asarray(ab50), sc, v_cls)
    d.monte_carlo("With $z\\mid y \\sim \\mathcal N(\\mu_y, vI)$ the best class-conditional $\\hat\\epsilon(u_t, t, y)$ "
                  "is linear and `latent_eps_loss` at it has mean $\\frac1T\\sum_t \\mathrm{SNR}_t/(1+\\mathrm{SNR}_t)$ "
                  "(40 000 draws of $z, y, t, \\epsilon$): the scale decides how hard each step is",
                  np.asarray(losses), np.mean(snr_t / (1 + snr_t)))
    seen = []
    latent_eps_loss(lambda u, tt, lab: seen.append(lab) or u, jnp.zeros((4, dim)), jnp.array([0, 1, 2, 1]),
                    jnp.zeros(4, int), jnp.zeros((4, dim)), jnp.array([True, False, True, False]), ab50, sc, k_cls)
    d.numeric("Label dropout: dropped rows reach the denoiser as the null token $K$ (`null_labels`)",
              seen[0], np.array([3, 1, 3, 1]))


def _section_latent_ddpm_bound(d: Derivation, rng: np.random.Generator, z, mu_z, var_z, s, dim: int):
    """The DDPM bound on latents, closed form for a linear-Gaussian reverse chain: exact, tight, a bound."""
    abT = jnp.asarray(np.cumprod(1 - np.linspace(0.02, 0.5, 10)))
    u_mu, u_var = jnp.asarray(s * mu_z), jnp.asarray(s**2 * var_z)
    exact = gaussian_data_reverse(u_mu, u_var, abT)
    q_T = (jnp.sqrt(abT[-1]) * u_mu, abT[-1] * u_var + 1 - abT[-1])
    u0 = jnp.asarray(s * z[:6])
    d.say("The bound $L(u_0) = L_T + \\sum_{t\\ge1} L_t + L_0$ of a reverse chain $p(x_{t-1}\\mid x_t) = "
          "\\mathcal N(a_t x_t + b_t, g_t)$ is closed form (`latent_ddpm_bound`, T = 10 steps). With the true reverse "
          "conditionals of the scaled latent data (`gaussian_data_reverse`):")
    std_prior = (jnp.zeros(dim), jnp.ones(dim))
    rough = (0.9 * exact[0], exact[1] + 0.1, 1.2 * exact[2])  # some other linear-Gaussian reverse model
    ratio = _bound_samples(u0[0], abT, *rough, *std_prior, jnp.asarray(rng.standard_normal((20000, 10, dim))))
    d.monte_carlo("For any such chain (here a perturbed one, $p(x_T) = \\mathcal N(0, I)$) the closed form equals "
                  "the Monte Carlo mean of $\\log p(x_{0:T}) - \\log q(x_{1:T}\\mid x_0)$ along forward chains "
                  "(20 000 chains)", np.asarray(ratio),
                  -float(_bound(u0[:1], jnp.zeros((1, dim)), abT, *rough, *std_prior)[0]))
    d.numeric("With $p(x_T) = q(x_T)$ the reverse chain is the forward one read backwards and the bound is tight: "
              "$-L(u_0) = \\log \\mathcal N(u_0; s\\mu, s^2 v)$",
              -_bound(u0, jnp.zeros_like(u0), abT, *exact, *q_T), gaussian_log_prob(u0, u_mu, jnp.log(u_var)))
    p_mean, p_var = reverse_marginal(*exact, *std_prior)
    d.inequality("With the usual $p(x_T) = \\mathcal N(0, I)$ it is a bound: $-L(u_0) \\le \\log p_\\theta(u_0)$, "
                 "the chain's Gaussian marginal (`reverse_marginal`), at 6 latents",
                 -_bound(u0, jnp.zeros_like(u0), abT, *exact, *std_prior),
                 gaussian_log_prob(u0, p_mean, jnp.log(p_var)))
    u_T = rng.standard_normal((20000, dim))
    draws = reverse_chain_sample(jnp.asarray(u_T), jnp.asarray(rng.standard_normal((10, 20000, dim))), *exact)
    draws = np.asarray(draws)
    d.monte_carlo("Ancestral samples of that chain from $\\mathcal N(0, I)$ have its marginal's mean and variance "
                  "(20 000 samples)", np.concatenate([draws, (draws - np.asarray(p_mean)) ** 2], 1),
                  np.concatenate([p_mean, p_var]))
    return abT, exact, std_prior, u0, draws, p_mean, p_var


def _section_decoding_needs_unscaling(d: Derivation, rng: np.random.Generator, draws, p_mean, p_var, s, dim: int):
    """Decoding needs the unscaled latents: D(u_0 / s) is the two-stage model, D(u_0) another distribution."""
    weight = np.linalg.qr(rng.standard_normal((8, dim)))[0] * np.array([1.5, 1.0, 0.8, 0.5])
    bias, sigma = rng.standard_normal(8), 0.3
    decoded = (draws / s) @ weight.T + bias + sigma * rng.standard_normal((20000, 8))
    model_mean, model_var = weight @ (np.asarray(p_mean) / s) + bias, np.asarray(p_var) / s**2
    model_cov = weight @ np.diag(model_var) @ weight.T + sigma**2 * np.eye(8)
    d.monte_carlo("$x = D(u_0 / s)$ (`unscale_latents`, then the linear decoder $x\\mid z \\sim \\mathcal N(Wz+b, "
                  "\\sigma^2 I)$) has the two-stage model's mean and variances $W m/s + b$, "
                  "$\\mathrm{diag}(W V W^\\top / s^2 + \\sigma^2 I)$",
                  np.concatenate([decoded, (decoded - model_mean) ** 2], 1),
                  np.concatenate([model_mean, np.diag(model_cov)]))
    wrong_cov = weight @ np.diag(np.asarray(p_var)) @ weight.T + sigma**2 * np.eye(8)
    kl_wrong = float(mvn_kl(jnp.asarray(model_mean), jnp.linalg.cholesky(jnp.asarray(model_cov)),
                            jnp.asarray(weight @ np.asarray(p_mean) + bias), jnp.linalg.cholesky(jnp.asarray(wrong_cov))))
    d.inequality(f"Decoding $u_0$ without unscaling gives another distribution: KL(right $\\|$ wrong) = "
                 f"{kl_wrong:.1f} nats > 1", 1.0, kl_wrong)
    fig, ax = new_figure()
    wrong = draws @ weight.T + bias  # decoded without unscaling (the decoder's noise left out)
    ax.scatter(decoded[:2000, 0], decoded[:2000, 1], s=2, alpha=0.4, label="$D(u_0 / s)$: the model")
    ax.scatter(wrong[:2000, 0], wrong[:2000, 1], s=2, alpha=0.4, label="$D(u_0)$: scale forgotten")
    ax.set(xlabel="$x_1$", ylabel="$x_2$")
    ax.legend(fontsize=8, markerscale=4)
    d.figure(fig, "The first two coordinates of decoded samples: decoding $u_0$ without unscaling shrinks the "
             f"latents by the factor $s$ = {s:.3f}, so the samples collapse towards $D(0) = b$.")
    return weight, bias, sigma


def _section_two_stage_bound(d: Derivation, x, u0, mu_z, var_z, s, dim: int, abT, exact, std_prior, weight, bias,
                             sigma):
    """The two-stage bound: the autoencoder's ELBO composed with the latent DDPM bound lies below log p(x)."""
    d.say("Two-stage model: $z \\sim p_\\theta$ (the latent DDPM on $u = sz$, density $s^d p_u(sz)$), "
          "$x\\mid z \\sim \\mathcal N(Wz+b, \\sigma^2 I)$, encoder "
          "$q(z\\mid x) = \\mathcal N(m(x), \\mathrm{diag}\\, v(x))$. "
          "`two_stage_elbo` $= \\mathbb E_q\\log p(x\\mid z) + H[q] + d\\log s - \\mathbb E_q L(sz)$.")
    u_mu, u_var = jnp.asarray(s * mu_z), jnp.asarray(s**2 * var_z)
    d.numeric("Change of variables: $\\log p_z(z) = \\log p_u(sz) + d\\log s$, here for the exact latent law",
              gaussian_log_prob(u0, u_mu, jnp.log(u_var)) + dim * math.log(s),
              gaussian_log_prob(u0 / s, jnp.asarray(mu_z), jnp.log(jnp.asarray(var_z))))
    xs = jnp.asarray(x[:20] @ np.eye(8))
    lat_mean, lat_var = reverse_marginal(*exact, *std_prior)
    log_px = _evidence(xs, jnp.asarray(weight), jnp.asarray(bias), sigma, lat_mean / s, lat_var / s**2)
    q_mean = jnp.asarray(0.9 * np.asarray(xs) @ weight / np.sum(weight**2, 0))  # a mis-fitted encoder
    q_var = jnp.full((20, dim), 0.05)
    args = (jnp.asarray(weight), jnp.asarray(bias), sigma)
    elbo2 = _two_stage(xs, *args, q_mean, q_var, s, abT, *exact, *std_prior)
    d.inequality("The two-stage bound lies below $\\log p(x)$ of the two-stage model (20 data points, a mis-fitted "
                 "encoder, latent DDPM with $p(x_T) = \\mathcal N(0, I)$)", elbo2, log_px)
    return xs, log_px, elbo2


def _section_two_stage_tight(d: Derivation, xs, log_px, elbo2, mu_z, var_z, s, abT, weight, bias, sigma) -> None:
    """The two-stage bound is tight when both stages are exact, whatever the scale of the latents."""
    args = (jnp.asarray(weight), jnp.asarray(bias), sigma)
    tight = {}
    for scale in (1.0, s):
        rev = gaussian_data_reverse(jnp.asarray(scale * mu_z), jnp.asarray(scale**2 * var_z), abT)
        prior = (jnp.sqrt(abT[-1]) * scale * mu_z, abT[-1] * scale**2 * var_z + 1 - abT[-1])
        pv = 1 / (1 / var_z + np.sum(weight**2, 0) / sigma**2)  # W^T W diagonal: a diagonal posterior
        pm = pv * ((np.asarray(xs) - bias) @ weight / sigma**2 + mu_z / var_z)
        tight[scale] = _two_stage(xs, *args, jnp.asarray(pm), jnp.asarray(np.tile(pv, (20, 1))), scale, abT,
                                  *rev, *prior)
    true_px = _evidence(xs, *args, jnp.asarray(mu_z), jnp.asarray(var_z))
    d.numeric("Tight when both stages are exact (the encoder is the posterior, the latent chain is the true "
              "reverse process): two-stage ELBO $= \\log p(x)$, here with $s$ = 1/std", tight[s], true_px)
    d.numeric("...and the same with unscaled latents ($s = 1$): the $d\\log s$ term makes the bound independent of "
              "the scale, which only changes how hard the learning problem is", tight[1.0], tight[s])
    fig, ax = new_figure()
    ax.plot(log_px, elbo2, "o", mfc="none", label="mis-fitted encoder, $p(x_T) = N(0, I)$")
    ax.plot(true_px, tight[s], "x", label="exact stages, $s$ = 1/std")
    ax.plot(true_px, tight[1.0], "+", ms=9, label="exact stages, $s = 1$")
    lims = [float(min(np.min(elbo2), np.min(true_px))), float(max(np.max(log_px), np.max(true_px)))]
    ax.plot(lims, lims, "k--", lw=1, label="ELBO = $\\log p(x)$")
    ax.set(xlabel="$\\log p(x)$ of the two-stage model (nats)", ylabel="two-stage ELBO (nats)")
    ax.legend(fontsize=7)
    d.figure(fig, "20 data points, each bound against its own model's $\\log p(x)$: the two-stage ELBO lies below the "
             "diagonal, and on it when both stages are exact, with or without scaling the latents.")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("latent_diffusion", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    m_x, low, enc, c, mu_z, var_z = _encoder(rng)
    dim = len(mu_z)
    d.say("Stage 1: a frozen autoencoder maps $x$ to latents $z = E(x)$ (here a linear encoder of "
          "$x \\sim \\mathcal N(m_x, \\Sigma_x)$ in $\\mathbb R^8$ with independent latents of std 3, 5, 6, 8). "
          "Stage 2: a DDPM on $u = s z$, $s$ = 1/std of the latents (`latent_scale`), trained with the epsilon loss; "
          "samples are $D(u_0 / s)$.")

    _section_scale_is_a_schedule(d)
    x, z, pooled, s = _section_latent_scale(d, rng, m_x, low, enc, c, mu_z, var_z)
    _section_terminal_snr(d, z, mu_z, var_z, pooled, s, dim)
    _section_eps_loss_at_optimum(d, rng, dim)
    abT, exact, std_prior, u0, draws, p_mean, p_var = _section_latent_ddpm_bound(d, rng, z, mu_z, var_z, s, dim)
    weight, bias, sigma = _section_decoding_needs_unscaling(d, rng, draws, p_mean, p_var, s, dim)
    xs, log_px, elbo2 = _section_two_stage_bound(d, x, u0, mu_z, var_z, s, dim, abT, exact, std_prior, weight, bias,
                                                 sigma)
    _section_two_stage_tight(d, xs, log_px, elbo2, mu_z, var_z, s, abT, weight, bias, sigma)
    return d
