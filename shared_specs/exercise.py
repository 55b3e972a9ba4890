"""Exercises with checked solutions: the learner writes a function, both backends check it, a known mistake is named.

    python -m theory_jax exercises                              # the list, in the course's order, with your progress
    python -m theory_jax exercise gan.minibatch_std             # writes exercises/gan_jax.py (never over your work)
    python -m theory_jax exercise gan --backend torch           # every gan exercise, in PyTorch: exercises/gan_torch.py
    python -m theory_jax exercise gan.minibatch_std --hint 1    # the first hint (they are graded)
    python -m theory_jax exercise gan.minibatch_std --solution  # ours, with the helpers it calls that your file lacks
    python -m theory_jax exercise --check exercises/gan_jax.py  # your functions against the spec cases (or a folder's)
    python -m theory_jax exercise gan --dir ~/my-exercises      # your files in another folder, remembered (exercises/.dir)

The exercises are ``theory_jax/exercises/<topic>.py``'s. The learner's file holds, per exercise, our function's
signature and docstring (the equation, the shapes, the paper) over a body that raises ``NotImplementedError``, and
the imports it needs. ``--check`` runs each written function on its spec cases (``shared_specs/<topic>.py``): the
case's inputs, the learner's function in its backend, compared with our function in the other backend (values and
the gradients the case takes) and with the case's independent reference, at the tolerance policy's float64
tolerances. One line per case: PASS, or the first wrong entry with its error and tolerance; on a failure the topic's
known mistakes run on the same inputs, and the one that the learner's answer matches, in its output and its
gradients, is named in words. Progress is kept in ``.progress.json`` beside the files, which ``exercises`` reads;
``--dir`` is remembered, so that the commands without it work in the folder it last named.
"""

from __future__ import annotations

import argparse
import ast
import dis
import importlib
import importlib.util
import inspect
import json
import os
import sys
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from project import catalogue
from project.compare import Tolerance, flatten, tolerance
from shared_specs.case import FunctionCase, rng_for
from shared_specs.topics import spec_cases
from theory_jax.exercises import stub_of

BACKENDS = ("jax", "torch")
FOLDER = Path("exercises")
PROGRESS = ".progress.json"


# The exercises ------------------------------------------------------------------------------------------------------
def topics_with_exercises() -> list[str]:
    """Every topic with an exercises module, in the course's order."""
    return [t.name for t in catalogue.TOPICS if importlib.util.find_spec(f"theory_jax.exercises.{t.name}")]


def exercises_of(topic: str) -> tuple:
    """The topic's ``EXERCISES`` (``theory_jax.exercises.Exercise``)."""
    return importlib.import_module(f"theory_jax.exercises.{topic}").EXERCISES


def find(name: str) -> tuple[str, tuple]:
    """``TOPIC`` (all its exercises) or ``TOPIC.FUNCTION`` -> (topic, exercises); a one-line ValueError naming the
    choices otherwise."""
    topic, _, function = name.partition(".")
    have = topics_with_exercises()
    if topic not in have:
        raise ValueError(f"no exercises for {topic!r}; topics with exercises: {', '.join(have)}")
    exercises = exercises_of(topic)
    if not function:
        return topic, exercises
    chosen = tuple(e for e in exercises if e.function == function)
    if not chosen:
        raise ValueError(f"{topic} has no exercise {function!r}; its exercises: "
                         f"{', '.join(f'{topic}.{e.function}' for e in exercises)}")
    return topic, chosen


def ours(topic: str, function: str, backend: str) -> Callable:
    """Our function: ``theory_jax.<topic>.<function>`` or ``practice_torch.<topic>.<function>``."""
    package = "theory_jax" if backend == "jax" else "practice_torch"
    return getattr(importlib.import_module(f"{package}.{topic}"), function)


def cases_of(topic: str, function: str) -> list[FunctionCase]:
    """The spec cases that check ``function``."""
    return [c for c in spec_cases(topic) if isinstance(c, FunctionCase) and c.fn == function]


# The learner's file -------------------------------------------------------------------------------------------------
def _names_used(code: types.CodeType) -> set[str]:
    """Every global name the code reads (not an attribute's: ``jax.nn`` reads ``jax``), its nested functions' and
    lambdas' included."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


BASICS = {"jax": ("import jax", "import jax.numpy as jnp"), "torch": ("import torch",)}


def _imported(fn: Callable, withhold: tuple[str, ...] = (), gives: tuple[str, ...] = ()) -> dict:
    """{name: value} of the globals a copy of ``fn`` written in another file is given: those it reads but
    ``withhold`` and the private ones (``_mlp``), and ``gives`` from ``fn``'s module."""
    used = {n for n in _names_used(fn.__code__) if not n.startswith("_")}
    return {name: fn.__globals__[name] for name in sorted((used | set(gives)) - set(withhold))
            if name in fn.__globals__ and name != fn.__name__}


def _import_line(name: str, value, module: str) -> str:
    """The line that binds ``name`` to ``value`` as ``module`` has it: a module by its own name (``import jax.numpy
    as jnp``), anything else from where it is defined when that module holds it under this name, else from
    ``module``."""
    if isinstance(value, types.ModuleType):
        return f"import {value.__name__}" if value.__name__ == name else f"import {value.__name__} as {name}"
    home = getattr(value, "__module__", None)
    return f"from {home if home and getattr(sys.modules.get(home), name, None) is value else module} import {name}"


def imports_for(fn: Callable, withhold: tuple[str, ...] = (), gives: tuple[str, ...] = ()) -> list[str]:
    """The import lines that give a copy of ``fn``, written in another file, the globals it reads but ``withhold``
    and the private ones (``_mlp``), and ``gives`` from ``fn``'s module: modules first, then the other names."""
    lines = [_import_line(name, value, fn.__module__) for name, value in _imported(fn, withhold, gives).items()]
    return [x for x in lines if x.startswith("import ")] + [x for x in lines if x.startswith("from ")]


def file_header(topic: str, backend: str, path: Path) -> str:
    return (f'"""Exercises of {topic}, in {"JAX" if backend == "jax" else "PyTorch"}: write the body of each function '
            f"below, then check it:\n\n    python -m theory_jax exercise --check {path}\n\nHints, one at a time: "
            f"python -m theory_jax exercise {topic}.FUNCTION --hint 1 (then 2, ...).\n\"\"\"\n\n"
            f"from __future__ import annotations\n\n")


def write_exercises(name: str, backend: str, folder: Path) -> tuple[Path, list[str]]:
    """The learner's file for ``name`` (``TOPIC`` or ``TOPIC.FUNCTION``): ``folder/<topic>_<backend>.py``, created,
    or with the stubs it lacks appended (a function already in it is never touched) -> (path, the functions
    added)."""
    topic, exercises = find(name)
    path = folder / f"{topic}_{backend}.py"
    text = path.read_text() if path.is_file() else ""
    have = set(_defined(text))
    new = [e for e in exercises if e.function not in have]
    if not new:
        return path, []
    fns = [ours(topic, e.function, backend) for e in new]
    withheld = withheld_of(topic)
    imports = {*BASICS[backend], *(line for e, fn in zip(new, fns) for line in imports_for(fn, withheld, e.gives))}
    marker = f"TOPIC, BACKEND = \"{topic}\", \"{backend}\"  # what the checker runs your functions as"
    if not text:
        text = file_header(topic, backend, path) + _import_block(imports) + f"\n\n{marker}\n"
    else:  # the imports the new functions need go after the file's last import above the marker
        lines = text.splitlines()
        missing = sorted(line for line in imports if line not in lines)
        top = lines[:lines.index(marker)] if marker in lines else []
        last = max((i for i, line in enumerate(top) if line.startswith(("import ", "from "))), default=len(top) - 1)
        text = "\n".join(lines[:last + 1] + missing + lines[last + 1:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.rstrip("\n") + "\n\n\n" + "\n\n".join(stub_of(fn) for fn in fns))
    except OSError as error:
        raise ValueError(f"cannot write {path}: {error.strerror or error}") from None
    return path, [e.function for e in new]


def _import_block(lines: set[str]) -> str:
    """Plain imports, then from-imports (one line a module), a blank line between."""
    plain = sorted(x for x in lines if x.startswith("import"))
    names: dict[str, list[str]] = {}
    for line in sorted(x for x in lines if x.startswith("from")):
        module, _, name = line.removeprefix("from ").partition(" import ")
        names.setdefault(module, []).append(name)
    froms = [f"from {module} import {', '.join(sorted(n))}" for module, n in sorted(names.items())]
    return "\n".join(plain + ([""] if plain and froms else []) + froms) + ("\n" if lines else "")


def _defined(text: str) -> list[str]:
    """The names of the functions a file defines at its top level (none if it does not parse)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]


def withheld_of(topic: str) -> tuple[str, ...]:
    """The helpers the topic's files never import: one that any of its exercises withholds is withheld from all."""
    return tuple(helper for e in exercises_of(topic) for helper in e.withhold)


def solution(topic: str, exercise, backend: str) -> str:
    """Ours as the learner's file runs it, pasted in place of the stub: the helpers it calls that the file leaves
    out (the withheld ones and the private ones, ``_mlp``), each defined, with the imports they need that the file
    lacks, then our function's source. ValueError when a helper would stand on one of the learner's functions."""
    fn = ours(topic, exercise.function, backend)
    withheld, theirs = withheld_of(topic), {e.function for e in exercises_of(topic)} - {exercise.function}
    basics = {line.split()[-1]: importlib.import_module(line.split()[1]) for line in BASICS[backend]}  # jnp: jax.numpy
    have = {**basics, **_imported(fn, withheld, exercise.gives), fn.__name__: fn}  # what the file binds
    helpers, imports, todo = [], [], [fn]
    while todo:  # what ours reads, then what those helpers read, and so on
        reader = todo.pop(0)
        for name in sorted(_names_used(reader.__code__)):
            if name not in reader.__globals__:
                continue  # a builtin
            value = reader.__globals__[name]
            if name in have and have[name] is value:
                continue  # the file has it already
            if name in have or name in theirs:
                raise ValueError(f"{topic}.{exercise.function}: its helper {reader.__name__} reads {name}, which "
                                 "the learner's file binds to another thing")
            have[name] = value
            if inspect.isfunction(value) and (name.startswith("_") or name in withheld):
                helpers.append(value)
                todo.append(value)
            else:
                imports.append(_import_line(name, value, reader.__module__))
    sources = [inspect.getsource(f).rstrip("\n") for f in [*helpers, fn]]
    if not helpers:
        return sources[0] + "\n"
    names = [f.__name__ for f in helpers]
    said = f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]
    note = (f"# ours calls {said}, which your file leaves out: paste all of this, {'they' if len(names) > 1 else 'it'}"
            " included, in place of your stub")
    return "\n\n\n".join([note + "".join(f"\n{line}" for line in imports), *sources]) + "\n"


def load(path: Path) -> types.ModuleType:
    """The learner's file as a module; ValueError (one line) when it is missing, does not run, or does not say its
    TOPIC and BACKEND."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file; write one with `python -m theory_jax exercise TOPIC`")
    spec = importlib.util.spec_from_file_location(f"exercise_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise ValueError(f"{path} does not load: {_where(error, path)}") from None
    topic, backend = getattr(module, "TOPIC", None), getattr(module, "BACKEND", None)
    if topic not in topics_with_exercises() or backend not in BACKENDS:
        raise ValueError(f"{path} must say TOPIC (a topic with exercises) and BACKEND (jax or torch), as the files "
                         f"`python -m theory_jax exercise` writes do; it says {topic!r} and {backend!r}")
    return module


def _where(error: BaseException, path: Path) -> str:
    """'TypeError: ... (line N of the file)': the error and the last line of ``path`` it passed through."""
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if Path(frame.filename).resolve() == path.resolve()]
    if isinstance(error, SyntaxError) and error.lineno:
        lines.append(error.lineno)
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}" + (f" (line {lines[-1]} of {path})" if lines else "")


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
            return Checked("error", f"yours raised {_where(again, where)}")
        failed_gradient = f"yours could not be differentiated: {_where(error, where)}"
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


# The folder ---------------------------------------------------------------------------------------------------------
MEMORY = ".dir"  # in FOLDER: the folder the last --dir named, which later commands without --dir use


def working_folder(given: Path | None) -> Path:
    """The folder of the learner's files: ``given`` (--dir), else the one the last --dir named, else ``FOLDER``."""
    if given is not None:
        return given
    memory = FOLDER / MEMORY
    return Path(memory.read_text().strip()) if memory.is_file() else FOLDER


def remember(folder: Path) -> None:
    """Keep ``folder`` for the next commands without --dir (forget it when it is ``FOLDER``); best effort: a folder
    that cannot be written only goes unremembered."""
    memory = FOLDER / MEMORY
    try:
        if folder.resolve() == FOLDER.resolve():
            memory.unlink(missing_ok=True)
        else:
            FOLDER.mkdir(parents=True, exist_ok=True)
            memory.write_text(f"{folder.resolve()}\n")
    except OSError:
        pass


# The list -----------------------------------------------------------------------------------------------------------
def status(topic: str, function: str, backend: str, folder: Path, progress: dict) -> str:
    """'-' (no file holds it), 'started' (written, not checked since), or the last check's verdict."""
    path = folder / f"{topic}_{backend}.py"
    if not path.is_file() or function not in _defined(path.read_text()):
        return "-"
    return progress.get(path.name, {}).get(function, "started")


def listing(folder: Path) -> list[str]:
    """The exercises in the course's order: name, what it teaches, the learner's progress in each backend."""
    progress_file = folder / PROGRESS
    progress = json.loads(progress_file.read_text()) if progress_file.is_file() else {}
    rows = [(f"{topic}.{e.function}", e.teaches, *(status(topic, e.function, b, folder, progress) for b in BACKENDS))
            for topic in topics_with_exercises() for e in exercises_of(topic)]
    width = max(len(r[0]) for r in rows)
    done = sum(r[2] == "done" or r[3] == "done" for r in rows)
    return ([f"{len(rows)} exercises ({done} done; your files in {folder}/). `python -m theory_jax exercise NAME` "
             "writes one; --check FILE checks it.", f"  {'exercise':<{width}}  {'jax':<11} {'torch':<11} teaches"]
            + [f"  {name:<{width}}  {jax:<11} {torch:<11} {teaches}" for name, teaches, jax, torch in rows])


# The command line ---------------------------------------------------------------------------------------------------
def main(argv: list[str], command: str = "exercise") -> int:
    """``python -m theory_jax exercise ...`` (or ``exercises``: the list); exit 2 on bad input, 1 when a check
    fails, 141 (128 + SIGPIPE, as ``git log | head`` ends) without a traceback when stdout closes early."""
    try:
        code = _main(argv, command)
        sys.stdout.flush()  # here, not at the exit, where a closed pipe's error would be printed
        return code
    except BrokenPipeError:  # `| head` stopped reading: end quietly, and let the exit's flush go to devnull
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _main(argv: list[str], command: str) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m theory_jax {command}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if command == "exercise":
        parser.add_argument("name", nargs="?", help="TOPIC or TOPIC.FUNCTION (see `python -m theory_jax exercises`)")
        parser.add_argument("--backend", choices=BACKENDS, default="jax", help="the framework you write in")
        parser.add_argument("--hint", type=int, metavar="N", help="print the N-th hint (1 first)")
        parser.add_argument("--solution", action="store_true", help="print our function, after the helpers it calls "
                            "that your file leaves out")
        parser.add_argument("--check", type=Path, nargs="?", const=True, metavar="PATH",
                            help="check the functions written in PATH, a file, or each exercise file of a folder "
                            "(without PATH: your folder, --dir's)")
    parser.add_argument("--dir", type=Path, help=f"the folder of your files (default {FOLDER}/); remembered: later "
                        "commands without --dir use it")
    args = parser.parse_args(argv)
    try:
        if command == "exercise" and args.check:  # 2: the learner's code raised or returned a wrong shape or a NaN
            verdicts = check_path(working_folder(args.dir) if args.check is True else args.check)  # True: no PATH
            return 0 if all(v == "done" for v in verdicts) else 2 if "error" in verdicts else 1
        folder = working_folder(args.dir)
        if command == "exercises":
            if folder.resolve() != FOLDER.resolve() and not folder.is_dir():
                raise ValueError(f"{folder} is not a folder; "
                                 + ("--dir names the folder of your files" if args.dir else
                                    f"the last --dir named it (--dir {FOLDER} goes back to the default)"))
            listed = listing(folder)
            remember(folder)
        elif not args.name:
            parser.error("name an exercise (TOPIC or TOPIC.FUNCTION), or --check FILE")
        else:
            topic, chosen = find(args.name)
            if args.hint is not None or args.solution:
                return _hint_or_solution(topic, chosen, args)
            path, added = write_exercises(args.name, args.backend, folder)
            remember(folder)
    except BrokenPipeError:
        raise  # stdout closed, not a bad input: main ends quietly
    except (ValueError, OSError) as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    if command == "exercises":
        print("\n".join(listed))
        return 0
    if not added:
        print(f"{path} already has {', '.join(e.function for e in chosen)} (your work is kept); check it with "
              f"`python -m theory_jax exercise --check {path}`")
        return 0
    print(f"wrote {', '.join(added)} into {path}; when written: python -m theory_jax exercise --check {path}")
    return 0


def _one_line(error: Exception) -> str:
    """A ValueError's message; an OSError's as 'PATH: why'."""
    if not isinstance(error, OSError):
        return str(error)
    return f"{error.filename}: {error.strerror or error}" if error.filename else str(error)


def _hint_or_solution(topic: str, chosen: tuple, args) -> int:
    if len(chosen) > 1:
        print(f"error: --hint and --solution take one exercise, {topic}.FUNCTION; {topic} has "
              f"{', '.join(e.function for e in chosen)}", file=sys.stderr)
        return 2
    exercise = chosen[0]
    if args.solution:
        print(solution(topic, exercise, args.backend), end="")
        return 0
    if not 1 <= args.hint <= len(exercise.hints):
        print(f"error: {topic}.{exercise.function} has hints 1 to {len(exercise.hints)}, not {args.hint}",
              file=sys.stderr)
        return 2
    print(f"hint {args.hint} of {len(exercise.hints)}: {exercise.hints[args.hint - 1]}")
    return 0
