"""Command line of the spec suite.

    python -m shared_specs list              # every topic: derivation, implementation, spec cases
    python -m shared_specs check vae elbo    # run the cases of some topics (exit 1 on any failure)
    python -m shared_specs check --all       # every topic with cases
    python -m shared_specs check --all --json R.json  # ...and every case's errors as JSON
    python -m shared_specs docs              # regenerate the generated tables of README.md and docs/topics/
    python -m shared_specs docs --derivations --specs  # ...after running every derivation and case (make docs)
    python -m shared_specs docs --check      # exit 1 naming what is stale, writing nothing
    python -m shared_specs site [--check]    # the course as a static site, build/site (make site)
    python -m shared_specs portability       # derivations and specs under settings that change the kernels
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from project import catalogue
from project.compare import tolerance
from project.environment import describe
from shared_specs import portability
from shared_specs.topics import spec_cases, table_rows


def _fmt_tol(level: str, dtype: str) -> str:
    tol = tolerance(level, dtype)
    return f"{tol.rtol:.0e}/{tol.atol:.0e}"


def cmd_list() -> int:
    rows = table_rows()
    width = max(len(r[0]) for r in rows)
    print(f"{'topic':<{width}}  {'group':<17} {'derivation':<10} {'implementation':<14} {'spec cases':>10}")
    for name, group, _, deriv, impl, cases in rows:
        print(f"{name:<{width}}  {group:<17} {deriv:<10} {impl:<14} {cases or '-':>10}")
    done = sum(1 for r in rows if r[3] == "yes" and r[4] == "yes" and r[5])
    print(f"\n{len(rows)} topics; {done} with all three forms; {sum(r[5] for r in rows)} spec cases")
    return 0


def cmd_check(topics: list[str], check_all: bool, json_path: Path | None = None) -> int:
    from shared_specs.runner import run_case

    if check_all:
        topics = [t.name for t in catalogue.TOPICS if catalogue.has_spec(t.name)]
    if not topics:
        print("name a topic to check (python -m shared_specs list shows them) or pass --all", file=sys.stderr)
        return 2
    for name in topics:
        try:
            catalogue.get_topic(name)
        except KeyError as exc:
            print(f"error: {exc.args[0]}", file=sys.stderr)
            return 2
        if not catalogue.has_spec(name):
            print(f"error: topic {name!r} has no spec cases yet (shared_specs/{name}.py)", file=sys.stderr)
            return 2
    failures, results = [], {}
    header = (f"{'case':<48} {'kind':<8} {'dtype':<7} {'output err':>10} {'tol r/a':>11} "
              f"{'grad err':>9} {'tol r/a':>11} {'ref err':>9} {'err/tol':>8} {'time':>6}  result")
    for name in topics:
        cases = spec_cases(name)
        print(f"\n{name}: {len(cases)} cases\n{header}")
        results[name] = []
        for case in cases:
            r = run_case(case)
            results[name].append(r.summary())
            out = f"{r.output.max_abs_err:10.2e}" if r.output else f"{'-':>10}"
            grad = f"{r.gradient.max_abs_err:9.2e}" if r.gradient else f"{'-':>9}"
            ref = f"{r.reference.max_abs_err:9.2e}" if r.reference else f"{'-':>9}"
            gtol = _fmt_tol("gradient", r.dtype) if r.gradient else "-"
            print(f"{r.case_id:<48} {r.kind:<8} {r.dtype:<7} {out} {_fmt_tol(r.level, r.dtype):>11} {grad} "
                  f"{gtol:>11} {ref} {r.ratio:8.1e} {r.seconds:5.1f}s  {'PASS' if r.passed else 'FAIL'}", flush=True)
            if not r.passed:
                failures.append(r)
                print("    " + r.message().replace("\n", "\n    "))
    total = sum(len(v) for v in results.values())
    print(f"\n{total - len(failures)} passed, {len(failures)} failed")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"environment": describe(), "topics": results}, indent=1) + "\n")
        print(f"wrote {json_path}")
    return 1 if failures else 0


def cmd_docs(check: bool, derivations: bool, specs: bool, topics: list[str], math: list[str] = ()) -> int:
    from shared_specs import docs

    if check:
        problems = docs.stale()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("the docs are stale: run `make docs` (or `python -m shared_specs docs` for the tables alone)",
                  file=sys.stderr)
            return 1
        print("README.md and docs/ are current")
        return 0
    if math:
        from shared_specs import site

        files = [Path(f).resolve() for f in math]
        try:
            errors = site.math_errors(files, catalogue.ROOT)
        except (RuntimeError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print("\n".join(errors) or f"every formula of {len(files)} pages typesets",
              file=sys.stderr if errors else sys.stdout)
        return 1 if errors else 0
    try:
        ok = docs.build(derivations=derivations, specs=specs, topics=topics)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if ok else 1


def cmd_site(notebooks: Path, check: bool) -> int:
    """Build the course's site (build/site); with ``check``, open its pages in headless Chromium too."""
    from shared_specs import site, site_check

    try:
        index = site.build(catalogue.ROOT, notebooks)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not site_check.browser_available() and check:
        print(f"error: --check needs {site_check.CHROMIUM} and {site_check.CHROMEDRIVER}: `sudo apt-get install "
              "chromium chromium-driver`", file=sys.stderr)
        return 2
    if check:
        root = index.parent
        shot = catalogue.ROOT / "build" / "site-check" / "elbo.png"
        problems = site_check.link_problems(root)
        browser, _ = site_check.browser_problems(root, site_check.pages_to_open(root), ("topics/elbo.html", shot))
        problems += browser
        print("\n".join(problems) or f"every page opens with its formulas typeset, its figures and links resolving; "
              f"a lesson's screenshot: {shot.relative_to(catalogue.ROOT)}", file=sys.stderr if problems else sys.stdout)
        return 1 if problems else 0
    print(f"open {index.relative_to(catalogue.ROOT)} in a browser (it needs no server and no network)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared_specs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the catalogue: topics and which forms exist")
    check = sub.add_parser("check", help="run spec cases in both backends")
    check.add_argument("topics", nargs="*")
    check.add_argument("--all", action="store_true", help="every topic that has cases")
    check.add_argument("--json", metavar="FILE", type=Path, help="write every case's errors and verdict as JSON")
    portable = sub.add_parser("portability", help="run the derivations and specs under kernel-changing settings",
                              description=portability.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="settings:\n" + "\n".join(f"  {s.name:<15} {s.what}" for s in portability.SETTINGS))
    portable.add_argument("--settings", nargs="+", default=[], metavar="NAME", help="some settings (default: all)")
    portable.add_argument("--topics", nargs="+", default=[], metavar="TOPIC", help="some topics (default: all)")
    portable.add_argument("--out", type=Path, default=catalogue.ROOT / "build" / "portability",
                          help="folder of the reports and logs (default: build/portability)")
    portable.add_argument("--jobs", type=int, default=max(1, min(2, len(os.sched_getaffinity(0)))),
                          help="runs at a time (default: 2, or 1 on one core)")
    docs = sub.add_parser("docs", help="regenerate README.md's and docs/'s generated tables (make docs)")
    docs.add_argument("--check", action="store_true", help="write nothing; exit 1 naming what is stale")
    docs.add_argument("--derivations", action="store_true", help="first run every derivation into docs/derivations/")
    docs.add_argument("--specs", action="store_true", help="first run every spec case into docs/specs.json")
    docs.add_argument("--topics", nargs="+", default=[], metavar="TOPIC",
                      help="re-run the derivations/specs of these topics only, keeping the others', and write only "
                           "their pages (default: all)")
    docs.add_argument("--math", nargs="+", default=[], metavar="PAGE",
                      help="write nothing; typeset every formula of these markdown pages with KaTeX, naming each "
                           "that fails")
    site = sub.add_parser("site", help="build the course as a static site, build/site (make site)")
    site.add_argument("--notebooks", type=Path, default=catalogue.ROOT / "build" / "notebooks",
                      help="the executed notebooks to include (default: build/notebooks, written by make notebooks)")
    site.add_argument("--check", action="store_true",
                      help="then open every page in headless Chromium: formulas, figures and links")
    args = parser.parse_args(argv)
    if args.command == "site":
        return cmd_site(args.notebooks, args.check)
    if args.command == "list":
        return cmd_list()
    if args.command == "check":
        return cmd_check(args.topics, args.all, args.json)
    if args.command == "portability":
        return portability.main(args.settings, args.topics, args.out, args.jobs)
    return cmd_docs(args.check, args.derivations, args.specs, args.topics, args.math)
