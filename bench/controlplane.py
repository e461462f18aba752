"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver and kube-schedulers.

The binaries are real builds of one Kubernetes release (``tests/e2e/build.py`` makes them;
:func:`find_bin_dir` finds its cache). :class:`ControlPlane` starts etcd and the API server
with certificates made on the fly (:mod:`bench.kube_certs`), waits for ``/readyz`` and
writes one kubeconfig per identity; :meth:`ControlPlane.start_scheduler` runs a
kube-scheduler from a ``KubeSchedulerConfiguration``. Every process logs to a file in the
state directory and is stopped (SIGTERM, then SIGKILL) by :meth:`ControlPlane.stop`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.errors import BenchError
from bench.kube_certs import ClientCert, Pki, make_pki

__all__ = [
    "ADMIN",
    "BINARIES",
    "ControlPlane",
    "ControlPlaneError",
    "Proc",
    "find_bin_dir",
    "free_port",
    "http_get",
]

BINARIES = ("etcd", "kube-apiserver", "kube-scheduler")
#: ``(user, groups)`` of the cluster administrator.
ADMIN = ("topolet-e2e-admin", ("system:masters",))
_CACHE_GLOB = "e2e-bin-*"


class ControlPlaneError(BenchError):
    """A component is missing, failed to start or did not become ready; one line."""


def find_bin_dir(explicit: Path | None = None) -> Path:
    """The directory holding etcd, kube-apiserver and kube-scheduler: *explicit*, else
    ``$TOPOLET_E2E_BIN``, else the newest ``~/.cache/topolet/e2e-bin-*`` that is complete."""
    candidates: list[Path] = []
    if explicit is not None:
        candidates = [explicit]
    elif os.environ.get("TOPOLET_E2E_BIN"):
        candidates = [Path(os.environ["TOPOLET_E2E_BIN"])]
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "topolet"
        if cache.is_dir():
            candidates = sorted(
                (p for p in cache.glob(_CACHE_GLOB) if p.is_dir() and not p.name.endswith(".partial")),
                key=lambda p: p.stat().st_mtime,
                reverse=True,
            )
    for d in candidates:
        if all(os.access(d / b, os.X_OK) for b in BINARIES):
            return d
    where = candidates[0] if candidates else "~/.cache/topolet/e2e-bin-*"
    raise ControlPlaneError(
        f"--bin-dir {where}: no etcd, kube-apiserver and kube-scheduler there; "
        "build them with: python tests/e2e/build.py"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """``(status, body)`` of a GET; status 0 when the server cannot be reached."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as r:
            return int(r.status), bytes(r.read(16 << 20))
    except urllib.error.HTTPError as e:
        return int(e.code), b""
    except (OSError, ValueError):
        return 0, b""


@dataclass
class Proc:
    """A child process logging to *log*."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Proc:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return " | ".join(text)[-800:]

    def wait_ready(self, url: str, ctx: ssl.SSLContext | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ControlPlaneError(f"{self.name} exited ({self.log}): {self.tail()}")
            if http_get(url, ctx, timeout=2.0)[0] == 200:
                return
            time.sleep(0.3)
        raise ControlPlaneError(
            f"{self.name}: {url} not ready after {timeout:.0f} s ({self.log}): {self.tail()}"
        )


def _kubeconfig(server: str, ca: Path, cert: ClientCert, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "loopback", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [
            {"name": name, "user": {"client-certificate": str(cert.cert), "client-key": str(cert.key)}}
        ],
        "contexts": [{"name": name, "context": {"cluster": "loopback", "user": name}}],
        "current-context": name,
    }


class ControlPlane:
    """etcd + kube-apiserver on 127.0.0.1, state under *directory* (see the module docstring)."""

    def __init__(self, bin_dir: Path, directory: Path, *, ready_timeout_s: float = 120.0) -> None:
        self.bin_dir, self.dir = bin_dir, directory
        self.ready_timeout_s = ready_timeout_s
        self.procs: list[Proc] = []
        self.pki: Pki | None = None
        self.url = ""

    # ------------------------------------------------------------ start/stop
    def start(self) -> ControlPlane:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pki = make_pki(self.dir / "pki")
        client, peer, secure = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client}"
        etcd = self._spawn(
            "etcd",
            [
                "--name=loopback",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=loopback=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        etcd.wait_ready(f"{etcd_url}/health", None, self.ready_timeout_s)
        self.url = f"https://127.0.0.1:{secure}"
        pki = self.pki
        api = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={self.dir / 'apiserver'}",
                f"--tls-cert-file={pki.serving.cert}",
                f"--tls-private-key-file={pki.serving.key}",
                f"--client-ca-file={pki.ca}",
                f"--secure-port={secure}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--service-account-issuer={self.url}/",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--authorization-mode=RBAC",
                # No kube-controller-manager: no default service account, and nothing would lift the
                # not-ready taint TaintNodesByCondition puts on kubelet-less Node objects.
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
                "--allow-privileged=true",
                "--max-requests-inflight=2000",
                "--max-mutating-requests-inflight=1000",
                "--v=1",
            ],
        )
        api.wait_ready(f"{self.url}/readyz", self.ssl_context(*ADMIN), self.ready_timeout_s)
        return self

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, args: list[str], log_name: str = "") -> Proc:
        proc = Proc(name, [str(self.bin_dir / name), *args], self.dir / f"{log_name or name}.log").start()
        self.procs.append(proc)
        return proc

    # ------------------------------------------------------------ identities
    def client_cert(self, user: str, groups: tuple[str, ...] = ()) -> ClientCert:
        assert self.pki is not None, "start() first"
        safe = user.replace(":", "_")
        existing = ClientCert(self.pki.directory / f"{safe}.crt", self.pki.directory / f"{safe}.key")
        if existing.cert.exists():
            return existing
        return self.pki.client(safe, user, groups)

    def kubeconfig(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig file for *user* (a client certificate; CN = user, O = groups)."""
        assert self.pki is not None, "start() first"
        path = self.dir / f"{user.replace(':', '_')}.kubeconfig"
        if not path.exists():
            cfg = _kubeconfig(self.url, self.pki.ca, self.client_cert(user, groups), user)
            path.write_text(yaml.safe_dump(cfg))
        return path

    def admin_kubeconfig(self) -> Path:
        return self.kubeconfig(*ADMIN)

    def ssl_context(self, user: str = "", groups: tuple[str, ...] = ()) -> ssl.SSLContext:
        """A client TLS context trusting the CA, presenting *user*'s certificate if given."""
        assert self.pki is not None, "start() first"
        ctx = ssl.create_default_context(cafile=str(self.pki.ca))
        if user:
            c = self.client_cert(user, groups)
            ctx.load_cert_chain(str(c.cert), str(c.key))
        return ctx

    # ------------------------------------------------------------ schedulers
    def start_scheduler(
        self, name: str, config: dict[str, Any], *, extra_args: tuple[str, ...] = ()
    ) -> tuple[Proc, int]:
        """Run kube-scheduler with *config* (a KubeSchedulerConfiguration dict); returns the
        process and its secure port, where ``/metrics`` is readable without credentials."""
        path = self.dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        proc = self._spawn(
            "kube-scheduler",
            [
                f"--config={path}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.dir / (name + '-certs')}",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
                *extra_args,
            ],
            log_name=name,
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        proc.wait_ready(f"https://127.0.0.1:{port}/healthz", insecure, self.ready_timeout_s)
        return proc, port

    def start_controller_manager(self, controllers: tuple[str, ...]) -> Proc:
        """Run kube-controller-manager with only *controllers* (as the administrator, no
        leader election); returns once its ``/healthz`` answers. Its binary must be in the
        same directory as the others (``python tests/e2e/build.py`` builds it)."""
        binary = self.bin_dir / "kube-controller-manager"
        if not os.access(binary, os.X_OK):
            raise ControlPlaneError(f"{binary}: missing; build it with: python tests/e2e/build.py")
        port = free_port()
        proc = self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.admin_kubeconfig()}",
                f"--controllers={','.join(controllers)}",
                "--leader-elect=false",
                "--use-service-account-credentials=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.dir / 'kube-controller-manager-certs'}",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
                "--authentication-skip-lookup",
            ],
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        proc.wait_ready(f"https://127.0.0.1:{port}/healthz", insecure, self.ready_timeout_s)
        return proc

    def stop_proc(self, proc: Proc) -> None:
        proc.stop()
        with contextlib.suppress(ValueError):
            self.procs.remove(proc)

    def state(self) -> dict[str, Any]:
        """What a human needs to reach the cluster (written by ``cluster.sh up``)."""
        return {"server": self.url, "kubeconfig": str(self.admin_kubeconfig()), "dir": str(self.dir)}

    def write_state(self) -> Path:
        path = self.dir / "cluster.json"
        path.write_text(json.dumps(self.state(), indent=2))
        return path
