"""Exercises of flow matching: the conditional path's sample and its target velocity."""

from __future__ import annotations

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
)
