"""The ``reward_model`` derivation (``python -m theory_jax reward_model``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/reward_model.py``. ``--markdown FILE`` writes it as a document, ``--notebook
FILE`` as a notebook.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.reward_model import (
    last_token_reward,
    preference_loss,
    preference_prob,
)

TITLE = "reward modelling: the Bradley-Terry likelihood of preferences, identifiable up to a constant"
LECTURES = "reward modelling"


# 2. The derivation -----------------------------------------------------------------------------------------------
def _population_nll(r, counts_won, counts_total, pairs):
    """-sum over pairs (i, j) of [wins_ij log P(i > j) + (n_ij - wins_ij) log P(j > i)] for rewards r: (n,)."""
    i, j = pairs[:, 0], pairs[:, 1]
    margin = r[i] - r[j]
    return jnp.sum(counts_won * jax.nn.softplus(-margin) + (counts_total - counts_won) * jax.nn.softplus(margin))


def _section_bradley_terry(d: Derivation) -> None:
    """Bradley-Terry is the logistic function of the reward margin, blind to a shared constant (SymPy)."""
    a, b = sp.symbols("r_w r_l", real=True)
    bt = sp.exp(a) / (sp.exp(a) + sp.exp(b))
    d.symbolic("Bradley-Terry's $e^{r_w}/(e^{r_w} + e^{r_l})$ is the logistic function of the margin, "
               "$\\sigma(r_w - r_l)$", bt, 1 / (1 + sp.exp(-(a - b))))
    d.symbolic("...so $P(y_w \\succ y_l) + P(y_l \\succ y_w) = 1$", bt + bt.subs({a: b, b: a}, simultaneous=True), 1)
    c = sp.symbols("c", real=True)
    d.symbolic("...and adding a constant $c$ to every reward changes no preference", bt.subs(
        {a: a + c, b: b + c}, simultaneous=True), bt)


def _section_identifiability(d: Derivation, rng: np.random.Generator):
    """The population likelihood of 5 items is flat along the constant direction, and only along it."""
    n = 5
    r_true = rng.standard_normal(n) * 1.5
    pairs = np.array(list(itertools.combinations(range(n), 2)))
    p_win = np.asarray(preference_prob(r_true[pairs[:, 0]], r_true[pairs[:, 1]]))
    d.numeric("`preference_prob` on all 10 pairs of 5 items equals $e^{r_i}/(e^{r_i} + e^{r_j})$",
              p_win, np.exp(r_true[pairs[:, 0]]) / (np.exp(r_true[pairs[:, 0]]) + np.exp(r_true[pairs[:, 1]])))
    total = np.full(len(pairs), 1000.0)
    won = total * p_win  # expected counts: the population likelihood, per 1000 comparisons of each pair
    d.numeric("The likelihood is flat along the constant direction: the loss at $r + c$ equals the loss at $r$ "
              "for 5 shifts $c$", np.array([_population_nll(jnp.asarray(r_true + s), won, total, pairs)
                                           for s in (-3.0, -1.0, 0.5, 2.0, 10.0)]),
              np.full(5, _population_nll(jnp.asarray(r_true), won, total, pairs)))
    hess = np.asarray(jax.hessian(_population_nll)(jnp.asarray(r_true), won, total, pairs))
    eig, vec = np.linalg.eigh(hess)
    d.numeric("Its Hessian has the all-ones vector in its null space: $H \\mathbf 1 = 0$", hess @ np.ones(n),
              np.zeros(n), atol=1e-9)
    d.inequality("...and only that: the other 4 eigenvalues are positive, so rewards are identified up to exactly "
                 "one constant when every item is compared (the comparison graph is connected)",
                 np.full(n - 1, 1.0), eig[1:])
    steps = np.linspace(-2.0, 2.0, 41)
    flat_dir, stiff_dir = np.ones(n) / np.sqrt(n), vec[:, 1]  # eig[1]: the flattest direction orthogonal to 1
    fig, ax = new_figure()
    for direction, label in ((flat_dir, "along $\\mathbf{1}/\\sqrt{5}$ (r + c)"),
                             (stiff_dir, "along the flattest other eigenvector")):
        losses = [_population_nll(jnp.asarray(r_true + t * direction), won, total, pairs) for t in steps]
        ax.plot(steps, np.asarray(losses) / total.sum(), label=label)
    ax.set(xlabel="step $t$ from the true rewards", ylabel="loss per comparison (nats)")
    ax.legend()
    d.figure(fig, "Moving every reward by the same constant leaves the loss exactly flat; any other direction, even "
             "the Hessian's flattest, climbs away from the minimum at the true rewards.")

    r = jnp.zeros(n)
    for _ in range(25):  # Newton's method in the subspace orthogonal to 1 (the pseudo-inverse of H)
        g = jax.grad(_population_nll)(r, won, total, pairs)
        h = jax.hessian(_population_nll)(r, won, total, pairs)
        r = r - jnp.linalg.pinv(h, hermitian=True) @ g
    d.numeric("Maximum likelihood on the population recovers the rewards up to that constant: the fitted and the "
              "true rewards, each centred, agree", r - r.mean(), r_true - r_true.mean(), rtol=1e-9, atol=1e-10)
    return r_true, pairs, p_win


def _section_loss(d: Derivation, rng: np.random.Generator) -> None:
    """The loss's gradient in closed form, and its stability at huge margins."""
    rw, rl = rng.standard_normal(8) * 3, rng.standard_normal(8) * 3
    d.gradient("The loss's gradient: $\\partial/\\partial r_w = -\\sigma(r_l - r_w)/B$, "
               "$\\partial/\\partial r_l = +\\sigma(r_l - r_w)/B$ (`jax.grad`, 8 random pairs)",
               jnp.concatenate(jax.grad(preference_loss, argnums=(0, 1))(jnp.asarray(rw), jnp.asarray(rl))),
               np.concatenate([-1 / (1 + np.exp(rw - rl)) / 8, 1 / (1 + np.exp(rw - rl)) / 8]))
    d.numeric("`preference_loss` is finite where the naive $-\\log \\sigma$ is not: a margin of $-800$ costs 800",
              preference_loss(jnp.array([-400.0]), jnp.array([400.0])), 800.0)


def _section_sampled_preferences(d: Derivation, rng: np.random.Generator, r_true, pairs, p_win) -> None:
    """Preferences sampled from the judge: calibrated, with the judge's entropy as the least loss."""
    count = 200_000
    i = rng.integers(0, len(pairs), count)
    first_wins = rng.uniform(size=count) < p_win[i]
    d.monte_carlo("Preferences sampled from the judge are calibrated under the true rewards: the indicator of a "
                  "win minus its Bradley-Terry probability has mean 0 (200 000 comparisons)",
                  first_wins - p_win[i], 0.0)
    freq = np.bincount(i, weights=first_wins, minlength=len(pairs)) / np.bincount(i, minlength=len(pairs))
    margins = r_true[pairs[:, 0]] - r_true[pairs[:, 1]]
    grid = np.linspace(margins.min() - 0.5, margins.max() + 0.5, 200)
    fig, ax = new_figure()
    ax.plot(grid, 1 / (1 + np.exp(-grid)), "k-", lw=1, label="$\\sigma(r_i - r_j)$")
    ax.plot(margins, freq, "o", label="sampled win rate (10 pairs)")
    ax.set(xlabel="reward margin $r_i - r_j$", ylabel="$P(y_i \\succ y_j)$")
    ax.legend()
    d.figure(fig, "Each pair's empirical win rate among the 200 000 sampled comparisons sits on the logistic curve "
             "of its reward margin.")
    chosen = np.where(first_wins, pairs[i, 0], pairs[i, 1])
    rejected = np.where(first_wins, pairs[i, 1], pairs[i, 0])
    per_pair = np.logaddexp(0, r_true[rejected] - r_true[chosen])
    entropy = -np.sum(p_win * np.log(p_win) + (1 - p_win) * np.log1p(-p_win)) / len(pairs)
    d.monte_carlo("...and the true rewards' loss on them estimates the judge's entropy per comparison, the least "
                  "loss any reward model can reach", per_pair, entropy)
    accuracy = np.mean(np.maximum(p_win, 1 - p_win))
    d.monte_carlo("The best held-out pair accuracy is the judge's own consistency, $\\mathbb E[\\max(p, 1 - p)]$: "
                  "the true rewards' accuracy on the sampled pairs estimates it", (r_true[chosen] > r_true[rejected]
                                                                                    ).astype(np.float64), accuracy)


def _section_last_token(d: Derivation, rng: np.random.Generator) -> None:
    """The scalar head reads each sequence's last real token, not the padding."""
    hidden = rng.standard_normal((4, 6, 3))
    lengths = np.array([6, 1, 3, 5])
    w, bias = rng.standard_normal((1, 3)), rng.standard_normal(1)
    d.numeric("`last_token_reward` reads the head at each sequence's last real token (lengths 6, 1, 3, 5), not at "
              "the padding", last_token_reward(hidden, lengths, w, bias),
              np.array([hidden[k, lengths[k] - 1] @ w[0] + bias[0] for k in range(4)]))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("reward_model", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)

    _section_bradley_terry(d)
    r_true, pairs, p_win = _section_identifiability(d, rng)
    _section_loss(d, rng)
    _section_sampled_preferences(d, rng, r_true, pairs, p_win)
    _section_last_token(d, rng)
    return d
