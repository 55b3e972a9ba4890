"""Spec cases for ``latent_diffusion``: latent scaling, the schedule it implies, the prior term, label dropout,
the noisy latents of the epsilon loss and the closed-form DDPM bound of a linear-Gaussian reverse chain, in float64.

Each function runs in ``theory_jax.latent_diffusion`` and ``practice_torch.latent_diffusion`` on the same NumPy
inputs, gradients included. Third witnesses: NumPy's std; the SNR identity solved for alpha_bar'; the prior KL
as the multivariate Gaussian KL with full matrices; and the DDPM bound recomputed from the joint Gaussian law of
(u0, x_0, ..., x_{T-1}) under the forward chain, E[-log p(u0, x) + log q(x|u0)] by second moments, which shares no
line with the twins' per-step posterior formulas.
"""

from __future__ import annotations

import math

import numpy as np

from shared_specs.case import FunctionCase, gaussian, uniform

B, D, T, K = 5, 3, 6, 4


# Independent references ----------------------------------------------------------------------------------
def ref_effective_alpha_bar(alpha_bar, scale):
    """Solve a'/(1 - a') = s^2 a/(1 - a) for a': the SNR shifted by s^2."""
    r = scale**2 * alpha_bar / (1 - alpha_bar)
    return r / (1 + r)


def ref_prior_kl(u0, alpha_bar_T):
    """KL(N(sqrt(a) u0, (1 - a) I) || N(0, I)) with full matrices: 1/2 [tr S + m^T m - d - log det S]."""
    d = u0.shape[-1]
    cov = (1 - alpha_bar_T) * np.eye(d)
    out = []
    for row in u0:
        m = math.sqrt(alpha_bar_T) * row
        out.append(0.5 * (np.trace(cov) + m @ m - d - np.linalg.slogdet(cov)[1]))
    return np.array(out)


def ref_latent_ddpm_bound(u_mean, u_var, alpha_bars, rev_a, rev_b, rev_var, prior_mean, prior_var):
    """E_joint[-log p(u0, x_{0:T-1}) + log q(x_{0:T-1}|u0)], per dimension from the joint Gaussian of the forward
    chain (mean vector and covariance matrix of (u0, x_0, ..., x_{T-1})), summed over dimensions."""
    n_steps = len(alpha_bars)
    alphas = alpha_bars / np.concatenate([[1.0], alpha_bars[:-1]])
    out = np.zeros(u_mean.shape[0])
    for b in range(u_mean.shape[0]):
        for j in range(u_mean.shape[1]):
            # x = A [u0, e_0, ..., e_{T-1}] with independent inputs of means (m, 0..) and variances (v, 1..)
            lin = np.zeros((n_steps + 1, n_steps + 1))
            lin[0, 0] = 1.0
            for t in range(n_steps):
                lin[t + 1] = math.sqrt(alphas[t]) * lin[t]
                lin[t + 1, t + 1] = math.sqrt(1 - alphas[t])
            mean = lin @ np.concatenate([[u_mean[b, j]], np.zeros(n_steps)])
            cov = lin @ np.diag(np.concatenate([[u_var[b, j]], np.ones(n_steps)])) @ lin.T

            def e_sq(w, c):  # E (w . x + c)^2
                return (w @ mean + c) ** 2 + w @ cov @ w

            total = 0.0
            last = np.zeros(n_steps + 1)
            last[-1] = 1.0
            total += 0.5 * (math.log(2 * math.pi * prior_var[j]) + e_sq(last, -prior_mean[j]) / prior_var[j])
            for t in range(n_steps):  # -log p(x_{t-1}|x_t), index 0 of x is u0
                w = np.zeros(n_steps + 1)
                w[t], w[t + 1] = 1.0, -rev_a[t, j]
                total += 0.5 * (math.log(2 * math.pi * rev_var[t, j]) + e_sq(w, -rev_b[t, j]) / rev_var[t, j])
                total -= 0.5 * (math.log(2 * math.pi * (1 - alphas[t])) + 1.0)  # + log q(x_t|x_{t-1})
            out[b] += total
    return out


# Input makers ---------------------------------------------------------------------------------------------
def _alpha_bars(r, n=T):
    return np.cumprod(1 - np.sort(uniform(r, n, low=0.05, high=0.5)))


def _bound_inputs(r):
    return {"u_mean": gaussian(r, B, D, scale=1.5), "u_var": uniform(r, B, D, low=0.0, high=0.5),
            "alpha_bars": _alpha_bars(r), "rev_a": uniform(r, T, D, low=0.5, high=1.2),
            "rev_b": gaussian(r, T, D, scale=0.3), "rev_var": uniform(r, T, D, low=0.05, high=0.6),
            "prior_mean": gaussian(r, D, scale=0.3), "prior_var": uniform(r, D, low=0.6, high=1.5)}


CASES = (
    FunctionCase("latent_diffusion/latent_scale", "latent_scale",
                 lambda r: {"z": gaussian(r, 8, 2, 3, 3, scale=5.0) + 1.0}, grad_wrt=("z",),
                 reference=lambda z: 1 / np.std(z, ddof=1)),
    FunctionCase("latent_diffusion/scale_latents", "scale_latents",
                 lambda r: {"z": gaussian(r, B, D, scale=5.0), "scale": np.array(0.18)}, grad_wrt=("z", "scale"),
                 reference=lambda z, scale: z * scale),
    FunctionCase("latent_diffusion/unscale_latents", "unscale_latents",
                 lambda r: {"u": gaussian(r, B, D), "scale": np.array(0.18)}, grad_wrt=("u", "scale"),
                 reference=lambda u, scale: u / scale),
    FunctionCase("latent_diffusion/effective_alpha_bar", "effective_alpha_bar",
                 lambda r: {"alpha_bar": uniform(r, 10, low=0.01, high=0.99), "scale": np.array(0.3)},
                 grad_wrt=("alpha_bar", "scale"), reference=ref_effective_alpha_bar),
    FunctionCase("latent_diffusion/latent_snr", "latent_snr",
                 lambda r: {"alpha_bar": uniform(r, 10, low=0.01, high=0.99), "scale": np.array(0.3),
                            "latent_var": np.array(30.0)}, grad_wrt=("alpha_bar", "scale", "latent_var"),
                 reference=lambda alpha_bar, scale, latent_var: scale**2 * latent_var * alpha_bar / (1 - alpha_bar)),
    FunctionCase("latent_diffusion/prior_kl", "prior_kl",
                 lambda r: {"u0": gaussian(r, B, D, scale=3.0), "alpha_bar_T": np.array(0.0047)},
                 grad_wrt=("u0", "alpha_bar_T"), reference=ref_prior_kl),
    FunctionCase("latent_diffusion/noisy_latents", "noisy_latents",
                 lambda r: {"z": gaussian(r, B, D, scale=5.0), "scale": np.array(0.2),
                            "alpha_bar_t": uniform(r, B, low=0.01, high=0.99), "eps": gaussian(r, B, D)},
                 grad_wrt=("z", "scale", "alpha_bar_t", "eps"),
                 reference=lambda z, scale, alpha_bar_t, eps: (np.sqrt(alpha_bar_t)[:, None] * scale * z
                                                               + np.sqrt(1 - alpha_bar_t)[:, None] * eps)),
    FunctionCase("latent_diffusion/latent_ddpm_bound", "latent_ddpm_bound", _bound_inputs,
                 grad_wrt=("u_mean", "u_var", "alpha_bars", "rev_a", "rev_b", "rev_var", "prior_mean", "prior_var"),
                 reference=ref_latent_ddpm_bound),
)
