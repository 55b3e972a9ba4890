"""Exercises: functions of the derivations for a learner to write, one module per topic.

``theory_jax/exercises/<topic>.py`` lists the topic's ``EXERCISES``: the function (its name in both twins,
``theory_jax.<topic>`` and ``practice_torch.<topic>``), what writing it teaches, graded hints (the last one nearly
gives it away), and the mistakes learners make, each a wrong JAX twin of the function with what to tell the learner
who made it. The checker (``shared_specs/exercise_check.py``, ``python -m theory_jax exercise``) runs the function's spec
cases with the learner's version in place of ours, against the reference and the other backend, and when a case
fails runs the mistakes on the same inputs: a wrong answer that matches one is named in words.

This package holds no checker and no engine: the exercises are data, like the spec cases.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Mistake:
    """A slip learners make: ``wrong``, the function as they would write it (JAX, our function's signature), and
    ``says``, what it is and what is right, in a sentence addressed to them ("your ... : ...")."""

    says: str
    wrong: Callable


@dataclass(frozen=True)
class Exercise:
    """``function`` of a topic's twins for the learner to write: ``teaches`` (one line, for the list), ``hints``
    (graded: the first points the way, the last nearly gives it away) and at least two named ``mistakes``.
    ``withhold``: helpers our function calls that would do the exercise for the learner, left out of the imports
    their file gets (``divergence_exact`` for the CNF's divergence of an MLP field); ``gives``: the topic's functions
    their file imports although ours does not call them (the field whose divergence they take)."""

    function: str
    teaches: str
    hints: tuple[str, ...]
    mistakes: tuple[Mistake, ...]
    withhold: tuple[str, ...] = ()
    gives: tuple[str, ...] = ()


def stub_of(fn: Callable, name: str | None = None) -> str:
    """``fn``'s ``def`` line(s) (its decorators left out, renamed ``name`` if given) and docstring as written, over a
    body that raises ``NotImplementedError``: the function for the learner to write."""
    source = inspect.getsource(fn)
    tree = ast.parse(source).body[0]
    lines = source.splitlines()
    doc = tree.body[0]
    if not (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)):
        raise ValueError(f"{fn.__module__}.{fn.__name__} has no docstring to put in an exercise")
    header = lines[tree.lineno - 1:doc.lineno - 1]  # from the def to the docstring
    if name:
        header[0] = header[0].replace(f"def {fn.__name__}(", f"def {name}(", 1)
    return "\n".join([*header, *lines[doc.lineno - 1:doc.end_lineno],
                      f'    raise NotImplementedError("write {fn.__name__}")', ""])
