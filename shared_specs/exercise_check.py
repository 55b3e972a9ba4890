"""The exercises' check: the learner's function on its spec cases in its backend, against ours in the other and the
case's reference (``check_case``), one line a case; on a failure the topic's known mistakes run on the same inputs and
the one the answer matches is named (``matching_mistake``). ``shared_specs/exercise.py`` is the command line."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from project.compare import Tolerance, flatten, tolerance
from shared_specs.case import FunctionCase, rng_for
from shared_specs.exercise_files import (
    BACKENDS,
    cases_of,
    exercises_of,
    find,
    load,
    ours,
    raised_where,
    topics_with_exercises,
)

PROGRESS = ".progress.json"


# The check ----------------------------------------------------------------------------------------------------------
def first_wrong(what: str, yours, expected, tol: Tolerance, check_dtype: bool = True) -> str | None:
    """The first entry where ``yours`` is off ``expected`` beyond ``tol`` (|a - b| <= atol + rtol |b|), in words;
    None when every entry is within it. A different structure, shape or dtype is named first."""
    fy, fe = flatten(yours), flatten(expected)
    for path, e in fe.items():
        name = what if path == "<root>" else f"{what} {path}"
        if path not in fy:
            return f"{name}: missing from yours"
        y, e = np.asarray(fy[path]), np.asarray(e)
        if y.shape != e.shape:
            return f"{name}: shape {y.shape} where ours is {e.shape}"
        if check_dtype and y.dtype != e.dtype:
            return f"{name}: dtype {y.dtype} where ours is {e.dtype} (compute in the inputs' dtype)"
        y, e = (np.stack([np.real(a), np.imag(a)], -1) if np.iscomplexobj(a) else a for a in (y, e))
        y, e = y.astype(np.float64), e.astype(np.float64)
        with np.errstate(invalid="ignore"):  # inf - inf: equal infinities are caught by ``same``
            err = np.abs(y - e)
            same = (y == e) | (np.isnan(y) & np.isnan(e))
            bad = ~same & ~(err <= tol.atol + tol.rtol * np.abs(e))
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            index = f"[{', '.join(map(str, at))}]" if at else ""
            return (f"{name}{index}: yours {y[at]:.10g}, ours {e[at]:.10g} (error {err[at]:.2e}; tolerance "
                    f"{tol.atol:.0e} + {tol.rtol:.0e} x |ours|)")
    extra = sorted(set(fy) - set(fe))
    return f"{what}: yours has {', '.join(extra)}, which ours does not" if extra else None


def _run(backend: str, case: FunctionCase, inputs: dict, fn: Callable, cotangent=None) -> tuple:
    """(fn's output, its gradients of <output, cotangent> for the case's grad_wrt; None without a cotangent) in
    ``backend``."""
    from shared_specs.runner import backends

    torch_b, jax_b = backends()
    if backend == "jax":
        if cotangent is not None:
            return jax_b.function_vjp(case, inputs, cotangent, fn=fn)
        return jax_b.function(case, inputs, fn=fn), None
    out = torch_b.function(case, inputs, fn=fn)
    return out, (torch_b.function_vjp(case, inputs, cotangent, fn=fn) if cotangent is not None else None)


@dataclass(frozen=True)
class Checked:
    """One case's verdict on the learner's function: ``status`` 'pass', 'fail' (a wrong answer), 'error' (it raised,
    or returned a wrong shape or a NaN: something to mend before the answer can be judged) or 'unwritten'; ``line``
    says what, and ``mistake`` what the known mistake it matches says."""

    status: str
    line: str
    mistake: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def unfit(out, expected, what: str = "output") -> str | None:
    """Why ``out`` (``what``: the output, or the gradient wrt the inputs) cannot be judged against ``expected``, in
    words: another structure or shape, or a NaN or an infinity where ours is finite; None when it can."""
    fy, fe = flatten(out), flatten(expected)
    if fy.keys() != fe.keys():
        return f"yours returned {', '.join(fy) or 'nothing'} where ours returns {', '.join(fe)}"
    for path, e in fe.items():
        y, e = np.asarray(fy[path]), np.asarray(e)
        name = what if path == "<root>" else f"{what} {path}"
        if y.shape != e.shape:
            return f"yours returned {name} of shape {y.shape} where ours is {e.shape}"
        bad = ~np.isfinite(y) & np.isfinite(e) if y.dtype.kind in "fc" and e.dtype.kind in "fc" else np.zeros((), bool)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            where = f"{name}{list(at) if at else ''}"
            if what == "output":
                return (f"yours returned {y[at]} at {where} where ours is {e[at]:.10g} (a log of 0, a division by 0, "
                        "an overflow?)")
            return (f"your {where} is {y[at]} where ours is {e[at]:.10g} (a sqrt or a log at 0, or a branch of a "
                    "where that is NaN even where it is not taken?)")
    return None


def check_case(case: FunctionCase, backend: str, yours: Callable, mistakes=()) -> Checked:
    """``yours`` in ``backend`` on the case's inputs against our function in the other backend, the reference and,
    where the case takes them, the gradients; a wrong answer is matched against ``mistakes``."""
    from shared_specs.runner import _cotangent, backends

    inputs, topic = case.make_inputs(rng_for(case.id)), case.id.split("/")[0]
    cotangent = None
    if case.grad_wrt:  # drawn from our output's structure, as the spec runner draws it
        cotangent = _cotangent(backends()[0].function(case, inputs), rng_for(case.id, "/cotangent"))
    where, failed_gradient = Path(inspect.getfile(yours)), None
    try:
        out, grads = _run(backend, case, inputs, yours, cotangent)
    except NotImplementedError:
        return Checked("unwritten", "not written yet (the body raises NotImplementedError)")
    except Exception as error:  # the value may be right and only its gradient fail
        try:
            out, grads = _run(backend, case, inputs, yours)
        except NotImplementedError:
            return Checked("unwritten", "not written yet (the body raises NotImplementedError)")
        except Exception as again:
            return Checked("error", f"yours raised {raised_where(again, where)}")
        failed_gradient = f"yours could not be differentiated: {raised_where(error, where)}"
    other = "torch" if backend == "jax" else "jax"
    expected_out, expected_grads = _run(other, case, inputs, ours(topic, case.fn, other), cotangent)
    expected = (expected_out, expected_grads)
    problem = unfit(out, expected_out)
    if problem:
        return Checked("error", problem, matching_mistake(case, inputs, cotangent, out, grads, expected, mistakes))
    if failed_gradient:
        return Checked("error", failed_gradient)
    problem = case.grad_wrt and unfit(grads, expected_grads, "gradient wrt")
    if problem:  # a NaN or an infinity in the gradients alone: as in the values, an error to mend first
        return Checked("error", problem, matching_mistake(case, inputs, cotangent, out, grads, expected, mistakes))
    tol = tolerance(case.level, case.dtype)
    problem = first_wrong("output", out, expected_out, tol)
    if problem is None and case.reference is not None:
        reference = case.reference(**inputs, **case.static)
        problem = first_wrong("output", out, reference, tol, check_dtype=False)
        problem = problem and f"{problem.replace('ours', 'the reference')} (against the independent reference)"
    if problem is None and case.grad_wrt:
        problem = first_wrong("gradient wrt", grads, expected_grads, tolerance("gradient", case.dtype))
    if problem is None:
        return Checked("pass", f"output{' and gradients' if case.grad_wrt else ''} within {tol}")
    return Checked("fail", problem, matching_mistake(case, inputs, cotangent, out, grads, expected, mistakes))


NEAR = 0.05  # a wrong answer is a known mistake when it lies within this share of that mistake's distance from ours


def distance(a, b) -> float:
    """The largest |a - b| over two pytrees' entries; inf when their structures or shapes differ, 0 where both hold
    the same infinity or NaN."""
    fa, fb = flatten(a), flatten(b)
    if fa.keys() != fb.keys():
        return float("inf")
    worst = 0.0
    for path, x in fa.items():
        x, y = np.asarray(x), np.asarray(fb[path])
        if x.shape != y.shape:
            return float("inf")
        x, y = (np.stack([np.real(v), np.imag(v)], -1).astype(np.float64) if np.iscomplexobj(v) else
                v.astype(np.float64) for v in (x, y))
        with np.errstate(invalid="ignore"):
            gap = np.where((x == y) | (np.isnan(x) & np.isnan(y)), 0.0, np.abs(x - y))
        worst = max(worst, float(np.nan_to_num(gap, nan=np.inf).max(initial=0.0)))
    return worst


def nearness(yours, wrong, ours_, tol: Tolerance) -> float | None:
    """How near ``yours`` lies to a mistake's answer ``wrong`` in one part (the output, or the gradients), as a share
    of that mistake's distance from ``ours_``: 0 on it, 1 as far as ours. A mistake that is right in this part tells
    nothing by it (None) when yours is right there too (within ``tol``), and is not yours (inf) when yours is not."""
    apart = distance(wrong, ours_)
    if apart == 0:
        return None if first_wrong("", yours, ours_, tol) is None else float("inf")
    gap = distance(yours, wrong)
    return gap / apart if np.isfinite(apart) else float(gap > 0)


def matching_mistake(case: FunctionCase, inputs: dict, cotangent, out, grads, expected: tuple,
                     mistakes) -> str | None:
    """What the mistake the learner's answer matches says, or None. A mistake's nearness is the larger of the
    output's and, where the case takes them, the gradients' (``nearness``; ``expected``: our output and gradients),
    so that one number, a loss, does not match a mistake whose gradients are elsewhere. The nearest is named when it
    is within ``NEAR`` (a mistake made along with a harmless difference, an eps left out, is still named) and the
    next nearest is more than ``NEAR`` further (an answer as near to two mistakes names neither)."""
    tolerances = (tolerance(case.level, case.dtype), tolerance("gradient", case.dtype))
    scored = []
    for mistake in mistakes:
        try:
            wrong = _run("jax", case, inputs, mistake.wrong, None if grads is None else cotangent)
        except Exception:  # a mistake that cannot run on these inputs is not this one
            continue
        parts = [nearness(y, w, o, tol) for y, w, o, tol in zip((out, grads), wrong, expected, tolerances)
                 if y is not None]
        told = [part for part in parts if part is not None]
        if told:
            scored.append((max(told), mistake.says))
    scored.sort(key=lambda score: score[0])
    if not scored or scored[0][0] > NEAR or (len(scored) > 1 and scored[1][0] - scored[0][0] <= NEAR):
        return None
    return scored[0][1]


def check_file(path: Path, echo: Callable[[str], None] = print) -> dict[str, str]:
    """Every exercise function ``path`` defines, on its cases: one line a case, a verdict a function; the verdicts
    {function: 'done' | 'not yet' | 'error' | 'not written'} are also saved to the folder's progress file."""
    module = load(path)
    topic, backend = module.TOPIC, module.BACKEND
    verdicts = {}
    for exercise in exercises_of(topic):
        yours = getattr(module, exercise.function, None)
        if not callable(yours) or getattr(yours, "__module__", None) != module.__name__:
            continue  # not in this file (or imported from ours, which checks nothing)
        verdicts[exercise.function] = check_function(topic, exercise, backend, yours, echo)
    if not verdicts:
        raise ValueError(f"{path} defines none of {topic}'s exercises: "
                         f"{', '.join(e.function for e in exercises_of(topic))}")
    save_progress(path, verdicts)
    return verdicts


def exercise_files(folder: Path) -> list[Path]:
    """The files ``exercise`` writes that ``folder`` holds, ``<topic>_<backend>.py``, in the course's order."""
    names = [f"{topic}_{backend}.py" for topic in topics_with_exercises() for backend in BACKENDS]
    return [folder / name for name in names if (folder / name).is_file()]


def check_path(path: Path, echo: Callable[[str], None] = print) -> list[str]:
    """``check_file`` of a file, or of each exercise file in a folder -> every function's verdict ('error' for a
    file of the folder that cannot be checked, whose one-line error is echoed in its place). ValueError (one line)
    for a missing path or a folder without exercise files."""
    if not path.exists() and path.suffix != ".py":
        raise ValueError(f"{path}: no such folder, so no exercises yet: `python -m theory_jax exercises` lists them")
    if not path.is_dir():
        return list(check_file(path, echo).values())
    files = exercise_files(path)
    if not files:
        raise ValueError(f"{path} holds no exercise files (TOPIC_jax.py, TOPIC_torch.py); write one with "
                         f"`python -m theory_jax exercise TOPIC --dir {path}`")
    verdicts = []
    for file in files:
        try:
            verdicts += check_file(file, echo).values()
        except ValueError as error:
            echo(f"error: {error}")
            verdicts.append("error")
    return verdicts


def check_function(topic: str, exercise, backend: str, yours: Callable, echo: Callable[[str], None] = print) -> str:
    """``yours`` on each of the exercise's cases, one line a case (and the known mistake it matches), then the
    verdict: 'done', 'not yet' (a wrong answer), 'error' (it raised, or returned a wrong shape or a NaN) or 'not
    written' (the body still raises NotImplementedError)."""
    cases = cases_of(topic, exercise.function)
    echo(f"{topic}.{exercise.function} in {'JAX' if backend == 'jax' else 'PyTorch'}, {len(cases)} "
         f"case{'s' if len(cases) > 1 else ''}:")
    passed, errors = 0, 0
    for case in cases:
        checked = check_case(case, backend, yours, exercise.mistakes)
        if checked.status == "unwritten":
            echo(f"  {exercise.function}: not written yet (its body raises NotImplementedError)")
            return "not written"
        passed, errors = passed + checked.passed, errors + (checked.status == "error")
        echo(f"  {checked.status.upper():<5} {case.id}: {checked.line}")
        if checked.mistake:
            echo(f"        a known mistake: {checked.mistake}")
    verdict = "done" if passed == len(cases) else "error" if errors else "not yet"
    echo(f"  {exercise.function}: {passed} of {len(cases)} cases pass: " + (
        "fix the error above first" if verdict == "error" else verdict))
    return verdict


def check_in_notebook(name: str, yours: Callable, backend: str = "jax") -> str:
    """The check cell of a derivation notebook's exercise: ``check_function`` of ``TOPIC.FUNCTION`` on ``yours``."""
    topic, (exercise,) = find(name)
    return check_function(topic, exercise, backend, yours)


def save_progress(path: Path, verdicts: dict[str, str]) -> None:
    progress_file = path.parent / PROGRESS
    progress = json.loads(progress_file.read_text()) if progress_file.is_file() else {}
    progress[path.name] = {**progress.get(path.name, {}), **verdicts}
    progress_file.write_text(json.dumps(progress, indent=1, sort_keys=True) + "\n")
