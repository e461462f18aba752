"""Build and drive the Go harnesses under tests/ that run Kubernetes' own DRA code.

* ``tests/dra_allocator``: kube-scheduler's DRA allocator (k8s.io/dynamic-resource-allocation
  ``structured``), one allocation per run (:func:`allocate`);
* ``tests/dra_kubelet``: kubelet's plugin manager and DRA plugin client
  (k8s.io/kubernetes ``pkg/kubelet/pluginmanager``, ``pkg/kubelet/cm/dra/plugin``), a
  long-running process spoken to one JSON line at a time (:class:`KubeletHarness`);
* ``tests/cdi_check``: the CDI library container runtimes use
  (tags.cncf.io/container-device-interface) loading a spec folder and resolving device ids
  (:func:`cdi_resolve`).

:func:`build` compiles one (modules from the Go module proxy) into a cache outside the
repository, keyed by the hash of its sources, so later runs reuse it; :func:`require` skips
the calling test with the reason when Go is missing, or fails it under
``TOPOLET_REQUIRE_ORACLE=1`` (CI).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["KubeletHarness", "allocate", "binary_path", "build", "cdi_resolve", "require"]

TESTS = Path(__file__).resolve().parent


def binary_path(name: str) -> Path:
    """Where the harness ``tests/<name>`` built from the current sources lives (cached outside
    the repository like the kubelet oracle: ``$TOPOLET_CACHE``, default ``~/.cache/topolet``)."""
    digest = hashlib.sha256()
    for source in ("go.mod", "go.sum", "main.go"):
        digest.update(source.encode() + b"\0" + (TESTS / name / source).read_bytes() + b"\0")
    cache = Path(os.environ.get("TOPOLET_CACHE", Path.home() / ".cache" / "topolet"))
    return cache / f"{name}-{digest.hexdigest()[:16]}" / name


def build(name: str, out_dir: Path | None = None) -> tuple[Path | None, str]:
    """(binary, "") or (None, why not) for the harness in ``tests/<name>``: built once per
    source (modules come from the Go module proxy the environment names) and cached.
    *out_dir* is unused (kept for callers that pass a temporary folder)."""
    target = binary_path(name)
    if target.is_file():
        return target, ""
    go = shutil.which("go")
    if go is None:
        return None, "no Go toolchain on PATH"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{name}.partial.{os.getpid()}")
    env = {**os.environ, "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local"}
    proc = subprocess.run(
        [go, "build", "-o", str(partial), "."],
        cwd=TESTS / name,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        return None, "go build failed: " + (proc.stderr.strip().splitlines() or ["?"])[0]
    os.replace(partial, target)
    return target, ""


def require(name: str) -> Path:
    """The harness binary, or skip the calling test with the reason; with
    ``TOPOLET_REQUIRE_ORACLE=1`` (set by CI) a harness that cannot be built fails instead."""
    import pytest

    binary, why = build(name)
    if binary is not None:
        return binary
    message = f"Kubernetes' Go code for tests/{name} cannot be built here: {why}"
    if os.environ.get("TOPOLET_REQUIRE_ORACLE") == "1":
        pytest.fail(message + " (TOPOLET_REQUIRE_ORACLE=1)", pytrace=False)
    pytest.skip(message)


def allocate(
    binary: Path,
    *,
    node: str,
    slices: list[dict[str, Any]],
    classes: list[dict[str, Any]],
    claims: list[dict[str, Any]],
    allocated: Sequence[tuple[str, str, str]] = (),
) -> dict[str, Any]:
    """``{"results": [...] | None, "error": ""}`` from kube-scheduler's allocator."""
    doc = {"node": node, "slices": slices, "classes": classes, "claims": claims, "allocated": list(allocated)}
    proc = subprocess.run(
        [str(binary)], input=json.dumps(doc), capture_output=True, text=True, timeout=60, check=True
    )
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


class KubeletHarness:
    """kubelet's plugin manager watching *registry*, with its DRA plugin client."""

    def __init__(self, binary: Path, registry: Path) -> None:
        registry.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(binary), "-registry", str(registry)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        stdin: IO[str] | None = self.proc.stdin
        stdout: IO[str] | None = self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps({"op": op, **fields}) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the kubelet harness exited ({self.proc.poll()})")
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


def cdi_resolve(binary: Path, spec_dir: Path, ids: Sequence[str]) -> dict[str, Any]:
    """``{"errors": [...], "devices": {id: container edits | None}}`` from the CDI library."""
    proc = subprocess.run(
        [str(binary), "-dir", str(spec_dir), *ids], capture_output=True, text=True, timeout=60, check=True
    )
    out: dict[str, Any] = json.loads(proc.stdout)
    return out
