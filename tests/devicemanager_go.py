"""Build and drive ``tests/devicemanager``: kubelet's own device manager
(k8s.io/kubernetes ``pkg/kubelet/cm/devicemanager``) as a long-running process on a socket
folder, spoken to one JSON line at a time (:class:`DeviceManagerHarness`).

The build differs from :mod:`tests.dra_go` in one step. Kubernetes v1.34 exports only
``NewManagerImpl``, whose registration socket is fixed at
``/var/lib/kubelet/device-plugins/kubelet.sock``; the package's own tests use the
unexported ``newManagerImpl(socketPath, ...)``. Go refuses ``-overlay`` files under
GOMODCACHE, so the harness is built from a vendored copy of its modules (``go mod vendor``
in a build folder outside the repository) into which ``_export/devicemanager_export.go``
adds ``NewManagerImplAt``, a one-line call of ``newManagerImpl``. Nothing of kubelet's code
is changed. Like the other harnesses it is built once per source hash into
``$TOPOLET_CACHE`` (default ``~/.cache/topolet``); :func:`require` skips without Go and
fails under ``TOPOLET_REQUIRE_ORACLE=1``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

from tests.go_harness import JsonLinesProcess, cache_dir, cached_binary, require_built

__all__ = ["NAME", "DeviceManagerHarness", "binary_path", "build", "require"]

TESTS = Path(__file__).resolve().parent
NAME = "devicemanager"
SOURCES = ("go.mod", "go.sum", "main.go", "_export/devicemanager_export.go")
#: Where the export file goes inside the vendor tree.
PACKAGE = "k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"


def binary_path() -> Path:
    """Where the harness built from the current sources lives."""
    return cached_binary(NAME, SOURCES)


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """ "" on success, else the first line of the error."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode == 0:
        return ""
    return f"{' '.join(cmd[1:3])} failed: " + (proc.stderr.strip().splitlines() or ["?"])[0]


def build() -> tuple[Path | None, str]:
    """(binary, "") or (None, why not): vendor, add the export file, build; cached."""
    target = binary_path()
    if target.is_file():
        return target, ""
    go = shutil.which("go")
    if go is None:
        return None, "no Go toolchain on PATH"
    # One stable build folder (so Go's build cache recognises the vendored packages from
    # one source change to the next), used by one build at a time.
    work = cache_dir() / f"{NAME}-build"
    work.mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f"{NAME}-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target, ""
        for source in ("go.mod", "go.sum", "main.go"):
            shutil.copyfile(TESTS / NAME / source, work / source)
        env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": ""}
        if why := _run([go, "mod", "vendor"], work, env):
            return None, why
        shutil.copyfile(
            TESTS / NAME / "_export" / "devicemanager_export.go",
            work / "vendor" / PACKAGE / "zz_topolet_export.go",
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{NAME}.partial.{os.getpid()}")
        if why := _run([go, "build", "-mod=vendor", "-trimpath", "-o", str(partial), "."], work, env):
            return None, why
        os.replace(partial, target)
    return target, ""


def require() -> Path:
    """The harness binary, or skip (fail under ``TOPOLET_REQUIRE_ORACLE=1``) with the reason."""
    return require_built(build(), f"kubelet's device manager (tests/{NAME})")


class DeviceManagerHarness(JsonLinesProcess):
    """kubelet's device manager serving ``<socket_dir>/kubelet.sock``; its log (klog) goes
    to *log*."""

    what = "the device manager harness"

    def __init__(self, binary: Path, socket_dir: Path, numa_nodes: tuple[int, ...], log: Path) -> None:
        socket_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir = socket_dir
        self.log = log
        self._log_file = open(log, "ab")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [str(binary), "-dir", str(socket_dir), "-numa", ",".join(map(str, numa_nodes)), "-v", "4"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
        )

    @property
    def checkpoint(self) -> Path:
        return self.socket_dir / "kubelet_internal_checkpoint"

    def exit_detail(self) -> str:
        return ":\n" + self.log.read_text(errors="replace")[-2000:]

    def close(self) -> None:
        super().close()
        self._log_file.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.devicemanager_go build``: build (or find) the harness, print its
    path; exit 1 with the reason when it cannot be built."""
    import sys
    import time

    args = sys.argv[1:] if argv is None else argv
    if args != ["build"]:
        print("usage: python -m tests.devicemanager_go build", file=sys.stderr)
        return 2
    began = time.monotonic()
    binary, why = build()
    if binary is None:
        print(f"tests/{NAME}: {why}", file=sys.stderr)
        return 1
    print(f"{binary} ({time.monotonic() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
