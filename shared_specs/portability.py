"""Do the derivations and the specs hold whatever kernels XLA and torch choose? (``make portability``)

A claim held to the float64 tolerance must not depend on the kernels one CPU picks (vector width, thread count,
XLA's runtime); a float32 case must stay inside the float32 policy on every one of them. Each ``Setting`` is a set
of environment variables read once at start-up (``XLA_FLAGS`` by XLA; ``ATEN_CPU_CAPABILITY`` and
``OMP_NUM_THREADS`` by torch; ``ONEDNN_MAX_CPU_ISA`` by oneDNN; ``MKL_ENABLE_INSTRUCTIONS`` and ``MKL_CBWR`` by
MKL), so each runs ``python -m theory_jax --json`` and ``python -m shared_specs check --json`` in fresh
processes. The reports are then compared claim by claim and case by case: every failure, and the claims and cases
closest to their tolerance in any setting (err/tol above ``FRAGILE``, less than a tenth of the allowance left).

A setting can only narrow what the CPU offers: an AVX2 machine cannot try AVX-512 kernels; the default setting
on a machine with wider vector units covers those. XLA's runtime cannot be switched: jaxlib 0.10 accepts
``--xla_cpu_use_thunk_runtime`` but ignores it ("no longer supported"), the thunk runtime being the only one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from project.catalogue import ROOT
from project.environment import KERNEL_VARIABLES

FRAGILE = 0.1  # err/tol above this in any setting is reported: a tenth of the tolerance or less is left


@dataclass(frozen=True)
class Setting:
    name: str
    what: str
    env: Mapping[str, str]


SETTINGS: tuple[Setting, ...] = (
    Setting("default", "as installed: every core, the widest vector units XLA and torch find", {}),
    Setting("one-thread", "one thread in XLA's Eigen kernels, torch (OpenMP) and MKL: no reduction split across "
            "threads", {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}),
    Setting("sse4", "128-bit vectors without FMA: XLA's ISA capped at SSE4.2 with fast math off, torch's generic "
            "kernels, oneDNN at SSE4.1, MKL at SSE4.2 on its reproducible path",
            {"XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2 --xla_cpu_prefer_vector_width=128 --xla_cpu_enable_fast_math=false",
             "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
             "MKL_CBWR": "COMPATIBLE"}),
)
BY_NAME = {s.name: s for s in SETTINGS}
JOBS = ("derivations", "specs")


def environment_for(setting: Setting, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment of ``setting``: ``base`` (this process's) without any kernel variable of its own,
    then the setting's, so an ``XLA_FLAGS`` set by the caller (a pytest worker's, say) does not leak in."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in KERNEL_VARIABLES}
    return {**env, **setting.env, "PYTHONUNBUFFERED": "1"}


def command(job: str, topics: list[str], out: Path) -> list[str]:
    """The command line of one job ('derivations' or 'specs') over ``topics`` (all when empty)."""
    which = topics or ["--all"]
    if job == "derivations":
        return [sys.executable, "-m", "theory_jax", *which, "--json", str(out)]
    return [sys.executable, "-m", "shared_specs", "check", *which, "--json", str(out)]


def run_job(setting: Setting, job: str, topics: list[str], folder: Path) -> tuple[dict | None, float, Path]:
    """Run one job under one setting; (its JSON report or None if it wrote none, seconds, log path)."""
    out, log = folder / f"{setting.name}-{job}.json", folder / f"{setting.name}-{job}.log"
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    with log.open("w") as sink:
        subprocess.run(command(job, topics, out), cwd=ROOT, env=environment_for(setting), stdout=sink,
                       stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    return (json.loads(out.read_text()) if out.exists() else None), seconds, log


# Reading the reports -----------------------------------------------------------------------------------------------
def outcomes(job: str, report: Mapping) -> dict[str, tuple[bool, float | None, str]]:
    """{item: (passed, err/tol or None, what it says)} for each claim ('topic #n') or spec case of one report."""
    items: dict[str, tuple[bool, float | None, str]] = {}
    for topic, entry in report["topics"].items():
        if job == "derivations":
            if entry["crashed"]:
                items[f"{topic} (crashed)"] = (False, None, "the derivation crashed before finishing")
            for c in entry["claims"]:
                items[f"{topic} #{c['number']}"] = (c["passed"], c["ratio"], f"{c['statement'][:70]}: {c['detail']}")
        else:
            for c in entry:
                items[c["case"]] = (c["passed"], c["ratio"], c["error"] or ", ".join(
                    f"{name} err/tol {v['ratio']:.2g}" for name, v in c["checks"].items()))
    return items


def compare(reports: Mapping[str, Mapping[str, Mapping | None]]) -> dict:
    """Across settings: {'failures': [...], 'fragile': [...], 'missing': [...]}.

    ``reports``: {setting: {job: report or None}}. A failure is an item failing in some setting; fragile, an item
    whose err/tol exceeds ``FRAGILE`` in some setting (with its err/tol in every setting); missing, a job that wrote
    no report (it crashed or was killed)."""
    failures, missing, worst = [], [], {}
    for setting, jobs in reports.items():
        for job, report in jobs.items():
            if report is None:
                missing.append({"setting": setting, "job": job})
                continue
            for item, (passed, ratio, text) in outcomes(job, report).items():
                if not passed:
                    failures.append({"setting": setting, "job": job, "item": item, "detail": text})
                if ratio is not None:
                    worst.setdefault((job, item), {})[setting] = ratio
    fragile = [{"job": job, "item": item, "ratios": ratios} for (job, item), ratios in worst.items()
               if max(ratios.values()) > FRAGILE]
    fragile.sort(key=lambda f: -max(f["ratios"].values()))
    return {"failures": failures, "fragile": fragile, "missing": missing}


def counts(job: str, report: Mapping | None) -> str:
    if report is None:
        return "no report"
    items = outcomes(job, report)
    return f"{sum(p for p, _, _ in items.values())}/{len(items)} pass"


# The command --------------------------------------------------------------------------------------------------------
def main(settings: list[str], topics: list[str], folder: Path, jobs: int) -> int:
    unknown = [s for s in settings if s not in BY_NAME]
    if unknown:
        print(f"error: unknown setting {unknown[0]!r}; the settings are {', '.join(BY_NAME)}", file=sys.stderr)
        return 2
    chosen = [BY_NAME[s] for s in settings] if settings else list(SETTINGS)
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [(s, job) for s in chosen for job in JOBS]
    print(f"{len(tasks)} runs ({len(chosen)} settings x derivations and specs, {jobs} at a time); reports and logs "
          f"in {folder}", flush=True)
    reports: dict[str, dict[str, dict | None]] = {s.name: {} for s in chosen}
    seconds: dict[tuple[str, str], float] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_job, s, job, topics, folder): (s, job) for s, job in tasks}
        for done, future in enumerate(as_completed(futures), 1):
            (s, job), (report, took, log) = futures[future], future.result()
            reports[s.name][job], seconds[s.name, job] = report, took
            print(f"[{done}/{len(tasks)}] {s.name:<15} {job:<12} {counts(job, report):<14} {took:6.0f} s  "
                  f"(log: {log})", flush=True)
    result = compare(reports)

    print(f"\n{'setting':<15} {'derivation claims':>18} {'spec cases':>12}  torch kernels  what it changes")
    for s in chosen:
        env = (reports[s.name].get("specs") or {}).get("environment", {})
        kernels = env.get("torch", {}).get("cpu_capability", "?")
        print(f"{s.name:<15} {counts('derivations', reports[s.name]['derivations']):>18} "
              f"{counts('specs', reports[s.name]['specs']):>12}  {kernels:<13}  {s.what}")
    for m in result["missing"]:
        print(f"MISSING  {m['setting']} {m['job']}: no report (see its log)")
    for f in result["failures"]:
        print(f"FAIL     {f['setting']} {f['job']} {f['item']}: {f['detail']}")
    if result["fragile"]:
        print(f"\nclosest to their tolerance (err/tol above {FRAGILE} in some setting):")
        for f in result["fragile"][:20]:
            ratios = "  ".join(f"{k} {v:.2g}" for k, v in f["ratios"].items())
            print(f"  {f['job']:<12} {f['item']:<48} {ratios}")
    else:
        print(f"\nno claim or case comes within a factor {1 / FRAGILE:g} of its tolerance in any setting")
    summary = {"settings": {s.name: {"what": s.what, "env": dict(s.env),
                                     **{job: {"seconds": round(seconds[s.name, job], 1),
                                              "environment": (reports[s.name][job] or {}).get("environment")}
                                        for job in JOBS}} for s in chosen}, **result}
    (folder / "portability.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {folder / 'portability.json'}")
    return 1 if result["failures"] or result["missing"] else 0
