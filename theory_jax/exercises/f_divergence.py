"""Exercises of the f-divergences: the variational lower bound an f-GAN's critic maximises."""

from __future__ import annotations

import jax.numpy as jnp

from theory_jax.exercises import Exercise, Mistake
from theory_jax.f_divergence import conjugate_at_activation, f_conjugate, output_activation


def _samples_swapped(v_p, v_q, divergence):
    return jnp.mean(output_activation(v_q, divergence)) - jnp.mean(conjugate_at_activation(v_p, divergence))


def _conjugate_of_raw(v_p, v_q, divergence):
    return jnp.mean(output_activation(v_p, divergence)) - jnp.mean(f_conjugate(v_q, divergence))


EXERCISES = (
    Exercise(
        "variational_objective",
        "the f-GAN bound F = E_P[T] - E_Q[f*(T)], with T = g_f(V) the critic's output mapped into f*'s domain",
        ("Nowozin et al. eq. 6: D_f(P || Q) >= E_P[T(x)] - E_Q[f*(T(x))] for any T; the bound is tight at "
         "T = f'(p / q).",
         "The critic outputs any real V; T = g_f(V) (output_activation) keeps it in dom f*, and f*(g_f(V)) has a "
         "closed form (conjugate_at_activation).",
         "mean(output_activation(v_p, divergence)) - mean(conjugate_at_activation(v_q, divergence))."),
        (Mistake("your bound takes T on Q's samples and f*(T) on P's: it is E_P[T] - E_Q[f*(T)]", _samples_swapped),
         Mistake("you apply f* to the critic's raw output V: the conjugate is taken at T = g_f(V)",
                 _conjugate_of_raw))),
)
