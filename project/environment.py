"""What a run of the derivations or specs computed on: the machine, the libraries and the kernel settings.

Every JSON report (``python -m theory_jax --json``, ``python -m shared_specs check --json``) carries this, so a
measured error names the CPU, the thread counts and the flags that chose XLA's and torch's kernels.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

# Environment variables read at start-up by XLA, torch (ATen, OpenMP), oneDNN and MKL to choose kernels and threads.
KERNEL_VARIABLES = ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                    "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores_text(env: dict) -> str:
    """'1 core', '2 cores' (or '? cores') from a ``describe()`` record."""
    cores = env.get("cores", "?")
    return f"{cores} core{'' if cores == 1 else 's'}"


# The records the benchmarks and sweeps rewrite (results rows, reproductions, benchmark tables): what runs measured,
# not code a run executes, so a run in a checkout whose only changes are to these names its commit clean.
RECORDS = ("docs/results.json", "docs/reproduce.json", "docs/reproduce_pending.json", "benchmarks/results/")


def is_record(path: str) -> bool:
    """Whether ``path`` (relative to the repository) is one of the ``RECORDS`` or inside one of their folders."""
    return any(path == r or (r.endswith("/") and path.startswith(r)) for r in RECORDS)


def commit(ignoring: tuple[str, ...] = ()) -> str | None:
    """The checkout's commit (with '+changes' when the tree differs from it, in files other than the ``RECORDS`` and
    those ``ignoring`` names: a benchmark's own record elsewhere), or None outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    changed = [line for line in dirty if not is_record(line[3:].strip()) and line[3:].strip() not in ignoring]
    return head + ("+changes" if changed else "")


def describe() -> dict:
    """The machine, libraries and kernel settings of this process (torch's only if torch is imported)."""
    info = {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)), "python": sys.version.split()[0],
            "commit": commit(), "variables": {k: os.environ[k] for k in KERNEL_VARIABLES if k in os.environ}}
    if "jax" in sys.modules:
        import jax

        info["jax"] = {"version": jax.__version__, "x64": bool(jax.config.jax_enable_x64),
                       "matmul_precision": jax.config.jax_default_matmul_precision,
                       "platform": jax.default_backend(), "device": jax.devices()[0].device_kind}
    if "torch" in sys.modules:
        import torch

        info["torch"] = {"version": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                         "threads": torch.get_num_threads()}
    return info
