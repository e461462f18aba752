"""CPU time of a running process, from ``/proc/<pid>/stat``.

:func:`cpu_seconds` is the process's user + system time (its threads included, its
children not), in seconds; None when the process is gone or the file is unreadable.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds"]

_TICKS = os.sysconf("SC_CLK_TCK")
#: ``/proc/<pid>/stat`` is one line of a few hundred bytes; never read more than this.
_MAX_READ = 4096


def cpu_seconds(pid: int, proc: Path = Path("/proc")) -> float | None:
    try:
        with (proc / str(pid) / "stat").open("rb") as f:
            text = f.read(_MAX_READ).decode("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or ")": split
    # after the last one; the fields after it start at field 3 (state)
    fields = text[text.rfind(")") + 2 :].split()
    try:
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15
    except (IndexError, ValueError):
        return None
    return (utime + stime) / _TICKS
