"""Tokenisers: characters, and byte-pair encoding learned from the training text (Sennrich et al. 2016; GPT-2's
pre-tokenisation, Radford et al. 2019).

Both map text to a list of ids and back, exactly (``decode(encode(text)) == text`` for any text over the alphabet):

* ``CharTokenizer``: one id per character (the Shakespeare ``CharVocab``: UNK at id 0, then the sorted characters
  of the training split).
* ``BPETokenizer``: starts from the same characters and learns ``merges``: repeatedly, the most frequent adjacent
  pair of tokens inside a pre-token (a word with its leading space, a run of digits, of punctuation or of white
  space; merges never cross pre-tokens) becomes a new token. Encoding applies the learned merges in the order they
  were learned. Saved and loaded as JSON (the alphabet and the merge list, which is the whole tokeniser).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

UNK = "\ufffd"
# GPT-2's split, for English letters: a word with at most one leading space, digits, other symbols, white space
# (a run of spaces before a word leaves its last space to the word).
PRETOKEN = re.compile(r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")


def pretokenize(text: str) -> list[str]:
    """The pre-tokens of ``text``; their concatenation is ``text`` (every character matches one alternative)."""
    return PRETOKEN.findall(text)


@dataclass
class CharTokenizer:
    """One token per character; characters outside ``alphabet`` encode as UNK (id 0)."""

    alphabet: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls((UNK, *sorted(set(text) - {UNK})))

    def __post_init__(self):
        self.stoi = {c: i for i, c in enumerate(self.alphabet)}

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(c, 0) for c in text]

    def decode(self, ids) -> str:
        return "".join(self.alphabet[int(i)] for i in ids)


@dataclass
class BPETokenizer:
    """Byte-pair encoding over characters: token i < len(alphabet) is a character, token len(alphabet) + m is the
    concatenation of the pair ``merges[m]`` (ids of earlier tokens)."""

    alphabet: tuple[str, ...]
    merges: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self):
        self.stoi = {c: i for i, c in enumerate(self.alphabet)}
        self.tokens = list(self.alphabet)
        for a, b in self.merges:
            self.tokens.append(self.tokens[a] + self.tokens[b])
        self.rank = {tuple(pair): m for m, pair in enumerate(self.merges)}
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    # learning ---------------------------------------------------------------------------------------------------
    @classmethod
    def train(cls, text: str, num_merges: int) -> BPETokenizer:
        """Learn ``num_merges`` merges from ``text`` (fewer if no pair occurs twice). Ties between equally frequent
        pairs go to the smallest pair of ids, so the result depends on the text alone."""
        alphabet = (UNK, *sorted(set(text) - {UNK}))
        stoi = {c: i for i, c in enumerate(alphabet)}
        counts = Counter(pretokenize(text))
        words = [[stoi[c] for c in w] for w in counts]
        freqs = list(counts.values())
        pairs: Counter = Counter()
        where: dict[tuple[int, int], set[int]] = {}
        for i, (w, f) in enumerate(zip(words, freqs)):
            for pair in zip(w, w[1:]):
                pairs[pair] += f
                where.setdefault(pair, set()).add(i)
        merges: list[tuple[int, int]] = []
        for m in range(num_merges):
            if not pairs:
                break
            best = max(pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
            if best[1] < 2:
                break
            pair, new = best[0], len(alphabet) + m
            merges.append(pair)
            for i in list(where.get(pair, ())):
                old, f = words[i], freqs[i]
                merged = merge_pair(old, pair, new)
                for p in zip(old, old[1:]):
                    pairs[p] -= f
                    if pairs[p] <= 0:
                        del pairs[p]
                        where.pop(p, None)
                for p in zip(merged, merged[1:]):
                    pairs[p] += f
                    where.setdefault(p, set()).add(i)
                words[i] = merged
        return cls(alphabet, merges)

    # encoding ---------------------------------------------------------------------------------------------------
    def encode_pretoken(self, piece: str) -> list[int]:
        """Characters, then the learned merges by rank (the earliest learned first), until none applies."""
        if piece in self._cache:
            return self._cache[piece]
        ids = [self.stoi.get(c, 0) for c in piece]
        while len(ids) > 1:
            ranked = [(self.rank[p], p) for p in zip(ids, ids[1:]) if p in self.rank]
            if not ranked:
                break
            m, pair = min(ranked)
            ids = merge_pair(ids, pair, len(self.alphabet) + m)
        self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        return [i for piece in pretokenize(text) for i in self.encode_pretoken(piece)]

    def decode(self, ids) -> str:
        return "".join(self.tokens[int(i)] for i in ids)

    # saving -----------------------------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"type": "bpe", "pretoken": PRETOKEN.pattern, "alphabet": "".join(self.alphabet),
                           "merges": self.merges}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> BPETokenizer:
        raw = json.loads(text)
        if raw.get("type") != "bpe" or raw.get("pretoken") != PRETOKEN.pattern:
            raise ValueError("not a BPE tokeniser of this project (type or pre-token pattern differs)")
        return cls(tuple(raw["alphabet"]), [tuple(p) for p in raw["merges"]])

    def save(self, path: Path) -> Path:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> BPETokenizer:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def merge_pair(ids: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """``ids`` with every non-overlapping occurrence of ``pair``, left to right, replaced by ``new``."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
