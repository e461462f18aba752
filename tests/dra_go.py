"""Build and drive the Go harnesses under tests/ that run Kubernetes' own DRA code.

* ``tests/dra_allocator``: kube-scheduler's DRA allocator (k8s.io/dynamic-resource-allocation
  ``structured``), one allocation per run (:func:`allocate`);
* ``tests/dra_kubelet``: kubelet's plugin manager and DRA plugin client
  (k8s.io/kubernetes ``pkg/kubelet/pluginmanager``, ``pkg/kubelet/cm/dra/plugin``), a
  long-running process spoken to one JSON line at a time (:class:`KubeletHarness`);
* ``tests/cdi_check``: the CDI library container runtimes use
  (tags.cncf.io/container-device-interface) loading a spec folder and resolving device ids
  (:func:`cdi_resolve`).

:func:`build` compiles one with the local module cache only (``GOPROXY=off``); it returns
None with the reason when Go or the modules are missing, so the tests that need it skip
with that reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["KubeletHarness", "allocate", "build", "cdi_resolve"]

TESTS = Path(__file__).resolve().parent


def build(name: str, out_dir: Path) -> tuple[Path | None, str]:
    """(binary, "") or (None, why not) for the harness in ``tests/<name>``."""
    go = shutil.which("go")
    if go is None:
        return None, "no Go toolchain on PATH"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOSUMDB": "off", "GOTOOLCHAIN": "local"}
    binary = out_dir / name
    proc = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=TESTS / name,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
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
