"""Programmatic judges: the true reward of a generated piece of text, known exactly, so that every fine-tuning result
(REINFORCE, PPO, TRPO, DPO, a reward model's accuracy) is scored honestly against it.

A judge maps the response (the generated characters, prompt excluded) to a number; higher is better. The judges
are deliberately simple and cheap, and each can be gamed (a policy that prints "eeee" wins ``letter``): the
KL penalty to the reference model, and the reported KL, are what keep a result honest.

    letter   the share of the response's characters that are among ``letters`` (case-insensitive), in [0, 1]
    lexicon  the number of whole words of the response found in ``LEXICON`` (Shakespeare's kinder words),
             divided by the number of words, in [0, 1]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

LEXICON = frozenset("""
    love loves loving loved lover sweet sweetest fair fairest good gentle joy joys heaven heavens happy grace
    gracious kind dear dearest honour honest true truth bless blessed merry noble beauty beauteous friend friends
    peace smile hope pity mercy delight glory virtue virtuous faith faithful worthy rich brave hearts heart
""".split())

_WORD = re.compile(r"[a-z]+")


def letter_share(text: str, letters: str = "e") -> float:
    """The share of ``text``'s characters that are in ``letters`` (case-insensitive); 0 for an empty text."""
    if not text:
        return 0.0
    wanted = set(letters.lower())
    return sum(ch in wanted for ch in text.lower()) / len(text)


def lexicon_share(text: str, lexicon: frozenset[str] = LEXICON) -> float:
    """The share of ``text``'s whole words (runs of letters, lower-cased) that are in ``lexicon``; 0 without words."""
    words = _WORD.findall(text.lower())
    return sum(w in lexicon for w in words) / len(words) if words else 0.0


JUDGES: dict[str, str] = {
    "letter": "share of the response's characters among model.letters",
    "lexicon": "share of the response's words in the lexicon of kind words",
}


def judge(name: str, letters: str = "e") -> Callable[[str], float]:
    """The judge called ``name`` (one of ``JUDGES``); ValueError, one line, otherwise."""
    if name == "letter":
        if not letters or not letters.isalpha():
            raise ValueError(f"model.letters must be one or more letters, got {letters!r}")
        return lambda text: letter_share(text, letters)
    if name == "lexicon":
        return lexicon_share
    raise ValueError(f"unknown judge {name!r}; choose from {', '.join(JUDGES)}")


def score(fn: Callable[[str], float], texts: Sequence[str]) -> list[float]:
    """``fn`` on each text."""
    return [float(fn(t)) for t in texts]
