"""The exercises' files: which exercises there are, and the learner's file of a topic written with our functions'
signatures and docstrings over stubs, with the imports they need (``write_exercises``), or ours as a solution
(``solution``); ``load`` reads the learner's file back. ``shared_specs/exercise.py`` is the command line."""

from __future__ import annotations

import ast
import dis
import importlib
import importlib.util
import inspect
import sys
import traceback
import types
from collections.abc import Callable
from pathlib import Path

from project import catalogue
from shared_specs.case import FunctionCase
from shared_specs.topics import spec_cases
from theory_jax.exercises import stub_of

BACKENDS = ("jax", "torch")


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
    have = set(defined_functions(text))
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


def defined_functions(text: str) -> list[str]:
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
        raise ValueError(f"{path} does not load: {raised_where(error, path)}") from None
    topic, backend = getattr(module, "TOPIC", None), getattr(module, "BACKEND", None)
    if topic not in topics_with_exercises() or backend not in BACKENDS:
        raise ValueError(f"{path} must say TOPIC (a topic with exercises) and BACKEND (jax or torch), as the files "
                         f"`python -m theory_jax exercise` writes do; it says {topic!r} and {backend!r}")
    return module


def raised_where(error: BaseException, path: Path) -> str:
    """'TypeError: ... (line N of the file)': the error and the last line of ``path`` it passed through."""
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if Path(frame.filename).resolve() == path.resolve()]
    if isinstance(error, SyntaxError) and error.lineno:
        lines.append(error.lineno)
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}" + (f" (line {lines[-1]} of {path})" if lines else "")
