"""The aggressor of the isolation benchmark: a CPU stressor on every CPU it is allowed.

Two kinds, same behaviour:

* ``stress-ng``: Debian's ``stress-ng --cpu N`` when it is on ``PATH``;
* ``builtin``: ``python -m bench.aggressor N``, a leader that forks N-1 workers, all doing
  integer arithmetic forever.

The stressor runs in a process group of its own (a new session), so stopping it kills the
leader and every worker it forked, by group id; :class:`Aggressor` is a context manager
that stops it on every way out of the ``with`` block (an exception, ``KeyboardInterrupt``).
Each process also asks the kernel to kill it should its parent die first.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Literal

__all__ = ["KINDS", "Aggressor", "AggressorError", "group_members", "resolve_kind"]

Kind = Literal["stress-ng", "builtin"]
KINDS = ("auto", "stress-ng", "builtin")
_PR_SET_PDEATHSIG = 1  # prctl(2)


class AggressorError(RuntimeError):
    """The stressor could not be started or stopped."""


def resolve_kind(kind: str) -> Kind:
    """``auto`` → ``stress-ng`` when on PATH, else ``builtin``; unknown names are an error."""
    if kind == "auto":
        return "stress-ng" if shutil.which("stress-ng") else "builtin"
    if kind == "stress-ng":
        if not shutil.which("stress-ng"):
            raise AggressorError(
                "aggressor 'stress-ng' asked for but stress-ng is not on PATH "
                "(install it, or use --aggressor builtin)"
            )
        return "stress-ng"
    if kind == "builtin":
        return "builtin"
    raise AggressorError(f"aggressor: unknown kind {kind!r}, expected one of {', '.join(KINDS)}")


def die_with_parent() -> None:
    """In a child: have the kernel send SIGKILL when the parent exits (Linux prctl)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return


def group_members(pgid: int, proc: Path = Path("/proc")) -> list[int]:
    """Pids of the live (non-zombie) processes in process group *pgid*."""
    out = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(entry.name))
    return sorted(out)


class Aggressor:
    """A CPU stressor with *workers* workers, placed by *join* (run in the child before exec).

    >>> with Aggressor("builtin", workers=2) as agg:      # doctest: +SKIP
    ...     run_victims()
    """

    def __init__(self, kind: Kind, *, workers: int, join: Callable[[], None] | None = None) -> None:
        if workers < 1:
            raise AggressorError(f"aggressor workers: expected at least 1, got {workers}")
        self.kind: Kind = kind
        self.workers = workers
        self._join = join
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def command(self) -> list[str]:
        if self.kind == "stress-ng":
            return ["stress-ng", "--cpu", str(self.workers), "--cpu-method", "int64", "--quiet"]
        return [sys.executable, "-m", "bench.aggressor", str(self.workers)]

    @property
    def pgid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        def child_setup() -> None:
            die_with_parent()
            if self._join is not None:
                self._join()

        try:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=child_setup,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise AggressorError(f"cannot start the {self.kind} aggressor: {e}") from e
        self.started_at = time.monotonic()

    def wait_workers(self, timeout: float = 5.0) -> list[int]:
        """Wait until the leader and its workers run; returns their pids."""
        assert self._proc is not None, "start() first"
        want = self.workers + (1 if self.kind == "stress-ng" else 0)
        deadline = time.monotonic() + timeout
        while True:
            pids = group_members(self._proc.pid)
            if len(pids) >= want or time.monotonic() > deadline:
                return pids
            if self._proc.poll() is not None:
                raise AggressorError(
                    f"the {self.kind} aggressor exited early (status {self._proc.returncode})"
                )
            time.sleep(0.01)

    def stop(self, timeout: float = 5.0) -> None:
        """Kill the whole process group and reap the leader; idempotent."""
        if self._proc is None:
            return
        pgid, proc = self._proc.pid, self._proc
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + timeout
            while group_members(pgid) and time.monotonic() < deadline:
                proc.poll()
                time.sleep(0.01)
            if not group_members(pgid):
                break
        proc.wait(timeout)
        self._proc = None
        if group_members(pgid):
            raise AggressorError(f"aggressor process group {pgid} survived SIGKILL")

    def __enter__(self) -> Aggressor:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _spin() -> None:
    x = 1
    while True:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.aggressor N``: N busy processes (this one and N-1 forks)."""
    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else os.cpu_count() or 1
    for _ in range(n - 1):
        if os.fork() == 0:
            die_with_parent()
            _spin()
    _spin()


if __name__ == "__main__":
    main()
