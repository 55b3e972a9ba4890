"""Text from and about a character model, for every model of Shakespeare's characters (language_model; ssm): the
prompt's ids, continuations by a decoding rule, the comparison of the rules, and the held-out bits per character.
``config`` is the run's model config: any with the decoding fields (``prompt``, ``strategy``, ``sample_length``,
``temperature``, ``top_k``, ``top_p``, ``beam``). A library module: the adapters import it, it imports no adapter."""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from practice_torch.data.text import WINDOW
from practice_torch.engine.interface import Artefact
from practice_torch.language_model.functions import STRATEGIES, check_strategy
from practice_torch.language_model.networks import generate
from practice_torch.language_model.tokenisers import BPETokenizer


def _vocab():
    from practice_torch.data.text import shakespeare_vocab

    return shakespeare_vocab()


def prompt_ids(config, batch: int, device) -> torch.Tensor:
    """The prompt (``\\n`` written as backslash-n allowed) as ids, repeated: (batch, len) int64; empty = a newline."""
    text = config.prompt.replace("\\n", "\n") or "\n"
    return _vocab().encode(text).to(device)[None].repeat(batch, 1)


def decode_text(net, config, n: int, generator: torch.Generator, strategy: str | None = None,
                use_cache: bool = True) -> list[str]:
    """n continuations of the prompt (beam: the best ``beam`` of one search), prompt included."""
    device = next(net.parameters()).device
    strategy = strategy or config.strategy
    check_strategy(strategy)
    prompt = prompt_ids(config, n, device)
    uniforms = torch.rand(n, config.sample_length, generator=generator, dtype=torch.float64).float()
    out = generate(net, prompt, config.sample_length, strategy, uniforms, config.temperature, config.top_k,
                   config.top_p, config.beam, use_cache)
    vocab, head = _vocab(), config.prompt.replace("\\n", "\n")
    return [head + vocab.decode(row) for row in out.cpu()]


@torch.no_grad()
def decoding_artefacts(net, config, n: int, generator: torch.Generator) -> list[Artefact]:
    """'samples': n continuations with ``config.strategy``; 'strategies': one continuation per decoding rule, with
    its setting and its time."""
    samples = decode_text(net, config, n, generator)
    rows = []
    for strategy in STRATEGIES:
        setting = {"temperature": f"T = {config.temperature}", "top_k": f"k = {config.top_k}, T = {config.temperature}",
                   "top_p": f"p = {config.top_p}, T = {config.temperature}", "beam": f"beam = {config.beam}",
                   "greedy": "argmax"}[strategy]
        start = time.perf_counter()
        text = decode_text(net, config, 1, generator, strategy)[0]
        rows.append(f"=== {strategy} ({setting}; {time.perf_counter() - start:.1f} s) ===\n{text}")
    return [Artefact("samples", "text", samples), Artefact("strategies", "text", rows)]


def bpe_artefacts(merges: int, text: str) -> list[Artefact]:
    """The BPE tokeniser of the training text (JSON) and ``text`` with '|' between its tokens."""
    from practice_torch.data.text import shakespeare_text

    train_text = shakespeare_text("train")
    tokenizer = BPETokenizer.train(train_text, merges)
    ids = tokenizer.encode(text)
    if tokenizer.decode(ids) != text:
        raise AssertionError("BPE round trip failed")
    val = shakespeare_text("val")
    ratio = len(val) / len(tokenizer.encode(val))
    cut = "|".join(tokenizer.tokens[i] for i in ids)
    note = (f"{tokenizer.vocab_size} tokens ({len(tokenizer.alphabet)} characters + {len(tokenizer.merges)} merges); "
            f"{ratio:.2f} characters per token on the validation text; first merges: "
            + ", ".join(repr(tokenizer.tokens[len(tokenizer.alphabet) + m]) for m in range(min(20, merges))))
    return [Artefact("bpe_tokenizer", "text", [tokenizer.to_json()]), Artefact("bpe_sample", "text", [note, cut])]


@torch.no_grad()
def held_out_bits(net, context: int, dataset: Dataset) -> dict[str, float]:
    """Cross-entropy of every character of the split, each 256-window cut into context-long pieces (a piece's
    first character is predicted from nothing, its last from context - 1 characters): nats/char, bits/char,
    perplexity. net: windows (B, context) -> logits (B, context, V)."""
    device = next(net.parameters()).device
    total, count = 0.0, 0
    usable = WINDOW // context * context
    for x, y in DataLoader(dataset, batch_size=64):
        x = x[:, :usable].reshape(-1, context).to(device)
        y = y[:, :usable].reshape(-1, context).to(device)
        logits = net(x)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    nats = total / max(count, 1)
    return {"loss": nats, "bits_per_char": nats / math.log(2), "perplexity": math.exp(nats), "characters": count}
