"""``python -m practice_jax check [MODEL ...] [--all] [--record]``: the twin-training cases (``twin_cases.py``), each
a short run in both trainers compared step by step (``twin_training.run_case``); a line per case with its error
against its tolerance. ``--record`` writes their summaries into docs/twin_training.json (the other models' kept),
whose rows the topic pages show beside the spec cases. Exit 1 when a case fails, 2 for a model without cases."""

from __future__ import annotations

import argparse
import json
import sys

from practice_jax.twin_cases import CASES
from project.catalogue import ROOT
from project.compare import tolerance

RECORD = ROOT / "docs" / "twin_training.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m practice_jax check", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", metavar="MODEL", help=f"models with cases: {', '.join(CASES)}")
    parser.add_argument("--all", action="store_true", help="every model's cases")
    parser.add_argument("--record", action="store_true", help="write the results into docs/twin_training.json")
    return parser


def record(results: dict[str, list[dict]], environment: dict, path=RECORD) -> None:
    """``results`` (model -> case summaries) into ``path``, each model with the ``environment`` it was measured in;
    the models not run keep theirs; in the catalogue's order (``CASES``)."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    topics = {**old.get("topics", {}), **results}
    environments = {**old.get("environments", {}), **dict.fromkeys(results, environment)}
    order = [m for m in CASES if m in topics]
    path.write_text(json.dumps({"environments": {m: environments[m] for m in order},
                                "topics": {m: topics[m] for m in order}}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    models = list(CASES) if args.all else args.models
    unknown = [m for m in models if m not in CASES]
    if not models or unknown:
        what = f"no twin-training cases for {unknown[0]}" if unknown else "no model named"
        print(f"error: {what}: name some of {', '.join(CASES)}, or pass --all", file=sys.stderr)
        return 2
    from practice_jax.twin_training import run_case
    from project.environment import describe

    results, failed = {}, 0
    print(f"{'case':<44} {'dtype':<7} {'output err':>10} {'tol r/a':>11} {'err/tol':>8} {'time':>6}  result")
    for model in models:
        results[model] = []
        for case in CASES[model]:
            r = run_case(case)
            tol = tolerance(r.level, r.dtype)
            out = f"{r.output.max_abs_err:10.2e}" if r.output else f"{'-':>10}"
            print(f"{r.case_id:<44} {r.dtype:<7} {out} {f'{tol.rtol:.0e}/{tol.atol:.0e}':>11} {r.ratio:8.1e} "
                  f"{r.seconds:5.1f}s  {'PASS' if r.passed else 'FAIL'}", flush=True)
            if not r.passed:
                failed += 1
                print("    " + r.message().replace("\n", "\n    "))
            summary = r.summary()
            summary.pop("seconds")  # a time is not a property of the case
            results[model].append(summary)
    total = sum(len(v) for v in results.values())
    print(f"\n{total - failed} passed, {failed} failed")
    if args.record:
        record(results, describe())
        print(f"wrote {RECORD.relative_to(ROOT)}")
    return 1 if failed else 0
