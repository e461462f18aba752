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

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.go_harness import JsonLinesProcess, cached_binary, require_built

__all__ = ["KubeletHarness", "allocate", "binary_path", "build", "cdi_resolve", "require"]

from tests.go_harness import TESTS


def binary_path(name: str) -> Path:
    """Where the harness ``tests/<name>`` built from the current sources lives."""
    return cached_binary(name, ("go.mod", "go.sum", "main.go"))


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
    """The harness binary, or skip (fail under ``TOPOLET_REQUIRE_ORACLE=1``) with the reason."""
    return require_built(build(name), f"Kubernetes' Go code for tests/{name}")


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


class KubeletHarness(JsonLinesProcess):
    """kubelet's plugin manager watching *registry*, with its DRA plugin client."""

    what = "the kubelet harness"

    def __init__(self, binary: Path, registry: Path) -> None:
        registry.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(binary), "-registry", str(registry)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )


def cdi_resolve(binary: Path, spec_dir: Path, ids: Sequence[str]) -> dict[str, Any]:
    """``{"errors": [...], "devices": {id: container edits | None}}`` from the CDI library."""
    proc = subprocess.run(
        [str(binary), "-dir", str(spec_dir), *ids], capture_output=True, text=True, timeout=60, check=True
    )
    out: dict[str, Any] = json.loads(proc.stdout)
    return out
