"""The scheduler counters of a process: parsed from a written /proc tree, and read from a
real process that this test makes wait on a run queue."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.schedstat import SchedCounters, delta, read_counters


def write_task(proc: Path, pid: int, tid: int, schedstat: str, invol: int, migrations: int | None) -> None:
    task = proc / str(pid) / "task" / str(tid)
    task.mkdir(parents=True)
    (task / "schedstat").write_text(schedstat)
    (task / "status").write_text(
        f"Name:\tx\nvoluntary_ctxt_switches:\t99\nnonvoluntary_ctxt_switches:\t{invol}\n"
    )
    if migrations is not None:
        (task / "sched").write_text(
            "x (1, #threads: 2)\n----\nse.exec_start : 1.5\n"
            f"se.nr_migrations :  {migrations}\nnr_switches : 7\n"
        )


def test_counters_are_summed_over_threads(tmp_path: Path) -> None:
    write_task(tmp_path, 10, 10, "2000000000 500000000 30\n", 4, 1)
    write_task(tmp_path, 10, 11, "1000000000 250000000 10\n", 3, 2)
    assert read_counters(10, tmp_path) == SchedCounters(3.0, 0.75, 7, 3)


def test_migrations_are_unknown_without_the_sched_file(tmp_path: Path) -> None:
    write_task(tmp_path, 10, 10, "1 2 3\n", 0, 1)
    write_task(tmp_path, 10, 12, "1 2 3\n", 0, None)
    assert read_counters(10, tmp_path).migrations is None
    assert delta(SchedCounters(0, 0, 0, None), SchedCounters(1, 1, 1, 5)).migrations is None


def test_delta_never_goes_negative_when_a_thread_exits() -> None:
    before, after = SchedCounters(5.0, 2.0, 10, 4), SchedCounters(4.0, 1.0, 8, 3)
    assert delta(before, after) == SchedCounters(0.0, 0.0, 0, 0)


def test_malformed_files_count_as_zero(tmp_path: Path) -> None:
    write_task(tmp_path, 10, 10, "garbage\n", 0, None)
    (tmp_path / "10" / "task" / "10" / "status").write_text("nonvoluntary_ctxt_switches:\tmany\n")
    assert read_counters(10, tmp_path) == SchedCounters(0.0, 0.0, 0, None)


@pytest.mark.skipif(not Path("/proc/self/schedstat").exists(), reason="kernel without schedstat")
def test_a_process_sharing_its_cpu_waits_on_the_run_queue() -> None:
    cpu = min(os.sched_getaffinity(0))
    spin = "import time\nt=time.monotonic()\nwhile time.monotonic()-t<5: pass\n"
    hogs = [
        subprocess.Popen([sys.executable, "-c", spin], preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        for _ in range(2)
    ]
    try:
        time.sleep(0.3)
        before = read_counters(hogs[0].pid)
        time.sleep(1.0)
        got = delta(before, read_counters(hogs[0].pid))
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    # Two spinners on one CPU: each waits for roughly the time the other runs.
    assert got.runqueue_wait_s > 0.2 and got.cpu_s > 0.1 and got.involuntary_switches > 0
