"""``suite`` (only when named; about 10 minutes on 2 idle cores): the default test suite's time from a fresh clone of
the commit, beside a probe of the machine's speed taken before and after it.

``make test`` has a budget of 6 minutes of tests on an idle 2-core machine, but the machines this project is tested
on are not one machine: 2-core VMs differ by half, and one VM's speed drifts between hours and within one run
(``docs/guide.md`` has the measured figures). A suite time means little without the speed of the machine that
measured it, so each run is taken between two probes of what the suite spends its time on, each in a fresh process on
one thread at the suite's own settings (``tests/conftest.py``, imported):

- ``xla_compile_ms``: CPU milliseconds to make and double an array of a length not seen before, eagerly: two new
  one-operation XLA programs compiled and run (the derivations compile some 5 000 such programs, the spec cases 900
  larger ones);
- ``python_ms``: CPU milliseconds of a fixed pure-Python workload (tracing and lowering JAX programs, SymPy);
- ``torch_ms``: CPU milliseconds of a small convolution's forward and backward pass in float32.

Each is the fastest of five repeats, the row's figure the mean of the probe before and the probe after the suite.
The suite is ``make test``'s pytest command (its arguments the Makefile's ``TEST_ARGS``, read by ``make test-args``)
in a ``git clone`` of this checkout's commit, run without ``make test``'s set-up, which would build the clone a second
``.venv`` (uncommitted changes are not in it;
``--suite-commit``: another commit, to time a change before against after on one machine), run with this interpreter
and its packages; ``seconds`` is pytest's own figure (tests only, set-up excluded), ``cpu_s`` the user and system CPU
time of pytest and its workers; the JSON also keeps the slowest tests pytest names (``slowest``), where the next
second would come from. ``--suite-tests`` runs a part of the suite instead (test files or node ids, comma-separated)."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBES = ("xla_compile_ms", "python_ms", "torch_ms")

PROBE = """
import json, os, sys, time
sys.path.insert(0, "tests")
os.environ["PYTEST_XDIST_WORKER"] = "gw0"  # the settings of a test worker: its XLA flags, one thread
import conftest  # noqa: F401  (sets XLA_FLAGS and one MLIR context before JAX starts)
import jax, jax.numpy as jnp, torch
jax.config.update("jax_enable_x64", True)
torch.set_num_threads(1)

def fastest(work, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return 1e3 * min(times)

shapes = iter(range(2, 10**6))
def compile_new():  # 20 arrays of lengths not seen before, made and doubled: two new programs each
    for _ in range(20):
        (jnp.ones((next(shapes),), jnp.float64) * 2.0).block_until_ready()

def python_work():
    table = {}
    for i in range(200_000):
        table[str(i % 5000)] = table.get(str(i % 5000), 0) + i * i
    sorted(table.items(), key=lambda kv: -kv[1])

x = torch.randn(16, 8, 28, 28, generator=torch.Generator().manual_seed(0), requires_grad=True)
conv = torch.nn.Conv2d(8, 16, 3, padding=1)
def torch_work():
    for _ in range(10):
        conv(x).square().mean().backward()

jnp.ones((1,)).block_until_ready()
print(json.dumps({"xla_compile_ms": fastest(compile_new) / 20, "python_ms": fastest(python_work),
                  "torch_ms": fastest(torch_work)}))
"""

PLURAL = {"warning": "warnings", "error": "errors"}  # pytest says "1 warning", "2 warnings"
SUMMARY = re.compile(r"^=*\s*(?P<counts>(?:\d+ \w+(?:, )?)+) in (?P<seconds>[\d.]+)s\b")
DURATION = re.compile(r"^(?P<seconds>[\d.]+)s (?P<phase>setup|call|teardown)\s+(?P<test>\S.*)$")


def probe(cwd: Path = ROOT) -> dict[str, float]:
    """This machine's speed now: CPU milliseconds of each of ``PROBES``, in a fresh process at the suite's settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PYTEST_XDIST_WORKER")}
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"error: the speed probe failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(output: str) -> dict[str, float]:
    """pytest's last summary line (``2112 passed, 1 skipped, 3 warnings in 547.66s (0:09:07)``) as
    {'passed': 2112, 'skipped': 1, 'warnings': 3, 'seconds': 547.66} (counts pytest leaves out are 0 for passed,
    failed, errors and skipped); SystemExit when the output has no such line (the suite did not run)."""
    for line in reversed(output.strip().splitlines()):
        found = SUMMARY.match(line.strip())
        if found:
            counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
            for part in found["counts"].split(", "):
                number, word = part.split(" ", 1)
                counts[PLURAL.get(word, word)] = int(number)
            return {**counts, "seconds": float(found["seconds"])}
    tail = output.strip().splitlines()[-1:] or ["no output"]
    raise SystemExit(f"error: the test suite printed no summary line; its last line: {tail[0]}")


def slowest(output: str) -> list[dict]:
    """pytest's ``--durations`` lines (``40.81s call     tests/test_x.py::test_y``) as [{'seconds': 40.81,
    'phase': 'call', 'test': 'tests/test_x.py::test_y'}, ...], slowest first, as pytest prints them."""
    found = (DURATION.match(line.strip()) for line in output.splitlines())
    return [{"seconds": float(m["seconds"]), "phase": m["phase"], "test": m["test"]} for m in found if m]


def make_test_args(clone: Path) -> list[str]:
    """``make test``'s pytest arguments in ``clone`` (its Makefile's ``TEST_ARGS``, by ``make test-args``); a commit
    older than that target is a one-line error."""
    proc = subprocess.run(["make", "-s", "--no-print-directory", "test-args"], cwd=clone, capture_output=True,
                          text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SystemExit("error: this commit's Makefile has no `make test-args` (make test's pytest arguments), which "
                         "the suite benchmark runs: time a later commit")
    return proc.stdout.split()


def run_suite(clone: Path, tests: list[str]) -> dict:
    """``make test``'s pytest command in ``clone``: pytest's summary, the CPU seconds it and its workers took, and
    its slowest tests."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PYTEST_XDIST_WORKER", "OMP_NUM_THREADS")}
    args = make_test_args(clone)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", *tests],
                          cwd=clone, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**summary(proc.stdout), "cpu_s": round(cpu, 1), "slowest": slowest(proc.stdout)}


def row(k: int, result: dict, before: dict, after: dict, load: tuple[float, float]) -> dict:
    """One suite run's row: its figures, and each probe's mean over the probes before and after it (both probes in
    ``probes``, which the JSON has and the table leaves out)."""
    speed = {name: round((before[name] + after[name]) / 2, 2) for name in PROBES}
    probes = {when: {name: round(p[name], 2) for name in PROBES} for when, p in (("before", before), ("after", after))}
    return {"run": k, **result, **speed, "load_before": load[0], "load_after": load[1], "probes": probes}


def suite(args) -> list[dict]:
    """``--suite-repeats`` runs of the suite (or ``--suite-tests``) from a fresh clone at ``--suite-commit``, each
    between two probes."""
    tests = [t for t in args.suite_tests.split(",") if t]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, capture_output=True)
        checkout = subprocess.run(["git", "checkout", "-q", args.suite_commit], cwd=clone, capture_output=True,
                                  text=True)
        if checkout.returncode != 0:
            raise SystemExit(f"error: --suite-commit {args.suite_commit!r} is not a commit of this repository: "
                             "give a hash, a tag or a branch `git log` shows")
        cloned = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True,
                                check=True).stdout.strip()
        for k in range(args.suite_repeats):
            load = os.getloadavg()[0]
            before = probe(clone)
            result = run_suite(clone, tests)
            after = probe(clone)
            rows.append({"commit": cloned, **row(k, result, before, after, (round(load, 2), round(os.getloadavg()[0], 2)))})
            args.save(rows)
    return rows
