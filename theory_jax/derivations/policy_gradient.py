"""The ``policy_gradient`` derivation (``python -m theory_jax policy_gradient``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/policy_gradient.py``. ``--markdown FILE`` writes it as a document, ``--notebook
FILE`` as a notebook.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.policy_gradient import (
    action_log_probs,
    leave_one_out_baseline,
    reinforce_loss,
    rewards_to_go,
    sequence_log_prob,
)

TITLE = "the policy gradient theorem, REINFORCE with baselines, and a language model as a policy"
LECTURES = "RL overview; policy gradient theorem; an autoregressive LM as an RL policy"


# 2. An MDP small enough to enumerate -----------------------------------------------------------------------------
S, A, T = 2, 2, 3
GAMMA = 0.9
START = np.array([0.7, 0.3])
TRANSITION = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.6, 0.4], [0.05, 0.95]]])  # P[s, a, s']
REWARD = np.array([[1.0, 0.0], [-0.5, 2.0]])  # r(s, a)


def _trajectories():
    """Every (states, actions) of length T with its probability factors that do not involve the policy."""
    out = []
    for states in itertools.product(range(S), repeat=T):
        for actions in itertools.product(range(A), repeat=T):
            p = START[states[0]] * np.prod([TRANSITION[states[t], actions[t], states[t + 1]] for t in range(T - 1)])
            if p > 0:
                out.append((np.array(states), np.array(actions), p))
    return out


def _policy_terms(theta, trajectories):
    """log pi(a_t | s_t) for every trajectory (N, T), theta: (S, A) logits."""
    states = jnp.array([s for s, _, _ in trajectories])
    actions = jnp.array([a for _, a, _ in trajectories])
    return action_log_probs(theta[states], actions)


def _exact(theta, trajectories):
    """(J, per-trajectory probability, rewards (N, T)) by enumeration."""
    dyn = jnp.array([p for _, _, p in trajectories])
    rewards = jnp.array([[REWARD[s[t], a[t]] for t in range(T)] for s, a, _ in trajectories])
    prob = dyn * jnp.exp(jnp.sum(_policy_terms(theta, trajectories), -1))
    ret = jnp.sum(rewards * GAMMA ** jnp.arange(T), -1)
    return jnp.sum(prob * ret), prob, rewards


def _sample(theta, rng, n):
    """n trajectories of the MDP under softmax(theta): states, actions (n, T) and rewards (n, T)."""
    pi = np.asarray(jax.nn.softmax(theta, -1))
    states, actions, rewards = np.zeros((n, T), int), np.zeros((n, T), int), np.zeros((n, T))
    states[:, 0] = rng.uniform(size=n) > START[0]
    for t in range(T):
        actions[:, t] = rng.uniform(size=n) > pi[states[:, t], 0]
        rewards[:, t] = REWARD[states[:, t], actions[:, t]]
        if t + 1 < T:
            states[:, t + 1] = rng.uniform(size=n) > TRANSITION[states[:, t], actions[:, t], 0]
    return states, actions, rewards


# 3. The derivation -----------------------------------------------------------------------------------------------
def _section_theorem(d: Derivation, theta, trajectories):
    """The policy gradient theorem on an enumerable MDP: reward-to-go and whole-return forms equal jax.grad of J."""
    d.say(f"A two-state, two-action MDP with horizon {T} and $\\gamma = {GAMMA}$, a softmax policy with logits "
          f"$\\theta_{{s,a}}$: {len(trajectories)} trajectories, few enough to enumerate.")
    j, prob, rewards = _exact(theta, trajectories)
    d.numeric("The enumerated trajectory probabilities sum to 1", jnp.sum(prob), 1.0)
    exact_grad = jax.grad(lambda th: _exact(th, trajectories)[0])(theta)
    logp = _policy_terms(theta, trajectories)
    per_step_grads = jax.jacfwd(lambda th: _policy_terms(th, trajectories))(theta)  # (N, T, S, A)
    g_to_go = rewards_to_go(rewards, GAMMA) * GAMMA ** jnp.arange(T)  # gamma^t G_t: the discounted objective
    theorem = jnp.einsum("n,nt,ntsa->sa", prob, g_to_go, per_step_grads)
    d.gradient("The policy gradient theorem: $\\sum_\\tau p(\\tau) \\sum_t \\gamma^t G_t \\nabla \\log \\pi(a_t|s_t)$ "
               "equals `jax.grad` of the enumerated $J$", theorem, exact_grad)
    whole = jnp.einsum("n,n,ntsa->sa", prob, jnp.sum(rewards * GAMMA ** jnp.arange(T), -1), per_step_grads)
    d.gradient("...and so does the whole-return form $\\mathbb E[R(\\tau) \\sum_t \\nabla \\log \\pi(a_t|s_t)]$: the "
               "rewards before $t$ contribute zero in expectation", whole, exact_grad)
    d.numeric("The score has mean zero: $\\mathbb E_\\tau[\\sum_t \\nabla \\log \\pi(a_t|s_t)] = 0$, so any "
              "constant baseline leaves the gradient unbiased", jnp.einsum("n,ntsa->sa", prob, per_step_grads),
              np.zeros((S, A)), atol=1e-13)
    return j, prob, rewards, logp, per_step_grads, exact_grad


def _section_exact_baselines(d: Derivation, j, prob, rewards, logp, per_step_grads) -> None:
    """Exact variances by enumeration: a baseline lowers the variance, and b* = E[R |g|^2] / E[|g|^2] is the best."""
    ret = jnp.sum(rewards * GAMMA ** jnp.arange(T), -1)
    per_traj = jnp.einsum("nt,ntsa->nsa", jnp.ones_like(logp), per_step_grads)  # sum_t grad log pi
    baseline = j  # the mean return

    def total_variance(b):
        g = (ret - b)[:, None, None] * per_traj
        return jnp.sum(jnp.einsum("n,nsa->sa", prob, g**2)) - jnp.sum(jnp.einsum("n,nsa->sa", prob, g) ** 2)

    d.inequality("A baseline lowers the variance (exact, by enumeration): the REINFORCE estimator's total variance "
                 "with $b = J$ is below that without a baseline", total_variance(baseline), total_variance(0.0))
    b_star = jnp.sum(prob[:, None, None] * ret[:, None, None] * per_traj**2) / jnp.sum(prob[:, None, None] * per_traj**2)
    bs = np.linspace(float(b_star) - 1, float(b_star) + 1, 21)
    d.inequality("...and the best constant baseline is $b^* = \\mathbb E[R\\,\\|g\\|^2]/\\mathbb E[\\|g\\|^2]$ "
                 "($g$ the score): the variance at 21 other constants is no lower", np.full(21, total_variance(b_star)),
                 np.array([total_variance(b) for b in bs]), slack=1e-12)
    sweep = np.linspace(min(0.0, float(b_star) - 1), float(b_star) + 1, 101)
    fig, ax = new_figure()
    ax.plot(sweep, np.asarray(jax.vmap(total_variance)(jnp.asarray(sweep))), label="exact total variance")
    for b, name, style in ((0.0, "no baseline", "s"), (float(baseline), "$b = J$", "o"), (float(b_star), "$b^*$", "*")):
        ax.plot([b], [float(total_variance(b))], style, ms=9, label=name)
    ax.set(xlabel="constant baseline $b$", ylabel="total variance of $(R - b)\\, g$")
    ax.legend()
    d.figure(fig, "The estimator's variance is a parabola in the baseline: any $b$ near the mean return beats none, "
                  "and its minimum sits at $b^*$, close to (not at) $J$.")


def _section_sampled_reinforce(d: Derivation, rng: np.random.Generator, theta, exact_grad) -> None:
    """REINFORCE from sampled episodes: unbiased with and without the leave-one-out baseline, lower variance with it."""
    n = 200_000
    states, actions, rew = _sample(theta, rng, n)
    scores = jax.jacfwd(lambda th: action_log_probs(th[states], actions))(theta)  # (n, T, S, A)
    g_samples = np.einsum("nt,ntsa->nsa", np.asarray(rewards_to_go(rew, GAMMA) * GAMMA ** np.arange(T)), scores)
    d.monte_carlo("REINFORCE from 200 000 sampled episodes (reward-to-go form) estimates the exact gradient, all "
                  "four entries", g_samples.reshape(n, -1), np.asarray(exact_grad).ravel())
    k = 4
    returns = np.sum(rew * GAMMA ** np.arange(T), -1).reshape(-1, k)
    loo = np.asarray(leave_one_out_baseline(jnp.asarray(returns))).ravel()
    g_loo = ((np.sum(rew * GAMMA ** np.arange(T), -1) - loo)[:, None, None] * np.asarray(scores).sum(1))
    d.monte_carlo("With the leave-one-out baseline over groups of 4 episodes (each baseline independent of its "
                  "own episode) the estimate stays unbiased", g_loo.reshape(n, -1), np.asarray(exact_grad).ravel())
    g_plain = np.sum(rew * GAMMA ** np.arange(T), -1)[:, None, None] * np.asarray(scores).sum(1)
    d.inequality("...and its variance is lower than without a baseline, in every entry",
                 g_loo.reshape(n, -1).var(0), g_plain.reshape(n, -1).var(0))
    count = np.arange(1, n + 1)
    fig, axes = new_figure(columns=2)
    estimators = ((g_plain, "no baseline"), (g_samples, "reward-to-go"), (g_loo, "leave-one-out baseline"))
    for i, (g, name) in enumerate(estimators):
        axes[0].plot(count[99:], (np.cumsum(g[:, 0, 0]) / count)[99:], lw=1, label=name)
        axes[1].bar(np.arange(2) + 0.27 * (i - 1), g.reshape(n, -1).var(0)[[0, 2]], 0.27, label=name)
    axes[0].axhline(float(exact_grad[0, 0]), color="k", ls="--", lw=1, label="exact (enumeration)")
    axes[0].set(xscale="log", xlabel="episodes", ylabel="running mean of the $\\theta_{0,0}$ entry")
    axes[0].legend(fontsize=8)
    axes[1].set(xticks=[0, 1], xticklabels=["$\\theta_{0,0}$ ($= -\\theta_{0,1}$)", "$\\theta_{1,0}$ ($= -\\theta_{1,1}$)"],
                ylabel="variance per episode")
    d.figure(fig, "Left: the REINFORCE estimators all settle on the exact gradient. Right: their per-episode variance "
                  "(colours as on the left), which the leave-one-out baseline cuts by about 40%, as dropping past "
                  "rewards does.")
    surrogate = jax.grad(lambda th: reinforce_loss(jnp.sum(action_log_probs(th[states[:5000]], actions[:5000]), -1),
                                                   jnp.asarray(returns.ravel()[:5000]), jnp.asarray(loo[:5000])))(theta)
    d.gradient("`reinforce_loss`'s gradient is minus the batch's REINFORCE estimate (the advantage held constant)",
               -surrogate, g_loo[:5000].mean(0))


def _section_language_model(d: Derivation, rng: np.random.Generator) -> None:
    """A bigram language model as a policy: terminal-reward policy gradient over the generated tokens only."""
    d.say("A language model as a policy: a bigram model over 3 tokens generates 3 tokens after a fixed prompt "
          "token; a judge rewards each finished sequence (here: the number of token-2s, minus 1 for a repeat).")
    vocab, length = 3, 3
    table = jnp.asarray(rng.standard_normal((vocab, vocab)))  # logits of p(y_t | y_{t-1})
    prompt = 1
    sequences = np.array(list(itertools.product(range(vocab), repeat=length)))
    tokens = np.hstack([np.full((len(sequences), 1), prompt), sequences])  # (27, 4) with the prompt first

    def logits_of(tab):
        return jnp.concatenate([jnp.zeros((len(tokens), 1, vocab)), tab[tokens[:, :-1]]], 1)  # (27, 4, V)

    mask = np.hstack([np.zeros((len(tokens), 1)), np.ones((len(tokens), length))])
    log_p = sequence_log_prob(logits_of(table), tokens, mask)
    d.numeric("The sequence probabilities $\\prod_t p(y_t | y_{<t})$ over all 27 continuations sum to 1",
              jnp.sum(jnp.exp(log_p)), 1.0)
    judge = np.array([np.sum(s == 2) - np.sum(s[1:] == s[:-1]) for s in sequences], dtype=np.float64)

    def expected_reward(tab):
        return jnp.sum(jnp.exp(sequence_log_prob(logits_of(tab), tokens, mask)) * judge)

    token_scores = jax.jacfwd(lambda tab: sequence_log_prob(logits_of(tab), tokens, mask))(table)
    d.gradient("The terminal-reward policy gradient of the LM, $\\mathbb E_y[R(y) \\sum_t \\nabla \\log "
               "p(y_t|y_{<t})]$ over the generated tokens only, equals `jax.grad` of the expected judge reward",
               jnp.einsum("n,n,nij->ij", jnp.exp(log_p), judge, token_scores), jax.grad(expected_reward)(table))
    wrong = sequence_log_prob(logits_of(table), tokens, np.ones_like(mask))
    d.inequality("Masking matters: counting the prompt token's log-probability (under a model that did not "
                 "generate it) changes every sequence's log-probability", np.full(len(tokens), 0.1),
                 np.abs(np.asarray(wrong - log_p)))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("policy_gradient", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    theta = jnp.asarray(rng.standard_normal((S, A)))
    trajectories = _trajectories()

    j, prob, rewards, logp, per_step_grads, exact_grad = _section_theorem(d, theta, trajectories)
    _section_exact_baselines(d, j, prob, rewards, logp, per_step_grads)
    _section_sampled_reinforce(d, rng, theta, exact_grad)
    _section_language_model(d, rng)
    return d
