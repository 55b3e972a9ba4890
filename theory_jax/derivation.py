"""The derivation harness: a derivation is a script whose steps are claims.

A topic module defines ``derive() -> Derivation``; each call below records one numbered claim
with the check that backs it, the measured discrepancy, the threshold and a pass mark:

* ``symbolic``: SymPy simplifies ``lhs - rhs`` to exactly 0;
* ``numeric``: both sides evaluated (float64), |lhs - rhs| <= atol + rtol |rhs| elementwise;
* ``monte_carlo``: a seeded estimate within ``k`` standard errors of the exact value;
* ``gradient``: an autodiff gradient against a closed form or finite differences;
* ``inequality``: ``small <= large`` elementwise (Jensen, monotone bounds, variance orderings).

``say`` adds unnumbered narrative. ``python -m theory_jax <topic>`` prints the claims as they are
checked and exits non-zero if any fails; ``to_markdown`` writes the same derivation as a document.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

MARK = {True: "PASS", False: "FAIL"}


@dataclass(frozen=True)
class Claim:
    number: int
    kind: str
    statement: str
    discrepancy: float
    threshold: float
    detail: str
    passed: bool
    seconds: float


@dataclass
class Derivation:
    """An ordered list of narrative paragraphs and checked claims for one topic."""

    topic: str
    title: str
    lectures: str = ""
    echo: Callable[[str], None] | None = None
    items: list[str | Claim] = field(default_factory=list)
    _clock: float = field(default_factory=time.perf_counter)

    # recording --------------------------------------------------------------------------------
    @property
    def claims(self) -> list[Claim]:
        return [item for item in self.items if isinstance(item, Claim)]

    @property
    def passed(self) -> bool:
        return bool(self.claims) and all(c.passed for c in self.claims)

    def say(self, text: str) -> None:
        """A narrative step (markdown; LaTeX between $...$)."""
        self.items.append(text)

    def _record(self, kind: str, statement: str, discrepancy: float, threshold: float, detail: str,
                passed: bool) -> Claim:
        now = time.perf_counter()
        claim = Claim(len(self.claims) + 1, kind, statement, float(discrepancy), float(threshold), detail,
                      bool(passed), now - self._clock)
        self._clock = now
        self.items.append(claim)
        if self.echo:
            self.echo(format_claim(claim))
        return claim

    # the five kinds of check ------------------------------------------------------------------
    def symbolic(self, statement: str, lhs: Any, rhs: Any = 0) -> Claim:
        """SymPy proves ``lhs == rhs``: ``simplify(lhs - rhs)`` is exactly zero."""
        residual = sympy.simplify(sympy.sympify(lhs) - sympy.sympify(rhs))
        ok = residual == 0
        detail = "lhs - rhs simplifies to 0" if ok else f"lhs - rhs simplifies to {sympy.sstr(residual)[:120]}"
        return self._record("symbolic", statement, 0.0 if ok else math.nan, 0.0, detail, ok)

    def numeric(self, statement: str, lhs: Any, rhs: Any, rtol: float = 1e-10, atol: float = 1e-12,
                kind: str = "numeric") -> Claim:
        """Both sides evaluated: max |lhs - rhs| within atol + rtol |rhs| (float64 policy by default)."""
        a, b = np.asarray(lhs, dtype=np.float64), np.asarray(rhs, dtype=np.float64)
        if a.shape != b.shape and a.size != 1 and b.size != 1:
            raise ValueError(f"claim {statement!r}: shapes {a.shape} and {b.shape} differ")
        err = np.abs(a - b)
        ratio = float(np.max(err / (atol + rtol * np.abs(b)))) if err.size else 0.0
        ok = bool(np.all(np.isfinite(err))) and ratio <= 1.0
        detail = f"max |lhs - rhs| = {float(np.max(err)):.2e} (rtol {rtol:.0e}, atol {atol:.0e})"
        return self._record(kind, statement, float(np.max(err)), atol + rtol * float(np.max(np.abs(b))), detail, ok)

    def gradient(self, statement: str, grad: Any, expected: Any, rtol: float = 1e-8, atol: float = 1e-8) -> Claim:
        """An autodiff gradient against its closed form (policy: 1e-8 in float64)."""
        return self.numeric(statement, grad, expected, rtol, atol, kind="gradient")

    def monte_carlo(self, statement: str, samples: Any, exact: Any, k: float = 4.0) -> Claim:
        """The sample mean of ``samples`` (axis 0) lies within ``k`` standard errors of ``exact``."""
        x = np.asarray(samples, dtype=np.float64)
        n = x.shape[0]
        mean, se = x.mean(axis=0), x.std(axis=0, ddof=1) / math.sqrt(n)
        z = np.abs(mean - np.asarray(exact, dtype=np.float64)) / np.maximum(se, 1e-300)
        zmax = float(np.max(z))
        detail = (f"|estimate - exact| = {zmax:.2f} SE (k = {k:g}, n = {n}); "
                  f"estimate {np.ravel(mean)[0]:.6g}, exact {np.ravel(np.asarray(exact))[0]:.6g}")
        return self._record("monte carlo", statement, zmax, k, detail, np.isfinite(zmax) and zmax <= k)

    def inequality(self, statement: str, small: Any, large: Any, slack: float = 0.0) -> Claim:
        """``small <= large + slack`` elementwise; the discrepancy is max(small - large)."""
        gap = np.asarray(small, dtype=np.float64) - np.asarray(large, dtype=np.float64)
        worst = float(np.max(gap))
        detail = f"max(small - large) = {worst:.3e} (allowed {slack:.1e})"
        return self._record("inequality", statement, worst, slack, detail, np.isfinite(worst) and worst <= slack)


# presentation -----------------------------------------------------------------------------------
def format_claim(claim: Claim) -> str:
    return (f"{claim.number:3d}. [{claim.kind}] {claim.statement}\n"
            f"     {claim.detail}  ({claim.seconds:.2f} s)  {MARK[claim.passed]}")


def to_markdown(d: Derivation) -> str:
    """The derivation as a readable document: narrative, numbered claims, their checks and marks."""
    lines = [f"# `{d.topic}`: {d.title}", ""]
    if d.lectures:
        lines += [f"*Lectures:* {d.lectures}", ""]
    for item in d.items:
        if isinstance(item, Claim):
            mark = "passed" if item.passed else "**FAILED**"
            lines += [f"**Claim {item.number}** ({item.kind}). {item.statement}", "",
                      f"> check: {item.detail}; {mark}", ""]
        else:
            lines += [item, ""]
    n_ok = sum(c.passed for c in d.claims)
    lines.append(f"*{n_ok} of {len(d.claims)} claims pass.*")
    return "\n".join(lines) + "\n"

