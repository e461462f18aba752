"""kubelet's own code as a live oracle: build the Go program of ``tests/oracle/`` and talk to it.

The program is built once per Kubernetes release and source: the binary lives outside the
repository, in ``$TOPOLET_CACHE`` (default ``~/.cache/topolet``)
``/oracle-<k8s version>-<hash of go.mod, go.sum, main.go>/oracle``, so a second run skips the
build. ``python -m tests.oracle_client build`` builds it (CI does this before pytest) and
prints the path; :class:`Oracle` runs it and exchanges JSON lines with it.

When Go is absent the tests that need the oracle are skipped with the reason, unless
``TOPOLET_REQUIRE_ORACLE=1`` (set by CI), where they fail instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.go_harness import cache_dir

__all__ = ["ORACLE_DIR", "Oracle", "OracleUnavailableError", "binary_path", "build", "k8s_version"]

ORACLE_DIR = Path(__file__).resolve().parent / "oracle"
_SOURCES = ("go.mod", "go.sum", "main.go")
_MAX_LINE = 64 << 20


class OracleUnavailableError(RuntimeError):
    """The oracle cannot be built here (no Go toolchain, or the build failed)."""


def k8s_version() -> str:
    """The ``k8s.io/kubernetes`` version ``tests/oracle/go.mod`` requires."""
    text = (ORACLE_DIR / "go.mod").read_text(encoding="utf-8")
    m = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", text, re.MULTILINE)
    if m is None:
        raise OracleUnavailableError(f"{ORACLE_DIR / 'go.mod'}: no k8s.io/kubernetes requirement")
    return m.group(1)


def binary_path() -> Path:
    """Where the oracle built from the current sources lives (it may not exist yet)."""
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update(name.encode() + b"\0" + (ORACLE_DIR / name).read_bytes() + b"\0")
    return cache_dir() / f"oracle-{k8s_version()}-{digest.hexdigest()[:16]}" / "oracle"


def build(*, verbose: bool = False) -> Path:
    """The oracle binary, built first if this version and source have none yet."""
    target = binary_path()
    if target.is_file():
        return target
    go = shutil.which("go")
    if go is None:
        raise OracleUnavailableError("no Go toolchain on PATH (needed to build kubelet's code as the oracle)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"oracle.partial.{os.getpid()}")
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    started = time.monotonic()
    done = subprocess.run(
        [go, "build", "-o", str(partial), "."],
        cwd=ORACLE_DIR,
        env=env,
        capture_output=not verbose,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = (done.stderr or "").strip().splitlines()[-20:]
        raise OracleUnavailableError("go build of tests/oracle failed:\n" + "\n".join(tail))
    partial.replace(target)
    if verbose:
        print(f"built {target} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return target


class Oracle:
    """One running oracle process; :meth:`ask` sends a request and returns its answer.

    >>> with Oracle() as o:                                    # doctest: +SKIP
    ...     o.ask({"op": "checkpoint", "policy": "none", "default": "0-3", "entries": {}})
    """

    def __init__(self, binary: Path | None = None) -> None:
        self.binary = binary or build()
        self._proc = self._start()
        self.requests = 0

    def _start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.binary)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(request, separators=(",", ":")) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline(_MAX_LINE)
        except BaseException:
            # Interrupted between question and answer: a fresh process keeps later
            # answers paired with their questions.
            self.close()
            self._proc = self._start()
            raise
        if not line:
            raise OracleUnavailableError(f"oracle exited (code {proc.poll()}) on request {request!r}")
        self.requests += 1
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        proc = self._proc
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Oracle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str]) -> int:
    if argv != ["build"]:
        print("usage: python -m tests.oracle_client build", file=sys.stderr)
        return 2
    try:
        print(build(verbose=True))
    except OracleUnavailableError as e:
        print(f"oracle: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
