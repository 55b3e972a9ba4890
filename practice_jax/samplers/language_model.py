"""The character transformer's samples in JAX (``practice_torch.language_model.training.sample``): continuations of
``model.prompt`` by ``model.strategy``, one continuation per decoding rule ('strategies'), and the BPE tokeniser of
the training text.

Each next token is a rule of ``theory_jax.language_model`` on the flax twin's logits: the argmax (greedy), or an
inverse-CDF draw with its uniform passed in (temperature, top-k, top-p), the uniforms drawn from the engine's
generator as PyTorch draws them; beam search keeps the best hypotheses as ``theory_jax.language_model.beam_search``
does, on float64 log-probabilities, as PyTorch scores its beams. The logits are those of PyTorch's key-value cache:
the net reads a window that starts as the prompt's last context - 1 tokens and grows a token a step until it fills
the context, then restarts from the last context / 2 tokens (``CharTransformer.advance``); the twin computes each
window in one pass, padded to the context (the padding after the window, which causal attention does not read), so
that one compiled network serves every step."""

from __future__ import annotations

import dataclasses
import functools
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import theory_jax.language_model as jlm
from practice_jax.samplers import SampleError


def twin_settings(model):
    """Dropout is the training step's (the net decodes without it)."""
    return dataclasses.replace(model, dropout=0.0)


def check(model, net) -> None:
    from practice_torch.evaluation.sequence_tasks import task_of

    if task_of(net):
        raise SampleError(f"a language model of the synthetic task {task_of(net)} answers held-out sequences: sample "
                          "it with python -m practice_torch sample")
    if net.architecture != "transformer":
        raise SampleError(f"language_model with model.architecture={net.architecture} has no JAX twin network (only "
                          "the transformer has one): sample it with python -m practice_torch sample")


def variable_shapes(module, net, model) -> dict:
    return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, net.context), jnp.int32)))


# 1. One decoding step: the rules of theory_jax.language_model ------------------------------------------------------
def token_of(logits, u, strategy: str, temperature, k: int, p):
    """One step of ``strategy`` (not beam) on the logits at ``temperature``, as PyTorch's ``next_token``: the argmax,
    or min{i : u cdf_V < cdf_i} of softmax(l / T) (top-k: on the k largest; top-p: on the nucleus of mass p).
    logits (B, V), u (B,) -> (B,) int."""
    if strategy == "greedy":
        return jlm.greedy_step(logits)
    if strategy == "temperature":
        return jlm.temperature_step(logits, u, temperature)
    scaled = logits / temperature
    if strategy == "top_k":
        return jlm.top_k_step(scaled, u, min(k, logits.shape[-1]))
    return jlm.top_p_step(scaled, u, p)


@partial(jax.jit, static_argnames="module")
def window_logits(module, params, window, length):
    """The next-token logits after the first ``length`` tokens of each window (B, context) int, the rest padding
    -> (B, V)."""
    logits = module.apply({"params": params}, window)
    return jax.lax.dynamic_index_in_dim(logits, length - 1, axis=1, keepdims=False)


@functools.cache
def compiled(rule):
    """``rule`` (``token_of``'s signature) jitted once, the strategy and k static: the network compiles apart, once
    for every rule."""
    return jax.jit(rule, static_argnames=("strategy", "k"))


def padded(window: np.ndarray, context: int) -> np.ndarray:
    """(B, w) tokens, w <= context -> (B, context) int32, zeros after them."""
    out = np.zeros((window.shape[0], context), np.int32)
    out[:, :window.shape[1]] = window
    return out


def advance(window: np.ndarray, token: np.ndarray, context: int) -> np.ndarray:
    """The window after ``token`` (B,), as the key-value cache holds it (``CharTransformer.advance``): one token more,
    or, when the context is full, the last context / 2 tokens."""
    seen = np.concatenate([window, token[:, None]], axis=1)
    return seen[:, -(context // 2):] if window.shape[1] >= context else seen


# 2. Decoding --------------------------------------------------------------------------------------------------------
def decode_tokens(twin, prompt: np.ndarray, steps: int, strategy: str, uniforms: np.ndarray, temperature: float,
                  k: int, p: float, rule=token_of) -> np.ndarray:
    """``steps`` tokens after ``prompt`` (B, t0) by ``strategy`` (not beam) with the uniforms (B, steps) of its draws
    (unused by greedy); ``rule``: the decoding step (negative controls replace it) -> (B, steps) int64."""
    context, step = twin.net.context, compiled(rule)
    window, out = prompt[:, -(context - 1):], np.empty((prompt.shape[0], steps), np.int64)
    for i in range(steps):
        logits = window_logits(twin.module, twin.variables["params"], padded(window, context), window.shape[1])
        out[:, i] = np.asarray(step(logits, uniforms[:, i], strategy=strategy, temperature=temperature, k=k, p=p))
        window = advance(window, out[:, i], context)
    return out


def beam_tokens(twin, prompt: np.ndarray, steps: int, beam: int) -> np.ndarray:
    """The ``beam`` best continuations of ``prompt`` (t0,) by summed log-probability, no length penalty, as
    ``theory_jax.language_model.beam_search`` keeps them: at each step the best min(beam, live x V) extensions,
    prefix-major. The log-probabilities (``theory_jax.language_model.log_softmax``) and their sums in float64, as
    PyTorch scores its beams, each hypothesis read in full, its last ``context`` tokens; the bookkeeping on the host,
    where the hypotheses grow a token a step (eager JAX would compile each op anew for every length) -> (n, steps)."""
    context, vocab = twin.net.context, twin.net.vocab_size
    seqs, scores = np.zeros((1, 0), np.int64), None
    for _ in range(steps):
        full = np.concatenate([np.broadcast_to(prompt, (len(seqs), len(prompt))), seqs], axis=1)[:, -context:]
        logits = window_logits(twin.module, twin.variables["params"], padded(full, context), full.shape[1])
        with jax.enable_x64(True):
            log_probs = np.asarray(jlm.log_softmax(jnp.asarray(np.asarray(logits), jnp.float64)))
        candidates = (log_probs if scores is None else scores[:, None] + log_probs).reshape(-1)  # (live * V,)
        best = np.argsort(-candidates, kind="stable")[:min(beam, len(candidates))]
        scores, seqs = candidates[best], np.concatenate([seqs[best // vocab], (best % vocab)[:, None]], axis=1)
    return seqs


def decode_text(twin, model, n: int, generator, strategy: str | None = None, rule=token_of) -> list[str]:
    """n continuations of the prompt (beam: the best ``beam`` of one search), prompt included, the uniforms drawn
    from ``generator`` as ``practice_torch.language_model.text.decode_text`` draws them."""
    import torch

    from practice_torch.language_model.functions import check_strategy
    from practice_torch.language_model.text import _vocab, prompt_ids

    strategy = strategy or model.strategy
    check_strategy(strategy)
    prompt = prompt_ids(model, 1, "cpu")[0].numpy()
    uniforms = torch.rand(n, model.sample_length, generator=generator, dtype=torch.float64).float().numpy()
    if strategy == "beam":
        out = beam_tokens(twin, prompt, model.sample_length, model.beam)
    else:
        out = decode_tokens(twin, np.repeat(prompt[None], n, axis=0), model.sample_length, strategy, uniforms,
                            model.temperature, model.top_k, model.top_p, rule)
    vocab, head = _vocab(), model.prompt.replace("\\n", "\n")
    return [head + vocab.decode(row) for row in out]


def sample(twin, model, n: int, generator, examples=None) -> list:
    """'samples': n continuations with ``model.strategy``; 'strategies': one continuation per decoding rule, with its
    setting and its time; 'bpe_tokenizer' and 'bpe_sample' (``model.bpe_merges`` > 0), as PyTorch writes them."""
    from practice_torch.engine.interface import Artefact
    from practice_torch.language_model.functions import STRATEGIES
    from practice_torch.language_model.text import bpe_artefacts

    samples, rows = decode_text(twin, model, n, generator), []
    for strategy in STRATEGIES:
        setting = {"temperature": f"T = {model.temperature}", "top_k": f"k = {model.top_k}, T = {model.temperature}",
                   "top_p": f"p = {model.top_p}, T = {model.temperature}", "beam": f"beam = {model.beam}",
                   "greedy": "argmax"}[strategy]
        start = time.perf_counter()
        text = decode_text(twin, model, 1, generator, strategy)[0]
        rows.append(f"=== {strategy} ({setting}; {time.perf_counter() - start:.1f} s) ===\n{text}")
    artefacts = [Artefact("samples", "text", samples), Artefact("strategies", "text", rows)]
    if model.bpe_merges:
        artefacts += bpe_artefacts(model.bpe_merges, samples[0])
    return artefacts
