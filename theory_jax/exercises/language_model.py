"""Exercises of decoding: nucleus (top-p) sampling's renormalised distribution."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from theory_jax.exercises import Exercise, Mistake


def _mass_above(logits):
    probs = jax.nn.softmax(logits, axis=-1)
    return probs, jnp.sum(jnp.where(probs[..., None, :] > probs[..., :, None], probs[..., None, :], 0.0), axis=-1)


def _crossing_token_dropped(logits, p):
    probs, above = _mass_above(logits)
    keep = (above + probs <= p) | (above == 0)
    return jax.nn.softmax(jnp.where(keep, logits, -jnp.inf), axis=-1)


def _not_renormalised(logits, p):
    probs, above = _mass_above(logits)
    return jnp.where((above < p) | (above == 0), probs, 0.0)


def _top_dropped(logits, p):
    probs, above = _mass_above(logits)
    keep = above < p
    return jax.nn.softmax(jnp.where(keep, logits, -jnp.inf), axis=-1)


EXERCISES = (
    Exercise(
        "top_p_probs",
        "nucleus sampling: keep the smallest set of most likely tokens whose mass reaches p, renormalised",
        ("Holtzman et al. 2020: sort the tokens by probability; the nucleus is the shortest prefix whose mass is "
         "at least p.",
         "A token is in the nucleus when the mass of the tokens more likely than it is still below p (so the token "
         "that crosses p is kept); the most likely token is always kept, so p = 0 is greedy.",
         "Sort (or compare every pair), keep where mass-above < p or nothing is above, set the others' logits to "
         "-inf, softmax."),
        (Mistake("you drop the token that crosses p: the nucleus is the smallest set with mass >= p, so it includes "
                 "the token that reaches p", _crossing_token_dropped),
         Mistake("your distribution is not renormalised: the kept tokens' probabilities must sum to 1",
                 _not_renormalised),
         Mistake("with a small p you keep no token: the most likely token is always in the nucleus (p = 0 is "
                 "greedy decoding)", _top_dropped))),
)
