"""The ``language_model`` derivation (``python -m theory_jax language_model``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/language_model.py``. ``--markdown FILE`` writes it as a document, ``--notebook
FILE`` as a notebook.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.language_model import (
    all_sequences,
    beam_search_table,
    cross_entropy,
    greedy_step,
    greedy_trap,
    inverse_cdf,
    prefix_index,
    sequence_log_prob,
    temperature_probs,
    temperature_step,
    top_k_probs,
    top_k_step,
    top_p_probs,
)

TITLE = "language models: next-token cross-entropy and decoding rules"
LECTURES = "autoregressive models; transformers: training and inference; tokenisation; decoding"


def _entropy(probs):
    return -jnp.sum(jnp.where(probs > 0, probs * jnp.log(jnp.where(probs > 0, probs, 1.0)), 0.0), axis=-1)


def _nucleus_brute_force(probs: np.ndarray, p: float) -> np.ndarray:
    """The kept set by enumeration of all 2^V subsets: the smallest size with mass >= p, then the largest mass.
    probs (V,) -> bool (V,)."""
    best = None
    for size in range(1, len(probs) + 1):
        for subset in itertools.combinations(range(len(probs)), size):
            mass = probs[list(subset)].sum()
            if mass >= p and (best is None or mass > best[1]):
                best = (subset, mass)
        if best is not None:
            break
    keep = np.zeros(len(probs), dtype=bool)
    keep[list(best[0])] = True
    return keep


def _section_chain_rule(d: Derivation, rng: np.random.Generator):
    """The chain rule defines a distribution, and next-token cross-entropy is its negative log-likelihood."""
    d.say("An autoregressive model over sequences $x_{1:L}$ of tokens from a vocabulary of size $V$ is "
          "$p(x_{1:L}) = \\prod_t p(x_t\\mid x_{<t})$, each factor a softmax of next-token logits. Setting: an "
          "arbitrary such model on $V = 3$, $L = 4$ as a table of logits for each of the $1 + 3 + 9 + 27$ prefixes.")
    vocab, length = 3, 4
    table = jnp.asarray(rng.normal(0, 1.5, (sum(vocab**t for t in range(length)), vocab)))
    seqs = jnp.asarray(all_sequences(vocab, length))
    chain = jax.jit(sequence_log_prob)
    logp = chain(table, seqs)
    d.numeric("The chain rule defines a distribution: $\\sum_{x_{1:L}} \\prod_t p(x_t\\mid x_{<t}) = 1$ over all "
              f"$V^L = {vocab**length}$ sequences", jnp.sum(jnp.exp(logp)), 1.0)
    data = seqs[rng.integers(0, len(seqs), 16)]
    per_step = jnp.stack([table[prefix_index(data[:, :t], vocab)] for t in range(length)], axis=1)  # (16, L, V)
    d.numeric("Next-token cross-entropy is the NLL: $L \\cdot$ `cross_entropy` over the $L$ positions of 16 "
              "sequences $= -\\frac{1}{16}\\sum_n \\log p(x^{(n)}_{1:L})$",
              length * cross_entropy(per_step, data), -jnp.mean(chain(table, data)))
    return table, seqs, logp


def _section_cross_entropy_gradient(d: Derivation, rng: np.random.Generator) -> None:
    """The gradient of cross-entropy is softmax minus one-hot; uniform guessing costs log V."""
    logits = jnp.asarray(rng.normal(0, 2, (5, 7)))
    targets = jnp.asarray(rng.integers(0, 7, 5))
    onehot = jax.nn.one_hot(targets, 7, dtype=jnp.float64)
    d.gradient("$\\partial\\,\\mathrm{CE}/\\partial l = (\\mathrm{softmax}(l) - \\mathrm{onehot}(y)) / N$ "
               "(jax.grad vs the closed form)", jax.grad(cross_entropy)(logits, targets),
               (jax.nn.softmax(logits) - onehot) / 5)
    ls = sp.symbols("l_1:4")
    z = sum(sp.exp(li) for li in ls)
    d.symbolic("$\\frac{\\partial}{\\partial l_1}\\big(-\\log\\frac{e^{l_1}}{\\sum_j e^{l_j}}\\big) = p_1 - 1$ (SymPy)",
               sp.diff(-sp.log(sp.exp(ls[0]) / z), ls[0]), sp.exp(ls[0]) / z - 1)
    d.numeric("Uniform guessing over the $V = 85$ Shakespeare characters costs $\\ln 85$ nats $= \\log_2 85$ "
              "bits/char (bits = nats / ln 2)", cross_entropy(jnp.zeros((4, 85)), jnp.arange(4)) / math.log(2),
              math.log2(85))


def _section_gibbs(d: Derivation, rng: np.random.Generator) -> None:
    """Gibbs' inequality: no unigram model beats the empirical entropy, and the maximum-likelihood one attains it."""
    freq = jnp.asarray(rng.dirichlet(np.ones(6)))
    text = jnp.asarray(rng.choice(6, size=5000, p=np.asarray(freq)))
    counts = jnp.bincount(text, length=6) / 5000
    qs = jnp.asarray(rng.dirichlet(np.ones(6), size=20))
    ce = jnp.stack([cross_entropy(jnp.broadcast_to(jnp.log(q), (5000, 6)), text) for q in qs])
    d.inequality("Gibbs: a unigram model's cross-entropy on a text is at least the empirical entropy $H(\\hat p)$, "
                 "for 20 random models $q$", jnp.full(20, _entropy(counts)), ce)
    d.numeric("...with equality at $q = \\hat p$ (the maximum-likelihood unigram model)",
              cross_entropy(jnp.broadcast_to(jnp.log(counts), (5000, 6)), text), _entropy(counts))
    kl = jnp.sum(counts * (jnp.log(counts) - jnp.log(qs)), axis=-1)
    fig, ax = new_figure()
    ax.plot(kl, ce, "o", label="20 random unigram models $q$")
    ax.plot([0.0, float(kl.max())], [float(_entropy(counts)), float(_entropy(counts) + kl.max())], "k--", lw=1,
            label="$H(\\hat p) + \\mathrm{KL}(\\hat p \\| q)$")
    ax.plot([0.0], [float(_entropy(counts))], "r*", ms=12, label="$q = \\hat p$ (maximum likelihood)")
    ax.set(xlabel="KL$(\\hat p \\| q)$ (nats)", ylabel="cross-entropy (nats/token)")
    ax.legend()
    d.figure(fig, "Cross-entropy is the empirical entropy plus the KL from the text's frequencies to the model: "
                  "every model lies on the line, above the floor $H(\\hat p)$ it reaches only at $q = \\hat p$.")


def _section_temperature(d: Derivation, rng: np.random.Generator):
    """Temperature sharpens or flattens the softmax: greedy as T -> 0, uniform as T -> infinity."""
    d.say("Decoding: next-token logits $l \\in \\mathbb R^V$ become a distribution, then a token. Setting: 6 rows "
          "of $V = 8$ logits $\\sim \\mathcal N(0, 1.5^2)$.")
    logits = jnp.asarray(rng.normal(0, 1.5, (6, 8)))
    probs = jax.nn.softmax(logits)
    d.numeric("Temperature: $\\mathrm{softmax}(l/T) = p^{1/T} / \\sum_j p_j^{1/T}$ at T = 0.5, 2",
              jnp.stack([temperature_probs(logits, t) for t in (0.5, 2.0)]),
              jnp.stack([probs ** (1 / t) / jnp.sum(probs ** (1 / t), -1, keepdims=True) for t in (0.5, 2.0)]))
    temps = [0.25, 0.5, 1.0, 2.0, 4.0]
    ent = jnp.stack([_entropy(temperature_probs(logits, t)) for t in temps])
    d.inequality("The entropy of $\\mathrm{softmax}(l/T)$ increases with T (0.25 ... 4), every row", ent[:-1], ent[1:])
    fig, axes = new_figure(columns=2)
    for i, t in enumerate((0.25, 1.0, 4.0)):
        axes[0].bar(np.arange(8) + 0.27 * (i - 1), temperature_probs(logits[:1], t)[0], width=0.27, label=f"T = {t}")
    axes[0].set(xlabel="token $i$", ylabel="softmax$(l/T)_i$", title="row 1")
    axes[0].legend()
    axes[1].plot(temps, ent, "o-", alpha=0.7)
    axes[1].axhline(math.log(8), color="k", ls="--", lw=1, label="$\\ln 8$ (uniform)")
    axes[1].set(xscale="log", xlabel="temperature $T$", ylabel="entropy (nats)", title="6 rows of logits")
    axes[1].set_xticks(temps, [str(t) for t in temps])
    axes[1].set_xticks([], minor=True)
    axes[1].legend()
    d.figure(fig, "Raising the temperature flattens the next-token distribution: its entropy climbs towards "
                  "$\\ln V$ in every row, and a low temperature piles the mass on the argmax.")
    d.numeric("As $T \\to 0$ it tends to the one-hot of the argmax (greedy): T = 0.001",
              temperature_probs(logits, 0.001), jax.nn.one_hot(greedy_step(logits), 8, dtype=jnp.float64), atol=1e-9)
    d.numeric("As $T \\to \\infty$ it tends to uniform: T = 1e6", temperature_probs(logits, 1e6),
              jnp.full((6, 8), 1 / 8), atol=1e-6)
    return logits


def _section_top_k_top_p(d: Derivation, logits) -> None:
    """Top-k and top-p (nucleus) truncation: p conditioned on the k most likely tokens, or on the smallest set of mass p."""
    probs = jax.nn.softmax(logits)
    for k in (1, 3):
        kept = top_k_probs(logits, k)
        order = np.argsort(-np.asarray(logits), axis=-1)[:, :k]
        mask = np.zeros((6, 8), bool)
        np.put_along_axis(mask, order, True, axis=-1)
        d.numeric(f"Top-k (k = {k}) is p conditioned on the {k} largest logits: $p_i 1[i \\in S_k] / p(S_k)$",
                  kept, np.where(mask, probs, 0) / np.sum(np.where(mask, probs, 0), -1, keepdims=True))
    d.numeric("Top-k with k = V is plain softmax sampling", top_k_probs(logits, 8), probs)
    for p in (0.3, 0.9):
        kept = np.asarray(top_p_probs(logits, p)) > 0
        brute = np.stack([_nucleus_brute_force(np.asarray(row), p) for row in probs])
        d.numeric(f"Top-p (p = {p}) keeps the smallest set with mass $\\ge p$: the support of `top_p_probs` equals "
                  "the brute-force answer over all $2^8$ subsets (fewest tokens, then most mass)", kept, brute)
        mass = np.sum(np.where(kept, probs, 0), -1)
        d.inequality(f"...its mass is $\\ge p$ = {p} (every row)", np.full(6, p), mass)
        smallest = np.min(np.where(kept, probs, np.inf), -1)
        d.inequality("...and dropping its least likely token leaves less than p", mass - smallest, np.full(6, p),
                     slack=-1e-15)
        d.numeric("...renormalised: $p_i / p(S)$ on the nucleus", top_p_probs(logits, p),
                  np.where(kept, probs, 0) / mass[:, None])
    flattest = int(np.argmax(_entropy(probs)))
    ranked = np.sort(np.asarray(probs[flattest]))[::-1]
    fig, ax = new_figure()
    ax.bar(np.arange(8), ranked, color=["C0" if c < 0.9 else "C7" for c in np.cumsum(ranked) - ranked],
           label="$p_i$, sorted (blue: nucleus at p = 0.9)")
    ax.step(np.arange(8), np.cumsum(ranked), where="mid", color="C1", label="cumulative mass")
    for level in (0.3, 0.9):
        ax.axhline(level, color="k", ls=":", lw=1)
    ax.set(xlabel="token rank", ylabel="probability", ylim=(0, 1.45), title=f"row {flattest + 1} (the flattest)")
    ax.legend(loc="upper left")
    d.figure(fig, "The nucleus is the shortest run of most likely tokens whose cumulative mass reaches p "
                  "(dotted lines: p = 0.3 and 0.9); top-p keeps it and renormalises.")


def _section_inverse_cdf(d: Derivation, rng: np.random.Generator, logits) -> None:
    """One sampling step: an inverse-CDF draw from the truncated distribution with a given uniform."""
    n = 100_000
    u = (jnp.arange(n) + 0.5) / n
    row = jnp.broadcast_to(top_p_probs(logits, 0.9)[0], (n, 8))
    freq = jnp.bincount(inverse_cdf(row, u), length=8) / n
    d.numeric("Inverse CDF: on a stratified grid of $10^5$ uniforms, `inverse_cdf` picks token i for a fraction "
              "$p_i$ of them (to 1/n), nucleus tokens outside the set never", freq, row[0], atol=1.01 / n, rtol=0)
    us = jax.random.uniform(jax.random.key(0), (40_000,), dtype=jnp.float64)
    draws = temperature_step(jnp.broadcast_to(logits[1], (40_000, 8)), us, 0.7)
    d.monte_carlo("With $u \\sim U[0,1)$ the draw has law $\\mathrm{softmax}(l/T)$: frequency of the most likely "
                  "token (T = 0.7, 40 000 draws)", (draws == jnp.argmax(logits[1])).astype(jnp.float64),
                  jnp.max(temperature_probs(logits[1:2], 0.7)))
    us = jnp.asarray(rng.uniform(size=(6,)))
    d.numeric("Greedy is top-k sampling with k = 1, whatever the uniform", top_k_step(logits, us, 1),
              greedy_step(logits))


def _section_beam_search(d: Derivation, table, seqs, logp) -> None:
    """Beam search against brute-force enumeration: exact when nothing is pruned, greedy at width 1, fallible between."""
    d.say("Beam search keeps the $B$ most likely prefixes at every step. With $B \\ge V^{L-1}$ nothing is pruned, "
          "so it must return the exact top sequences of the brute-force enumeration.")
    vocab, length = table.shape[1], seqs.shape[1]
    beams = jax.jit(beam_search_table, static_argnums=(1, 2))
    full = beams(table, length, vocab ** (length - 1))
    top = np.argsort(-np.asarray(logp), kind="stable")[: vocab ** (length - 1)]
    d.numeric(f"Beam width $V^{{L-1}} = {vocab ** (length - 1)}$: sequences equal the top-27 of the enumeration of "
              f"all {vocab**length}", full[0], seqs[top])
    d.numeric("...and their scores are the chain-rule log-probabilities", full[1], logp[top])
    one = beams(table, length, 1)
    greedy = []
    for _ in range(length):
        prefix = jnp.asarray([greedy], dtype=jnp.int64).reshape(1, -1)
        greedy.append(int(greedy_step(table[prefix_index(prefix, vocab)])[0]))
    d.numeric("Beam width 1 is greedy decoding (argmax at each step)", one[0][0], np.asarray(greedy))
    trap = jnp.asarray(greedy_trap())
    (g_seq, g_score), (b_seq, b_score) = beams(trap, 2, 1), beams(trap, 2, 3)
    d.numeric("A smaller beam can miss the optimum: on the three-token model of `greedy_trap`, beam 1 returns "
              f"{''.join('abc'[i] for i in np.asarray(g_seq[0]))} (p = {math.exp(g_score[0]):.2f}) and beam 3 "
              f"{''.join('abc'[i] for i in np.asarray(b_seq[0]))} (p = {math.exp(b_score[0]):.2f})",
              jnp.exp(jnp.stack([g_score[0], b_score[0]])), [0.24, 0.27])
    d.inequality("...the exhaustive optimum beats beam 1 there by more than 0.1 nats", g_score[0] + 0.1, b_score[0])


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("language_model", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)

    table, seqs, logp = _section_chain_rule(d, rng)
    _section_cross_entropy_gradient(d, rng)
    _section_gibbs(d, rng)
    logits = _section_temperature(d, rng)
    _section_top_k_top_p(d, logits)
    _section_inverse_cdf(d, rng, logits)
    _section_beam_search(d, table, seqs, logp)
    return d
