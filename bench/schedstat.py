"""What the kernel's scheduler says about one process: the mechanism behind a slow run.

A victim that shares its CPUs waits in the run queue, is preempted (involuntary context
switches) and is moved between CPUs (migrations). The kernel counts all three per thread:

* ``/proc/<pid>/task/<tid>/schedstat``: time on the CPU, time waiting on a run queue
  (both in nanoseconds) and the number of time slices;
* ``/proc/<pid>/task/<tid>/status``: ``nonvoluntary_ctxt_switches``;
* ``/proc/<pid>/task/<tid>/sched`` (kernels built with ``CONFIG_SCHED_DEBUG``):
  ``se.nr_migrations``; absent elsewhere, so migrations may be unknown (``None``).

:func:`read_counters` sums them over every thread of a process (the proc root is a
parameter, so tests read a written tree); :func:`delta` is the difference of two reads.
Each file read is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["SchedCounters", "delta", "read_counters"]

_MAX_READ = 64 * 1024
_MAX_THREADS = 4096


@dataclass(frozen=True, slots=True)
class SchedCounters:
    """Counters summed over a process's threads."""

    cpu_s: float
    runqueue_wait_s: float
    involuntary_switches: int
    migrations: int | None
    """None when the kernel does not expose ``/proc/<pid>/sched``."""


def _read(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            return f.read(_MAX_READ).decode("ascii", "replace")
    except OSError:
        return None


def _schedstat(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 0
    fields = text.split()
    try:
        return int(fields[0]), int(fields[1])
    except (IndexError, ValueError):
        return 0, 0


def _keyed(text: str | None, key: str, sep: str) -> int | None:
    """The integer value of ``key<sep>value`` in *text*, or None."""
    if text is None:
        return None
    for line in text.splitlines():
        name, found, value = line.partition(sep)
        if found and name.strip() == key:
            try:
                return int(float(value.strip()))
            except ValueError:
                return None
    return None


def read_counters(pid: int | str = "self", proc: Path = Path("/proc")) -> SchedCounters:
    """The scheduler counters of process *pid*, summed over its threads."""
    base = proc / str(pid)
    try:
        tids = sorted(p for p in (base / "task").iterdir() if p.name.isdigit())[:_MAX_THREADS]
    except OSError:
        tids = [base]
    run_ns = wait_ns = invol = 0
    migrations: int | None = 0
    for task in tids or [base]:
        r, w = _schedstat(_read(task / "schedstat"))
        run_ns, wait_ns = run_ns + r, wait_ns + w
        invol += _keyed(_read(task / "status"), "nonvoluntary_ctxt_switches", ":") or 0
        m = _keyed(_read(task / "sched"), "se.nr_migrations", ":")
        migrations = None if m is None or migrations is None else migrations + m
    return SchedCounters(run_ns / 1e9, wait_ns / 1e9, invol, migrations)


def delta(before: SchedCounters, after: SchedCounters) -> SchedCounters:
    """What happened between two reads of the same process (never negative)."""
    mig = (
        None
        if before.migrations is None or after.migrations is None
        else max(0, after.migrations - before.migrations)
    )
    return SchedCounters(
        max(0.0, after.cpu_s - before.cpu_s),
        max(0.0, after.runqueue_wait_s - before.runqueue_wait_s),
        max(0, after.involuntary_switches - before.involuntary_switches),
        mig,
    )
