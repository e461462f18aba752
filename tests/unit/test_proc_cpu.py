"""CPU seconds of a process from /proc/<pid>/stat: a busy child's grow, a written stat
line with spaces and parentheses in the command name parses, a gone process is None."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.proc_cpu import cpu_seconds

_SPIN = "import time\nt = time.time()\nwhile time.time() - t < 1.0:\n    pass\n"


def test_a_busy_process_accumulates_cpu_time_and_is_none_once_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", _SPIN])
    try:
        first = cpu_seconds(child.pid)
        time.sleep(0.5)
        second = cpu_seconds(child.pid)
        child.wait(10)
    finally:
        child.kill()
    assert first is not None and second is not None and second - first >= 0.05  # spinning for 0.5 s
    assert cpu_seconds(child.pid) is None  # reaped: gone


def test_the_command_name_may_hold_spaces_and_parentheses(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    fields = ["S", *["0"] * 10, "250", "150", *["0"] * 30]  # utime 250, stime 150 ticks
    (tmp_path / "42" / "stat").write_text("42 (a (b) c) " + " ".join(fields) + "\n")
    got = cpu_seconds(42, proc=tmp_path)
    assert got is not None and abs(got - 400 / os.sysconf("SC_CLK_TCK")) < 1e-9
    (tmp_path / "43").mkdir()
    (tmp_path / "43" / "stat").write_text("43 (short) S 1 2\n")
    assert cpu_seconds(43, proc=tmp_path) is None  # too few fields
    assert cpu_seconds(44, proc=tmp_path) is None  # no such process
