"""The engine's thread count on a shared CPU (practice_torch/engine/threads.py): what other processes took is read
from /proc/stat less this process's own time, each core they keep busy is one thread fewer, and the team grows back
when they stop. Driven here by a /proc/stat written by the test and a clock it sets; the speeds it buys are measured
by hand (the closing note of issue 36 and docs/ARCHITECTURE.md), never asserted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from practice_torch.engine import threads as T

HZ = os.sysconf("SC_CLK_TCK")


def write_stat(path: Path, busy_ticks: dict[int, int], idle: int = 1000) -> None:
    """A /proc/stat with user time ``busy_ticks[c]`` on core c (and a core 7 this process may not use)."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    for core, ticks in {**busy_ticks, 7: 10**6}.items():
        lines.append(f"cpu{core} {ticks} 0 0 {idle} 0 0 0 0 0 0")
    path.write_text("\n".join(lines + ["intr 0", "procs_running 1"]) + "\n")


@pytest.fixture()
def machine(tmp_path, monkeypatch):
    """A two-core machine whose clock, /proc/stat and own CPU time the test advances: ``tick(seconds, others)``
    lets ``seconds`` pass while other processes take ``others`` cores' worth and this one none."""
    stat, clock, ticks = tmp_path / "stat", {"now": 100.0}, {0: 0, 1: 0}
    monkeypatch.setattr(T.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(T.time, "sleep", lambda s: None)
    monkeypatch.setattr(T.os, "times", lambda: os.times_result((0.0, 0.0, 0.0, 0.0, 0.0)))
    monkeypatch.setattr(T.os, "sched_getaffinity", lambda pid: {0, 1})
    write_stat(stat, ticks)

    def tick(seconds: float, others: float) -> None:
        clock["now"] += seconds
        ticks[0] += round(others * seconds * HZ)
        write_stat(stat, ticks)

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield stat, tick
    torch.set_num_threads(threads)


def test_a_core_counts_as_taken_from_forty_percent():
    assert [T.threads_for(2, 2, others) for others in (0.0, 0.35, 0.45, 1.0, 1.7, 3.0)] == [2, 2, 1, 1, 1, 1]
    assert T.threads_for(8, 16, 4.0) == 8 and T.threads_for(16, 16, 4.0) == 12  # free cores beyond the team's


def test_others_share_is_the_busy_time_less_this_processs_own():
    before, after = T.Reading(0.0, 10.0, 3.0), T.Reading(2.0, 13.0, 2.0 + 3.0)
    assert T.others_share(before, after) == 0.5  # (3 s busy - 2 s own) / 2 s
    assert T.others_share(after, after) == 0.0


def test_read_cpu_sums_the_busy_fields_of_this_processs_cores(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  9 9 9 9 9 9 9 9 9 9\ncpu0 1 2 3 1000 5000 4 5 6 70 80\ncpu1 100 0 0 0 0 0 0 0 0 0\n")
    reading = T.read_cpu(frozenset({0}), stat)
    assert reading.busy == (1 + 2 + 3 + 4 + 5) / HZ  # user, nice, system, irq, softirq; not idle, iowait, steal
    assert T.read_cpu(frozenset({0}), tmp_path / "missing") is None


def test_the_team_shrinks_under_load_and_grows_back(machine):
    stat, tick = machine
    count = T.ThreadCount(interval=1.0, stat=stat)
    tick(0.5, others=1.0)
    assert count.update() is None and count.threads == 2  # not due yet
    tick(0.5, others=1.0)
    assert "threads 2 -> 1" in count.update() and count.threads == 1
    tick(1.0, others=1.0)
    assert count.update() is None and count.threads == 1  # still busy: no change, no line
    tick(1.0, others=0.1)
    assert "threads 1 -> 2" in count.update() and count.threads == 2
    torch.set_num_threads(1)
    count.restore()
    assert torch.get_num_threads() == 2


def test_a_fixed_count_one_thread_or_a_gpu_run_reads_nothing(machine):
    stat, tick = machine
    for count in (T.ThreadCount(fixed=2, stat=stat), T.ThreadCount(adaptive=False, stat=stat)):
        tick(2.0, others=2.0)
        assert count.update() is None and count.threads == 2
    torch.set_num_threads(1)  # OMP_NUM_THREADS=1, or a caller's choice: the most the run may use
    count = T.ThreadCount(stat=stat)
    tick(2.0, others=0.0)
    assert count.update() is None and count.threads == 1


def test_fit_to_load_sizes_the_team_once(machine, monkeypatch):
    stat, tick = machine
    monkeypatch.setattr(T, "STAT", stat)
    monkeypatch.setattr(T.time, "sleep", lambda s: tick(s, others=0.9))
    assert "threads 2 -> 1" in T.fit_to_load() and torch.get_num_threads() == 1
