"""Exercises of the ELBO: the KL divergence between two diagonal Gaussians."""

from __future__ import annotations

import jax.numpy as jnp

from theory_jax.exercises import Exercise, Mistake


def _no_half(mean_q, logvar_q, mean_p, logvar_p):
    return jnp.sum(logvar_p - logvar_q + (jnp.exp(logvar_q) + (mean_q - mean_p) ** 2) * jnp.exp(-logvar_p) - 1.0,
                   axis=-1)


def _reversed(mean_q, logvar_q, mean_p, logvar_p):
    return 0.5 * jnp.sum(logvar_q - logvar_p + (jnp.exp(logvar_p) + (mean_p - mean_q) ** 2) * jnp.exp(-logvar_q) - 1.0,
                         axis=-1)


def _no_minus_one(mean_q, logvar_q, mean_p, logvar_p):
    return 0.5 * jnp.sum(logvar_p - logvar_q + (jnp.exp(logvar_q) + (mean_q - mean_p) ** 2) * jnp.exp(-logvar_p),
                         axis=-1)


EXERCISES = (
    Exercise(
        "gaussian_kl",
        "the closed-form KL term of the ELBO, per coordinate, from log-variances",
        ("KL(q || p) = E_q[log q - log p]; for Gaussians each coordinate's term has a closed form (claim 1).",
         "Per coordinate: log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2, with s^2 = exp(logvar).",
         "0.5 sum(logvar_p - logvar_q + (exp(logvar_q) + (mean_q - mean_p)^2) exp(-logvar_p) - 1, axis=-1)."),
        (Mistake("your KL is twice ours: every term carries a factor 1/2 (log(s_p / s_q) = (logvar_p - logvar_q) / 2)",
                 _no_half),
         Mistake("you computed KL(p || q): the ELBO's term is KL(q || p), with q's variance in the numerator",
                 _reversed),
         Mistake("your KL leaves out the -1/2 per coordinate: KL(q || q) must be 0", _no_minus_one))),
)
