"""Character language models: an LSTM and a Transformer (the project's trunk ``practice_torch.nets.Transformer``),
and generation with every decoding rule of ``functions``.

Both map ids x: (B, T) to next-token logits (B, T, V) and decode incrementally: ``start(prompt)`` reads the prompt
and returns the logits of the next token with a state (the LSTM's (h, c), the Transformer's key-value cache),
``advance(token, state)`` feeds one token. ``generate`` draws ``steps`` tokens with any strategy, the uniforms of the
inverse-CDF draws passed in; ``use_cache=False`` recomputes the whole (cropped) context at every step instead, the
baseline of the key-value cache benchmark.
"""

from __future__ import annotations

import torch
from torch import nn

from practice_torch.language_model.functions import beam_search, log_softmax, next_token
from practice_torch.nets import Transformer, TransformerConfig


class CharLSTM(nn.Module):
    """Embedding (V -> dim), ``layers`` LSTM layers of width ``dim``, Linear head (dim -> V). x: (B, T) -> (B, T, V).
    The recurrence carries any amount of context; ``context`` is only the training window."""

    architecture = "lstm"

    def __init__(self, vocab_size: int, dim: int = 256, layers: int = 2, dropout: float = 0.0, context: int = 64):
        super().__init__()
        self.vocab_size, self.context = vocab_size, context
        self.embedding = nn.Embedding(vocab_size, dim)
        self.lstm = nn.LSTM(dim, dim, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, x, state=None):
        return self.run(x, state)[0]

    def run(self, x, state=None):
        """(logits (B, T, V), state (h, c))."""
        h, state = self.lstm(self.embedding(x), state)
        return self.head(h), state

    def start(self, prompt):
        logits, state = self.run(prompt)
        return logits[:, -1], state

    def advance(self, token, state):
        logits, state = self.run(token[:, None], state)
        return logits[:, -1], state


class CharTransformer(nn.Module):
    """Token embedding (V -> dim, N(0, 0.02)), the trunk, and a head: tied (logits = h E^T, Press & Wolf 2017) or
    its own Linear (dim -> V, no bias). x: (B, T <= context) -> (B, T, V)."""

    architecture = "transformer"

    def __init__(self, vocab_size: int, config: TransformerConfig, tie: bool = True):
        super().__init__()
        self.vocab_size, self.context, self.tie = vocab_size, config.max_len, tie
        self.embedding = nn.Embedding(vocab_size, config.dim)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.trunk = Transformer(config)
        self.head = None if tie else nn.Linear(config.dim, vocab_size, bias=False)
        if self.head is not None:
            nn.init.normal_(self.head.weight, std=0.02)

    def logits(self, h):
        return h @ self.embedding.weight.T if self.head is None else self.head(h)

    def forward(self, x, cache=None):
        return self.logits(self.trunk(self.embedding(x), cache=cache))

    def start(self, prompt):
        """Prefill a cache of ``context`` positions with the last context - 1 prompt tokens (room for one more)."""
        prompt = prompt[:, -(self.context - 1):]
        cache = self.trunk.init_cache(prompt.shape[0], self.context)
        return self(prompt, cache)[:, -1], (cache, prompt)

    def advance(self, token, state):
        """One token; when the cache is full, refill it with the last context / 2 tokens (positions restart at 0,
        as for any training window), so each step costs O(context) amortised."""
        cache, seen = state
        seen = torch.cat([seen, token[:, None]], dim=1)
        if cache.length >= self.context:
            keep = seen[:, -(self.context // 2):]
            cache = self.trunk.init_cache(seen.shape[0], self.context)
            return self(keep, cache)[:, -1], (cache, keep)
        return self(token[:, None], cache)[:, -1], (cache, seen[:, -self.context:])


LanguageModel = CharLSTM | CharTransformer


def build_language_model(architecture: str, vocab_size: int, context: int, dim: int, layers: int, heads: int,
                         dropout: float, tie: bool, position: str = "learned") -> LanguageModel:
    """One line per mistake (ValueError), as ``build`` needs."""
    if architecture == "lstm":
        return CharLSTM(vocab_size, dim, layers, dropout, context)
    if architecture == "transformer":
        return CharTransformer(vocab_size, TransformerConfig(dim=dim, heads=heads, layers=layers, dropout=dropout,
                                                             position=position, max_len=context), tie)
    raise ValueError(f"unknown architecture {architecture!r}; choose lstm or transformer")


@torch.no_grad()
def next_logits_full(net: LanguageModel, seqs: torch.Tensor) -> torch.Tensor:
    """Next-token logits of each sequence from a full forward of its last ``context`` tokens. (N, t) -> (N, V)."""
    return net(seqs[:, -net.context:])[:, -1]


@torch.no_grad()
def generate(net: LanguageModel, prompt: torch.Tensor, steps: int, strategy: str, uniforms: torch.Tensor | None = None,
             temperature: float = 1.0, k: int = 40, p: float = 0.9, beam: int = 4, use_cache: bool = True
             ) -> torch.Tensor:
    """``steps`` tokens after ``prompt`` (B, t0) by ``strategy`` (greedy | temperature | top_k | top_p | beam).

    ``uniforms`` (B, steps) in [0, 1): the noise of the sampling strategies (unused by greedy and beam). Beam search
    keeps ``beam`` continuations of the first prompt row and returns them all (beam, steps). -> (B, steps) int64."""
    if strategy == "beam":
        device = next(net.parameters()).device
        seqs, _ = beam_search(lambda s: log_softmax(next_logits_full(net, s.to(device)).double()), net.vocab_size,
                              steps, beam, prompt[0])
        return seqs
    if uniforms is None and strategy != "greedy":
        raise ValueError(f"strategy {strategy!r} draws: pass uniforms (B, steps)")
    u = torch.zeros(prompt.shape[0], steps) if uniforms is None else uniforms
    out = torch.empty(prompt.shape[0], steps, dtype=torch.long, device=prompt.device)
    if use_cache:
        logits, state = net.start(prompt)
    seqs = prompt
    for i in range(steps):
        if not use_cache:
            logits = next_logits_full(net, seqs)
        out[:, i] = next_token(logits.float(), u[:, i].to(logits.device), strategy, temperature, k, p)
        if use_cache:
            if i + 1 < steps:
                logits, state = net.advance(out[:, i], state)
        else:
            seqs = torch.cat([seqs, out[:, i:i + 1]], dim=1)
    return out
