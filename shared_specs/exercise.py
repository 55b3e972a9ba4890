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
import json
import os
import sys
from pathlib import Path

from shared_specs.exercise_check import (  # noqa: F401 (the check's names, re-exported for the notebooks and tests)
    PROGRESS,
    check_case,
    check_file,
    check_function,
    check_in_notebook,
    check_path,
    exercise_files,
    nearness,
    save_progress,
)
from shared_specs.exercise_files import (  # noqa: F401 (the files' names, re-exported)
    BACKENDS,
    cases_of,
    defined_functions,
    exercises_of,
    find,
    load,
    ours,
    solution,
    topics_with_exercises,
    withheld_of,
    write_exercises,
)

FOLDER = Path("exercises")


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
    if not path.is_file() or function not in defined_functions(path.read_text()):
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
