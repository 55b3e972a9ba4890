"""Exercises of the VAE: the reparameterisation trick."""

from __future__ import annotations

import jax.numpy as jnp

from theory_jax.exercises import Exercise, Mistake


def _variance(mean, logvar, eps):
    return mean + jnp.exp(logvar) * eps


def _logvar_as_std(mean, logvar, eps):
    return mean + logvar * eps


EXERCISES = (
    Exercise(
        "reparameterize",
        "a sample z ~ N(mean, diag sigma^2) written as a differentiable function of the parameters and outside noise",
        ("z = mean + sigma * eps with eps ~ N(0, I) given: the randomness is an input, so gradients reach mean and "
         "sigma (Kingma & Welling, eq. 10).",
         "The encoder gives log sigma^2; sigma is exp(logvar / 2).",
         "mean + exp(0.5 logvar) * eps."),
        (Mistake("you scale eps by exp(logvar), the variance: the standard deviation is exp(logvar / 2)", _variance),
         Mistake("you scale eps by logvar itself: it is log sigma^2, so sigma = exp(logvar / 2)", _logvar_as_std))),
)
