"""What every Go program under ``tests/`` shares: where its binary is cached, what a test
does when it cannot be built, and the JSON-lines conversation with a long-running one.

* :func:`cache_dir` — ``$TOPOLET_CACHE``, default ``~/.cache/topolet`` (outside the
  repository, so a second run skips the build);
* :func:`cached_binary` — ``<cache>/<name>-<hash of its sources>/<name>``;
* :func:`require_built` — the binary, or skip the calling test with the reason; with
  ``TOPOLET_REQUIRE_ORACLE=1`` (set by CI) a program that cannot be built fails instead;
* :class:`JsonLinesProcess` — one JSON request per line on stdin, one answer per line on
  stdout.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["TESTS", "JsonLinesProcess", "cache_dir", "cached_binary", "require_built"]

TESTS = Path(__file__).resolve().parent


def cache_dir() -> Path:
    return Path(os.environ.get("TOPOLET_CACHE", Path.home() / ".cache" / "topolet"))


def cached_binary(name: str, sources: Sequence[str]) -> Path:
    """Where ``tests/<name>`` built from its current *sources* lives (may not exist yet)."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.encode() + b"\0" + (TESTS / name / source).read_bytes() + b"\0")
    return cache_dir() / f"{name}-{digest.hexdigest()[:16]}" / name


def require_built(built: tuple[Path | None, str], what: str) -> Path:
    """The binary of *built* (``(binary, "")`` or ``(None, why not)``), else skip the
    calling test naming *what* could not be built (fail under ``TOPOLET_REQUIRE_ORACLE=1``)."""
    import pytest

    binary, why = built
    if binary is not None:
        return binary
    message = f"{what} cannot be built here: {why}"
    if os.environ.get("TOPOLET_REQUIRE_ORACLE") == "1":
        pytest.fail(message + " (TOPOLET_REQUIRE_ORACLE=1)", pytrace=False)
    pytest.skip(message)


class JsonLinesProcess:
    """A started Go program spoken to one JSON line at a time; :meth:`exit_detail` says
    more when it has exited (e.g. the tail of its log)."""

    proc: subprocess.Popen[str]
    what = "the Go harness"

    def exit_detail(self) -> str:
        return ""

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        stdin: IO[str] | None = self.proc.stdin
        stdout: IO[str] | None = self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps({"op": op, **fields}) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"{self.what} exited ({self.proc.poll()}){self.exit_detail()}")
        out: dict[str, Any] = json.loads(line)
        return out

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
