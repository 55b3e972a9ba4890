"""Language models: next-token cross-entropy as NLL, and the decoding rules (greedy, temperature, top-k, top-p, beam).

Lectures: autoregressive models; transformers: training and inference; tokenisation; decoding (Bengio et al. 2003;
Holtzman et al. 2020 for nucleus sampling; Fan et al. 2018 for top-k; Graves 2012 / Sutskever et al. 2014 for beam
search). The trunk networks are ``theory_jax.nets`` (the transformer) and the torch twin's LSTM.

An autoregressive model factorises p(x_1..x_L) = prod_t p(x_t | x_<t) (the chain rule), so its negative log-likelihood
is the sum of next-token cross-entropies: training minimises the mean next-token cross-entropy in nats per token,
reported in bits per character (divide by ln 2) for a character model. Decoding turns next-token logits into a next
token: greedy takes the argmax; sampling draws from the softmax at a temperature, restricted to the k most likely
tokens (top-k) or to the smallest set of mass >= p (top-p, the nucleus). Every sampling step is an inverse-CDF draw
with its uniform ``u`` passed in (docs/ARCHITECTURE.md rule 1): token = min{i : u * total < cdf_i}.

Beam search is tested on an arbitrary autoregressive model over a tiny vocabulary, written as a table of next-token
logits for every prefix (``prefix_logits``: (sum_{t<L} V^t, V), prefix ``x_1..x_t`` at row ``prefix_index``): the
exact answer is the brute-force enumeration of the V^L sequences. Twin: ``practice_torch/language_model`` (same
names, same arguments); cases: ``shared_specs/language_model.py``.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from flax import linen as nn

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.nets.transformer import Transformer

__all__ = ["CharTransformer", "beam_search", "beam_search_table", "cross_entropy", "crop", "derive", "greedy_step",
           "inverse_cdf", "log_softmax", "prefix_index", "sequence_log_prob", "temperature_probs", "temperature_step",
           "top_k_probs", "top_k_step", "top_p_probs", "top_p_step"]

TITLE = "language models: next-token cross-entropy and decoding rules"
LECTURES = "autoregressive models; transformers: training and inference; tokenisation; decoding"


# 1. Next-token cross-entropy = negative log-likelihood --------------------------------------------------------
def log_softmax(logits):
    """log p_i = l_i - logsumexp(l) over the last axis. (..., V) -> (..., V)."""
    return logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)


def cross_entropy(logits, targets):
    """Mean next-token NLL in nats: -(1/N) sum_n log softmax(l_n)[y_n]. logits (..., V), targets (...) int -> ().

    For a character model this is nats/char; bits/char = cross_entropy / ln 2; perplexity = exp(cross_entropy)."""
    picked = jnp.take_along_axis(log_softmax(logits), targets[..., None], axis=-1)[..., 0]
    return -jnp.mean(picked)


# 2. Decoding distributions --------------------------------------------------------------------------------------
def temperature_probs(logits, temperature):
    """softmax(l / T) = p^(1/T) / sum p^(1/T). logits (B, V), temperature () > 0 -> (B, V)."""
    return jax.nn.softmax(logits / temperature, axis=-1)


def top_k_probs(logits, k: int):
    """p restricted to the k largest logits and renormalised: p_i 1[l_i >= l_(k)] / sum_j p_j 1[l_j >= l_(k)]
    (Fan et al. 2018). logits (B, V) -> (B, V)."""
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return jax.nn.softmax(jnp.where(logits >= kth, logits, -jnp.inf), axis=-1)


def top_p_probs(logits, p):
    """The nucleus (Holtzman et al. 2020): the smallest set S of most likely tokens with p(S) >= p, renormalised.

    Token i is in S iff the mass of the tokens strictly more likely than i is below p (sort-free: a (B, V, V)
    comparison; the torch twin sorts). The most likely token is always kept (as transformers' warper keeps one), so
    p = 0 is greedy decoding. logits: (B, V) the next-token logits; p: a float in [0, 1]
    -> (B, V) the probabilities, 0 outside S.
    """
    probs = jax.nn.softmax(logits, axis=-1)
    above = jnp.sum(jnp.where(probs[..., None, :] > probs[..., :, None], probs[..., None, :], 0.0), axis=-1)
    keep = (above < p) | (above == 0)  # nothing more likely: the top token
    return jax.nn.softmax(jnp.where(keep, logits, -jnp.inf), axis=-1)


# 3. One decoding step: the argmax, or an inverse-CDF draw with a given uniform ---------------------------------
def inverse_cdf(probs, u):
    """The token min{i : u * cdf_V < cdf_i}, cdf_i = sum_{j<=i} p_j: a draw from probs when u ~ U[0, 1).
    Zero-probability tokens are never chosen. probs (B, V), u (B,) -> (B,) int."""
    cdf = jnp.cumsum(probs, axis=-1)
    return jnp.sum(cdf <= u[..., None] * cdf[..., -1:], axis=-1)


def greedy_step(logits):
    """argmax_i l_i (the T -> 0 limit of temperature sampling). (B, V) -> (B,) int."""
    return jnp.argmax(logits, axis=-1)


def temperature_step(logits, u, temperature):
    return inverse_cdf(temperature_probs(logits, temperature), u)


def top_k_step(logits, u, k: int):
    return inverse_cdf(top_k_probs(logits, k), u)


def top_p_step(logits, u, p):
    return inverse_cdf(top_p_probs(logits, p), u)


# 4. Beam search -------------------------------------------------------------------------------------------------
def beam_search(next_log_probs, vocab: int, length: int, beam: int):
    """Keep the ``beam`` best prefixes by log-probability at each of ``length`` steps (no length penalty).

    ``next_log_probs(seqs (N, t) int) -> (N, V)`` log p(x_{t+1} | seqs). At step t there are min(beam, V^t) live
    prefixes (static shapes, no -inf padding). Returns (sequences (n, length) int, scores (n,)) sorted by score,
    n = min(beam, V^length). With beam >= V^(length-1) nothing is ever pruned: the exact top-n of all V^length."""
    seqs = jnp.zeros((1, 0), dtype=jnp.int64)
    scores = jnp.zeros((1,), dtype=jnp.float64)
    for _ in range(length):
        cand = (scores[:, None] + next_log_probs(seqs)).reshape(-1)  # (live * V,): prefix-major
        keep = min(beam, cand.shape[0])
        scores, flat = jax.lax.top_k(cand, keep)
        seqs = jnp.concatenate([seqs[flat // vocab], (flat % vocab)[:, None]], axis=1)
    return seqs, scores


def prefix_index(seqs, vocab: int):
    """Row of the prefix table for each prefix: sum_{s<t} V^s + sum_i x_i V^(t-1-i). seqs (N, t) int -> (N,)."""
    t = seqs.shape[1]
    offset = sum(vocab**s for s in range(t))
    weights = jnp.asarray([vocab ** (t - 1 - i) for i in range(t)], dtype=jnp.int64)
    return offset + jnp.sum(seqs * weights, axis=1).astype(jnp.int64)


def beam_search_table(prefix_logits, length: int, beam: int):
    """Beam search on the table model: log p(. | prefix) = log_softmax(prefix_logits[prefix_index(prefix)]).
    prefix_logits (sum_{t<length} V^t, V) -> (sequences (n, length) int, scores (n,))."""
    vocab = prefix_logits.shape[-1]
    return beam_search(lambda s: log_softmax(prefix_logits[prefix_index(s, vocab)]), vocab, length, beam)


def sequence_log_prob(prefix_logits, seqs):
    """The chain rule: log p(x_1..x_L) = sum_t log p(x_t | x_<t) under the table model. seqs (N, L) int -> (N,)."""
    vocab = prefix_logits.shape[-1]
    total = jnp.zeros(seqs.shape[0], dtype=prefix_logits.dtype)
    for t in range(seqs.shape[1]):
        logp = log_softmax(prefix_logits[prefix_index(seqs[:, :t], vocab)])
        total = total + jnp.take_along_axis(logp, seqs[:, t:t + 1], axis=1)[:, 0]
    return total


# 5. The character transformer (twin of ``practice_torch.language_model.networks.CharTransformer``) -------------
class CharTransformer(nn.Module):
    """Token embedding (V -> dim), the ``trunk`` (``theory_jax.nets.Transformer``) and a head: tied (logits =
    h E^T, Press & Wolf 2017) or its own Dense (dim -> V, no bias). x: (B, T) int -> (B, T, V)."""

    vocab_size: int
    trunk: Transformer
    tie: bool = True

    def setup(self):
        self.embedding = nn.Embed(self.vocab_size, self.trunk.dim)
        self.head = None if self.tie else nn.Dense(self.vocab_size, use_bias=False)

    def __call__(self, x):
        h = self.trunk(self.embedding(x))
        return self.embedding.attend(h) if self.tie else self.head(h)


def crop(x, offset, length: int):
    """x[b, offset[b] : offset[b] + length] for each row. x: (B, W), offset: (B,) -> (B, length)."""
    return jnp.take_along_axis(x, offset[:, None] + jnp.arange(length), axis=1)


# 6. The derivation ----------------------------------------------------------------------------------------------
def all_sequences(vocab: int, length: int) -> np.ndarray:
    """Every sequence of ``length`` tokens over ``vocab``, in lexicographic order. -> (V^L, L) int64."""
    return np.asarray(list(itertools.product(range(vocab), repeat=length)), dtype=np.int64).reshape(-1, length)


def greedy_trap() -> np.ndarray:
    """A table model over {a=0, b=1, c=2}, length 2, where greedy (beam 1) misses the most likely sequence:
    p(a) = 0.6, p(b) = 0.3, p(c) = 0.1; after a the next token is spread out (0.4, 0.3, 0.3); after b it is b
    w.p. 0.9. Greedy: a, then a (0.24); the best sequence is bb (0.27). -> logits (1 + 3, 3)."""
    probs = np.array([[0.6, 0.3, 0.1], [0.4, 0.3, 0.3], [0.05, 0.9, 0.05], [0.2, 0.4, 0.4]])
    return np.log(probs)


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
