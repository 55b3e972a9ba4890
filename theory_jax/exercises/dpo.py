"""Exercises of DPO: the preference loss on the policy's and the reference's sequence log-probabilities."""

from __future__ import annotations

import jax.numpy as jnp
from jax.nn import softplus

from theory_jax.exercises import Exercise, Mistake


def _without_beta(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return jnp.mean(softplus(-margin))


def _swapped(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    margin = beta * ((policy_rejected - ref_rejected) - (policy_chosen - ref_chosen))
    return jnp.mean(softplus(-margin))


def _rejected_added(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    margin = beta * ((policy_chosen - ref_chosen) + (policy_rejected - ref_rejected))
    return jnp.mean(softplus(-margin))


def _no_reference(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    return jnp.mean(softplus(-beta * (policy_chosen - policy_rejected)))


EXERCISES = (
    Exercise(
        "dpo_loss",
        "preference optimisation without a reward model: the policy's log-ratio against the reference is the reward",
        ("Rafailov et al. eq. 7: the loss is -log sigmoid of the implicit reward of the chosen answer minus that of "
         "the rejected one.",
         "The implicit reward is beta (log pi(y) - log pi_ref(y)); the reference's log-probabilities are constants.",
         "margin = beta ((pc - rc) - (pr - rr)); -log sigmoid(margin) = softplus(-margin); mean over the pairs."),
        (Mistake("your margin is not scaled by beta: the implicit reward is beta (log pi - log pi_ref)", _without_beta),
         Mistake("your margin is the rejected answer's reward minus the chosen one's, its sign flipped (the loss "
                 "then favours the rejected answer): the margin is the chosen reward minus the rejected one", _swapped),
         Mistake("your margin adds the rejected answer's reward: it is the chosen reward minus the rejected one, "
                 "beta ((pc - rc) - (pr - rr))", _rejected_added),
         Mistake("you leave out the reference: the implicit reward is the log-ratio log pi - log pi_ref, which is "
                 "what keeps the policy near it", _no_reference))),
)
