"""The ``dpo`` derivation (``python -m theory_jax dpo``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/dpo.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as a
notebook.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.dpo import (
    dpo_loss,
    implicit_reward,
    kl_regularised_optimum,
)
from theory_jax.reward_model import preference_loss

TITLE = "direct preference optimisation: Bradley-Terry on the implicit reward, and the KL-regularised optimum"
LECTURES = "direct preference optimisation"


# 2. The derivation -----------------------------------------------------------------------------------------------
def _objective(logits, ref_log_probs, rewards, beta):
    """E_pi[r] - beta KL(pi || pi_ref) for a softmax policy over K responses."""
    log_pi = jax.nn.log_softmax(logits)
    pi = jnp.exp(log_pi)
    return jnp.sum(pi * rewards) - beta * jnp.sum(pi * (log_pi - ref_log_probs))


def _population_dpo(logits, ref_log_probs, rewards, beta, pairs):
    """DPO's loss in expectation over all ordered pairs of K responses, labelled by Bradley-Terry(r)."""
    log_pi = jax.nn.log_softmax(logits)
    i, j = pairs[:, 0], pairs[:, 1]
    p_i_wins = jax.nn.sigmoid(rewards[i] - rewards[j])
    margin = beta * ((log_pi[i] - ref_log_probs[i]) - (log_pi[j] - ref_log_probs[j]))
    return jnp.mean(p_i_wins * jax.nn.softplus(-margin) + (1 - p_i_wins) * jax.nn.softplus(margin))


def _section_implicit_reward(d: Derivation, rng: np.random.Generator, beta: float) -> None:
    """DPO's loss is the Bradley-Terry loss on the implicit reward, log 2 at the reference."""
    b = 16
    pc, pr, rc, rr = (rng.standard_normal(b) * 3 - 20 for _ in range(4))  # sequence log-probabilities
    d.numeric("DPO's loss is the reward model's Bradley-Terry loss on the implicit rewards "
              "$\\hat r = \\beta \\log(\\pi / \\pi_{\\mathrm{ref}})$", dpo_loss(pc, pr, rc, rr, beta),
              preference_loss(implicit_reward(pc, rc, beta), implicit_reward(pr, rr, beta)))
    d.numeric("At initialisation, $\\pi = \\pi_{\\mathrm{ref}}$: every margin is 0 and the loss is $\\log 2$",
              jnp.stack([dpo_loss(rc, rr, rc, rr, beta), jnp.max(jnp.abs(
                  implicit_reward(rc, rc, beta) - implicit_reward(rr, rr, beta)))]), np.array([math.log(2), 0.0]))


def _section_gradient(d: Derivation, rng: np.random.Generator, beta: float):
    """DPO's gradient weighs each pair by how wrongly the policy ranks it (softmax policy over 6 responses)."""
    k = 6
    ref_logits = rng.standard_normal(k)
    ref_log_probs = np.asarray(jax.nn.log_softmax(ref_logits))
    rewards = rng.standard_normal(k) * 2
    theta = jnp.asarray(rng.standard_normal(k))
    log_pi = jax.nn.log_softmax(theta)
    wins, losses = rng.integers(0, k, 40), rng.integers(0, k, 40)

    def loss_of(th):
        lp = jax.nn.log_softmax(th)
        return dpo_loss(lp[wins], lp[losses], jnp.asarray(ref_log_probs)[wins], jnp.asarray(ref_log_probs)[losses],
                        beta)

    score = jax.jacfwd(jax.nn.log_softmax)(theta)  # d log pi(y) / d theta, (K, K)
    r_hat = beta * (log_pi - ref_log_probs)
    weight = jax.nn.sigmoid(r_hat[losses] - r_hat[wins])
    d.gradient("Its gradient (eq. 7's): $-\\beta\\,\\mathbb E[\\sigma(\\hat r_l - \\hat r_w)(\\nabla \\log \\pi(y_w) - "
               "\\nabla \\log \\pi(y_l))]$ on a softmax policy over 6 responses and 40 pairs (`jax.grad`)",
               jax.grad(loss_of)(theta), -beta * jnp.mean(weight[:, None] * (score[wins] - score[losses]), 0),
               atol=1e-14)  # entries ~1e-2: the absolute floor would hide a relative error
    return ref_log_probs, rewards


def _section_kl_optimum(d: Derivation, rng: np.random.Generator, ref_log_probs, rewards, beta: float):
    """pi* = pi_ref e^{r/beta} / Z maximises the KL-regularised objective, at value beta log Z."""
    k = len(rewards)
    d.say("The KL-regularised objective and its optimum, on 6 responses with rewards $r$ and $\\beta = 0.5$.")
    log_star = kl_regularised_optimum(jnp.asarray(ref_log_probs), jnp.asarray(rewards), beta)
    d.gradient("$\\pi^* = \\pi_{\\mathrm{ref}} e^{r/\\beta}/Z$ is stationary: the objective's gradient in the "
               "policy's logits vanishes there", jax.grad(_objective)(log_star, ref_log_probs, rewards, beta),
               np.zeros(k), atol=1e-14)
    log_z = float(jax.scipy.special.logsumexp(ref_log_probs + rewards / beta))
    d.numeric("...its value is $\\beta \\log Z$", _objective(log_star, ref_log_probs, rewards, beta), beta * log_z)
    others = np.asarray(log_star) + rng.standard_normal((200, k))
    scores = jax.vmap(lambda lg: _objective(lg, ref_log_probs, rewards, beta))(jnp.asarray(others))
    d.inequality("...and 200 perturbed policies score lower (the objective is strictly concave in $\\pi$)",
                 scores, np.full(200, beta * log_z))
    log_others = np.asarray(jax.nn.log_softmax(jnp.asarray(others), axis=-1))
    kl_to_star = np.sum(np.exp(log_others) * (log_others - np.asarray(log_star)), axis=-1)
    fig, ax = new_figure()
    ax.plot(kl_to_star, scores, "o", ms=3, label="200 perturbed policies $\\pi$")
    ax.plot([0, kl_to_star.max()], [beta * log_z, beta * log_z - beta * kl_to_star.max()], "k--", lw=1,
            label="$\\beta \\log Z - \\beta\\,\\mathrm{KL}(\\pi \\| \\pi^*)$")
    ax.plot([0], [beta * log_z], "r*", ms=10, label="$\\pi^*$")
    ax.set(xlabel="$\\mathrm{KL}(\\pi \\| \\pi^*)$ (nats)", ylabel="objective (nats)")
    ax.legend()
    d.figure(fig, "The objective falls below its maximum $\\beta \\log Z$ by exactly $\\beta$ times the KL to "
             "$\\pi^*$: every perturbed policy lies on the line, so $\\pi^*$ is the unique maximiser.")
    d.numeric("Its implicit reward is the true reward shifted by $\\beta \\log Z$: "
              "$\\beta \\log(\\pi^*/\\pi_{\\mathrm{ref}}) = r - \\beta \\log Z$ (eq. 5)",
              implicit_reward(log_star, ref_log_probs, beta), rewards - beta * log_z)
    return log_star


def _section_dpo_reaches_optimum(d: Derivation, ref_log_probs, rewards, beta: float, log_star):
    """Minimising DPO's population loss from pi_ref lands on pi* without ever seeing r."""
    k = len(rewards)
    pairs = np.array(list(itertools.permutations(range(k), 2)))
    logits = jnp.asarray(ref_log_probs)  # DPO starts at the reference
    newton = jax.jit(lambda lg: lg - jnp.linalg.pinv(  # logits are identified up to a constant: the pseudo-inverse
        jax.hessian(_population_dpo)(lg, ref_log_probs, rewards, beta, pairs), hermitian=True) @ jax.grad(
            _population_dpo)(lg, ref_log_probs, rewards, beta, pairs))
    for _ in range(40):  # Newton's method
        logits = newton(logits)
    d.numeric("DPO reaches it: minimising DPO's loss on the population of preferences labelled by Bradley-Terry($r$) "
              "over all 30 ordered pairs (Newton's method from $\\pi_{\\mathrm{ref}}$) gives $\\pi^*$, never having "
              "seen $r$", jax.nn.log_softmax(logits), log_star, rtol=1e-9, atol=1e-10)
    order = np.argsort(rewards)
    fig, ax = new_figure()
    ax.bar(np.arange(k) - 0.2, np.exp(ref_log_probs[order]), 0.4, label="$\\pi_{ref}$")
    ax.bar(np.arange(k) + 0.2, np.exp(np.asarray(log_star))[order], 0.4, label="$\\pi^* \\propto \\pi_{ref} e^{r/\\beta}$")
    ax.plot(np.arange(k) + 0.2, np.exp(np.asarray(jax.nn.log_softmax(logits)))[order], "kx", label="DPO's fit")
    ax.set_xticks(np.arange(k), [f"{r:.1f}" for r in rewards[order]])
    ax.set(xlabel="response, by its reward $r(y)$", ylabel="probability")
    ax.legend()
    d.figure(fig, "DPO moves probability from the low-reward responses to the high-reward ones exactly as far as "
             "$\\pi^*$: its fitted policy (crosses) sits on top of the optimum's bars.")
    return pairs


def _section_sampled_preferences(d: Derivation, rng: np.random.Generator, pairs, ref_log_probs, rewards,
                                 beta: float, log_star) -> None:
    """On preferences sampled from the judge, DPO's per-pair gradient at pi* averages to zero."""
    n = 200_000
    i = rng.integers(0, len(pairs), n)
    first = rng.uniform(size=n) < np.asarray(jax.nn.sigmoid(rewards[pairs[i, 0]] - rewards[pairs[i, 1]]))
    chosen, rejected = np.where(first, pairs[i, 0], pairs[i, 1]), np.where(first, pairs[i, 1], pairs[i, 0])
    star = np.asarray(log_star)
    margin = beta * ((star[chosen] - ref_log_probs[chosen]) - (star[rejected] - ref_log_probs[rejected]))
    # per-pair gradient of the loss in the policy's logits at pi*: -beta sigma(-margin) (e_w - e_l) projected by
    # the softmax's score; its mean over sampled preferences is the population gradient, 0 at the optimum
    s_star = np.asarray(jax.jacfwd(jax.nn.log_softmax)(log_star))
    per_pair = -beta * (1 / (1 + np.exp(margin)))[:, None] * (s_star[chosen] - s_star[rejected])
    d.monte_carlo("On 200 000 preferences sampled from the judge, DPO's per-pair gradient at $\\pi^*$ has mean 0 in "
                  "every logit: $\\pi^*$ is where sampled-data DPO is headed", per_pair, np.zeros(len(rewards)))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("dpo", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    beta = 0.5

    _section_implicit_reward(d, rng, beta)
    ref_log_probs, rewards = _section_gradient(d, rng, beta)
    log_star = _section_kl_optimum(d, rng, ref_log_probs, rewards, beta)
    pairs = _section_dpo_reaches_optimum(d, ref_log_probs, rewards, beta, log_star)
    _section_sampled_preferences(d, rng, pairs, ref_log_probs, rewards, beta, log_star)
    return d
