"""One pytree comparison, used by every spec, test and converter check.

Structure first (same paths, shapes and dtypes), then values; a failure names the path of the
differing tensor and its max error. Works on NumPy arrays; callers convert framework tensors
with ``np.asarray`` first (``shared_specs.runner`` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """|a - b| <= atol + rtol * |b|, elementwise (NumPy's ``allclose`` rule, b the reference)."""

    rtol: float
    atol: float

    def __str__(self) -> str:
        return f"rtol {self.rtol:.0e}, atol {self.atol:.0e}"


# docs/ARCHITECTURE.md, "Tolerances are a policy": level -> dtype -> tolerance.
POLICY: dict[str, dict[str, Tolerance]] = {
    "function": {"float64": Tolerance(1e-10, 1e-12), "float32": Tolerance(1e-5, 1e-6)},
    "network": {"float64": Tolerance(1e-9, 1e-9), "float32": Tolerance(1e-5, 1e-5)},
    "loglik": {"float64": Tolerance(1e-9, 1e-9), "float32": Tolerance(1e-4, 1e-4)},
    "gradient": {"float64": Tolerance(1e-8, 1e-8), "float32": Tolerance(1e-4, 1e-4)},
    "step": {"float64": Tolerance(1e-8, 1e-8), "float32": Tolerance(1e-4, 1e-4)},
}


def tolerance(level: str, dtype: str) -> Tolerance:
    """The policy's tolerance for a check ``level`` at ``dtype`` ('float32' or 'float64')."""
    try:
        return POLICY[level][dtype]
    except KeyError:
        raise KeyError(f"no tolerance for level {level!r} at {dtype!r}; levels: {', '.join(POLICY)}") from None


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'a/b/0': leaf} for nested dicts, lists and tuples; other objects are leaves."""
    if isinstance(tree, Mapping):
        items = [(str(k), v) for k, v in tree.items()]
    elif isinstance(tree, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(tree)]
    else:
        return {prefix or "<root>": tree}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}/{key}" if prefix else key))
    return out


@dataclass(frozen=True)
class LeafResult:
    path: str
    max_abs_err: float
    ratio: float  # max over elements of |a-b| / (atol + rtol |b|); <= 1 passes

    @property
    def passed(self) -> bool:
        return self.ratio <= 1.0


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing two pytrees: structural problems, then per-leaf errors."""

    structure_errors: tuple[str, ...]
    leaves: tuple[LeafResult, ...]
    tol: Tolerance

    @property
    def passed(self) -> bool:
        return not self.structure_errors and all(leaf.passed for leaf in self.leaves)

    @property
    def max_abs_err(self) -> float:
        return max((leaf.max_abs_err for leaf in self.leaves), default=0.0)

    @property
    def worst(self) -> LeafResult | None:
        return max(self.leaves, key=lambda leaf: leaf.ratio, default=None)

    def message(self) -> str:
        """One line per problem, naming the tensor path and its max error."""
        lines = list(self.structure_errors)
        lines += [f"{leaf.path}: max |a-b| = {leaf.max_abs_err:.3e} exceeds {self.tol} "
                  f"(error/tolerance {leaf.ratio:.3g})" for leaf in self.leaves if not leaf.passed]
        return "\n".join(lines) or f"equal within {self.tol} (max |a-b| = {self.max_abs_err:.3e})"


def _leaf_error(a: np.ndarray, b: np.ndarray, tol: Tolerance) -> tuple[float, float]:
    if np.iscomplexobj(a) or np.iscomplexobj(b):  # a complex leaf (an S4D state): its real and imaginary parts
        a, b = (np.stack([np.real(x), np.imag(x)], axis=-1) for x in (a, b))
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if a64.size == 0:
        return 0.0, 0.0
    nonfinite = ~np.isfinite(a64) | ~np.isfinite(b64)
    if np.any(nonfinite):
        same = np.all((a64[nonfinite] == b64[nonfinite]) | (np.isnan(a64[nonfinite]) & np.isnan(b64[nonfinite])))
        if not same:
            return float("inf"), float("inf")
        a64, b64 = a64[~nonfinite], b64[~nonfinite]
        if a64.size == 0:
            return 0.0, 0.0
    err = np.abs(a64 - b64)
    allowed = tol.atol + tol.rtol * np.abs(b64)
    # zero tolerance (exact equality) makes any nonzero error infinitely over
    ratio = np.divide(err, allowed, out=np.where(err == 0, 0.0, np.inf), where=allowed > 0)
    return float(err.max()), float(ratio.max())


def compare_trees(actual: Any, expected: Any, tol: Tolerance, check_dtype: bool = True) -> Comparison:
    """Compare ``actual`` against ``expected`` (the reference side of the tolerance rule)."""
    fa, fe = flatten(actual), flatten(expected)
    errors = [f"{p}: missing from the first tree" for p in fe if p not in fa]
    errors += [f"{p}: unexpected in the first tree" for p in fa if p not in fe]
    leaves = []
    for path in (p for p in fe if p in fa):
        a, e = np.asarray(fa[path]), np.asarray(fe[path])
        if a.shape != e.shape:
            errors.append(f"{path}: shape {a.shape} != {e.shape}")
            continue
        if check_dtype and a.dtype != e.dtype:
            errors.append(f"{path}: dtype {a.dtype} != {e.dtype}")
            continue
        leaves.append(LeafResult(path, *_leaf_error(a, e, tol)))
    return Comparison(tuple(errors), tuple(leaves), tol)


def assert_trees_close(actual: Any, expected: Any, tol: Tolerance, check_dtype: bool = True) -> Comparison:
    """``compare_trees`` that raises ``AssertionError`` with the comparison's message on failure."""
    result = compare_trees(actual, expected, tol, check_dtype)
    if not result.passed:
        raise AssertionError(result.message())
    return result
