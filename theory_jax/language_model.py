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

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from theory_jax.nets.transformer import Transformer

__all__ = ["CharTransformer", "beam_search", "beam_search_table", "cross_entropy", "crop", "greedy_step",
           "inverse_cdf", "log_softmax", "prefix_index", "sequence_log_prob", "temperature_probs", "temperature_step",
           "top_k_probs", "top_k_step", "top_p_probs", "top_p_step"]


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


# 6. Tiny models whose every sequence can be enumerated, for the derivation --------------------------------------
def all_sequences(vocab: int, length: int) -> np.ndarray:
    """Every sequence of ``length`` tokens over ``vocab``, in lexicographic order. -> (V^L, L) int64."""
    return np.asarray(list(itertools.product(range(vocab), repeat=length)), dtype=np.int64).reshape(-1, length)


def greedy_trap() -> np.ndarray:
    """A table model over {a=0, b=1, c=2}, length 2, where greedy (beam 1) misses the most likely sequence:
    p(a) = 0.6, p(b) = 0.3, p(c) = 0.1; after a the next token is spread out (0.4, 0.3, 0.3); after b it is b
    w.p. 0.9. Greedy: a, then a (0.24); the best sequence is bb (0.27). -> logits (1 + 3, 3)."""
    probs = np.array([[0.6, 0.3, 0.1], [0.4, 0.3, 0.3], [0.05, 0.9, 0.05], [0.2, 0.4, 0.4]])
    return np.log(probs)
