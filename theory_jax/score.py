"""Diffusion models as score predictors: epsilon <-> score, denoising score matching, (annealed) Langevin dynamics.

Lectures: DDPMs as score predictors; alternate interpretations (Vincent 2011, "A connection between score
matching and denoising autoencoders"; Song & Ermon 2019, "Generative modeling by estimating gradients of the
data distribution" (NCSN), eqs. 2-6 and Algorithm 1; Song & Ermon 2020 (NCSNv2); Efron 2011 for Tweedie's
formula; Ho et al. 2020, sec. 3.2 for the epsilon-parameterisation).

With x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps, the conditional score is -eps / sqrt(1 - abar); averaged over
x_0 given x_t it becomes the marginal score, so the optimal noise predictor E[eps | x_t] is a score model:

    s(x_t) = grad log p_t(x_t) = -E[eps | x_t] / sqrt(1 - abar)                      (epsilon <-> score)

Denoising score matching, J_DSM = 1/2 E ||s(x~) + (x~ - x)/sigma^2||^2, differs from explicit score matching
J_ESM = 1/2 E ||s(x~) - grad log q_sigma(x~)||^2 by a constant free of the model (Vincent 2011), so it trains
the same score. Langevin dynamics x <- x + alpha/2 s(x) + sqrt(alpha) z samples p as alpha -> 0 (bias O(alpha));
annealed over sigma_1 > ... > sigma_L with alpha_i = eps sigma_i^2 / sigma_L^2 it also gets the weights of
separated modes right (Song & Ermon 2019, sec. 4.3).
Twin: ``practice_torch/score`` (same names, same arguments); cases: ``shared_specs/score.py``.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from scipy import stats

from theory_jax.broadcasting import per_example


# 1. The pure functions (twins in practice_torch.score) ---------------------------------------------------------
def eps_to_score(eps, alpha_bar_t):
    """s(x_t) = -eps / sqrt(1 - abar_t): a noise prediction read as a score. eps: (B, ...), alpha_bar_t: (B,)."""
    return -eps / jnp.sqrt(1 - per_example(alpha_bar_t, eps))


def score_to_eps(score, alpha_bar_t):
    """eps = -sqrt(1 - abar_t) s(x_t), the inverse of ``eps_to_score``. score: (B, ...), alpha_bar_t: (B,)."""
    return -jnp.sqrt(1 - per_example(alpha_bar_t, score)) * score


def alpha_bar_to_sigma(alpha_bar):
    """sigma = sqrt((1 - abar) / abar): x_t / sqrt(abar) = x_0 + sigma eps, the VP chain as NCSN noise. (...)."""
    return jnp.sqrt((1 - alpha_bar) / alpha_bar)


def geometric_sigmas(sigma_max, sigma_min, num_levels: int):
    """sigma_i = sigma_max (sigma_min / sigma_max)^((i-1)/(L-1)), i = 1..L: sigma_1 > ... > sigma_L with a constant
    ratio (Song & Ermon 2019, sec. 4.2). sigma_max, sigma_min: () -> (L,)."""
    if num_levels < 2:
        raise ValueError(f"a geometric noise schedule needs at least 2 levels, got {num_levels}")
    frac = jnp.arange(num_levels, dtype=jnp.result_type(sigma_max, float)) / (num_levels - 1)
    return sigma_max * (sigma_min / sigma_max) ** frac


def annealed_step_sizes(sigmas, eps):
    """alpha_i = eps sigma_i^2 / sigma_L^2 (Algorithm 1): the same signal-to-noise ratio at every level. (L,) -> (L,)."""
    return eps * sigmas**2 / sigmas[-1] ** 2


def perturb(x, sigma, z):
    """x~ = x + sigma z, a draw of q_sigma(x~ | x) = N(x, sigma^2 I). x, z: (B, ...), sigma: (B,)."""
    return x + per_example(sigma, x) * z


def dsm_loss(score, z, sigma):
    """Denoising score matching at x~ = x + sigma z, weighted by lambda(sigma) = sigma^2 (Song & Ermon 2019,
    eqs. 2 and 5-6): mean_b 1/2 lambda(sigma_b) ||s(x~_b) - grad log q(x~_b | x_b)||^2, the target
    grad log q(x~ | x) = -(x~ - x) / sigma^2 = -z / sigma. score, z: (B, ...), sigma: (B,) -> ()."""
    sigma = per_example(sigma, z)
    target = -z / sigma
    terms = 0.5 * sigma**2 * (score - target) ** 2
    return jnp.mean(jnp.sum(terms.reshape(terms.shape[0], -1), axis=1))


def langevin_step(x, score, step_size, z):
    """x' = x + alpha/2 s(x) + sqrt(alpha) z (Song & Ermon 2019, eq. 4). x, score, z: (B, ...); step_size: () or (B,)."""
    alpha = per_example(step_size, x)
    return x + 0.5 * alpha * score + jnp.sqrt(alpha) * z


def denoise(x, score, sigma):
    """Tweedie's formula E[x | x~] = x~ + sigma^2 grad log q_sigma(x~): the final denoising step of annealed Langevin
    (Song & Ermon 2020; Jolicoeur-Martineau et al. 2021). x, score: (B, ...), sigma: (B,) or ()."""
    return x + per_example(sigma, x) ** 2 * score


# 2. Gaussian mixtures: exact densities, scores and posterior means (the known targets) ------------------------
def _components(x, means, covs):
    """Per-component log N(x; mu_k, Sigma_k) (N, K) and Sigma_k^-1 (x - mu_k) (N, K, D). x: (N, D)."""
    prec = jnp.linalg.inv(covs)
    diff = x[:, None, :] - means[None]
    whitened = jnp.einsum("kij,nkj->nki", prec, diff)
    logdet = jnp.linalg.slogdet(covs)[1]
    return -0.5 * (jnp.sum(diff * whitened, -1) + logdet + x.shape[-1] * math.log(2 * math.pi)), whitened


@jax.jit
def gmm_log_prob(x, weights, means, covs):
    """log sum_k pi_k N(x; mu_k, Sigma_k). x: (N, D), weights (K,), means (K, D), covs (K, D, D) -> (N,)."""
    return logsumexp(_components(x, means, covs)[0] + jnp.log(weights), axis=-1)


@jax.jit
def gmm_score(x, weights, means, covs):
    """grad_x log p(x) = -sum_k r_k(x) Sigma_k^-1 (x - mu_k), r_k the responsibilities. (N, D) -> (N, D)."""
    comp, whitened = _components(x, means, covs)
    resp = jax.nn.softmax(comp + jnp.log(weights), axis=-1)
    return -jnp.sum(resp[..., None] * whitened, axis=1)


@jax.jit
def autodiff_score(x, weights, means, covs):
    """grad_x log p(x) by jax.grad of ``gmm_log_prob``: the witness for ``gmm_score``. (N, D) -> (N, D)."""
    return jax.grad(lambda y: jnp.sum(gmm_log_prob(y, weights, means, covs)))(x)


def gmm_noised(weights, means, covs, scale, noise_std):
    """The law of y = scale x + noise_std eps for x ~ GMM, eps ~ N(0, I): a GMM (pi, scale mu, scale^2 Sigma + s^2 I)."""
    return weights, scale * means, scale**2 * covs + noise_std**2 * jnp.eye(means.shape[-1])


@jax.jit
def gmm_posterior_mean(y, weights, means, covs, scale, noise_std):
    """E[x | y], y = scale x + noise_std eps, by Gaussian conditioning within each component and the responsibilities
    r_k(y): sum_k r_k (mu_k + scale Sigma_k C_k^-1 (y - scale mu_k)), C_k = scale^2 Sigma_k + noise_std^2 I. (N, D)."""
    w, m, c = gmm_noised(weights, means, covs, scale, noise_std)
    comp = _components(y, m, c)[0]
    resp = jax.nn.softmax(comp + jnp.log(w), axis=1)
    gain = scale * covs @ jnp.linalg.inv(c)  # (K, D, D)
    post = means[None] + jnp.einsum("kij,nkj->nki", gain, y[:, None, :] - m[None])
    return jnp.sum(resp[..., None] * post, axis=1)


# 3. Langevin chains (jit, lax.scan; the noise is an argument, drawn by NumPy) -------------------------------------
@partial(jax.jit, static_argnames="score_fn")
def langevin_chain(score_fn, x0, noise, step_size):
    """Langevin steps of every chain x0 (N, D) with score_fn(x) -> (N, D), one step per noise[k] (K, N, D)
    -> the final states (N, D)."""
    def body(x, z):
        return langevin_step(x, score_fn(x), step_size, z), None

    return jax.lax.scan(body, x0, noise)[0]


@partial(jax.jit, static_argnames="score_fn")
def annealed_langevin(score_fn, x0, noise, sigmas, eps):
    """Algorithm 1 of Song & Ermon 2019: at each level i, T Langevin steps with alpha_i = eps sigma_i^2 / sigma_L^2 and
    score_fn(x, sigma_i) -> (N, D). x0: (N, D), noise: (L, T, N, D), sigmas: (L,) -> the final states (N, D)."""
    def level(x, inputs):
        sigma, alpha, z_level = inputs

        def step(y, z):
            return langevin_step(y, score_fn(y, sigma), alpha, z), None

        return jax.lax.scan(step, x, z_level)[0], None

    return jax.lax.scan(level, x0, (sigmas, annealed_step_sizes(sigmas, eps), noise))[0]


def ks_statistics(samples, weights, means, covs, angles=(0.0, 45.0, 90.0, 135.0)) -> np.ndarray:
    """Kolmogorov-Smirnov statistics of the projections w_a . x of samples (N, 2) against their exact CDFs
    sum_k pi_k Phi((t - w.mu_k) / sqrt(w' Sigma_k w)) (a projected mixture is a 1-D mixture) -> (len(angles),)."""
    x, w, m, c = (np.asarray(a, dtype=np.float64) for a in (samples, weights, means, covs))
    out = []
    for angle in np.deg2rad(angles):
        u = np.array([np.cos(angle), np.sin(angle)])
        loc, scale = m @ u, np.sqrt(np.einsum("i,kij,j->k", u, c, u))
        out.append(stats.kstest(x @ u, lambda t: np.sum(w * stats.norm.cdf((t[:, None] - loc) / scale), -1)).statistic)
    return np.asarray(out)
