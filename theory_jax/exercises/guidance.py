"""Exercises of guidance: classifier-free guidance's combination of two noise predictions."""

from __future__ import annotations

from theory_jax.broadcasting import per_example
from theory_jax.exercises import Exercise, Mistake


def _scale_form(eps_cond, eps_uncond, w):
    w = per_example(w, eps_cond)
    return eps_uncond + w * (eps_cond - eps_uncond)


def _swapped(eps_cond, eps_uncond, w):
    w = per_example(w, eps_cond)
    return (1 + w) * eps_uncond - w * eps_cond


EXERCISES = (
    Exercise(
        "cfg_eps",
        "classifier-free guidance: extrapolate from the unconditional prediction past the conditional one",
        ("Ho & Salimans eq. 6: the guided noise is (1 + w) eps(x_t, y) - w eps(x_t); w = 0 is the plain "
         "conditional model.",
         "w may be one number or one per example, (B,): broadcast it against the predictions (per_example).",
         "(1 + w) eps_cond - w eps_uncond."),
        (Mistake("your w is the scale of eps_uncond + w (eps_cond - eps_uncond) (diffusers' guidance_scale): Ho & "
                 "Salimans' w is that scale minus 1, (1 + w) eps_cond - w eps_uncond", _scale_form),
         Mistake("you extrapolate away from the conditional prediction: (1 + w) eps_cond - w eps_uncond pushes "
                 "toward y", _swapped))),
)
