"""The bank of ``python -m benchmarks reproduce`` (``benchmarks/reproduce.py``): a sweep that outlives its checkout
keeps what it finished. Each run, as it ends, is banked in ``reproduce_pending.json`` beside the record (``PENDING``)
with the conditions it trained under; committed, the file lets the same command in a later checkout, whose run
folders are empty, train only the runs it does not bank. Publishing a row takes its runs out of the bank
(``unbank``), and the record names the earlier sweeps they came from (``row_meta``).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from benchmarks.reproduce_rows import Arm, Row

PENDING = "reproduce_pending.json"  # beside a record: its rows' finished runs, banked until their row is published
BANK_LOCK = threading.Lock()  # a sweep's jobs bank their runs one at a time

Key = tuple[str, str, int]  # (row, arm, seed): one run


def recorded_runs(path: Path) -> list[dict]:
    """The runs a record or a bank at ``path`` holds ([] where there is none)."""
    return json.loads(path.read_text())["runs"] if path.is_file() else []


def pending_file(record: Path) -> Path:
    """The file beside ``record`` that banks its rows' finished runs (``PENDING``)."""
    return record.with_name(PENDING)


def arm_of(arm: Arm) -> dict:
    """What a banked run must have been trained as to count as ``arm``'s: its model, data set and settings."""
    return {"model": arm.model, "dataset": arm.dataset, "sets": list(arm.sets)}


def read_bank(pending: Path) -> dict[Key, dict]:
    """Every run banked in ``pending``, by (row, arm, seed), read once for a sweep's look-ups (``banked``)."""
    return {(r["row"], r["arm"], r["seed"]): r for r in recorded_runs(pending)}


def banked(runs: dict[Key, dict], row: Row, arm: Arm, seed: int) -> dict | None:
    """The run of (``row``, ``arm``, ``seed``) among the banked ``runs`` (``read_bank``), or None: none, or one
    trained as another arm (``arm_of``), or judged by another target or read for another figure than the row's now."""
    r = runs.get((row.id, arm.name, seed))
    if r is None:
        return None
    same = r["arm_of"] == arm_of(arm) and r["target"] == row.target and row.metric in r["metrics"]
    return r if same else None


def bank(pending: Path, row: Row, arm: Arm, seed: int, record: dict, trained: dict,
         curve: list[tuple[float, float]] | None = None) -> None:
    """Bank a finished run in ``pending``: its ``record`` (``reproduce.record_of``), what it was trained as
    (``arm_of``), the row's target it was judged by, the conditions it ``trained`` under (commit, machine, date, jobs,
    load before and after) and, for a row with a ``curve``, its logged curve; the file is read again and written whole
    (atomically) under a lock, an earlier entry of the run replaced."""
    from practice_torch.engine.checkpoint import atomic_write

    entry = {**record, "arm_of": arm_of(arm), "target": row.target, "trained": trained,
             **({"curve": curve} if curve is not None else {})}
    with BANK_LOCK:
        runs = [r for r in recorded_runs(pending) if (r["row"], r["arm"], r["seed"]) != (row.id, arm.name, seed)]
        pending.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(pending, lambda tmp: tmp.write_text(json.dumps({"runs": runs + [entry]}, indent=1) + "\n"))


def found_conditions(out: Path, sweep: dict) -> dict:
    """The conditions a run found finished in the folder (by a sweep that did not bank it) trained under, as the
    run recorded them: the commit, machine and load (at its start and end) of its ``environment.json`` and the day
    it was scored; how many runs it had beside it is not recorded (``jobs`` None). A run that recorded none: the
    ``sweep``'s, its jobs unknown."""
    from practice_torch.results import machine

    if not (out / "environment.json").is_file():
        return {**sweep, "jobs": None, "load_after": sweep["load_before"]}
    env = json.loads((out / "environment.json").read_text())
    day = time.strftime("%Y-%m-%d", time.localtime((out / "eval_test.json").stat().st_mtime))
    return {"commit": env.get("commit"), "machine": machine(env), "date": day, "jobs": None,
            "load_before": env["load_at_start"][0], "load_after": env["load_at_end"][0]}


def unbank(pending: Path, rows: list[str]) -> None:
    """Drop ``rows``' runs from ``pending`` (they are in the record now); the file goes once it banks none."""
    from practice_torch.engine.checkpoint import atomic_write

    with BANK_LOCK:
        runs = [r for r in recorded_runs(pending) if r["row"] not in rows]
        if runs:
            atomic_write(pending, lambda tmp: tmp.write_text(json.dumps({"runs": runs}, indent=1) + "\n"))
        else:
            pending.unlink(missing_ok=True)


def row_meta(now: dict, trained_now: int, earlier: list[dict]) -> dict:
    """A row's conditions in the record: those of the sweep that trained ``trained_now`` of its runs, with
    ``earlier`` naming each earlier sweep that trained the others (banked, or found finished in the folder), from
    the conditions each such run trained under (its commit, machine, date, jobs, load), with how many runs; where
    this sweep trained none of them, the latest earlier sweep's stand first."""
    sweeps: dict[tuple, dict] = {}
    for t in earlier:
        key = (t["commit"], t["machine"], t["date"], t["jobs"])
        seen = sweeps.setdefault(key, {**t, "runs": 0})
        seen["runs"] += 1
        seen["load_before"], seen["load_after"] = (min(seen["load_before"], t["load_before"]),
                                                   max(seen["load_after"], t["load_after"]))
    by_date = sorted(sweeps.values(), key=lambda t: t["date"])
    if not trained_now and by_date:
        now, by_date = {k: v for k, v in by_date[-1].items() if k != "runs"}, by_date[:-1]
    return {**now, **({"earlier": by_date} if by_date else {})}
