"""How many intra-op threads a CPU run uses: one per core that the rest of the machine leaves free.

torch's default team, one OpenMP thread per core, is the fastest on an idle machine and the slowest on a shared one:
every parallel region ends at a barrier that waits for the thread whose core another process holds, while the
waiting threads spin on theirs. On a 2-core VM beside one single-threaded busy process, the VAE's quick preset ran at
380 examples/s with two threads against 3 800 with one, and at 5 300 with two on the idle machine (``python -m
benchmarks shared_cpu``; docs/ARCHITECTURE.md has the whole table's figures).

``ThreadCount`` sizes the team to the free cores as the run goes. Every ``interval`` seconds it reads the CPU time
spent on this process's cores (``/proc/stat``: user, nice, system, irq and softirq, summed over the cores of
``os.sched_getaffinity``; not a hypervisor's steal, which no team size makes room for) and takes away its own
(``os.times``): the rest is what other processes took. Each core they kept at least ``TAKEN`` busy is one thread
fewer, never fewer than one; when they stop, the team grows back to the count the run started with (torch's default,
or ``OMP_NUM_THREADS``). While the team is smaller the others get their cores whole, so what they take is measured
in full and the count does not flap.

OpenMP's waiting policy stays its default (spin, then sleep): with a team that has its cores to itself, spinning is
the fastest way to wait (``OMP_WAIT_POLICY=PASSIVE`` cost 15-30% on idle 2-core machines), and it cannot change once
torch has started its threads. Where ``/proc/stat`` does not exist (macOS, Windows) the count stays as it started.

A team of another size may round sums differently, so runs under different loads can differ in their last bits;
``train.threads=N`` fixes the count (bit-identical reruns and resumptions).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

STAT = Path("/proc/stat")
TAKEN = 0.4  # a core counts as taken when other processes used at least this share of it over the interval
INTERVAL_S = 1.0  # seconds between two readings
BUSY_FIELDS = (0, 1, 2, 5, 6)  # /proc/stat's user, nice, system, irq, softirq (not idle, iowait, steal, guest)


@dataclass(frozen=True)
class Reading:
    wall: float  # seconds, monotonic
    busy: float  # CPU seconds spent on this process's cores, by anyone
    own: float  # CPU seconds of this process (all its threads)


def read_cpu(cores: frozenset[int], stat: Path = STAT) -> Reading | None:
    """The CPU time spent so far on ``cores`` and by this process; None where the kernel does not say."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    ticks = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            ticks += sum(int(fields[i]) for i in BUSY_FIELDS if i < len(fields))
    own = os.times()
    return Reading(time.monotonic(), ticks / os.sysconf("SC_CLK_TCK"), own.user + own.system)


def others_share(before: Reading, after: Reading) -> float:
    """Cores' worth of CPU that other processes took between two readings (>= 0)."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    return max(0.0, (after.busy - before.busy) - (after.own - before.own)) / wall


def threads_for(most: int, cores: int, others: float) -> int:
    """The team on ``cores`` cores, ``most`` threads at most, when other processes keep ``others`` cores' worth busy:
    the cores they leave free (a core is taken from ``TAKEN`` of it on), at least one."""
    return max(1, min(most, cores - math.floor(others + 1 - TAKEN)))


class ThreadCount:
    """The run's intra-op thread count, adjusted to the load at most every ``interval`` seconds (``update``) and
    restored when the run ends (``restore``). Fixed (no readings) when ``fixed`` is given, ``adaptive`` is False (a
    GPU run) or only one thread is allowed."""

    def __init__(self, fixed: int = 0, adaptive: bool = True, interval: float = INTERVAL_S, stat: Path | None = None):
        self.started_with = torch.get_num_threads()
        if fixed:
            torch.set_num_threads(fixed)
        self.most = fixed or self.started_with
        self.interval, self.stat = interval, stat or STAT
        self.cores = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
        adaptive = adaptive and not fixed and self.most > 1 and bool(self.cores)
        self.last = read_cpu(self.cores, self.stat) if adaptive else None
        self.others = 0.0

    @property
    def threads(self) -> int:
        return torch.get_num_threads()

    def update(self) -> str | None:
        """A new count when a reading is due and the load asks for one: a line saying so, else None."""
        if self.last is None or time.monotonic() - self.last.wall < self.interval:
            return None
        now = read_cpu(self.cores, self.stat)
        if now is None:
            self.last = None
            return None
        self.others, self.last = others_share(self.last, now), now
        want, have = threads_for(self.most, len(self.cores), self.others), self.threads
        if want == have:
            return None
        torch.set_num_threads(want)
        return f"threads {have} -> {want}: other processes kept {self.others:.1f} of {len(self.cores)} cores busy"

    def restore(self) -> None:
        torch.set_num_threads(self.started_with)


def fit_to_load(look: float = 0.2) -> str | None:
    """For a command without a training loop (sample, eval): one look of ``look`` seconds at the load, and the
    team sized to it for the rest of the process. A line when the count changed, else None."""
    count = ThreadCount(interval=0.0)
    if count.last is None:
        return None
    time.sleep(look)
    return count.update()
