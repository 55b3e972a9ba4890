"""Command line of the derivations.

    python -m theory_jax                       # list topics and which have a derivation
    python -m theory_jax elbo                  # run one derivation, claim by claim (exit 1 on a failed claim)
    python -m theory_jax elbo --markdown E.md  # ...and write it as a document (its figures beside it, in figures/)
    python -m theory_jax elbo --notebook E.ipynb  # ...or as a Jupyter notebook, executed (make notebooks: every topic)
    python -m theory_jax --all                 # every derivation, with a summary
    python -m theory_jax --all --json R.json   # ...and every claim's measured discrepancy as JSON
    python -m theory_jax check RUN_DIR         # a trained run's held-out metric recomputed by its JAX twin
    python -m theory_jax exercises             # exercises: write a function, both backends check it
    python -m theory_jax exercise gan.minibatch_std   # ...writes exercises/gan_jax.py; --check FILE, --hint N
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from project import catalogue
from project.environment import describe
from theory_jax.derivation import MARK, Derivation, to_markdown, write_figures


def available() -> list[str]:
    return [t.name for t in catalogue.TOPICS if catalogue.has_derivation(t.name)]


def run_topic(name: str, echo: bool = True) -> tuple[Derivation | None, float]:
    """Run one topic's derivation (``theory_jax/derivations/<topic>.py``); a crash is reported and counts as a failure
    (None)."""
    module = importlib.import_module(f"theory_jax.derivations.{name}")
    if echo:
        print(f"\n== {name}: {module.TITLE} ==\n   lectures: {module.LECTURES}", flush=True)
    start = time.perf_counter()
    try:
        d = module.derive((lambda line: print(line, flush=True)) if echo else None)
    except Exception:
        print(f"the {name} derivation crashed before finishing:\n{traceback.format_exc(limit=4)}", file=sys.stderr)
        return None, time.perf_counter() - start
    seconds = time.perf_counter() - start
    if echo:
        n_ok = sum(c.passed for c in d.claims)
        print(f"   {name}: {n_ok}/{len(d.claims)} claims pass in {seconds:.1f} s  {MARK[d.passed]}")
    return d, seconds


def report(results: list[tuple[str, Derivation | None, float]]) -> dict:
    """The JSON report: the environment, and per topic its verdict, time and every claim (a crash: no claims)."""
    return {"environment": describe(),
            "topics": {name: {"passed": d is not None and d.passed, "crashed": d is None, "seconds": round(seconds, 2),
                              "claims": [] if d is None else [dataclasses.asdict(c) for c in d.claims]}
                       for name, d, seconds in results}}


def write_notebooks(topics: list[str], target: Path) -> int:
    """Each topic's derivation as an executed notebook: ``target`` itself for one topic named ``*.ipynb``, else
    ``target/<topic>.ipynb``. 0 when every claim of every notebook passed, 1 otherwise (the notebooks are written)."""
    from theory_jax import notebook

    failed = []
    for name in topics:
        path = target if target.suffix == ".ipynb" else target / f"{name}.ipynb"
        start = time.perf_counter()
        print(f"{name}: deriving, then executing the notebook ...", flush=True)
        try:
            d, errors = notebook.write(name, path)
        except notebook.NotFlattenable as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except Exception:
            print(f"the {name} derivation crashed before its notebook was written:\n{traceback.format_exc(limit=4)}",
                  file=sys.stderr)
            failed.append(name)
            continue
        ok = d.passed and not errors
        for error in errors:
            print(f"   a cell raised {error}", file=sys.stderr)
        print(f"wrote {path} in {time.perf_counter() - start:.0f} s  {MARK[ok]}", flush=True)
        failed += [] if ok else [name]
    if failed:
        print(f"notebooks with a failed claim or a crashed cell: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "check":  # not a topic: a trained run checked in the other backend
        from shared_specs import twin_check as check

        return check.main(argv[1:])
    if argv and argv[0] in ("exercise", "exercises"):  # not a topic: a function for the learner to write
        from shared_specs import exercise

        return exercise.main(argv[1:], argv[0])
    parser = argparse.ArgumentParser(prog="python -m theory_jax", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topics", nargs="*", help="topic names (see the list printed with no arguments)")
    parser.add_argument("--all", action="store_true", help="run every derivation")
    parser.add_argument("--markdown", metavar="FILE", type=Path,
                        help="write the derivation(s) as a Markdown document")
    parser.add_argument("--notebook", metavar="FILE", type=Path,
                        help="write the derivation as a Jupyter notebook, executed (with --all: FILE is a directory)")
    parser.add_argument("--json", metavar="FILE", type=Path,
                        help="write every claim's discrepancy, threshold and verdict, with the environment, as JSON")
    args = parser.parse_args(argv)

    topics = available() if args.all else args.topics
    if not topics:
        have = set(available())
        print("derivations (python -m theory_jax <topic>):")
        for t in catalogue.TOPICS:
            print(f"  {t.name:<20} {'yes' if t.name in have else '-':<4} {t.lectures}")
        return 0
    for name in topics:
        if name not in catalogue.BY_NAME:
            print(f"error: unknown topic {name!r}; run `python -m theory_jax` for the list", file=sys.stderr)
            return 2
        if not catalogue.has_derivation(name):
            print(f"error: topic {name!r} has no derivation yet (theory_jax/derivations/{name}.py)", file=sys.stderr)
            return 2

    if args.notebook:
        if len(topics) > 1 and args.notebook.suffix == ".ipynb":
            print("error: --notebook with several topics takes a directory, not a .ipynb file", file=sys.stderr)
            return 2
        return write_notebooks(topics, args.notebook)
    results = [(name, *run_topic(name)) for name in topics]
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(to_markdown(d) for _, d, _ in results if d is not None))
        for _, d, _ in results:
            if d is not None:
                write_figures(d, args.markdown.parent)
        print(f"\nwrote {args.markdown}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report(results), indent=1) + "\n")
        print(f"wrote {args.json}")
    if len(results) > 1:
        print("\nsummary")
        for name, d, seconds in results:
            status = "crashed" if d is None else f"{sum(c.passed for c in d.claims)}/{len(d.claims)} claims"
            print(f"  {name:<20} {status:<14} {seconds:6.1f} s  {MARK[d is not None and d.passed]}")
    return 0 if all(d is not None and d.passed for _, d, _ in results) else 1
