"""``shared_cpu``: how fast a CPU training run goes when other processes share the cores, by thread setting.

The VAE's quick preset on fashion_mnist, ``--cpu-steps`` steps, as ``python -m practice_torch train`` in a fresh
process, beside 0, 1 and 2 (``--cpu-loads``) single-threaded busy processes (``python -c 'while True: pass'``),
under four settings:

- ``all threads``: ``train.threads=<cores>``, torch's default team, what the engine ran before it sized its team;
- ``one thread``: ``train.threads=1``;
- ``passive waiting``: all threads with ``OMP_WAIT_POLICY=PASSIVE`` (OpenMP's threads sleep instead of spinning);
- ``engine``: the default, the team sized to the cores the others leave free (``practice_torch/engine/threads.py``).

A run's speed is the median examples/s of its log windows after the first (which holds the start-up); a row's is the
median of ``--cpu-repeats`` runs, the settings taking turns (one run of a setting varies by 10% on a shared VM),
with the slowest and fastest run beside it; ``threads`` is the team at the last log step of the last run,
``resizes`` how often the engine changed its team in all the row's runs.
``vs_best_workaround`` is the row's time over the faster of ``one thread`` and ``passive waiting`` under the same
load (1.2 at most is the target for ``engine``), ``vs_idle_all_threads`` its speed over ``all threads`` on the idle
machine (0.95 at least is the target for ``engine`` idle).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUSY = [sys.executable, "-c", "while True: pass"]
SETTINGS = ("all threads", "one thread", "passive waiting", "engine")


def train_command(setting: str, steps: int, cores: int, out: Path) -> tuple[list[str], dict[str, str]]:
    """The ``train`` command line and environment of one setting."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    sets = [f"train.steps={steps}", "train.log_every=25", f"train.checkpoint_every={steps}", "train.samples=16"]
    if setting in ("all threads", "passive waiting"):
        sets.append(f"train.threads={cores}")
    if setting == "one thread":
        sets.append("train.threads=1")
    if setting == "passive waiting":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    command = [sys.executable, "-m", "practice_torch", "train", "vae", "--dataset", "fashion_mnist", "--preset",
               "quick", "--device", "cpu", "--out", str(out), *(a for s in sets for a in ("--set", s))]
    return command, env


def timed_run(setting: str, steps: int, cores: int) -> dict:
    """One training run's median examples/s after its first log window, and its last thread count."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command, env = train_command(setting, steps, cores, out)
        started = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"{setting}: train failed: {proc.stderr.strip().splitlines()[-1]}")
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    return {"examples_per_s": statistics.median(r["examples_per_s"] for r in records[1:]),
            "threads": records[-1].get("threads", 0), "resizes": proc.stderr.count(": threads "),
            "wall_s": time.perf_counter() - started}


def shared_cpu(args) -> list[dict]:
    cores = len(os.sched_getaffinity(0))
    rows = []
    for load in (int(n) for n in args.cpu_loads.split(",")):
        busy = [subprocess.Popen(BUSY) for _ in range(load)]
        runs: dict[str, list[dict]] = {setting: [] for setting in SETTINGS}
        try:
            for _ in range(args.cpu_repeats):
                for setting in SETTINGS:
                    runs[setting].append(timed_run(setting, args.cpu_steps, cores))
                    print(f"  {load} busy, {setting}: {runs[setting][-1]['examples_per_s']:.0f} examples/s", flush=True)
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
        for setting, timed in runs.items():
            speeds = [r["examples_per_s"] for r in timed]
            rows.append({"busy_processes": load, "setting": setting, "examples_per_s": statistics.median(speeds),
                         "slowest": min(speeds), "fastest": max(speeds), "threads": timed[-1]["threads"],
                         "resizes": sum(r["resizes"] for r in timed), "wall_s": sum(r["wall_s"] for r in timed)})
        args.save(rows)
    idle = {r["setting"]: r["examples_per_s"] for r in rows if r["busy_processes"] == 0}
    for row in rows:
        same = {r["setting"]: r["examples_per_s"] for r in rows if r["busy_processes"] == row["busy_processes"]}
        best = max(same["one thread"], same["passive waiting"])
        row["vs_best_workaround"] = best / row["examples_per_s"]
        row["vs_idle_all_threads"] = row["examples_per_s"] / idle["all threads"] if idle else float("nan")
    return rows
