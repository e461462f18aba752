"""The kubelet device plugin server, API v1beta1 (gRPC adapter).

:class:`DevicePluginServer` serves ``v1beta1.DevicePlugin`` for one
:class:`~deviceplugin.resources.ResourceManager` on its own unix socket in the plugin
directory and registers it with kubelet. It knows nothing of GPUs or CPUs. The protocol
facts it follows are in shared/reference/deviceplugin.md §1 and §5:

* it serves *before* calling ``Register`` (kubelet dials back during the call), with
  ``version="v1beta1"``, the socket's file name as ``endpoint`` and the same options that
  ``GetDevicePluginOptions`` answers;
* ``ListAndWatch`` sends the full device list at once and again on every change (a
  resource change, a health event), and ends only when the server stops;
* kubelet restart (its socket re-created, or ours deleted) is detected by polling the two
  sockets' identities every ``poll_interval`` seconds; the old gRPC server and its streams
  are torn down first, then a fresh server is started and registered again;
* it removes only its own socket, and only while the file there is the one it bound;
* streams are capped at ``max_streams`` (a newer stream ends the oldest), and the thread
  pool has ``max_streams + unary_workers`` threads, so open streams never starve
  ``Allocate``.

Request errors become gRPC statuses: too few devices → RESOURCE_EXHAUSTED, any other
:class:`~deviceplugin.errors.DevicePluginError` → INVALID_ARGUMENT; the server keeps serving.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from deviceplugin.api.v1beta1 import api_pb2, api_pb2_grpc
from deviceplugin.errors import (
    DevicePluginError,
    InsufficientDevicesError,
    InvalidRequestError,
    UnknownDeviceError,
    quote_ids,
)
from deviceplugin.resources import (
    ContainerAllocation,
    Device,
    HealthSource,
    ResourceManager,
    allocate_request,
)

__all__ = [
    "API_VERSION",
    "DEVICE_PLUGIN_DIR",
    "HEALTHY",
    "KUBELET_SOCKET",
    "UNHEALTHY",
    "DevicePluginServer",
    "RegistrationError",
    "default_socket_name",
]

log = logging.getLogger(__name__)

API_VERSION = "v1beta1"
DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")
KUBELET_SOCKET = "kubelet.sock"
HEALTHY, UNHEALTHY = "Healthy", "Unhealthy"

T = TypeVar("T")
_Identity = tuple[int, int, int]


class RegistrationError(DevicePluginError):
    """The plugin could not serve on its socket or kubelet refused ``Register``."""


def default_socket_name(resource_name: str) -> str:
    """``topolet-<name>.sock`` from ``domain/name`` (``nvidia.com/gpu`` → ``topolet-gpu.sock``)."""
    name = resource_name.rsplit("/", 1)[-1]
    return "topolet-" + "".join(c if c.isalnum() or c in "._-" else "-" for c in name) + ".sock"


def _identity(path: Path) -> _Identity | None:
    """(device, inode, ctime) of a unix socket at ``path``; None when absent or not a socket."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_ctime_ns) if stat.S_ISSOCK(st.st_mode) else None


@dataclass
class _Stream:
    epoch: int
    ended: bool = False


class _Servicer(api_pb2_grpc.DevicePluginServicer):
    """gRPC entry points of one server generation (``epoch``)."""

    def __init__(self, plugin: DevicePluginServer, epoch: int) -> None:
        self._plugin, self._epoch = plugin, epoch

    def GetDevicePluginOptions(self, request: Any, context: Any) -> Any:
        return self._plugin.options()

    def ListAndWatch(self, request: Any, context: Any) -> Iterator[Any]:
        yield from self._plugin._list_and_watch(context, self._epoch)

    def GetPreferredAllocation(self, request: Any, context: Any) -> Any:
        return self._plugin._answer(context, lambda: self._plugin._preferred(request))

    def Allocate(self, request: Any, context: Any) -> Any:
        return self._plugin._answer(context, lambda: self._plugin._allocate(request))

    def PreStartContainer(self, request: Any, context: Any) -> Any:
        return self._plugin._answer(context, lambda: self._plugin._pre_start(request))


class DevicePluginServer:
    """Serve one resource to kubelet and keep it registered.

    >>> server = DevicePluginServer(resource, health, plugin_dir=Path(tmp))   # doctest: +SKIP
    >>> server.start()        # serves, registers, watches for kubelet restarts  # doctest: +SKIP
    >>> server.stop()         # on SIGTERM                                        # doctest: +SKIP
    """

    def __init__(
        self,
        resource: ResourceManager,
        health: HealthSource | None = None,
        *,
        plugin_dir: Path = DEVICE_PLUGIN_DIR,
        socket_name: str | None = None,
        kubelet_socket_name: str = KUBELET_SOCKET,
        poll_interval: float = 0.1,
        max_streams: int = 2,
        unary_workers: int = 8,
        register_timeout: float = 15.0,
    ) -> None:
        name = socket_name or default_socket_name(resource.resource_name)
        if "/" in name or name in ("", ".", "..", kubelet_socket_name):
            raise RegistrationError(
                f"socket_name: got {name!r}, expected a file name such as 'x.sock' "
                f"other than {kubelet_socket_name!r}"
            )
        if max_streams < 1 or unary_workers < 1:
            raise RegistrationError("max_streams and unary_workers: expected at least 1 each")
        self.resource, self.health = resource, health
        self.plugin_dir = Path(plugin_dir)
        self.socket_name, self.kubelet_socket_name = name, kubelet_socket_name
        self.poll_interval, self.register_timeout = poll_interval, register_timeout
        self.max_streams, self.unary_workers = max_streams, unary_workers
        self.registrations = 0
        self._cond = threading.Condition()
        self._generation = 0
        self._epoch = 0
        self._streams: list[_Stream] = []
        self._unhealthy: set[str] = set()
        self._server: grpc.Server | None = None
        self._own_id: _Identity | None = None
        self._kubelet_id: _Identity | None = None
        self._registered = False
        self._next_attempt = 0.0
        self._life = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        resource.subscribe(self.notify)

    # ------------------------------------------------------------------ paths
    @property
    def socket_path(self) -> Path:
        return self.plugin_dir / self.socket_name

    @property
    def kubelet_socket(self) -> Path:
        return self.plugin_dir / self.kubelet_socket_name

    @property
    def registered(self) -> bool:
        return self._registered

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Serve, register (retried by the watcher while kubelet is not there) and watch."""
        with self._life:
            if self._threads:
                return
            self._stopping.clear()
            self._serve()
            self._try_register()
            if self.health is not None:
                self.health.start()
                self._spawn("health", self._pump_health)
            self._spawn("watch", self._watch)

    def stop(self) -> None:
        """Stop watching, end every stream, stop serving and remove our socket. Idempotent."""
        with self._life:
            self._stopping.set()
            threads, self._threads = self._threads, []
        for t in threads:
            t.join()
        if self.health is not None:
            self.health.stop()
        with self._life:
            self._teardown()
        log.info("device plugin %s stopped", self.resource.resource_name)

    def notify(self) -> None:
        """The device list may have changed: every stream sends a fresh snapshot."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=f"devplugin-{name}-{self.socket_name}", daemon=True)
        t.start()
        self._threads.append(t)

    # ---------------------------------------------------------------- serving
    def _serve(self) -> None:
        """Start a fresh gRPC server generation on our socket and prove it answers."""
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        path = self.socket_path
        if _identity(path) is not None:
            path.unlink()  # a stale socket of ours from an earlier run
        elif path.exists() or path.is_symlink():
            raise RegistrationError(
                f"{path} exists and is not a unix socket; remove it or pick another socket_name"
            )
        with self._cond:
            self._epoch += 1
            epoch = self._epoch
        server = grpc.server(
            ThreadPoolExecutor(
                self.max_streams + self.unary_workers, thread_name_prefix=f"devplugin-{self.socket_name}"
            )
        )
        api_pb2_grpc.add_DevicePluginServicer_to_server(_Servicer(self, epoch), server)
        try:
            server.add_insecure_port(f"unix://{path}")
        except RuntimeError as e:
            raise RegistrationError(f"cannot listen on {path}: {e}") from e
        server.start()
        self._server, self._own_id = server, _identity(path)
        with grpc.insecure_channel(f"unix://{path}") as ch:
            grpc.channel_ready_future(ch).result(timeout=5)
        log.info("serving %s on %s", self.resource.resource_name, path)

    def _teardown(self) -> None:
        """End this generation's streams, stop its server, remove our socket if still ours."""
        with self._cond:
            self._epoch += 1
            for s in self._streams:
                s.ended = True
            self._cond.notify_all()
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=0.5).wait()
        if self._own_id is not None and _identity(self.socket_path) == self._own_id:
            self.socket_path.unlink()
        self._own_id, self._registered = None, False

    # ----------------------------------------------------------- registration
    def options(self) -> Any:
        return api_pb2.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True)

    def _register(self) -> None:
        request = api_pb2.RegisterRequest(
            version=API_VERSION,
            endpoint=self.socket_name,
            resource_name=self.resource.resource_name,
            options=self.options(),
        )
        self._kubelet_id = _identity(self.kubelet_socket)
        try:
            with grpc.insecure_channel(f"unix://{self.kubelet_socket}") as ch:
                api_pb2_grpc.RegistrationStub(ch).Register(request, timeout=self.register_timeout)
        except grpc.RpcError as e:
            raise RegistrationError(
                f"Register of {self.resource.resource_name} on {self.kubelet_socket} "
                f"failed: {e.code().name}: {e.details()}"
            ) from e
        self._registered = True
        self.registrations += 1
        log.info("registered %s with kubelet (endpoint %s)", self.resource.resource_name, self.socket_name)

    def _try_register(self) -> None:
        if self._kubelet_id is None and _identity(self.kubelet_socket) is None:
            return
        try:
            self._register()
        except RegistrationError as e:
            self._next_attempt = time.monotonic() + 1.0
            log.warning("%s; retrying", e)

    def _watch(self) -> None:
        while not self._stopping.wait(self.poll_interval):
            with self._life:
                if not self._stopping.is_set():
                    self._check()

    def _check(self) -> None:
        kubelet = _identity(self.kubelet_socket)
        own_ok = self._server is not None and _identity(self.socket_path) == self._own_id
        restarted = kubelet is not None and self._kubelet_id is not None and kubelet != self._kubelet_id
        if own_ok and not restarted:
            if not self._registered and kubelet is not None and time.monotonic() >= self._next_attempt:
                self._try_register()
            return
        if self._server is not None:
            log.info(
                "kubelet restart detected for %s (%s); restarting the plugin server",
                self.resource.resource_name,
                "kubelet.sock re-created" if restarted else "our socket was removed",
            )
            self._teardown()
        if kubelet is None:
            return  # wait for kubelet to come back
        try:
            self._serve()
        except RegistrationError as e:
            log.warning("%s; retrying", e)
            return
        self._try_register()
        if self._registered:
            log.info("re-registered %s after kubelet restart", self.resource.resource_name)

    # ----------------------------------------------------------------- health
    def _pump_health(self) -> None:
        assert self.health is not None
        while not self._stopping.is_set():
            event = self.health.get(timeout=0.2)
            if event is None:
                continue
            with self._cond:
                before = event.device_id in self._unhealthy
                (self._unhealthy.discard if event.healthy else self._unhealthy.add)(event.device_id)
            if before != (not event.healthy):
                log.info(
                    "device %s of %s is now %s",
                    event.device_id,
                    self.resource.resource_name,
                    HEALTHY if event.healthy else UNHEALTHY,
                )
                self.notify()

    # ---------------------------------------------------------- ListAndWatch
    def device_list(self) -> list[Device]:
        """The current devices, with health events applied."""
        with self._cond:
            unhealthy = set(self._unhealthy)
        return [
            Device(d.id, d.healthy and d.id not in unhealthy, d.numa_nodes) for d in self.resource.devices()
        ]

    def _snapshot(self) -> Any:
        return api_pb2.ListAndWatchResponse(
            devices=[
                api_pb2.Device(
                    ID=d.id,
                    health=HEALTHY if d.healthy else UNHEALTHY,
                    topology=api_pb2.TopologyInfo(nodes=[api_pb2.NUMANode(ID=n) for n in d.numa_nodes])
                    if d.numa_nodes
                    else None,
                )
                for d in self.device_list()
            ]
        )

    def _open_stream(self, epoch: int) -> _Stream:
        stream = _Stream(epoch)
        with self._cond:
            self._streams.append(stream)
            live = [s for s in self._streams if not s.ended]
            for old in live[: max(0, len(live) - self.max_streams)]:
                old.ended = True
                log.warning(
                    "ending an older ListAndWatch stream of %s: at most %d streams are served",
                    self.resource.resource_name,
                    self.max_streams,
                )
            self._cond.notify_all()
        return stream

    def _list_and_watch(self, context: Any, epoch: int) -> Iterator[Any]:
        stream = self._open_stream(epoch)
        context.add_callback(self._wake)
        log.info("kubelet opened ListAndWatch for %s", self.resource.resource_name)
        sent = [-1]  # generation of the last snapshot sent
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(
                        lambda: self._generation != sent[0] or stream.ended or self._epoch != epoch,
                        timeout=1.0,
                    )
                    if stream.ended or self._epoch != epoch:
                        return
                    generation = self._generation
                if not context.is_active():
                    return
                if generation != sent[0]:
                    sent[0] = generation
                    yield self._snapshot()
        finally:
            with self._cond:
                stream.ended = True
                self._streams.remove(stream)

    # ------------------------------------------------------------------ unary
    def _answer(self, context: Any, call: Callable[[], T]) -> T:
        try:
            return call()
        except InsufficientDevicesError as e:
            log.warning("%s: %s", self.resource.resource_name, _bounded(str(e)))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _bounded(str(e)))
        except DevicePluginError as e:
            log.warning("%s: %s", self.resource.resource_name, _bounded(str(e)))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _bounded(str(e)))
        except Exception as e:
            log.exception("%s: request failed", self.resource.resource_name)
            context.abort(grpc.StatusCode.INTERNAL, _bounded(f"{type(e).__name__}: {e}"))
        raise AssertionError("context.abort returned")  # pragma: no cover

    def _check_ids(self, field: str, ids: Sequence[str], known: Sequence[str]) -> None:
        if dup := sorted(i for i, n in Counter(ids).items() if n > 1):
            raise InvalidRequestError(field, f"device id(s) {quote_ids(dup)} listed more than once")
        known_set = set(known)
        if unknown := [i for i in ids if i not in known_set]:
            raise UnknownDeviceError(field, unknown, known)

    def _preferred(self, request: Any) -> Any:
        if not request.container_requests:
            raise InvalidRequestError("container_requests", "expected at least one container request")
        known = [d.id for d in self.resource.devices()]
        out = []
        for req in request.container_requests:
            available, must, size = (
                list(req.available_deviceIDs),
                list(req.must_include_deviceIDs),
                req.allocation_size,
            )
            if size < 1:
                raise InvalidRequestError("allocation_size", f"got {size}, expected a positive number")
            self._check_ids("available_deviceIDs", available, known)
            self._check_ids("must_include_deviceIDs", must, known)
            if missing := sorted(set(must) - set(available)):
                raise InvalidRequestError(
                    "must_include_deviceIDs", f"{quote_ids(missing)} not in available_deviceIDs"
                )
            if len(must) > size:
                raise InvalidRequestError(
                    "must_include_deviceIDs", f"{len(must)} ids exceed allocation_size {size}"
                )
            if size > len(available):
                raise InsufficientDevicesError(
                    "allocation_size",
                    f"{size} devices requested, only {len(available)} available",
                    requested=size,
                    available=len(available),
                )
            ids = self.resource.preferred_allocation(available, must, size)
            out.append(api_pb2.ContainerPreferredAllocationResponse(deviceIDs=ids))
        return api_pb2.PreferredAllocationResponse(container_responses=out)

    def _allocate(self, request: Any) -> Any:
        if not request.container_requests:
            raise InvalidRequestError("container_requests", "expected at least one container request")
        known = [d.id for d in self.resource.devices()]
        for req in request.container_requests:
            if not req.devices_ids:
                raise InvalidRequestError("devices_ids", "expected at least one device id")
            self._check_ids("devices_ids", list(req.devices_ids), known)
        requests = [list(req.devices_ids) for req in request.container_requests]
        responses = [_to_proto(a) for a in allocate_request(self.resource, requests)]
        return api_pb2.AllocateResponse(container_responses=responses)

    def _pre_start(self, request: Any) -> Any:
        self._check_ids("devices_ids", list(request.devices_ids), [d.id for d in self.resource.devices()])
        self.resource.pre_start(list(request.devices_ids))
        return api_pb2.PreStartContainerResponse()


#: The longest status message sent (in UTF-8 bytes): well under gRPC's metadata limit,
#: even when every byte is percent-encoded on the wire.
MAX_ERROR_BYTES = 1024


def _bounded(message: str) -> str:
    """*message* cut to :data:`MAX_ERROR_BYTES`, saying how long it was."""
    data = message.encode("utf-8", "replace")
    if len(data) <= MAX_ERROR_BYTES:
        return message
    head = data[: MAX_ERROR_BYTES - 40].decode("utf-8", "ignore")
    return f"{head}... ({len(data)} bytes in all)"


def _to_proto(a: ContainerAllocation) -> Any:
    return api_pb2.ContainerAllocateResponse(
        envs=dict(a.envs),
        annotations=dict(a.annotations),
        mounts=[
            api_pb2.Mount(container_path=m.container_path, host_path=m.host_path, read_only=m.read_only)
            for m in a.mounts
        ],
        devices=[
            api_pb2.DeviceSpec(
                container_path=d.container_path, host_path=d.host_path, permissions=d.permissions
            )
            for d in a.devices
        ],
    )
