"""The linear-Gaussian VAE the ``vae`` derivation checks its first claims on (``theory_jax/derivations/vae.py``).

The decoder x|z ~ N(W z + b, sigma^2 I), z ~ N(0, I), has every term in closed form: the expected reconstruction, the
ELBO, the beta-VAE objective and its optimum, the conditional ELBO and the evidence. Here are the model, the random
Gaussians q it is evaluated on and the jitted Monte Carlo terms (reparameterised and score-function gradients, the
IWAE bound) that the derivation's steps compare with those closed forms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from theory_jax.elbo import (
    gaussian_log_prob,
    iwae_bound,
    linear_gaussian_elbo,
    linear_gaussian_evidence,
    linear_gaussian_log_joint,
    linear_gaussian_posterior,
    mvn_kl,
    standard_normal_kl,
)
from theory_jax.vae import (
    LOG_2PI,
    reparameterize,
)


def _model(seed: int = 0, big_d: int = 5, d: int = 3, classes: int = 3):
    """Linear-Gaussian decoder x|z,y ~ N(W z + b + V onehot(y), sigma^2 I), z ~ N(0, I), and one x (float64)."""
    rng = np.random.default_rng(seed)
    weight = jnp.asarray(rng.standard_normal((big_d, d)) / np.sqrt(d))
    bias, v = jnp.asarray(0.5 * rng.standard_normal(big_d)), jnp.asarray(rng.standard_normal((big_d, classes)))
    x = weight @ jnp.asarray(rng.standard_normal(d)) + bias + 0.7 * jnp.asarray(rng.standard_normal(big_d))
    return x, weight, bias, jnp.asarray(0.7), v


def _random_qs(rng: np.random.Generator, n: int, d: int):
    """n random full-covariance Gaussians: means (n, d), lower-triangular scales (n, d, d)."""
    diag = np.exp(0.3 * rng.standard_normal((n, d)))[:, None] * np.eye(d)
    low = np.tril(0.3 * rng.standard_normal((n, d, d)), -1) + diag
    return jnp.asarray(rng.standard_normal((n, d))), jnp.asarray(low)


def _expected_recon(x, weight, bias, sigma, mean, scale_tril):
    """E_q log N(x; W z + b, sigma^2 I) for q = N(m, L L^T), in closed form:
    -D/2 log(2 pi sigma^2) - (|x - W m - b|^2 + |W L|_F^2) / (2 sigma^2)."""
    resid = x - mean @ weight.T - bias
    return -0.5 * x.shape[-1] * (LOG_2PI + 2 * jnp.log(sigma)) - 0.5 * (
        jnp.sum(resid**2, axis=-1) + jnp.sum((weight @ scale_tril) ** 2)) / sigma**2


def _beta_objective(x, weight, bias, sigma, mean, scale_tril, beta):
    """The beta-VAE objective E_q log p(x|z) - beta KL(q || N(0, I)) in closed form (Higgins et al. 2017)."""
    d = mean.shape[-1]
    return _expected_recon(x, weight, bias, sigma, mean, scale_tril) - beta * mvn_kl(
        mean, scale_tril, jnp.zeros(d), jnp.eye(d))


def _beta_optimum(x, weight, bias, sigma, beta):
    """S* = (I + W^T W / (beta sigma^2))^-1, m* = S* W^T (x - b) / (beta sigma^2) -> (m*, chol S*)."""
    s2 = beta * sigma**2
    cov = jnp.linalg.inv(jnp.eye(weight.shape[1]) + weight.T @ weight / s2)
    return cov @ weight.T @ (x - bias) / s2, jnp.linalg.cholesky(cov)


@jax.jit
def _elbo_terms(x, weight, bias, sigma, mean, logvar, eps):
    """Closed forms and per-sample terms for one diagonal q = N(mean, diag e^logvar), z = reparameterize(eps)."""
    z, tril = reparameterize(mean, logvar, eps), jnp.diag(jnp.exp(0.5 * logvar))
    return {"z": z, "kl": standard_normal_kl(mean, logvar),
            "kl_samples": gaussian_log_prob(z, mean, logvar) - gaussian_log_prob(z, 0 * z, 0 * z),
            "recon": _expected_recon(x, weight, bias, sigma, mean, tril),
            "recon_samples": gaussian_log_prob(x, z @ weight.T + bias, jnp.full(x.shape, 2 * jnp.log(sigma))),
            "elbo": linear_gaussian_elbo(x, weight, bias, sigma, mean, tril)}


@jax.jit
def _beta_study(x, weight, bias, sigma, means, trils, betas):
    """F_beta for each beta and q (B, Q); ELBO (Q,); grad_(m, tril L) F_beta at the beta optimum (B, d + d^2);
    KL(q*_beta || N(0, I)) (B,); the beta = 1 optimum and the posterior, flattened; log p(x)."""
    per_q = jax.vmap(_beta_objective, in_axes=(None,) * 4 + (0, 0, None))
    objective = jax.vmap(lambda b: per_q(x, weight, bias, sigma, means, trils, b))(betas)
    elbos = jax.vmap(linear_gaussian_elbo, in_axes=(None,) * 4 + (0, 0))(x, weight, bias, sigma, means, trils)

    def at_optimum(b):
        m, t = _beta_optimum(x, weight, bias, sigma, b)
        gm, gl = jax.grad(_beta_objective, argnums=(4, 5))(x, weight, bias, sigma, m, t, b)
        return jnp.concatenate([gm, jnp.tril(gl).ravel()]), mvn_kl(m, t, 0 * m, jnp.eye(m.shape[0]))

    def flat(m, t):
        return jnp.concatenate([m, t.ravel()])

    grads, kls = jax.vmap(at_optimum)(betas)
    return {"objective": objective, "elbos": elbos, "grads": grads, "kl_star": kls,
            "optimum": flat(*_beta_optimum(x, weight, bias, sigma, 1.0)),
            "posterior": flat(*linear_gaussian_posterior(x, weight, bias, sigma)),
            "log_px": linear_gaussian_evidence(x, weight, bias, sigma)}


@jax.jit
def _cvae_terms(x, weight, bias, sigma, v, means, trils):
    """For y = 0..n-1, the model with bias b + V e_y and q_y = N(means[y], trils[y] trils[y]^T):
    cELBO, KL(q_y || p(z|x, y)) and log p(x|y), each (n,)."""
    def one(y, m, t):
        b_y = bias + v @ jax.nn.one_hot(y, v.shape[1])
        return (linear_gaussian_elbo(x, weight, b_y, sigma, m, t),
                mvn_kl(m, t, *linear_gaussian_posterior(x, weight, b_y, sigma)),
                linear_gaussian_evidence(x, weight, b_y, sigma))

    return jax.vmap(one)(jnp.arange(v.shape[1]), means, trils)


@jax.jit
def _gradient_samples(x, weight, bias, sigma, mean, logvar, eps):
    """Per-sample estimators of grad_(m, logvar) E_q f(z), f(z) = log p(x|z): reparameterised and score function."""
    def f(z):
        return gaussian_log_prob(x, z @ weight.T + bias, jnp.full(x.shape, 2 * jnp.log(sigma)))

    def reparam(e):
        return jnp.concatenate(jax.grad(lambda m, lv: f(reparameterize(m, lv, e)), argnums=(0, 1))(mean, logvar))

    def score(e):
        z = reparameterize(mean, logvar, e)  # held fixed: only log q(z) is differentiated
        return f(z) * jnp.concatenate(jax.grad(gaussian_log_prob, argnums=(1, 2))(z, mean, logvar))

    exact = jax.grad(lambda m, lv: _expected_recon(x, weight, bias, sigma, m, jnp.diag(jnp.exp(0.5 * lv))),
                     argnums=(0, 1))(mean, logvar)
    return jax.vmap(reparam)(eps), jax.vmap(score)(eps), jnp.concatenate(exact)


@jax.jit
def _iwae_samples(x, weight, bias, sigma, eps):
    """log (1/K) sum_k w_k, w_k = p(x, z_k) / q(z_k|x), z_k = reparameterize(q, eps_k), for a mis-fitted diagonal
    q(z|x): mean 0.8 of the posterior's plus 0.1, variances 1.3x its marginals. eps: (R, K, d) -> (R,), ELBO(q)."""
    post_mean, post_tril = linear_gaussian_posterior(x, weight, bias, sigma)
    mean, logvar = 0.8 * post_mean + 0.1, jnp.log(1.3 * jnp.diag(post_tril @ post_tril.T))
    z = reparameterize(mean, logvar, eps)
    log_w = linear_gaussian_log_joint(x, z, weight, bias, sigma) - gaussian_log_prob(z, mean, logvar)
    return iwae_bound(log_w), linear_gaussian_elbo(x, weight, bias, sigma, mean, jnp.diag(jnp.exp(0.5 * logvar)))
