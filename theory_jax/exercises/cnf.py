"""Exercises of continuous normalising flows: the divergence of a vector field, and the log-density's ODE."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from theory_jax.cnf import divergence_exact, divergence_hutchinson, mlp_field
from theory_jax.exercises import Exercise, Mistake


def _jacobian_sum(t, x, w1, b1, w2, b2, w3, b3):
    b, d = x.shape[0], math.prod(x.shape[1:])
    jac = jax.vmap(jax.jacfwd(lambda xi: mlp_field(t, xi[None], w1, b1, w2, b2, w3, b3)[0]))(x)
    return jnp.sum(jac.reshape(b, d * d), axis=1)


def _negated(t, x, w1, b1, w2, b2, w3, b3):
    return -divergence_exact(lambda y: mlp_field(t, y, w1, b1, w2, b2, w3, b3), x)


def _growing_density(t, x, w1, b1, w2, b2, w3, b3, v=None):
    g = lambda y: mlp_field(t, y, w1, b1, w2, b2, w3, b3)  # noqa: E731
    return g(x), divergence_exact(g, x) if v is None else divergence_hutchinson(g, x, v)


def _probe_ignored(t, x, w1, b1, w2, b2, w3, b3, v=None):
    g = lambda y: mlp_field(t, y, w1, b1, w2, b2, w3, b3)  # noqa: E731
    return g(x), -divergence_exact(g, x)


EXERCISES = (
    Exercise(
        "mlp_divergence_exact",
        "the divergence tr(df/dx) of a field, per example, from its Jacobian: the CNF's change in log-density",
        ("The divergence is the trace of the Jacobian df/dx of one example's output with respect to its own input.",
         "jax.jacfwd of the field on one example (x[None] in, [0] out) gives a (D, D) matrix; jax.vmap it over the "
         "batch. torch: torch.autograd.functional.jacobian, or one backward pass per coordinate.",
         "jac = vmap(jacfwd(lambda xi: mlp_field(t, xi[None], ...)[0]))(x); return the trace of each (D, D)."),
        (Mistake("you sum every entry of the Jacobian: the divergence is its trace, the diagonal d f_i / d x_i only",
                 _jacobian_sum),
         Mistake("your divergence has a minus sign: tr(df/dx) itself (the log-density's ODE is what negates it)",
                 _negated)),
        withhold=("divergence_exact",), gives=("mlp_field",)),
    Exercise(
        "mlp_cnf_dynamics",
        "the instantaneous change of variables: dx/dt = f and d log p/dt = -tr(df/dx) (Chen et al., Theorem 1)",
        ("Two outputs: the field itself, and the rate of change of the log-density along the path.",
         "d log p(x_t)/dt = -tr(df/dx): exactly (your mlp_divergence_exact, the exercise before) when v is None, or "
         "Hutchinson's estimate with the probe v (divergence_hutchinson(g, x, v), g = lambda y: mlp_field(t, y, ...)).",
         "return mlp_field(t, x, ...), -(mlp_divergence_exact(t, x, ...) if v is None else "
         "divergence_hutchinson(g, x, v))."),
        (Mistake("your log-density grows with the divergence: d log p/dt = -tr(df/dx) (a spreading flow thins the "
                 "density)", _growing_density),
         Mistake("you ignore the probe v: with v given, the divergence is Hutchinson's estimate v^T (df/dx) v, "
                 "which the training uses (one vector-Jacobian product instead of D)", _probe_ignored)),
        withhold=("cnf_dynamics",), gives=("mlp_field", "divergence_hutchinson")),
)
