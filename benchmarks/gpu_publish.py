"""``python -m benchmarks.gpu_publish FILE... --commit C [--variant SUFFIX --what TEXT]``: a lent GPU's
``gpu_steps`` rows into ``docs/gpu_steps.json``, the record ``docs/gpu.md``'s table and quotes are generated from.

A GPU run (``benchmarks/gpu_run.sh``) brings back one ``gpu_steps.json`` per step (``OUT/steps/``, ``OUT/graphs/``,
...). Each row names the commit the GPU machine's copy began at, with ``+changes`` where the copy held uncommitted
work: ``--commit`` names the commit that was run, which the rows then carry (a row with ``+changes`` and no
``--commit`` is refused, as is a row timed on a CPU).

- Without ``--variant``, a row replaces the record's row of its model; the row it replaces, where another commit
  timed it, is kept under ``variants`` as ``<model>_<its commit>`` (what ``<!--q:gpu:NAME/FIELD-->`` quotes), so
  a page's before-and-after comparison keeps its "before".
- With ``--variant SUFFIX``, each row is a setting timed beside its preset (CUDA graphs, another batch): kept under
  ``variants`` as ``<model>_<SUFFIX>``, with ``--what`` saying what it is; a variant of that name is replaced.
- A row the run skipped or failed (its ``note`` says why) never replaces a timed row, nor becomes a variant: the
  command says which it left out.

The record's ``meta`` becomes the last file's of preset rows (the machine and the load as that run started). Nothing
is written when an input is bad: each problem is one line, exit status 2. Then ``python -m shared_specs docs``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from project.catalogue import ROOT

RECORD = ROOT / "docs" / "gpu_steps.json"


class PublishError(ValueError):
    """Bad input: one line for the user."""


def read_run(path: Path) -> dict:
    """A ``gpu_steps`` results file: {"meta": {...}, "rows": [...]}."""
    try:
        run = json.loads(path.read_text())
        rows = run["rows"]
    except FileNotFoundError:
        raise PublishError(f"{path}: no such file (a GPU run's OUT/<step>/gpu_steps.json)") from None
    except (ValueError, KeyError, TypeError):
        raise PublishError(f"{path} is not a gpu_steps results file (no 'rows')") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "model" in r for r in rows):
        raise PublishError(f"{path}: its rows are not gpu_steps rows (each a model's)")
    return run


def committed(row: dict, commit: str | None, source: Path) -> dict:
    """The row as the record keeps it: timed on a GPU, at ``commit`` where given (else at the commit it names)."""
    if row.get("device") != "cuda":
        raise PublishError(f"{source}: {row['model']} was timed on {row.get('device')}, not a GPU; the record holds "
                           "GPU rows only")
    named = str(row.get("commit", ""))
    if commit is None and (not named or named.endswith("+changes")):
        raise PublishError(f"{source}: {row['model']} names commit '{named}', the copy the GPU machine began from; "
                           "pass --commit with the commit that was run")
    return {**row, "commit": commit or named}


def published(record: dict, runs: list[tuple[Path, dict]], commit: str | None, variant: str | None,
              what: str | None) -> tuple[dict, list[str]]:
    """(``record`` with the runs' rows in it, see the module's docstring; a line per row left out): a new dict,
    ``record`` untouched. A row the run skipped or failed (no figure, its ``note`` says why) does not replace a
    timed one, and is no variant."""
    rows = {r["model"]: r for r in record.get("rows", [])}  # in the record's order; a new model goes last
    variants = {v["name"]: v for v in record.get("variants", [])}
    meta, left_out = dict(record.get("meta", {})), []
    for source, run in runs:
        for row in (committed(r, commit, source) for r in run["rows"]):
            model, old = row["model"], rows.get(row["model"])
            if row.get("examples_per_s") is None and (variant or (old or {}).get("examples_per_s") is not None):
                left_out.append(f"{model}: not timed in {source} ({row.get('note') or 'no figure'}); "
                                + ("no variant kept" if variant else f"its row of {old['commit']} kept"))
                continue
            if variant:
                variants[f"{model}_{variant}"] = {**row, "name": f"{model}_{variant}", "what": what}
                continue
            if old is not None and old.get("commit") != row["commit"]:
                name = f"{model}_{old.get('commit')}"
                variants.setdefault(name, {**old, "name": name,
                                           "what": f"the row {row['commit']} replaced, timed at {old.get('commit')}"})
            rows[model] = row
        if not variant:  # the table's footnote: the machine and load of the run its rows came from last
            meta = {**run.get("meta", {}), "commit": commit or run.get("meta", {}).get("commit")}
    return {**record, "meta": meta, "rows": list(rows.values()), "variants": list(variants.values())}, left_out


def main(argv: list[str] | None = None, record_path: Path = RECORD) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_publish",
                                     description="a lent GPU's gpu_steps rows into docs/gpu_steps.json (docs/gpu.md)")
    parser.add_argument("files", nargs="+", type=Path, help="gpu_steps.json files a GPU run brought back")
    parser.add_argument("--commit", help="the commit the GPU machine ran (its copy names '<start>+changes')")
    parser.add_argument("--variant", help="keep the rows as variants <model>_<VARIANT> (a setting beside a preset)")
    parser.add_argument("--what", help="what the variant is (required with --variant)")
    args = parser.parse_args(argv)
    try:
        if args.variant and not args.what:
            raise PublishError("--variant needs --what: a few words on the setting, as the page quotes it")
        if args.what and not args.variant:
            raise PublishError("--what describes a --variant; give both, or neither for the preset's rows")
        runs = [(path, read_run(path)) for path in args.files]
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        new, left_out = published(record, runs, args.commit, args.variant, args.what)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from practice_torch.engine.checkpoint import atomic_write

    atomic_write(record_path, lambda tmp: tmp.write_text(json.dumps(new, indent=2) + "\n"))
    for line in left_out:
        print(f"  {line}")
    rows = sum(len(run["rows"]) for _, run in runs) - len(left_out)
    print(f"{rows} rows into {record_path} ({'variants ' + args.variant if args.variant else 'the preset rows'}); "
          "now `python -m shared_specs docs`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
