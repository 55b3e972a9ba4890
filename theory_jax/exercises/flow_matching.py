"""Exercises of flow matching: the conditional path's sample and its target velocity."""

from __future__ import annotations

import jax.numpy as jnp

from theory_jax.broadcasting import per_example
from theory_jax.exercises import Exercise, Mistake


def _no_sigma_min_in_path(x1, x0, t, sigma_min=0.0):
    s = per_example(t, x0)
    return (1 - s) * x0 + s * x1, x1 - (1 - sigma_min) * x0


def _no_sigma_min_in_target(x1, x0, t, sigma_min=0.0):
    s = per_example(t, x0)
    return (1 - (1 - sigma_min) * s) * x0 + s * x1, x1 - x0


def _time_reversed(x1, x0, t, sigma_min=0.0):
    s = per_example(t, x0)
    return s * x0 + (1 - (1 - sigma_min) * s) * x1, x0 - (1 - sigma_min) * x1


def _summed_over_dimensions(v, u):
    return jnp.mean(jnp.sum(((v - u) ** 2).reshape(v.shape[0], -1), axis=1))


def _not_squared(v, u):
    return jnp.mean(jnp.abs(v - u))


EXERCISES = (
    Exercise(
        "path_sample_and_target",
        "conditional flow matching's training pair: a point on the straight path from noise to data, and its velocity",
        ("psi_t(x0 | x1) moves the noise x0 at t = 0 to (about) the data x1 at t = 1 (Lipman et al. eq. 22); the "
         "target u_t is its time derivative (eq. 23).",
         "t is one time per example, shape (B,): broadcast it against x0 (per_example does).",
         "x_t = (1 - (1 - sigma_min) t) x0 + t x1 and u_t = x1 - (1 - sigma_min) x0."),
        (Mistake("your path leaves out sigma_min: psi_t = (1 - (1 - sigma_min) t) x0 + t x1 ends at x1 + sigma_min "
                 "x0, a Gaussian of width sigma_min around the data", _no_sigma_min_in_path),
         Mistake("your target leaves out sigma_min: d psi_t / dt = x1 - (1 - sigma_min) x0", _no_sigma_min_in_target),
         Mistake("your path runs backwards: at t = 0 it is the noise x0, at t = 1 the data x1", _time_reversed)),
        withhold=("conditional_path", "target_velocity")),
    Exercise(
        "cfm_loss",
        "the flow-matching regression: the network's velocity against the path's, a plain mean squared error",
        ("Lipman et al. eq. 9: E ||v_theta(t, x_t) - u_t(x_t | x_1)||^2; its gradient is the intractable "
         "marginal loss's (Theorem 2).",
         "Here the expectation is a mean over the examples and the dimensions both.",
         "mean((v - u)^2)."),
        (Mistake("your loss sums the squares over the dimensions: this one is their mean, over examples and "
                 "dimensions both (the same minimiser; yours is D times ours)", _summed_over_dimensions),
         Mistake("your loss takes |v - u|: flow matching regresses with the squared error, whose minimiser is the "
                 "conditional mean of u_t", _not_squared))),
)
