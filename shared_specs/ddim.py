"""Spec cases for ``ddim``: one DDIM step at eta = 0, 0.5, 1 with injected noise, the inversion step, respacing.

Each function runs in ``theory_jax.ddim`` and ``practice_torch.ddim`` on the same NumPy inputs, in float64, with
gradients. Third witnesses, each written from a different formula than the twins' eq. 12:
* eta = 1: DDPM's ancestral step, the posterior mean mu_tilde(x_t, x0_hat) of Ho et al. eq. 7 plus sqrt(beta_tilde) z;
* eta = 0: the Euler step of d xbar = eps ds in xbar = x / sqrt(a), s = sqrt(1/a - 1) (Song et al. eq. 13-14);
* eta = 0.5: eq. 12 with sigma from the DDPM posterior variance, sigma^2 = eta^2 beta_tilde;
* the inversion step: the forward Euler step in the same variables; respacing: cumulative products of 1 - beta.
"""

from __future__ import annotations

import numpy as np

from shared_specs.case import FunctionCase, gaussian, uniform

B = 4


def _alpha_pairs(rng, b=B, first_step=False):
    """Per-example (alpha_bar_t, alpha_bar_prev) with 0 < a_t < a_prev < 1 (a_prev = 1 at t = 0 if first_step)."""
    a_prev = uniform(rng, b, low=0.05, high=0.99)
    a_t = a_prev * uniform(rng, b, low=0.5, high=0.999)
    if first_step:
        a_prev[::2] = 1.0
    return a_t, a_prev


def _step_inputs(shape, first_step=False):
    def make(rng):
        a_t, a_prev = _alpha_pairs(rng, shape[0], first_step)
        return {"x_t": gaussian(rng, *shape), "eps": gaussian(rng, *shape), "alpha_bar_t": a_t,
                "alpha_bar_prev": a_prev, "z": gaussian(rng, *shape)}
    return make


def _bcast(c, x):
    return np.reshape(c, c.shape + (1,) * (x.ndim - 1))


# Independent references ------------------------------------------------------------------------------------------
def posterior_variance(alpha_bar_t, alpha_bar_prev):
    """beta_tilde = (1 - a_prev) / (1 - a_t) * beta_t, beta_t = 1 - a_t / a_prev (Ho et al. eq. 7)."""
    return (1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)


def ref_ddpm_step(x_t, eps, alpha_bar_t, alpha_bar_prev, z):
    """Ho et al. Algorithm 2 via the posterior: mu_tilde(x_t, x0_hat) + sqrt(beta_tilde) z."""
    a_t, a_p = _bcast(alpha_bar_t, x_t), _bcast(alpha_bar_prev, x_t)
    beta = 1 - a_t / a_p
    x0_hat = (x_t - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
    mean = np.sqrt(a_p) * beta / (1 - a_t) * x0_hat + np.sqrt(1 - beta) * (1 - a_p) / (1 - a_t) * x_t
    return mean + np.sqrt(posterior_variance(a_t, a_p)) * z


def ref_euler_step(x_t, eps, alpha_bar_t, alpha_bar_prev):
    """x_{t-1} = sqrt(a_prev) (x_t / sqrt(a_t) + (s_prev - s_t) eps), s = sqrt(1/a - 1): Euler for d xbar = eps ds."""
    a_t, a_p = _bcast(alpha_bar_t, x_t), _bcast(alpha_bar_prev, x_t)
    s_t, s_p = np.sqrt(1 / a_t - 1), np.sqrt(1 / a_p - 1)
    return np.sqrt(a_p) * (x_t / np.sqrt(a_t) + (s_p - s_t) * eps)


def ref_ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, z):
    if eta == 1.0:
        return ref_ddpm_step(x_t, eps, alpha_bar_t, alpha_bar_prev, z)
    if eta == 0.0:
        return ref_euler_step(x_t, eps, alpha_bar_t, alpha_bar_prev)
    a_t, a_p = _bcast(alpha_bar_t, x_t), _bcast(alpha_bar_prev, x_t)
    var = eta**2 * posterior_variance(a_t, a_p)
    x0_hat = (x_t - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
    return np.sqrt(a_p) * x0_hat + np.sqrt(1 - a_p - var) * eps + np.sqrt(var) * z


def ref_reverse_step(x_prev, eps, alpha_bar_t, alpha_bar_prev):
    """x_t = sqrt(a_t) (x_prev / sqrt(a_prev) + (s_t - s_prev) eps): the forward Euler step."""
    a_t, a_p = _bcast(alpha_bar_t, x_prev), _bcast(alpha_bar_prev, x_prev)
    return np.sqrt(a_t) * (x_prev / np.sqrt(a_p) + (np.sqrt(1 / a_t - 1) - np.sqrt(1 / a_p - 1)) * eps)


def ref_respace(alpha_bars, timesteps):
    """Through the betas: recover the full chain's betas, multiply (1 - beta) over each kept interval."""
    betas = 1 - alpha_bars / np.r_[1.0, alpha_bars[:-1]]
    bounds = np.r_[-1, timesteps]
    factors = np.array([np.prod(1 - betas[lo + 1:hi + 1]) for lo, hi in zip(bounds[:-1], bounds[1:])])
    kept = np.cumprod(factors)
    return kept, np.r_[1.0, kept[:-1]], 1 - factors


def _respace_inputs(rng):
    T = 60
    return {"alpha_bars": np.cumprod(1 - uniform(rng, T, low=1e-3, high=0.08)),
            "timesteps": np.sort(rng.choice(T, 9, replace=False)).astype(np.int64)}


STEP_GRADS = ("x_t", "eps", "alpha_bar_t", "alpha_bar_prev", "z")

CASES = (
    FunctionCase("ddim/ddim_sigma/eta_0.5", "ddim_sigma",
                 lambda r: dict(zip(("alpha_bar_t", "alpha_bar_prev"), _alpha_pairs(r, 8))),
                 grad_wrt=("alpha_bar_t", "alpha_bar_prev"), static={"eta": 0.5},
                 reference=lambda alpha_bar_t, alpha_bar_prev, eta: eta * np.sqrt(
                     posterior_variance(alpha_bar_t, alpha_bar_prev))),
    FunctionCase("ddim/ddim_step/eta_0", "ddim_step", _step_inputs((B, 6)), grad_wrt=STEP_GRADS,
                 static={"eta": 0.0}, reference=ref_ddim_step),
    FunctionCase("ddim/ddim_step/eta_0.5", "ddim_step", _step_inputs((B, 6)), grad_wrt=STEP_GRADS,
                 static={"eta": 0.5}, reference=ref_ddim_step),
    FunctionCase("ddim/ddim_step/eta_1", "ddim_step", _step_inputs((B, 6)), grad_wrt=STEP_GRADS,
                 static={"eta": 1.0}, reference=ref_ddim_step),
    FunctionCase("ddim/ddim_step/eta_0.5_images", "ddim_step", _step_inputs((B, 1, 4, 4)), grad_wrt=STEP_GRADS,
                 static={"eta": 0.5}, reference=ref_ddim_step),
    FunctionCase("ddim/ddim_step/eta_1_first_step", "ddim_step", _step_inputs((B, 6), first_step=True),
                 grad_wrt=("x_t", "eps", "z"), static={"eta": 1.0}, reference=ref_ddim_step),
    FunctionCase("ddim/ddim_reverse_step", "ddim_reverse_step",
                 lambda r: {"x_prev": gaussian(r, B, 6), "eps": gaussian(r, B, 6),
                            **dict(zip(("alpha_bar_t", "alpha_bar_prev"), _alpha_pairs(r)))},
                 grad_wrt=("x_prev", "eps", "alpha_bar_t", "alpha_bar_prev"), reference=ref_reverse_step),
    FunctionCase("ddim/respace_alpha_bars", "respace_alpha_bars", _respace_inputs, grad_wrt=("alpha_bars",),
                 reference=ref_respace),
)
