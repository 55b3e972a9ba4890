"""Exercises of energy-based models: the Langevin step and the replay buffer's refresh."""

from __future__ import annotations

import jax.numpy as jnp

from theory_jax.broadcasting import per_example
from theory_jax.exercises import Exercise, Mistake


def _half_noise(x, grad_energy, step_size, z):
    eps = per_example(step_size, x)
    return x - eps * grad_energy + jnp.sqrt(eps) * z


def _ascent(x, grad_energy, step_size, z):
    eps = per_example(step_size, x)
    return x + eps * grad_energy + jnp.sqrt(2 * eps) * z


def _noise_by_step(x, grad_energy, step_size, z):
    eps = per_example(step_size, x)
    return x - eps * grad_energy + 2 * eps * z


def _inverted(samples, fresh, mask):
    m = per_example(mask, samples)
    return (1 - m) * fresh + m * samples


def _fresh_everywhere(samples, fresh, mask):
    return fresh


EXERCISES = (
    Exercise(
        "langevin_step",
        "the unadjusted Langevin algorithm: a gradient step down the energy plus just enough noise to sample exp(-E)",
        ("x' = x - eps grad E(x) + sqrt(2 eps) z: the noise's variance is twice the step size, so the chain's "
         "stationary law is exp(-E) as eps -> 0.",
         "step_size may be one number or one per example, (B,): broadcast it (per_example).",
         "x - eps * grad_energy + sqrt(2 eps) * z."),
        (Mistake("your noise is sqrt(eps) z: with a step of eps down the gradient the noise must be sqrt(2 eps) z, "
                 "or the chain samples exp(-2E), a colder law", _half_noise),
         Mistake("you climb the energy: the step goes down its gradient, x - eps grad E", _ascent),
         Mistake("your noise is scaled by 2 eps: its standard deviation is sqrt(2 eps)", _noise_by_step))),
    Exercise(
        "refresh_buffer",
        "the replay buffer (Du & Mordatch 2019): most chains persist, a few restart from noise each step",
        ("Row b restarts from fresh noise where mask_b = 1 and keeps its persistent chain where mask_b = 0.",
         "mask is (B,): broadcast it against the samples' (B, ...) (per_example).",
         "m fresh + (1 - m) samples."),
        (Mistake("your mask is inverted: mask_b = 1 means row b restarts from the fresh noise", _inverted),
         Mistake("every row restarts: only the rows whose mask is 1 do, the others keep their chains",
                 _fresh_everywhere))),
)
