"""Spec cases for ``ddpm``: schedules, the forward process, the posterior, the ancestral step, the bound's terms.

Each function runs in ``theory_jax.ddpm`` and ``practice_torch.ddpm`` on the same NumPy inputs (noise included: the
z of ``ddpm_step`` is injected), in float64, with gradients wherever the function is differentiable. Third
witnesses, each from a different formula than the twins':
* schedules: ``np.linspace`` / the cosine f(t) ratio, ``np.cumprod``;
* the posterior: Gaussian conditioning of the joint of (x_{t-1}, x_t) given x_0 (not eq. 7's coefficients);
* ``ddpm_step`` and ``vlb_term``: the epsilon form of the mean, eq. 11 (not the posterior at x0_hat);
* ``vlb_weight``: the simplified beta_t / (2 alpha_t (1 - alpha_bar_{t-1}));
* the discretised decoder: SciPy's normal CDF;
* restoration: the mask by ``np.where``, the low-pass filter as A x A^T with A the block-averaging matrix (not pooling
  and upsampling), the jump back up by its beta.
The U-Net's module cases (``shared_specs.nets.UNET_CASES``) are appended. DDPM trained in both trainers is a
twin-training case (``practice_jax/twin_cases.py``).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from shared_specs.case import FunctionCase, gaussian, uniform

B, IMAGE = 4, (4, 2, 5, 5)


def _bcast(c, x):
    c = np.asarray(c)
    return np.reshape(c, c.shape + (1,) * (x.ndim - c.ndim)) if c.ndim == 1 else c


def _alpha_pairs(rng, b=B, first_step=False):
    """Per-example (alpha_bar_t, alpha_bar_prev) with 0 < a_t < a_prev < 1 (a_prev = 1 at t = 0 if first_step)."""
    a_prev = uniform(rng, b, low=0.05, high=0.99)
    a_t = a_prev * uniform(rng, b, low=0.5, high=0.999)
    if first_step:
        a_prev[:] = 1.0
        a_t = uniform(rng, b, low=0.99, high=0.9999)
    return a_t, a_prev


# Independent references ------------------------------------------------------------------------------------------
def ref_cosine_betas(T, s=0.008, max_beta=0.999):
    alpha_bar = lambda u: np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    return np.array([min(1 - alpha_bar(t + 1) / alpha_bar(t), max_beta) for t in range(T)])


def ref_posterior(x0, x_t, alpha_bar_t, alpha_bar_prev):
    """Condition the joint Gaussian of (x_{t-1}, x_t) | x_0: means sqrt(a_prev) x_0 and sqrt(a_t) x_0, variances
    1 - a_prev and 1 - a_t, covariance sqrt(alpha_t) (1 - a_prev)."""
    a_t, a_p = _bcast(alpha_bar_t, x_t), _bcast(alpha_bar_prev, x_t)
    cov = np.sqrt(a_t / a_p) * (1 - a_p)
    mean = np.sqrt(a_p) * x0 + cov / (1 - a_t) * (x_t - np.sqrt(a_t) * x0)
    return mean, (1 - alpha_bar_prev) - (np.sqrt(alpha_bar_t / alpha_bar_prev) * (1 - alpha_bar_prev)) ** 2 / (
        1 - alpha_bar_t)


def eps_mean(x_t, eps, alpha_bar_t, alpha_bar_prev):
    """mu_theta = (x_t - beta_t / sqrt(1 - a_t) eps) / sqrt(alpha_t) (Ho et al. eq. 11)."""
    a_t, a_p = _bcast(alpha_bar_t, x_t), _bcast(alpha_bar_prev, x_t)
    alpha = a_t / a_p
    return (x_t - (1 - alpha) / np.sqrt(1 - a_t) * eps) / np.sqrt(alpha)


def posterior_variance(alpha_bar_t, alpha_bar_prev):
    return (1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)


def ref_ddpm_step(x_t, eps, alpha_bar_t, alpha_bar_prev, z):
    var = _bcast(posterior_variance(alpha_bar_t, alpha_bar_prev), x_t)
    return eps_mean(x_t, eps, alpha_bar_t, alpha_bar_prev) + np.sqrt(var) * z


def ref_vlb_term(x0, x_t, eps_pred, alpha_bar_t, alpha_bar_prev):
    mean, var = ref_posterior(x0, x_t, alpha_bar_t, alpha_bar_prev)
    diff = mean - eps_mean(x_t, eps_pred, alpha_bar_t, alpha_bar_prev)
    return (diff**2).reshape(len(x0), -1).sum(1) / (2 * var)


def ref_prior_kl(x0, alpha_bar_T):
    """Per dimension KL(N(m, v) || N(0, 1)) = (v + m^2 - 1 - ln v) / 2 with m = sqrt(a) x_0, v = 1 - a."""
    a = _bcast(alpha_bar_T, x0)
    m, v = np.sqrt(a) * x0, 1 - a
    return (0.5 * (v + m**2 - 1 - np.log(v))).reshape(len(x0), -1).sum(1)


def ref_discretized(x, mean, log_scale, bins=256):
    s, half = np.exp(log_scale), 1.0 / (bins - 1)
    upper = np.where(x > 0.999, np.inf, x + half)
    lower = np.where(x < -0.999, -np.inf, x - half)
    return np.log(stats.norm.cdf(upper, mean, s) - stats.norm.cdf(lower, mean, s))


def ref_decoder_nll(x0, x_1, eps_pred, alpha_bar_0, var):
    a = _bcast(alpha_bar_0, x0)
    mean = (x_1 - np.sqrt(1 - a) * eps_pred) / np.sqrt(a)
    log_scale = np.broadcast_to(0.5 * np.log(_bcast(np.asarray(var), x0)), x0.shape)
    return -ref_discretized(x0, mean, log_scale).reshape(len(x0), -1).sum(1)


# Input makers --------------------------------------------------------------------------------------------------
def _grid_images(rng, shape=IMAGE):
    """8-bit images on the grid {-1, ..., 1} of 256 values, both edge values included."""
    x = rng.integers(0, 256, size=shape).astype("float64")
    x.reshape(-1)[:2] = (0.0, 255.0)
    return x / 127.5 - 1.0


def _forward_inputs(shape):
    def make(rng):
        a_t, _ = _alpha_pairs(rng, shape[0])
        return {"x0": gaussian(rng, *shape), "alpha_bar_t": a_t, "eps": gaussian(rng, *shape)}
    return make


def _posterior_inputs(rng):
    a_t, a_p = _alpha_pairs(rng)
    return {"x0": gaussian(rng, *IMAGE), "x_t": gaussian(rng, *IMAGE), "alpha_bar_t": a_t, "alpha_bar_prev": a_p}


def _step_inputs(first_step=False):
    def make(rng):
        a_t, a_p = _alpha_pairs(rng, first_step=first_step)
        return {"x_t": gaussian(rng, *IMAGE), "eps": gaussian(rng, *IMAGE), "alpha_bar_t": a_t,
                "alpha_bar_prev": a_p, "z": gaussian(rng, *IMAGE)}
    return make


def _vlb_inputs(rng):
    a_t, a_p = _alpha_pairs(rng)
    return {"x0": gaussian(rng, *IMAGE), "x_t": gaussian(rng, *IMAGE), "eps_pred": gaussian(rng, *IMAGE),
            "alpha_bar_t": a_t, "alpha_bar_prev": a_p}


def _discretized_inputs(rng):
    x = _grid_images(rng)
    return {"x": x, "mean": x + gaussian(rng, *IMAGE, scale=0.05),
            "log_scale": np.log(uniform(rng, *IMAGE, low=0.02, high=0.3))}


def _decoder_inputs(rng):
    x0 = _grid_images(rng)
    a0 = uniform(rng, B, low=0.999, high=0.9999)
    eps = gaussian(rng, *IMAGE)
    x_1 = np.sqrt(_bcast(a0, x0)) * x0 + np.sqrt(1 - _bcast(a0, x0)) * eps
    return {"x0": x0, "x_1": x_1, "eps_pred": eps + gaussian(rng, *IMAGE, scale=0.3), "alpha_bar_0": a0,
            "var": uniform(rng, B, low=1e-4, high=1e-3)}


def block_average(size: int, factor: int) -> np.ndarray:
    """A (size, size): A v fills each block of ``factor`` entries of v with their mean; A x A^T low-passes images."""
    return np.kron(np.eye(size // factor), np.full((factor, factor), 1.0 / factor))


def ref_low_pass(x, factor):
    a = block_average(x.shape[-1], factor)
    return a @ x @ a.T


def ref_downsample(x, factor):
    """Each output pixel the mean of its factor x factor block, slice by slice."""
    b, c, h, w = x.shape
    out = np.empty((b, c, h // factor, w // factor))
    for i in range(h // factor):
        for j in range(w // factor):
            out[:, :, i, j] = x[:, :, i * factor:(i + 1) * factor, j * factor:(j + 1) * factor].mean(axis=(2, 3))
    return out


def ref_augment_condition(z, alpha_bar_s, eps):
    """The variance-preserving rotation: with alpha_bar_s = cos^2 phi, z_s = cos(phi) z + sin(phi) eps."""
    phi = np.arccos(np.sqrt(alpha_bar_s)).reshape(-1, *([1] * (z.ndim - 1)))
    return np.cos(phi) * z + np.sin(phi) * eps


def _restoration_inputs(rng):
    known = (rng.random((1, 1, 6, 6)) < 0.5).astype("float64")
    return {"x_model": gaussian(rng, 3, 2, 6, 6), "y_t": gaussian(rng, 3, 2, 6, 6), "known": known}


def _renoise_inputs(rng):
    a_t, a_p = _alpha_pairs(rng)
    return {"x_prev": gaussian(rng, *IMAGE), "alpha_bar_t": a_t, "alpha_bar_prev": a_p, "z": gaussian(rng, *IMAGE)}


def ref_renoise(x_prev, alpha_bar_t, alpha_bar_prev, z):
    beta = _bcast(1 - alpha_bar_t / alpha_bar_prev, x_prev)
    return np.sqrt(1 - beta) * x_prev + np.sqrt(beta) * z


def _nets_cases():
    try:
        from shared_specs.nets import UNET_CASES
    except ImportError:  # the U-Net's cases live with the shared networks
        return ()
    return tuple(UNET_CASES)


CASES = (
    FunctionCase("ddpm/linear_betas", "linear_betas", lambda r: {}, static={"T": 50},
                 reference=lambda T: np.linspace(1e-4, 0.02, T)),
    FunctionCase("ddpm/linear_betas_custom", "linear_betas", lambda r: {},
                 static={"T": 7, "beta_start": 0.01, "beta_end": 0.3},
                 reference=lambda T, beta_start, beta_end: np.linspace(beta_start, beta_end, T)),
    FunctionCase("ddpm/cosine_betas", "cosine_betas", lambda r: {}, static={"T": 100}, reference=ref_cosine_betas),
    FunctionCase("ddpm/cosine_betas_clipped", "cosine_betas", lambda r: {}, static={"T": 10, "max_beta": 0.5},
                 reference=lambda T, max_beta: ref_cosine_betas(T, max_beta=max_beta)),
    FunctionCase("ddpm/alpha_bars", "alpha_bars", lambda r: {"betas": uniform(r, 20, low=1e-3, high=0.2)},
                 grad_wrt=("betas",), reference=lambda betas: np.cumprod(1 - betas)),
    FunctionCase("ddpm/q_sample", "q_sample", _forward_inputs(IMAGE), grad_wrt=("x0", "alpha_bar_t", "eps"),
                 reference=lambda x0, alpha_bar_t, eps: np.sqrt(_bcast(alpha_bar_t, x0)) * x0
                 + np.sqrt(1 - _bcast(alpha_bar_t, x0)) * eps),
    FunctionCase("ddpm/q_sample_vectors", "q_sample", _forward_inputs((6, 2)), grad_wrt=("x0", "alpha_bar_t", "eps"),
                 reference=lambda x0, alpha_bar_t, eps: np.sqrt(alpha_bar_t[:, None]) * x0
                 + np.sqrt(1 - alpha_bar_t[:, None]) * eps),
    FunctionCase("ddpm/predict_x0", "predict_x0",
                 lambda r: {"x_t": gaussian(r, *IMAGE), "alpha_bar_t": _alpha_pairs(r)[0], "eps": gaussian(r, *IMAGE)},
                 grad_wrt=("x_t", "alpha_bar_t", "eps"),
                 reference=lambda x_t, alpha_bar_t, eps: (x_t - np.sqrt(1 - _bcast(alpha_bar_t, x_t)) * eps)
                 / np.sqrt(_bcast(alpha_bar_t, x_t))),
    FunctionCase("ddpm/posterior_mean_variance", "posterior_mean_variance", _posterior_inputs,
                 grad_wrt=("x0", "x_t", "alpha_bar_t", "alpha_bar_prev"), reference=ref_posterior),
    FunctionCase("ddpm/ddpm_step", "ddpm_step", _step_inputs(),
                 grad_wrt=("x_t", "eps", "alpha_bar_t", "alpha_bar_prev", "z"), reference=ref_ddpm_step),
    FunctionCase("ddpm/ddpm_step_first", "ddpm_step", _step_inputs(first_step=True), grad_wrt=("x_t", "eps"),
                 reference=lambda x_t, eps, alpha_bar_t, alpha_bar_prev, z: eps_mean(x_t, eps, alpha_bar_t,
                                                                                     alpha_bar_prev)),
    FunctionCase("ddpm/eps_loss", "eps_loss", lambda r: {"eps": gaussian(r, *IMAGE), "eps_pred": gaussian(r, *IMAGE)},
                 grad_wrt=("eps", "eps_pred"),
                 reference=lambda eps, eps_pred: ((eps - eps_pred) ** 2).reshape(len(eps), -1).mean(1)),
    FunctionCase("ddpm/vlb_weight", "vlb_weight",
                 lambda r: dict(zip(("alpha_bar_t", "alpha_bar_prev"), _alpha_pairs(r, 8))),
                 grad_wrt=("alpha_bar_t", "alpha_bar_prev"),
                 reference=lambda alpha_bar_t, alpha_bar_prev: (1 - alpha_bar_t / alpha_bar_prev)
                 / (2 * alpha_bar_t / alpha_bar_prev * (1 - alpha_bar_prev))),
    FunctionCase("ddpm/vlb_term", "vlb_term", _vlb_inputs,
                 grad_wrt=("x0", "x_t", "eps_pred", "alpha_bar_t", "alpha_bar_prev"), reference=ref_vlb_term),
    FunctionCase("ddpm/prior_kl", "prior_kl",
                 lambda r: {"x0": gaussian(r, *IMAGE), "alpha_bar_T": uniform(r, B, low=1e-3, high=0.5)},
                 grad_wrt=("x0", "alpha_bar_T"), reference=ref_prior_kl),
    FunctionCase("ddpm/discretized_gaussian_log_likelihood", "discretized_gaussian_log_likelihood",
                 _discretized_inputs, grad_wrt=("mean", "log_scale"), reference=ref_discretized),
    FunctionCase("ddpm/decoder_nll", "decoder_nll", _decoder_inputs, grad_wrt=("x_1", "eps_pred", "var"),
                 reference=ref_decoder_nll),
    FunctionCase("ddpm/low_pass", "low_pass", lambda r: {"x": gaussian(r, 3, 2, 6, 6)}, static={"factor": 3},
                 grad_wrt=("x",), reference=ref_low_pass),
    FunctionCase("ddpm/downsample", "downsample", lambda r: {"x": gaussian(r, 3, 2, 6, 6)}, static={"factor": 3},
                 grad_wrt=("x",), reference=ref_downsample),
    FunctionCase("ddpm/upsample", "upsample", lambda r: {"z": gaussian(r, 3, 2, 3, 2)}, static={"factor": 2},
                 grad_wrt=("z",), reference=lambda z, factor: np.kron(z, np.ones((factor, factor)))),
    FunctionCase("ddpm/augment_condition", "augment_condition",
                 lambda r: {"z": gaussian(r, 4, 1, 7, 7), "alpha_bar_s": uniform(r, 4, low=0.05, high=0.99),
                            "eps": gaussian(r, 4, 1, 7, 7)},
                 grad_wrt=("z", "alpha_bar_s", "eps"), reference=ref_augment_condition),
    FunctionCase("ddpm/replace_known", "replace_known", _restoration_inputs, grad_wrt=("x_model", "y_t"),
                 reference=lambda x_model, y_t, known: np.where(known > 0, y_t, x_model)),
    FunctionCase("ddpm/replace_low_pass", "replace_low_pass",
                 lambda r: {k: v for k, v in _restoration_inputs(r).items() if k != "known"}, static={"factor": 2},
                 grad_wrt=("x_model", "y_t"),
                 reference=lambda x_model, y_t, factor: x_model + ref_low_pass(y_t - x_model, factor)),
    FunctionCase("ddpm/renoise", "renoise", _renoise_inputs, grad_wrt=("x_prev", "alpha_bar_t", "alpha_bar_prev", "z"),
                 reference=ref_renoise),
) + _nets_cases()
