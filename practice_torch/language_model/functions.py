"""Next-token cross-entropy and the decoding rules, as pure functions: the twin of ``theory_jax/language_model.py``.

Same names and arguments as the JAX module; randomness is an argument (the uniform ``u`` of each inverse-CDF draw).
``top_p_probs`` sorts here (the usual implementation) where the JAX twin compares every pair of tokens, so the spec
compares two different algorithms for the same set. ``beam_search`` takes any ``next_log_probs`` callable: the table
model of the specs (``beam_search_table``) or a trained network (``models.LanguageModel``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


# 1. Next-token cross-entropy = negative log-likelihood --------------------------------------------------------
def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log p_i = l_i - logsumexp(l) over the last axis. (..., V) -> (..., V)."""
    return logits - torch.logsumexp(logits, dim=-1, keepdim=True)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL in nats: -(1/N) sum_n log softmax(l_n)[y_n]. logits (..., V), targets (...) int -> ().
    bits/char = cross_entropy / ln 2 (the same number as ``F.cross_entropy`` on the flattened tokens)."""
    return -torch.gather(log_softmax(logits), -1, targets[..., None].long())[..., 0].mean()


# 2. Decoding distributions --------------------------------------------------------------------------------------
def temperature_probs(logits: torch.Tensor, temperature) -> torch.Tensor:
    """softmax(l / T). logits (B, V), temperature () > 0 -> (B, V)."""
    return torch.softmax(logits / temperature, dim=-1)


def top_k_probs(logits: torch.Tensor, k: int) -> torch.Tensor:
    """softmax over the k largest logits (Fan et al. 2018); the others get probability 0. (B, V) -> (B, V)."""
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return torch.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=-1)


def top_p_probs(logits: torch.Tensor, p) -> torch.Tensor:
    """The nucleus (Holtzman et al. 2020): the smallest set S of most likely tokens with p(S) >= p, renormalised.

    Sorted by probability, token j of the sorted order is in S while the mass before it is < p (the JAX twin
    compares all pairs instead). The most likely token is always kept (as transformers' warper keeps one), so p = 0 is
    greedy decoding. logits: (B, V) the next-token logits; p: a float in [0, 1]
    -> (B, V) the probabilities, 0 outside S.
    """
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    sorted_probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of the more likely tokens
    first = torch.arange(logits.shape[-1], device=logits.device) == 0
    drop = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, (before >= p) & ~first)
    return torch.softmax(logits.masked_fill(drop, float("-inf")), dim=-1)


# 3. One decoding step: the argmax, or an inverse-CDF draw with a given uniform ---------------------------------
def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """min{i : u * cdf_V < cdf_i}: a draw from probs when u ~ U[0, 1). probs (B, V), u (B,) -> (B,) int64."""
    cdf = torch.cumsum(probs, dim=-1)
    return torch.sum(cdf <= u[..., None] * cdf[..., -1:], dim=-1)


def greedy_step(logits: torch.Tensor) -> torch.Tensor:
    """argmax_i l_i. (B, V) -> (B,) int64."""
    return torch.argmax(logits, dim=-1)


def temperature_step(logits: torch.Tensor, u: torch.Tensor, temperature) -> torch.Tensor:
    return inverse_cdf(temperature_probs(logits, temperature), u)


def top_k_step(logits: torch.Tensor, u: torch.Tensor, k: int) -> torch.Tensor:
    return inverse_cdf(top_k_probs(logits, k), u)


def top_p_step(logits: torch.Tensor, u: torch.Tensor, p) -> torch.Tensor:
    return inverse_cdf(top_p_probs(logits, p), u)


STRATEGIES = ("greedy", "temperature", "top_k", "top_p", "beam")


def next_token(logits: torch.Tensor, u: torch.Tensor, strategy: str, temperature: float = 1.0, k: int = 40,
               p: float = 0.9) -> torch.Tensor:
    """One step of ``strategy`` (not beam) on logits / temperature. logits (B, V), u (B,) -> (B,) int64."""
    if strategy == "greedy":
        return greedy_step(logits)
    scaled = logits / temperature
    if strategy == "temperature":
        return inverse_cdf(torch.softmax(scaled, dim=-1), u)
    if strategy == "top_k":
        return top_k_step(scaled, u, min(k, logits.shape[-1]))
    if strategy == "top_p":
        return top_p_step(scaled, u, p)
    raise ValueError(f"unknown decoding strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


# 4. Beam search -------------------------------------------------------------------------------------------------
def beam_search(next_log_probs: Callable[[torch.Tensor], torch.Tensor], vocab: int, length: int, beam: int,
                prompt: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``beam`` best continuations by log-probability at each of ``length`` steps (no length penalty).

    ``next_log_probs(seqs (N, t) int) -> (N, V)``: log p(x_{t+1} | seqs), seqs starting with ``prompt`` (t0,) if
    given. At step t there are min(beam, V^t) live continuations. Returns (continuations (n, length) int64,
    scores (n,)) sorted by score, n = min(beam, V^length); the prompt's own log-probability is not included."""
    start = torch.zeros(0, dtype=torch.long) if prompt is None else prompt.long().cpu()
    seqs = start[None].clone()
    scores = None
    for _ in range(length):
        logp = next_log_probs(seqs)
        cand = (logp if scores is None else scores[:, None] + logp).reshape(-1)  # (live * V,): prefix-major
        scores, flat = torch.topk(cand, min(beam, cand.shape[0]))
        flat = flat.cpu()
        seqs = torch.cat([seqs[flat // vocab], (flat % vocab)[:, None]], dim=1)
    return seqs[:, len(start):], scores


def prefix_index(seqs: torch.Tensor, vocab: int) -> torch.Tensor:
    """Row of the prefix table: sum_{s<t} V^s + sum_i x_i V^(t-1-i). seqs (N, t) int -> (N,) int64."""
    t = seqs.shape[1]
    offset = sum(vocab**s for s in range(t))
    weights = torch.tensor([vocab ** (t - 1 - i) for i in range(t)], dtype=torch.long)
    return offset + (seqs.long() * weights).sum(dim=1)


def beam_search_table(prefix_logits: torch.Tensor, length: int, beam: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search on the table model of the specs. prefix_logits (sum_{t<length} V^t, V) -> (seqs, scores)."""
    vocab = prefix_logits.shape[-1]
    return beam_search(lambda s: log_softmax(prefix_logits[prefix_index(s, vocab)]), vocab, length, beam)


def sequence_log_prob(prefix_logits: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
    """The chain rule: log p(x_1..x_L) = sum_t log p(x_t | x_<t) under the table model. seqs (N, L) int -> (N,)."""
    vocab = prefix_logits.shape[-1]
    total = torch.zeros(seqs.shape[0], dtype=prefix_logits.dtype)
    for t in range(seqs.shape[1]):
        logp = log_softmax(prefix_logits[prefix_index(seqs[:, :t], vocab)])
        total = total + torch.gather(logp, 1, seqs[:, t:t + 1].long())[:, 0]
    return total


def bits_per_token(nats: float) -> float:
    """nats / ln 2."""
    return nats / math.log(2)


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown decoding strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


__all__ = ["STRATEGIES", "beam_search", "beam_search_table", "bits_per_token", "check_strategy", "cross_entropy",
           "greedy_step", "inverse_cdf", "log_softmax", "next_token", "prefix_index", "sequence_log_prob",
           "temperature_probs", "temperature_step", "top_k_probs", "top_k_step", "top_p_probs", "top_p_step"]
