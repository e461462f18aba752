"""The kubelet DRA plugin over gRPC: the DRA service and plugin-watcher registration.

:class:`DRAPluginServer` serves, for one :class:`~deviceplugin.dra.plugin.DRAPlugin`:

* ``k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin`` and ``...v1beta1.DRAPlugin`` (the same
  answers; kubelet 1.34 takes the first of ``supported_versions`` it knows, kubelets up
  to 1.33 know only v1beta1) on ``<plugin dir>/dra.sock``;
* ``pluginregistration.Registration`` on ``<registry dir>/<driver>-reg.sock``, where
  kubelet's plugin watcher finds it: ``GetInfo`` answers at once from memory
  (``type`` ``DRAPlugin``, ``name`` = the driver, ``endpoint`` = the DRA socket's full
  path, ``supported_versions`` ``["v1.DRAPlugin", "v1beta1.DRAPlugin"]``, v1 first, or
  the subset given) and
  ``NotifyRegistrationStatus`` records kubelet's verdict (:attr:`registered`,
  :attr:`registration_error`).

The DRA socket is served before the registration socket appears, because kubelet dials
the endpoint as soon as it has the info. Kubelet never retries a registration it refused
(or one whose ``GetInfo`` timed out), so after a refusal the registration socket is
re-created, after ``retry_s`` seconds, doubling up to ``max_retry_s``: the plugin watcher
sees a new socket and tries again. Stale sockets of an earlier run are replaced;
:meth:`DRAPluginServer.stop` removes only the sockets this server bound.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from deviceplugin.api.dra.v1 import api_pb2 as v1_pb2
from deviceplugin.api.dra.v1 import api_pb2_grpc as v1_grpc
from deviceplugin.api.dra.v1beta1 import api_pb2 as v1beta1_pb2
from deviceplugin.api.dra.v1beta1 import api_pb2_grpc as v1beta1_grpc
from deviceplugin.api.pluginregistration.v1 import api_pb2 as reg_pb2
from deviceplugin.api.pluginregistration.v1 import api_pb2_grpc as reg_grpc
from deviceplugin.dra.claims import ClaimRef
from deviceplugin.dra.plugin import DRAPlugin
from deviceplugin.errors import DevicePluginConfigError

__all__ = ["PLUGINS_DIR", "PLUGINS_REGISTRY", "PLUGIN_TYPE", "SUPPORTED_VERSIONS", "DRAPluginServer"]

log = logging.getLogger(__name__)

PLUGINS_REGISTRY = Path("/var/lib/kubelet/plugins_registry")
PLUGINS_DIR = Path("/var/lib/kubelet/plugins")
PLUGIN_TYPE = "DRAPlugin"
SUPPORTED_VERSIONS = ("v1.DRAPlugin", "v1beta1.DRAPlugin")
#: The most claims one call may name (kubelet sends a pod's claims: a handful).
MAX_CLAIMS = 1024


class _DRAService:
    """One version of the DRA service (the messages differ only in their package)."""

    def __init__(self, plugin: DRAPlugin, pb: ModuleType) -> None:
        self.plugin, self.pb = plugin, pb

    def _refs(self, request: Any, context: Any) -> list[ClaimRef]:
        if len(request.claims) > MAX_CLAIMS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"claims: at most {MAX_CLAIMS} per call")
        return [ClaimRef(c.namespace, c.uid, c.name) for c in request.claims]

    def NodePrepareResources(self, request: Any, context: Any) -> Any:
        resp = self.pb.NodePrepareResourcesResponse()
        for uid, result in self.plugin.prepare(self._refs(request, context)).items():
            entry = resp.claims[uid]
            entry.error = result.error
            for d in result.devices:
                entry.devices.add(
                    request_names=list(d.requests),
                    pool_name=d.pool,
                    device_name=d.device,
                    cdi_device_ids=list(d.cdi_ids),
                )
        return resp

    def NodeUnprepareResources(self, request: Any, context: Any) -> Any:
        resp = self.pb.NodeUnprepareResourcesResponse()
        for uid, error in self.plugin.unprepare(self._refs(request, context)).items():
            resp.claims[uid].error = error
        return resp


class _Registration:
    def __init__(self, server: DRAPluginServer) -> None:
        self.server = server

    def GetInfo(self, request: Any, context: Any) -> Any:
        s = self.server
        return reg_pb2.PluginInfo(
            type=PLUGIN_TYPE,
            name=s.driver,
            endpoint=str(s.dra_socket),
            supported_versions=list(s.supported_versions),
        )

    def NotifyRegistrationStatus(self, request: Any, context: Any) -> Any:
        self.server._on_status(request.plugin_registered, request.error)
        return reg_pb2.RegistrationStatusResponse()


def _bind(path: Path, executor: ThreadPoolExecutor) -> grpc.Server:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            path.unlink()  # a stale socket of an earlier run
    except FileNotFoundError:
        pass
    server = grpc.server(executor)
    server.add_insecure_port(f"unix://{path}")
    return server


class DRAPluginServer:
    """See the module docstring."""

    def __init__(
        self,
        plugin: DRAPlugin,
        *,
        registry_dir: Path = PLUGINS_REGISTRY,
        plugin_dir: Path | None = None,
        workers: int = 4,
        supported_versions: Sequence[str] = SUPPORTED_VERSIONS,
        retry_s: float = 5.0,
        max_retry_s: float = 300.0,
    ) -> None:
        if not supported_versions or not set(supported_versions) <= set(SUPPORTED_VERSIONS):
            raise DevicePluginConfigError(
                "DRA plugin supported_versions", ",".join(supported_versions), SUPPORTED_VERSIONS
            )
        self.supported_versions = tuple(supported_versions)
        self.plugin = plugin
        self.driver = plugin.driver
        self.dra_socket = (plugin_dir or PLUGINS_DIR / self.driver) / "dra.sock"
        self.registration_socket = registry_dir / f"{self.driver}-reg.sock"
        self.workers = workers
        self.registered = threading.Event()
        self.registration_error = ""
        self.min_retry_s = self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self._lock = threading.Lock()
        self._stopping = False
        self._retry: threading.Timer | None = None
        self._dra: tuple[grpc.Server, Path, tuple[int, int]] | None = None
        self._reg: tuple[grpc.Server, Path, tuple[int, int]] | None = None

    def start(self) -> None:
        executor = ThreadPoolExecutor(self.workers, thread_name_prefix="topolet-dra")
        dra = _bind(self.dra_socket, executor)
        v1_grpc.add_DRAPluginServicer_to_server(_DRAService(self.plugin, v1_pb2), dra)
        v1beta1_grpc.add_DRAPluginServicer_to_server(_DRAService(self.plugin, v1beta1_pb2), dra)
        dra.start()
        self._dra = (dra, self.dra_socket, _identity(self.dra_socket))
        with self._lock:
            self._stopping = False
            self._serve_registration()
        log.info("DRA plugin %s serving %s, registration at %s", self.driver, self.dra_socket,
                 self.registration_socket)  # fmt: skip

    def _serve_registration(self) -> None:
        """Bind a fresh registration socket (caller holds the lock)."""
        reg = _bind(self.registration_socket, ThreadPoolExecutor(2, thread_name_prefix="topolet-dra-reg"))
        reg_grpc.add_RegistrationServicer_to_server(_Registration(self), reg)
        reg.start()
        self._reg = (reg, self.registration_socket, _identity(self.registration_socket))

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving and remove the sockets this server bound (registration first, so
        kubelet stops calling before the service goes)."""
        with self._lock:
            self._stopping = True
            if self._retry is not None:
                self._retry.cancel()
            held, self._reg = self._reg, None
        for item in (held, self._dra):
            if item is not None:
                _close(*item, grace)
        self._dra = None
        self.registered.clear()

    def _reregister(self) -> None:
        """Kubelet does not retry a failed registration: offer a new socket to its watcher."""
        with self._lock:
            if self._stopping:
                return
            old, self._reg = self._reg, None
            if old is not None:
                _close(*old, 0)
            self._serve_registration()
        log.info("DRA driver %s: registration socket re-created for kubelet to retry", self.driver)

    def _on_status(self, registered: bool, error: str) -> None:
        with self._lock:
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
            if registered:
                self.registration_error = ""
                self.retry_s = self.min_retry_s
                self.registered.set()
                log.info("kubelet registered DRA driver %s", self.driver)
                return
            self.registration_error = error or "kubelet gave no reason"
            self.registered.clear()
            log.error("kubelet refused DRA driver %s: %s; retrying in %.0fs", self.driver,
                      self.registration_error, self.retry_s)  # fmt: skip
            if not self._stopping:
                self._retry = threading.Timer(self.retry_s, self._reregister)
                self._retry.daemon = True
                self._retry.start()
            self.retry_s = min(self.retry_s * 2, self.max_retry_s)


def _identity(path: Path) -> tuple[int, int]:
    """Inode and change time: an inode number alone is reused at once after an unlink."""
    st = os.stat(path)
    return st.st_ino, st.st_ctime_ns


def _close(server: grpc.Server, path: Path, identity: tuple[int, int], grace: float) -> None:
    """Stop *server* and remove its socket if the file there is still the one it bound."""
    server.stop(grace).wait()
    try:
        if _identity(path) == identity:
            path.unlink()
    except FileNotFoundError:
        pass
