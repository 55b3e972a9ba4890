"""Spec cases for ``language_model``: next-token cross-entropy, the decoding rules and beam search, in float64.

Each function runs in ``theory_jax.language_model`` and ``practice_torch.language_model`` on the same NumPy inputs,
with the uniforms of the sampling steps drawn here (docs/ARCHITECTURE.md rule 1), and gradients wherever the function is
differentiable (the distributions: almost everywhere, the kept sets being locally constant). Third witnesses:
* SciPy's ``log_softmax`` / ``softmax``;
* top-k by ``np.argsort``; top-p by enumerating all 2^V subsets (the smallest with mass >= p, then the most mass);
* each sampling step by ``np.searchsorted`` on the reference distribution's CDF;
* beam search with beam >= V^(L-1) by brute-force enumeration of all V^L sequences, a narrow beam by a NumPy beam
  search that scores every prefix from scratch with the chain rule.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import special

from shared_specs.case import FunctionCase, gaussian, uniform

B, V = 5, 8
TABLE_V, TABLE_L = 3, 4  # the table model of beam search: 3 tokens, length 4 (81 sequences)


# Independent references ------------------------------------------------------------------------------------------
def ref_cross_entropy(logits, targets):
    logp = special.log_softmax(logits, axis=-1)
    return -np.mean(np.take_along_axis(logp, targets[..., None], axis=-1))


def ref_top_k_probs(logits, k):
    keep = np.zeros(logits.shape, bool)
    np.put_along_axis(keep, np.argsort(-logits, axis=-1)[:, :k], True, axis=-1)
    probs = np.where(keep, special.softmax(logits, axis=-1), 0.0)
    return probs / probs.sum(-1, keepdims=True)


def nucleus_by_enumeration(probs, p):
    """The kept set of top-p from all 2^V subsets: fewest tokens with mass >= p, then the largest mass. (V,) -> bool."""
    for size in range(1, len(probs) + 1):
        sets = [s for s in itertools.combinations(range(len(probs)), size) if probs[list(s)].sum() >= p]
        if sets:
            keep = np.zeros(len(probs), bool)
            keep[list(max(sets, key=lambda s: probs[list(s)].sum()))] = True
            return keep
    raise AssertionError("no subset reaches p")


def ref_top_p_probs(logits, p):
    probs = special.softmax(logits, axis=-1)
    kept = np.where(np.stack([nucleus_by_enumeration(row, p) for row in probs]), probs, 0.0)
    return kept / kept.sum(-1, keepdims=True)


def ref_inverse_cdf(probs, u):
    return np.array([np.searchsorted(np.cumsum(row), ui * row.sum(), side="right") for row, ui in zip(probs, u)])


def _table_log_probs(prefix_logits, prefix):
    vocab, t = prefix_logits.shape[-1], len(prefix)
    row = sum(vocab**s for s in range(t)) + sum(x * vocab ** (t - 1 - i) for i, x in enumerate(prefix))
    return special.log_softmax(prefix_logits[row])


def ref_sequence_log_prob(prefix_logits, seqs):
    return np.array([sum(_table_log_probs(prefix_logits, seq[:t])[seq[t]] for t in range(len(seq))) for seq in seqs])


def ref_beam_search_table(prefix_logits, length, beam):
    """Exhaustive when beam >= V^(length-1) (brute force over all V^length); else a NumPy beam search that scores
    each candidate prefix from scratch by the chain rule."""
    vocab = prefix_logits.shape[-1]
    if beam >= vocab ** (length - 1):
        seqs = np.asarray(list(itertools.product(range(vocab), repeat=length)))
        scores = ref_sequence_log_prob(prefix_logits, seqs)
        top = np.argsort(-scores, kind="stable")[: min(beam, len(seqs))]
        return seqs[top], scores[top]
    live = [()]
    for _ in range(length):
        cand = [prefix + (x,) for prefix in live for x in range(vocab)]
        scores = ref_sequence_log_prob(prefix_logits, np.asarray(cand))
        order = np.argsort(-scores, kind="stable")[:beam]
        live = [cand[i] for i in order]
    return np.asarray(live), scores[order]


# Input makers ----------------------------------------------------------------------------------------------------
def _logits(rng, *shape):
    return gaussian(rng, *shape, scale=2.0)


def _step(rng):
    return {"logits": _logits(rng, B, V), "u": uniform(rng, B)}


def _table(rng):
    rows = sum(TABLE_V**t for t in range(TABLE_L))
    return {"prefix_logits": gaussian(rng, rows, TABLE_V, scale=1.5)}


def _sparse_probs(rng):
    """Dirichlet rows with some exact zeros (tokens a filter removed), which a draw must never return."""
    probs = rng.dirichlet(np.ones(V), size=B)
    probs[rng.uniform(size=probs.shape) < 0.3] = 0.0
    probs[:, 0] += 1e-3
    return {"probs": probs / probs.sum(-1, keepdims=True), "u": uniform(rng, B)}


CASES = (
    FunctionCase("language_model/log_softmax", "log_softmax", lambda r: {"logits": _logits(r, B, V) + 50.0},
                 grad_wrt=("logits",), reference=lambda logits: special.log_softmax(logits, axis=-1)),
    FunctionCase("language_model/cross_entropy", "cross_entropy",
                 lambda r: {"logits": _logits(r, 3, 6, V), "targets": r.integers(0, V, (3, 6))},
                 grad_wrt=("logits",), reference=ref_cross_entropy),
    FunctionCase("language_model/temperature_probs", "temperature_probs",
                 lambda r: {"logits": _logits(r, B, V), "temperature": np.asarray(0.3 + r.uniform())},
                 grad_wrt=("logits", "temperature"),
                 reference=lambda logits, temperature: special.softmax(logits / temperature, axis=-1)),
    FunctionCase("language_model/top_k_probs", "top_k_probs", lambda r: {"logits": _logits(r, B, V)}, static={"k": 3},
                 grad_wrt=("logits",), reference=ref_top_k_probs),
    FunctionCase("language_model/top_p_probs", "top_p_probs", lambda r: {"logits": _logits(r, B, V)},
                 static={"p": 0.8}, grad_wrt=("logits",), reference=ref_top_p_probs),
    FunctionCase("language_model/top_p_probs_half", "top_p_probs", lambda r: {"logits": _logits(r, B, V)},
                 static={"p": 0.5}, grad_wrt=("logits",), reference=ref_top_p_probs),
    # p = 0: the nucleus of mass >= 0 keeps the most likely token alone (greedy decoding), not an empty set (NaN)
    FunctionCase("language_model/top_p_probs/zero", "top_p_probs", lambda r: {"logits": _logits(r, B, V)},
                 static={"p": 0.0}, grad_wrt=("logits",), reference=ref_top_p_probs),
    FunctionCase("language_model/inverse_cdf", "inverse_cdf", _sparse_probs, reference=ref_inverse_cdf),
    FunctionCase("language_model/greedy_step", "greedy_step", lambda r: {"logits": _logits(r, B, V)},
                 reference=lambda logits: np.argmax(logits, axis=-1)),
    FunctionCase("language_model/temperature_step", "temperature_step",
                 lambda r: {**_step(r), "temperature": np.asarray(0.7)},
                 reference=lambda logits, u, temperature: ref_inverse_cdf(special.softmax(logits / temperature, -1), u)),
    FunctionCase("language_model/top_k_step", "top_k_step", _step, static={"k": 3},
                 reference=lambda logits, u, k: ref_inverse_cdf(ref_top_k_probs(logits, k), u)),
    FunctionCase("language_model/top_p_step", "top_p_step", _step, static={"p": 0.8},
                 reference=lambda logits, u, p: ref_inverse_cdf(ref_top_p_probs(logits, p), u)),
    FunctionCase("language_model/sequence_log_prob", "sequence_log_prob",
                 lambda r: {**_table(r), "seqs": r.integers(0, TABLE_V, (6, TABLE_L))},
                 grad_wrt=("prefix_logits",), reference=ref_sequence_log_prob),
    FunctionCase("language_model/beam_search_exhaustive", "beam_search_table", _table,
                 static={"length": TABLE_L, "beam": TABLE_V ** (TABLE_L - 1)}, reference=ref_beam_search_table),
    FunctionCase("language_model/beam_search_narrow", "beam_search_table", _table,
                 static={"length": TABLE_L, "beam": 2}, reference=ref_beam_search_table),
)
