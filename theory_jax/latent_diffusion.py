"""Latent diffusion: a DDPM in the latent space of a fixed autoencoder, with scaled latents.

Lectures: latent diffusion models (Rombach, Blattmann, Lorenz, Esser & Ommer 2022, "High-Resolution Image
Synthesis with Latent Diffusion Models", sec. 3 and appendix G "scale_by_std"; Ho et al. 2020 for the DDPM bound;
Vahdat, Kreis & Kautz 2021 (LSGM) for the two-stage bound).

Stage 1 is an autoencoder E, D trained once and frozen; stage 2 a DDPM on u = s (E(x) - 0), s = 1 / std of the
latents estimated on data, so that the forward process, designed for unit-variance data, ends near N(0, I).
Samples are x = D(u_0 / s). Proved here, on latents of a known Gaussian-linear encoder where everything is closed
form: the scale multiplies the SNR of every step by s^2 (an effective schedule alpha_bar'); the prior term L_T
KL(q(u_T|u_0) || N(0, I)) is small only for scaled latents; the DDPM bound on scaled latents plus d log s bounds
log p(z); composed with the autoencoder's ELBO it bounds log p(x), tightly when both stages are exact; decoding
needs the unscaled latents. Twins: ``practice_torch/latent_diffusion`` (same names); cases:
``shared_specs/latent_diffusion.py``. Timesteps are indices t = 0..T-1 (the paper's t + 1).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from theory_jax.diffusion import null_labels

LOG_2PI = math.log(2 * math.pi)


# 1. Latent scaling (Rombach et al. 2022, "scale_by_std") ---------------------------------------------------
def latent_scale(z):
    """s = 1 / std of all entries of z (one scalar, unbiased variance, as LDM's ``1 / z.flatten().std()``).
    z: (B, ...) -> ()."""
    return 1.0 / jnp.std(z, ddof=1)


def scale_latents(z, scale):
    """u = s z: the latents the DDPM sees. z: (B, ...), scale: () -> (B, ...)."""
    return z * scale


def unscale_latents(u, scale):
    """z = u / s: what the decoder must get back. u: (B, ...), scale: () -> (B, ...)."""
    return u / scale


def effective_alpha_bar(alpha_bar, scale):
    """alpha_bar' = s^2 alpha_bar / (1 + (s^2 - 1) alpha_bar): diffusing s z with alpha_bar is diffusing z with
    alpha_bar' up to the factor sqrt(s^2 alpha_bar + 1 - alpha_bar) on x_t (claim 1). (...) -> (...)."""
    s2 = scale**2
    return s2 * alpha_bar / (1 + (s2 - 1) * alpha_bar)


def latent_snr(alpha_bar, scale, latent_var):
    """SNR_t = s^2 v alpha_bar_t / (1 - alpha_bar_t) of latents with per-entry variance v scaled by s. (...)."""
    return scale**2 * latent_var * alpha_bar / (1 - alpha_bar)


def prior_kl(u0, alpha_bar_T):
    """L_T = KL(q(u_T|u_0) || N(0, I)) = 1/2 sum_j [a u0_j^2 + (1 - a) - 1 - log(1 - a)], a = alpha_bar_T
    (Ho et al. eq. 5, first term). u0: (B, d) -> (B,)."""
    a = alpha_bar_T
    return 0.5 * jnp.sum(a * u0**2 - a - jnp.log1p(-a), axis=-1)


# 2. The latent epsilon loss (Ho et al. eq. 14 on u = s z), class-conditional with label dropout -------------
def noisy_latents(z, scale, alpha_bar_t, eps):
    """u_t = sqrt(a_t) s z + sqrt(1 - a_t) eps, a draw of q(u_t|u_0 = s z). z, eps: (B, d); alpha_bar_t: (B,)."""
    a = alpha_bar_t[:, None]
    return jnp.sqrt(a) * scale_latents(z, scale) + jnp.sqrt(1 - a) * eps


def latent_eps_loss(eps_fn, z, y, t, eps, drop, alpha_bars, scale, num_classes: int):
    """Per-example |eps - eps_fn(u_t, t, y')|^2 / d with u_t = noisy_latents(z, s, alpha_bars[t], eps) and
    y' = null_labels(y, drop). z, eps: (B, d); y, t: (B,) int; drop: (B,) bool; alpha_bars: (T,) -> (B,)."""
    u_t = noisy_latents(z, scale, alpha_bars[t], eps)
    return jnp.mean((eps - eps_fn(u_t, t, null_labels(y, drop, num_classes))) ** 2, axis=-1)


# 3. The DDPM bound in closed form for a linear-Gaussian reverse chain --------------------------------------
def ldm_betas(T: int, beta_start: float = 0.00085, beta_end: float = 0.012):
    """LDM's "scaled linear" schedule: sqrt(beta) evenly spaced (Rombach et al., configs). -> (T,)."""
    return jnp.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T) ** 2


def gaussian_data_reverse(mean, var, alpha_bars):
    """The true reverse conditionals q(x_{t-1}|x_t) = N(a_t x_t + b_t, g_t) of data N(mean, diag var) (x_{-1} is
    the data): jointly Gaussian, so a_t = sqrt(alpha_t) V_{t-1} / V_t, b_t = m_{t-1} - a_t m_t,
    g_t = V_{t-1} beta_t / V_t with m_t = sqrt(alpha_bar_t) mean, V_t = alpha_bar_t var + 1 - alpha_bar_t.
    mean, var: (d,), alpha_bars: (T,) -> (a, b, g), each (T, d)."""
    ab = alpha_bars[:, None]
    m, v = jnp.sqrt(ab) * mean, ab * var + 1 - ab
    m_prev, v_prev = jnp.concatenate([mean[None], m[:-1]]), jnp.concatenate([var[None], v[:-1]])
    alpha = ab / jnp.concatenate([jnp.ones((1, 1)), ab[:-1]])
    a = jnp.sqrt(alpha) * v_prev / v
    return a, m_prev - a * m, v_prev * (1 - alpha) / v


def latent_ddpm_bound(u_mean, u_var, alpha_bars, rev_a, rev_b, rev_var, prior_mean, prior_var):
    """E_{u0 ~ N(u_mean, u_var)} of the DDPM bound L(u0) = L_T + sum_{t>=1} L_t + L_0 >= -log p(u0) (Ho et al.
    eq. 5) for the reverse chain p(x_T) = N(prior_mean, prior_var), p(x_{t-1}|x_t) = N(a_t x_t + b_t, g_t); each
    term closed form since every mean is linear in (u0, eps). u_mean, u_var: (B, d) (u_var = 0: a point);
    alpha_bars: (T,); rev_*: (T, d); prior_*: (d,) -> (B,)."""
    def sq(k, c, noise_var):  # E (k u0 + c + noise)^2 over u0 ~ N(u_mean, u_var), noise of variance noise_var
        return (k * u_mean + c) ** 2 + k**2 * u_var + noise_var

    a_last = alpha_bars[-1]
    total = 0.5 * (jnp.log(prior_var / (1 - a_last))
                   + (1 - a_last + sq(jnp.sqrt(a_last), -prior_mean, 0.0)) / prior_var - 1)  # L_T
    for t in range(1, alpha_bars.shape[0]):  # L_t: KL(q(x_{t-1}|x_t, u0) || p(x_{t-1}|x_t)), Ho et al. eqs. 6-7
        a_t, a_p = alpha_bars[t], alpha_bars[t - 1]
        beta = 1 - a_t / a_p
        c1, c2 = jnp.sqrt(a_p) * beta / (1 - a_t), jnp.sqrt(1 - beta) * (1 - a_p) / (1 - a_t)
        tilde_var, k = (1 - a_p) * beta / (1 - a_t), c2 - rev_a[t]
        diff2 = sq(c1 + k * jnp.sqrt(a_t), -rev_b[t], k**2 * (1 - a_t))
        total += 0.5 * (jnp.log(rev_var[t] / tilde_var) + (tilde_var + diff2) / rev_var[t] - 1)
    k = 1 - rev_a[0] * jnp.sqrt(alpha_bars[0])  # L_0 = -E log p(u0|x_0)
    total += 0.5 * (LOG_2PI + jnp.log(rev_var[0]) + sq(k, -rev_b[0], rev_a[0] ** 2 * (1 - alpha_bars[0])) / rev_var[0])
    return jnp.sum(total, axis=-1)


def reverse_marginal(rev_a, rev_b, rev_var, prior_mean, prior_var):
    """The chain's distribution of its output: m <- a_t m + b_t, V <- a_t^2 V + g_t from t = T-1 to 0. -> (d,)x2."""
    m, v = prior_mean, prior_var
    for t in range(rev_a.shape[0] - 1, -1, -1):
        m, v = rev_a[t] * m + rev_b[t], rev_a[t] ** 2 * v + rev_var[t]
    return m, v


def reverse_chain_sample(u_T, z, rev_a, rev_b, rev_var):
    """Ancestral sampling x_{t-1} = a_t x_t + b_t + sqrt(g_t) z_t, noise injected. u_T: (B, d), z: (T, B, d)."""
    x = u_T
    for t in range(rev_a.shape[0] - 1, -1, -1):
        x = rev_a[t] * x + rev_b[t] + jnp.sqrt(rev_var[t]) * z[t]
    return x


# 4. The two-stage model: linear-Gaussian autoencoder + latent DDPM ----------------------------------------
def two_stage_elbo(x, weight, bias, sigma, q_mean, q_var, scale, alpha_bars, rev_a, rev_b, rev_var, prior_mean,
                   prior_var):
    """E_q log p(x|z) + H[q] + d log s - E_q L(s z) <= log p(x), for the decoder x|z ~ N(W z + b, sigma^2 I), the
    encoder q(z|x) = N(q_mean, diag q_var) and the latent DDPM bound L on u = s z (its density in z picks up the
    Jacobian s^d). x: (B, D), q_*: (B, d) -> (B,)."""
    big_d = x.shape[-1]
    resid = x - q_mean @ weight.T - bias
    recon = -0.5 * (big_d * (LOG_2PI + 2 * jnp.log(sigma))
                    + (jnp.sum(resid**2, -1) + jnp.sum(q_var * jnp.sum(weight**2, 0), -1)) / sigma**2)
    entropy = 0.5 * jnp.sum(LOG_2PI + 1 + jnp.log(q_var), -1)
    d = q_mean.shape[-1]
    latent = latent_ddpm_bound(scale * q_mean, scale**2 * q_var, alpha_bars, rev_a, rev_b, rev_var, prior_mean,
                               prior_var)
    return recon + entropy + d * jnp.log(scale) - latent


def linear_evidence(x, weight, bias, sigma, z_mean, z_var):
    """log p(x) = log N(x; W m + b, W diag(v) W^T + sigma^2 I) for the latent prior N(m, diag v). x: (B, D)."""
    cov = weight @ jnp.diag(z_var) @ weight.T + sigma**2 * jnp.eye(x.shape[-1])
    tril = jnp.linalg.cholesky(cov)
    white = jax.scipy.linalg.solve_triangular(tril, (x - weight @ z_mean - bias).T, lower=True)
    return -0.5 * (x.shape[-1] * LOG_2PI + jnp.sum(white**2, 0)) - jnp.sum(jnp.log(jnp.diag(tril)))
