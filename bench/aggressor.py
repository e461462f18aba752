"""The aggressor of the isolation benchmark: a stressor on every CPU it is allowed.

Two loads:

* ``cpu``: integer arithmetic that stays in registers and L1: it takes CPU time, which the
  static policy can keep off a victim's exclusive CPUs;
* ``memory``: copies of buffers much larger than a core's caches: it takes shared L3 and
  memory bandwidth, which no CPU pinning can take back (that needs cache/memory-bandwidth
  allocation, Linux ``resctrl``).

Two kinds, same behaviour:

* ``stress-ng``: Debian's ``stress-ng --cpu N`` (``--stream N`` for memory) when it is on
  ``PATH``;
* ``builtin``: ``python -m bench.aggressor N [--memory MIB]``, a leader that forks N-1
  workers, all spinning (or copying MIB-sized numpy buffers) forever.

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

from bench.errors import BenchError

__all__ = ["KINDS", "LOADS", "Aggressor", "AggressorError", "group_members", "memory_mib", "resolve_kind"]

Kind = Literal["stress-ng", "builtin"]
Load = Literal["cpu", "memory"]
KINDS = ("auto", "stress-ng", "builtin")
LOADS = ("cpu", "memory")
#: Buffer per memory worker (two halves copied into each other), and the cap over all workers.
_WORKER_MIB, _TOTAL_MIB, _MIN_MIB = 256, 2048, 16
_PR_SET_PDEATHSIG = 1  # prctl(2)


class AggressorError(BenchError, RuntimeError):
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


def memory_mib(workers: int) -> int:
    """Buffer MiB per memory worker: 256, less when many workers would pass 2 GiB in all."""
    return max(_MIN_MIB, min(_WORKER_MIB, _TOTAL_MIB // max(1, workers)))


class Aggressor:
    """A stressor with *workers* workers, placed by *join* (run in the child before exec).

    >>> with Aggressor("builtin", workers=2, load="memory") as agg:      # doctest: +SKIP
    ...     run_victims()
    """

    def __init__(
        self, kind: Kind, *, workers: int, join: Callable[[], None] | None = None, load: Load = "cpu"
    ) -> None:
        if workers < 1:
            raise AggressorError(f"aggressor workers: expected at least 1, got {workers}")
        if load not in LOADS:
            raise AggressorError(f"aggressor load: unknown {load!r}, expected one of {', '.join(LOADS)}")
        self.kind: Kind = kind
        self.load: Load = load
        self.workers = workers
        self._join = join
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def command(self) -> list[str]:
        n = str(self.workers)
        if self.kind == "stress-ng":
            if self.load == "memory":
                return ["stress-ng", "--stream", n, "--quiet"]
            return ["stress-ng", "--cpu", n, "--cpu-method", "int64", "--quiet"]
        extra = ["--memory", str(memory_mib(self.workers))] if self.load == "memory" else []
        return [sys.executable, "-m", "bench.aggressor", n, *extra]

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


def _stream(mib: int) -> None:
    import numpy as np

    half = max(1, mib * 1024 * 1024 // 16)  # float64 elements per half buffer
    a = np.ones(half)
    b = np.empty_like(a)
    while True:
        np.copyto(b, a)
        np.copyto(a, b)


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.aggressor N [--memory MIB]``: N busy processes (this one and N-1
    forks), spinning on the CPU or, with ``--memory``, copying MIB-sized buffers."""
    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else os.cpu_count() or 1
    mib = int(args[2]) if len(args) >= 3 and args[1] == "--memory" else 0
    if not (1 <= n <= 4096 and 0 <= mib <= _WORKER_MIB):
        sys.exit(f"bench.aggressor: expected 1..4096 workers and --memory 0..{_WORKER_MIB}, got {args}")
    work: Callable[[], None] = (lambda: _stream(mib)) if mib else _spin
    for _ in range(n - 1):
        if os.fork() == 0:
            die_with_parent()
            work()
    work()


if __name__ == "__main__":
    main()
