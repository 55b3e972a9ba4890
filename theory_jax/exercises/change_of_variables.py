"""Exercises of the change of variables: the Box-Muller transform and the log-determinant that gives its density."""

from __future__ import annotations

import math

import jax.numpy as jnp

from theory_jax.exercises import Exercise, Mistake


def _radius_without_2(u):
    radius, angle = jnp.sqrt(-jnp.log(u[..., 0])), 2 * jnp.pi * u[..., 1]
    return jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=-1)


def _half_turn(u):
    radius, angle = jnp.sqrt(-2 * jnp.log(u[..., 0])), jnp.pi * u[..., 1]
    return jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=-1)


def _roles_swapped(u):
    radius, angle = jnp.sqrt(-2 * jnp.log(u[..., 1])), 2 * jnp.pi * u[..., 0]
    return jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=-1)


def _log_u1_sign(u):
    return math.log(2 * math.pi) + jnp.log(u[..., 0])


def _without_2pi(u):
    return -jnp.log(u[..., 0])


EXERCISES = (
    Exercise(
        "box_muller",
        "two uniforms become two independent standard normals: a radius from one, an angle from the other",
        ("Polar coordinates: |z|^2 / 2 is Exponential(1), so |z| = sqrt(-2 ln u1); the angle is uniform on [0, 2 pi).",
         "u[..., 0] is u1 (the radius), u[..., 1] is u2 (the angle); stack the two coordinates on a new last axis.",
         "r = sqrt(-2 log u1), a = 2 pi u2; z = stack([r cos a, r sin a], axis=-1)."),
        (Mistake("your radius is sqrt(-ln u1): |z|^2 / 2 is the Exponential(1) draw, so |z| = sqrt(-2 ln u1)",
                 _radius_without_2),
         Mistake("your angle covers half a turn: it is 2 pi u2, uniform on [0, 2 pi)", _half_turn),
         Mistake("your radius comes from u2 and the angle from u1: eq. 3 takes the radius from u1 = u[..., 0]",
                 _roles_swapped))),
    Exercise(
        "box_muller_log_det",
        "the Jacobian's log-determinant is what turns the uniform density into the Gaussian one",
        ("In polar coordinates the map u -> z stretches area by |det dz/du|; compute it from r(u1) and a(u2).",
         "dr/du1 = -1 / (u1 r) and da/du2 = 2 pi; the polar area element adds a factor r.",
         "|det| = r |dr/du1| |da/du2| = 2 pi / u1, so log |det| = log(2 pi) - log u1."),
        (Mistake("your log-determinant has +log u1: |det dz/du| = 2 pi / u1, so it is log(2 pi) - log u1",
                 _log_u1_sign),
         Mistake("your log-determinant leaves out log(2 pi): the angle 2 pi u2 stretches its axis by 2 pi",
                 _without_2pi))),
)
