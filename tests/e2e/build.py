"""Build the real control plane once: etcd, kube-apiserver, kube-scheduler and
kube-controller-manager from Go source.

The versions are the ones ``tests/e2e/go.mod`` pins (``k8s.io/kubernetes`` and
``go.etcd.io/etcd/server/v3``). The binaries go to a cache outside the repository keyed by
those versions and the Go version, ``~/.cache/topolet/e2e-bin-<k8s>-etcd<etcd>-<go>/``
(``TOPOLET_E2E_BIN`` overrides the directory), so a second run finds them and builds
nothing. Go's own module and build caches (``GOMODCACHE``, ``GOCACHE``) stay where Go keeps
them, also outside the repository.

Run ``python tests/e2e/build.py`` to build (if missing) and print the directory; exit 1
with one line when Go is absent or the build fails.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["BINARIES", "GO_MOD", "BuildError", "bin_dir", "ensure_binaries", "go_available", "pins"]

HERE = Path(__file__).resolve().parent
GO_MOD = HERE / "go.mod"
#: Binary name -> Go package path.
BINARIES = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
}
_PIN = re.compile(r"^\s*(k8s\.io/kubernetes|go\.etcd\.io/etcd/server/v3)\s+(v\S+)", re.MULTILINE)


class BuildError(Exception):
    """Go is missing or a build failed; the message is one line."""


def go_available() -> bool:
    return shutil.which("go") is not None


def pins() -> dict[str, str]:
    """``{"kubernetes": "v1.34.N", "etcd": "v3.6.N"}`` from go.mod."""
    found = dict(_PIN.findall(GO_MOD.read_text(encoding="utf-8")))
    try:
        return {"kubernetes": found["k8s.io/kubernetes"], "etcd": found["go.etcd.io/etcd/server/v3"]}
    except KeyError as err:
        raise BuildError(f"{GO_MOD}: no require line for {err.args[0]}") from None


def _go_version() -> str:
    out = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise BuildError(f"go env GOVERSION failed: {out.stderr.strip()[:200]}")
    return out.stdout.strip()


def bin_dir() -> Path:
    """Where the binaries of the pinned versions live (built or not)."""
    override = os.environ.get("TOPOLET_E2E_BIN")
    if override:
        return Path(override)
    p = pins()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "topolet" / f"e2e-bin-{p['kubernetes']}-etcd{p['etcd']}-{_go_version()}"


def _ldflags(k8s: str) -> str:
    major, minor = k8s.lstrip("v").split(".")[:2]
    stamp = {
        "gitVersion": k8s,
        "gitMajor": major,
        "gitMinor": minor,
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{k}={v}" for k, v in stamp.items()]
    return " ".join(flags)


def _complete(d: Path) -> bool:
    return all(os.access(d / name, os.X_OK) for name in BINARIES)


def ensure_binaries(*, log: bool = True) -> Path:
    """Build the binaries unless the cache has them; returns their directory."""
    if not go_available():
        raise BuildError("go: not found on PATH; install Go >= 1.24 to build the e2e control plane")
    target = bin_dir()
    if _complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; later waiters reuse it
        if _complete(target):
            return target
        work = target.with_name(target.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        env = {**os.environ, "GOTOOLCHAIN": "local"}
        cmd = [
            "go",
            "build",
            "-tags=grpcnotrace",
            "-ldflags",
            _ldflags(pins()["kubernetes"]),
            "-o",
            str(work) + "/",
            *BINARIES.values(),
        ]
        started = time.monotonic()
        if log:
            print(f"building {', '.join(BINARIES)} into {target} (cold: tens of minutes)", file=sys.stderr)
        out = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            tail = " | ".join(out.stderr.strip().splitlines()[-3:])
            raise BuildError(f"go build in {HERE} failed (exit {out.returncode}): {tail[:600]}")
        # go build names a module-root main package ending in /vN after the element before it.
        (work / "server").rename(work / "etcd")
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
        if log:
            print(f"built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return target


def main() -> int:
    try:
        print(ensure_binaries())
    except BuildError as err:
        print(f"tests/e2e/build.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
