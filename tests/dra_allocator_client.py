"""Build and call tests/dra_allocator (kube-scheduler's DRA allocator, from the Go modules).

:func:`build` compiles it once per session with the local module cache only
(``GOPROXY=off``); it returns None with the reason when Go or the modules are missing, so
the tests that need it skip with that reason. :func:`allocate` runs one allocation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["allocate", "build"]

SOURCE = Path(__file__).resolve().parent / "dra_allocator"


def build(out_dir: Path) -> tuple[Path | None, str]:
    """(binary, "") or (None, why not)."""
    go = shutil.which("go")
    if go is None:
        return None, "no Go toolchain on PATH"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOSUMDB": "off", "GOTOOLCHAIN": "local"}
    binary = out_dir / "dra_allocator"
    proc = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        return None, "go build failed: " + (proc.stderr.strip().splitlines() or ["?"])[0]
    return binary, ""


def allocate(
    binary: Path,
    *,
    node: str,
    slices: list[dict[str, Any]],
    classes: list[dict[str, Any]],
    claims: list[dict[str, Any]],
    allocated: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """``{"results": [...] | None, "error": ""}`` from the allocator."""
    doc = {"node": node, "slices": slices, "classes": classes, "claims": claims, "allocated": list(allocated)}
    proc = subprocess.run(
        [str(binary)], input=json.dumps(doc), capture_output=True, text=True, timeout=60, check=True
    )
    out: dict[str, Any] = json.loads(proc.stdout)
    return out
