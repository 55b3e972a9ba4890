"""Exercises of flow matching: the conditional path's sample and its target velocity, the CFM loss, reflow's measure
of how straight a flow is, and the consistency function's skip parameterisation."""

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


def _displacement_reversed(x0, x1, velocities):
    gap = (x0 - x1)[None] - velocities
    return jnp.mean(jnp.sum(gap.reshape(gap.shape[0], gap.shape[1], -1) ** 2, axis=-1))


def _norm_not_squared(x0, x1, velocities):
    gap = (x1 - x0)[None] - velocities
    return jnp.mean(jnp.sqrt(jnp.sum(gap.reshape(gap.shape[0], gap.shape[1], -1) ** 2, axis=-1)))


def _mean_over_dimensions(x0, x1, velocities):
    return jnp.mean(((x1 - x0)[None] - velocities) ** 2)


def _skip_and_out_swapped(x_t, t, F, sigma_data=0.5):
    r = (1 - t) ** 2 + sigma_data**2 * t**2
    return per_example(sigma_data * (1 - t) / jnp.sqrt(r), x_t) * x_t + per_example(sigma_data**2 * t / r, x_t) * F


def _boundary_at_the_noise(x_t, t, F, sigma_data=0.5):
    s = 1 - t
    r = (1 - s) ** 2 + sigma_data**2 * s**2
    return per_example(sigma_data**2 * s / r, x_t) * x_t + per_example(sigma_data * (1 - s) / jnp.sqrt(r), x_t) * F


def _unscaled_sigma(x_t, t, F, sigma_data=0.5):
    sigma = 1 - t  # the noise level read off x_t itself, as if x_t = x1 + sigma x0
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    return per_example(c_skip, x_t) * x_t + per_example(sigma_data * sigma / jnp.sqrt(sigma**2 + sigma_data**2), x_t) * F


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
    Exercise(
        "straightness",
        "reflow's measure of a flow: how far its velocities stray from the straight line between each path's ends",
        ("Liu et al. 2023, Definition 3.1: S = int_0^1 E ||(x1 - x0) - v_t||^2 dt; it is 0 exactly when every "
         "trajectory is a straight line run at constant speed, so that one Euler step lands on its end.",
         "velocities holds the field at K times along B trajectories, (K, B, ...): compare each with its own "
         "trajectory's displacement x1 - x0, broadcast over the K times.",
         "The squared norm sums over an example's dimensions; the integral over t and the expectation over the "
         "examples are both means: mean over (K, B) of sum over the rest of ((x1 - x0)[None] - velocities)^2."),
        (Mistake("your displacement runs backwards: the trajectory moves from its start x0 to its end x1, so "
                 "compare the velocities with x1 - x0", _displacement_reversed),
         Mistake("your norm is not squared: the straightness averages ||(x1 - x0) - v_t||^2, the excess kinetic "
                 "energy of the paths", _norm_not_squared),
         Mistake("your norm averages over the dimensions: ||.||^2 sums over an example's dimensions, and only the "
                 "times and the examples are averaged", _mean_over_dimensions))),
    Exercise(
        "consistency_function",
        "a consistency model's output: a skip connection that makes f(x, 1) = x hold whatever the network says",
        ("Song et al. 2023, eq. 5: f(x_t, t) = c_skip(t) x_t + c_out(t) F(x_t, t), with c_skip = 1 and c_out = 0 at "
         "the data's end of the path (t = 1 here).",
         "Write the path as x_t = t (x1 + sigma x0) with sigma = (1 - t) / t, and use EDM's c_skip = sigma_data^2 / "
         "(sigma^2 + sigma_data^2) and c_out = sigma_data sigma / sqrt(sigma^2 + sigma_data^2) on x_t / t.",
         "With r = (1 - t)^2 + sigma_data^2 t^2: c_skip = sigma_data^2 t / r multiplies x_t, c_out = sigma_data "
         "(1 - t) / sqrt(r) multiplies F; broadcast each (B,) over the example's dimensions."),
        (Mistake("your c_skip and c_out are swapped: the skip term, which carries x_t, must be 1 at t = 1 and the "
                 "network's term 0", _skip_and_out_swapped),
         Mistake("your boundary sits at the noise: in flow matching's time the data are at t = 1, so f(x, 1) = x",
                 _boundary_at_the_noise),
         Mistake("your noise level is 1 - t on x_t itself: x_t = t (x1 + sigma x0), so sigma = (1 - t) / t on "
                 "x_t / t", _unscaled_sigma)),
        withhold=("consistency_scalings",)),
)
