"""Runs a spec case in both backends and compares: outputs, gradients, the third witness.

``run_case`` is the single entry point used by ``python -m shared_specs check``, the test suite
and the negative controls. A ``Perturbation`` alters only the JAX side (its inputs, its converted
params, or the function itself) so a test can show that a wrong twin is caught.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from project.compare import Comparison, Tolerance, compare_trees, flatten, tolerance
from shared_specs.case import Case, FunctionCase, ModuleCase, StepCase, init_weights, rng_for


@dataclass(frozen=True)
class Perturbation:
    """A deliberate fault on the JAX side, for negative controls."""

    name: str
    inputs: Callable[[dict], dict] | None = None
    params: Callable[[dict], dict] | None = None
    fn: Callable[[Callable], Callable] | None = None


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    kind: str
    dtype: str
    level: str
    output: Comparison | None
    gradient: Comparison | None = None
    reference: Comparison | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def passed(self) -> bool:
        checks = [c for c in (self.output, self.gradient, self.reference) if c is not None]
        return self.error is None and bool(checks) and all(c.passed for c in checks)

    @property
    def ratio(self) -> float:
        """The worst error as a share of its tolerance over output, gradient and reference (<= 1 passes)."""
        if self.error:
            return float("inf")
        worst = [c.worst.ratio for c in (self.output, self.gradient, self.reference) if c is not None and c.worst]
        return max(worst, default=0.0)

    def summary(self) -> dict:
        """The result as JSON-ready data: verdict, time, and per check its max |a - b|, err/tol and tolerance."""
        checks = {name: {"max_abs_err": c.max_abs_err, "ratio": c.worst.ratio if c.worst else 0.0,
                         "rtol": c.tol.rtol, "atol": c.tol.atol, "passed": c.passed}
                  for name, c in (("output", self.output), ("gradient", self.gradient), ("reference", self.reference))
                  if c is not None}
        return {"case": self.case_id, "kind": self.kind, "dtype": self.dtype, "level": self.level,
                "passed": self.passed, "ratio": self.ratio, "seconds": round(self.seconds, 3), "error": self.error,
                "checks": checks}

    def message(self) -> str:
        if self.error:
            return self.error
        parts = [f"{name}: {c.message()}" for name, c in
                 (("output", self.output), ("gradient", self.gradient), ("reference", self.reference))
                 if c is not None and not c.passed]
        return "\n".join(parts) or "passed"


@cache
def backends():
    """(torch, jax) backends, created once per process (they set global precision flags)."""
    from shared_specs.backends import JaxBackend, TorchBackend

    return TorchBackend(), JaxBackend()


def _cotangent(tree: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random cotangent per output leaf: gradients of <out, c> see every output element."""
    return {p: rng.standard_normal(np.shape(v)).astype(np.asarray(v).dtype) for p, v in flatten(tree).items()}


def _worse(a: Comparison, b: Comparison) -> Comparison:
    if not a.passed or (b.passed and (a.worst and b.worst) and a.worst.ratio >= b.worst.ratio):
        return a
    return b


def _function(case: FunctionCase, perturb: Perturbation | None) -> dict[str, Comparison | None]:
    torch_b, jax_b = backends()
    inputs = case.make_inputs(rng_for(case.id))
    jax_inputs = perturb.inputs(dict(inputs)) if perturb and perturb.inputs else inputs
    fn = jax_b._fn(case)
    fn = perturb.fn(fn) if perturb and perturb.fn else fn
    tol = tolerance(case.level, case.dtype)
    out_t = torch_b.function(case, inputs)
    if case.grad_wrt:
        cot = _cotangent(out_t, rng_for(case.id, "/cotangent"))
        out_j, g_j = jax_b.function_vjp(case, jax_inputs, cot, fn=fn)
    else:
        out_j = jax_b.function(case, jax_inputs, fn=fn)
    result: dict[str, Comparison | None] = {"output": compare_trees(out_j, out_t, tol)}
    if case.reference is not None:
        ref = case.reference(**inputs, **case.static)
        result["reference"] = _worse(compare_trees(out_t, ref, tol, check_dtype=False),
                                     compare_trees(out_j, ref, tol, check_dtype=False))
    if case.grad_wrt:
        g_t = torch_b.function_vjp(case, inputs, cot)
        result["gradient"] = compare_trees(g_j, g_t, tolerance("gradient", case.dtype))
    return result


def _module(case: ModuleCase, perturb: Perturbation | None) -> dict[str, Comparison | None]:
    torch_b, jax_b = backends()
    schema = torch_b.schema(case)
    weights = init_weights(schema, rng_for(case.id, "/weights"), case.dtype)
    inputs = case.make_inputs(rng_for(case.id))
    jax_inputs = perturb.inputs(dict(inputs)) if perturb and perturb.inputs else inputs
    params = jax_b.params(case, weights, inputs)
    params = perturb.params(params) if perturb and perturb.params else params
    stats = jax_b.statistics(case, weights, inputs)
    out_t = torch_b.module(case, weights, inputs)
    cot = _cotangent(out_t, rng_for(case.id, "/cotangent"))
    out_j, g_j = jax_b.module_vjp(case, params, jax_inputs, cot, schema, stats)
    g_t = torch_b.module_vjp(case, weights, inputs, cot)
    return {"output": compare_trees(out_j, out_t, tolerance(case.level, case.dtype)),
            "gradient": compare_trees(g_j, g_t, tolerance("gradient", case.dtype))}


def _step(case: StepCase, perturb: Perturbation | None) -> dict[str, Comparison | None]:
    torch_b, jax_b = backends()
    schema = torch_b.schema(case)
    weights = init_weights(schema, rng_for(case.id, "/weights"), case.dtype)
    batches = case.make_batches(rng_for(case.id))
    jax_batches = [perturb.inputs(dict(b)) for b in batches] if perturb and perturb.inputs else batches
    params = jax_b.params(case, weights, batches[0])
    params = perturb.params(params) if perturb and perturb.params else params
    w_t = torch_b.steps(case, weights, batches)
    moved = compare_trees(w_t, weights, Tolerance(0.0, 0.0))
    if moved.passed:
        raise AssertionError("the optimizer steps left every weight unchanged: the case checks nothing")
    w_j = jax_b.steps(case, params, jax_batches, schema)
    return {"output": compare_trees(w_j, w_t, tolerance(case.level, case.dtype))}


def run_case(case: Case, perturb: Perturbation | None = None) -> CaseResult:
    """Run one case in both backends; exceptions become a failed result naming the error."""
    start = time.perf_counter()
    runner = {"function": _function, "module": _module, "step": _step}[case.kind]
    try:
        checks = runner(case, perturb)
        error = None
    except Exception as exc:  # a crash in either backend is a failed case, reported by name
        checks, error = {}, f"{type(exc).__name__}: {exc}"
    return CaseResult(case.id, case.kind, case.dtype, case.level, checks.get("output"), checks.get("gradient"),
                      checks.get("reference"), time.perf_counter() - start, error)


def caught(case, perturbation: Perturbation) -> str:
    """The failure message of ``case`` run under a deliberate fault (a negative control, docs/ARCHITECTURE.md rule 5);
    AssertionError when the fault goes unnoticed."""
    result = run_case(case, perturbation)
    if result.passed:
        raise AssertionError(f"{perturbation.name} on {case.id} went unnoticed")
    return result.message()
