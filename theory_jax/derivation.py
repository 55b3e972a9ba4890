"""The derivation harness: a derivation is a script whose steps are claims.

A topic's derivation module (``theory_jax/derivations/<topic>.py``) defines ``derive() -> Derivation``; each call
below records one numbered claim with the check that backs it, the measured discrepancy, the threshold and a pass
mark:

* ``symbolic``: SymPy simplifies ``lhs - rhs`` to exactly 0;
* ``numeric``: both sides evaluated, |lhs - rhs| <= atol + rtol |rhs| elementwise;
* ``monte_carlo``: a seeded estimate within ``k`` standard errors of the exact value;
* ``gradient``: an autodiff gradient against a closed form or finite differences;
* ``inequality``: ``small <= large`` elementwise (Jensen, monotone bounds, variance orderings).

``say`` adds unnumbered narrative and ``figure`` a matplotlib figure that makes a claim visible.
``python -m theory_jax <topic>`` prints the claims as they are checked and exits non-zero if any fails;
``to_markdown`` writes the same derivation as a document, and ``theory_jax.notebook`` as a notebook: one source,
read three ways. Each item remembers the source line that recorded it (``Derivation.origins``), which is how the
notebook puts a claim's statement above the cell that checks it.

Precision (docs/ARCHITECTURE.md, "Tolerances are a policy"). A derivation computes in float64 end to end:
``full_precision()`` (the first line of every ``derive``) turns on 64-bit floats and full-precision matmuls,
and a numeric, gradient or inequality claim whose values hold a float32 (or narrower) array fails, whatever
its discrepancy: float32 arithmetic held to the float64 tolerance passes or fails by the kernels one CPU
picks. A claim about float32 code says so, ``float32="why"``, and is held to the float32 policy instead.
"""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
import sympy

from project.compare import tolerance

MARK = {True: "PASS", False: "FAIL"}


def full_precision() -> None:
    """The derivations' float64 policy: 64-bit floats by default (``jax_enable_x64``) and full-precision matrix
    products and convolutions (``jax_default_matmul_precision='highest'``), whatever the backend."""
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")


def optimised_jit(fn: Callable, **jit_options: Any) -> Callable:
    """``jax.jit(fn)`` compiled with LLVM's optimisations (XLA's default) whatever the process asks of XLA: for a
    program that runs far longer than it compiles (a chain of a thousand steps over thousands of samples, a density on
    millions of grid points). The test suite compiles every other program for speed of compiling
    (``tests/conftest.py``), where these ran 2 to 3 times slower; elsewhere the option is the default and changes
    nothing."""
    return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 3}, **jit_options)


def as_float64(tree: Any) -> Any:
    """A parameter pytree with its floating leaves in float64: flax initialises parameters in float32 (its
    ``param_dtype``) whatever ``jax_enable_x64`` says, and float32 weights make a whole network float32."""
    return jax.tree.map(lambda x: x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) else x, tree)


def float64_params(module: Any, rng: np.random.Generator, *args: Any, **kwargs: Any) -> Any:
    """Variables for a flax ``module`` applied to ``args``, drawn by NumPy in float64: the tree from
    ``jax.eval_shape(module.init, ...)`` (so XLA compiles none of flax's initialisers), a ``kernel`` N(0, 1/fan_in)
    with fan_in the product of all but its last axis, a ``scale`` 1 + N(0, 0.1^2), anything else N(0, 1)."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), *args, **kwargs)

    def draw(path, leaf):
        name, shape = str(getattr(path[-1], "key", path[-1])), leaf.shape
        if name == "kernel":
            return rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
        return 1.0 + 0.1 * rng.standard_normal(shape) if name == "scale" else rng.standard_normal(shape)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def narrow_floats(*values: Any) -> list[str]:
    """The dtypes of the floating arrays narrower than float64 among ``values`` (nested lists, tuples, dicts)."""
    found = []
    for value in values:
        if isinstance(value, dict):
            found += narrow_floats(*value.values())
        elif isinstance(value, (list, tuple)):
            found += narrow_floats(*value)
        elif hasattr(value, "dtype"):
            dtype = np.dtype(value.dtype)
            if dtype.kind in "fc" and dtype.itemsize < (8 if dtype.kind == "f" else 16):
                found.append(str(dtype))
    return sorted(set(found))


@dataclass(frozen=True)
class Claim:
    """One checked step. ``ratio``: the discrepancy as a share of what the check allows (the worst element of
    |lhs - rhs| / (atol + rtol |rhs|), or standard errors / k); <= 1 passes; None for symbolic and inequality
    claims, whose check has no scale."""

    number: int
    kind: str
    statement: str
    discrepancy: float
    threshold: float
    detail: str
    passed: bool
    seconds: float
    ratio: float | None = None


@dataclass(frozen=True)
class Figure:
    """A figure that makes a claim visible: its caption and the matplotlib figure, drawn as a PNG when a document or
    a notebook shows it (a run that only checks the claims does not pay for drawing)."""

    number: int
    caption: str
    figure: Any = field(repr=False)

    def png(self) -> bytes:
        """The figure as a small PNG (80 dpi), without the metadata that would make two renderings differ."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
        return buffer.getvalue()


def new_figure(columns: int = 1, width: float = 4.2, height: float = 3.0) -> tuple[Any, Any]:
    """A matplotlib ``Figure`` with ``columns`` side-by-side axes (an array of axes when columns > 1), made without
    pyplot so that no backend or global state is involved: ``fig, ax = new_figure()``."""
    from matplotlib.figure import Figure as MatplotlibFigure

    fig = MatplotlibFigure(figsize=(width * columns, height), layout="constrained")
    return fig, fig.subplots(1, columns)


def _origin() -> list[tuple[Any, int]]:
    """The (code object, line) of each frame that called into this module, innermost first (up to 12)."""
    frame, here, found = sys._getframe(1), sys._getframe(0).f_code.co_filename, []
    while frame is not None and len(found) < 12:
        if frame.f_code.co_filename != here:
            found.append((frame.f_code, frame.f_lineno))
        frame = frame.f_back
    return found


@dataclass
class Derivation:
    """An ordered list of narrative paragraphs and checked claims for one topic."""

    topic: str
    title: str
    lectures: str = ""
    echo: Callable[[str], None] | None = None
    items: list[str | Claim | Figure] = field(default_factory=list)
    origins: list[list[tuple[Any, int]]] = field(default_factory=list, repr=False)
    _clock: float = field(default_factory=time.perf_counter)

    # recording --------------------------------------------------------------------------------
    @property
    def claims(self) -> list[Claim]:
        return [item for item in self.items if isinstance(item, Claim)]

    @property
    def passed(self) -> bool:
        return bool(self.claims) and all(c.passed for c in self.claims)

    @property
    def figures(self) -> list[Figure]:
        return [item for item in self.items if isinstance(item, Figure)]

    def _add(self, item: str | Claim | Figure) -> None:
        self.items.append(item)
        self.origins.append(_origin())

    def say(self, text: str) -> None:
        """A narrative step (markdown; LaTeX between $...$)."""
        self._add(text)

    def figure(self, fig: Any, caption: str) -> Figure:
        """A matplotlib figure (``new_figure``) that makes the claims beside it visible, with its caption; shown at
        once when run in a notebook, written as a PNG beside the Markdown document (``write_figures``)."""
        item = Figure(len(self.figures) + 1, caption, fig)
        self._add(item)
        _show_in_notebook(item)
        return item

    def _record(self, kind: str, statement: str, discrepancy: float, threshold: float, detail: str,
                passed: bool, ratio: float | None = None) -> Claim:
        now = time.perf_counter()
        claim = Claim(len(self.claims) + 1, kind, statement, float(discrepancy), float(threshold), detail,
                      bool(passed), now - self._clock, None if ratio is None else float(ratio))
        self._clock = now
        self._add(claim)
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

    def numeric(self, statement: str, lhs: Any, rhs: Any, rtol: float | None = None, atol: float | None = None,
                kind: str = "numeric", float32: str | None = None) -> Claim:
        """Both sides evaluated: max |lhs - rhs| within atol + rtol |rhs|, elementwise.

        Tolerances default to the policy's single-function level (gradients: its gradient level) at float64, or
        at float32 when ``float32`` gives the reason the claim is about float32 code."""
        dtype = "float32" if float32 else "float64"
        policy = tolerance("gradient" if kind == "gradient" else "function", dtype)
        rtol = policy.rtol if rtol is None else rtol
        atol = policy.atol if atol is None else atol
        a, b = np.asarray(lhs, dtype=np.float64), np.asarray(rhs, dtype=np.float64)
        if a.shape != b.shape and a.size != 1 and b.size != 1:
            raise ValueError(f"claim {statement!r}: shapes {a.shape} and {b.shape} differ")
        err = np.abs(a - b)
        ratio = float(np.max(err / (atol + rtol * np.abs(b)))) if err.size else 0.0
        ok = bool(np.all(np.isfinite(err))) and ratio <= 1.0
        detail = f"max |lhs - rhs| = {float(np.max(err)):.2e} (rtol {rtol:.0e}, atol {atol:.0e})"
        ok, detail = self._precision(lhs, rhs, float32, ok, detail)
        return self._record(kind, statement, float(np.max(err)), atol + rtol * float(np.max(np.abs(b))), detail, ok,
                            ratio)

    def gradient(self, statement: str, grad: Any, expected: Any, rtol: float | None = None,
                 atol: float | None = None, float32: str | None = None) -> Claim:
        """An autodiff gradient against its closed form (policy: 1e-8 in float64)."""
        return self.numeric(statement, grad, expected, rtol, atol, kind="gradient", float32=float32)

    @staticmethod
    def _precision(lhs: Any, rhs: Any, float32: str | None, ok: bool, detail: str) -> tuple[bool, str]:
        """A claim with narrow float values fails unless it states the float32 policy (see the module docstring)."""
        if float32:
            return ok, f"{detail}; float32 policy: {float32}"
        narrow = narrow_floats(lhs, rhs)
        if narrow:
            return False, (f"{detail}; but its values hold {', '.join(narrow)} arrays, so the float64 tolerance holds "
                           "by the luck of the kernels: compute in float64, or state float32='why'")
        return ok, detail

    def monte_carlo(self, statement: str, samples: Any, exact: Any, k: float = 4.0) -> Claim:
        """The sample mean of ``samples`` (axis 0) lies within ``k`` standard errors of ``exact``."""
        x = np.asarray(samples, dtype=np.float64)
        n = x.shape[0]
        mean, se = x.mean(axis=0), x.std(axis=0, ddof=1) / math.sqrt(n)
        z = np.abs(mean - np.asarray(exact, dtype=np.float64)) / np.maximum(se, 1e-300)
        zmax = float(np.max(z))
        detail = (f"|estimate - exact| = {zmax:.2f} SE (k = {k:g}, n = {n}); "
                  f"estimate {np.ravel(mean)[0]:.6g}, exact {np.ravel(np.asarray(exact))[0]:.6g}")
        return self._record("monte carlo", statement, zmax, k, detail, np.isfinite(zmax) and zmax <= k, zmax / k)

    def inequality(self, statement: str, small: Any, large: Any, slack: float = 0.0,
                   float32: str | None = None) -> Claim:
        """``small <= large + slack`` elementwise; the discrepancy is max(small - large)."""
        gap = np.asarray(small, dtype=np.float64) - np.asarray(large, dtype=np.float64)
        worst = float(np.max(gap))
        detail = f"max(small - large) = {worst:.3e} (allowed {slack:.1e})"
        ok, detail = self._precision(small, large, float32, bool(np.isfinite(worst) and worst <= slack), detail)
        return self._record("inequality", statement, worst, slack, detail, ok)


# presentation -----------------------------------------------------------------------------------
def _show_in_notebook(item: Figure) -> None:
    """Display a figure when running in an IPython kernel (a notebook); nothing otherwise."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        from IPython.display import Image, display

        display(Image(data=item.png()))


def figure_path(topic: str, number: int | str) -> str:
    """Where a document's figure lives, relative to the document: ``figures/<topic>-<n>.png``."""
    return f"figures/{topic}-{number}.png"


def format_claim(claim: Claim) -> str:
    return (f"{claim.number:3d}. [{claim.kind}] {claim.statement}\n"
            f"     {claim.detail}  ({claim.seconds:.2f} s)  {MARK[claim.passed]}")


def to_markdown(d: Derivation) -> str:
    """The derivation as a readable document: narrative, numbered claims, their checks and marks, and its figures
    (at ``figure_path``, relative to the document; ``write_figures`` writes them)."""
    lines = [f"# `{d.topic}`: {d.title}", ""]
    if d.lectures:
        lines += [f"*Lectures:* {d.lectures}", ""]
    for item in d.items:
        if isinstance(item, Claim):
            mark = "passed" if item.passed else "**FAILED**"
            lines += [f"**Claim {item.number}** ({item.kind}). {item.statement}", "",
                      f"> check: {item.detail}; {mark}", ""]
        elif isinstance(item, Figure):
            lines += [f"![Figure {item.number}]({figure_path(d.topic, item.number)})", "",
                      f"*Figure {item.number}.* {item.caption}", ""]
        else:
            lines += [item, ""]
    n_ok = sum(c.passed for c in d.claims)
    lines.append(f"*{n_ok} of {len(d.claims)} claims pass.*")
    return "\n".join(lines) + "\n"



def write_figures(d: Derivation, directory: Any) -> list[Any]:
    """Write ``d``'s figures as PNGs where its Markdown document in ``directory`` links them; the paths written."""
    from pathlib import Path

    paths = []
    for item in d.figures:
        path = Path(directory) / figure_path(d.topic, item.number)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.png())
        paths.append(path)
    return paths
