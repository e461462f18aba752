"""A stand-in for kubelet's device manager and Pod Resources API, over real unix sockets.

It stands in for kubelet in tests and follows shared/reference/deviceplugin.md §1:

* :class:`KubeletStandin` serves ``v1beta1.Registration`` on ``kubelet.sock`` in a plugin
  directory. ``Register`` checks the version (only ``"v1beta1"``), the extended resource
  name (``domain/name``, not ``kubernetes.io/``, no ``requests.`` prefix, a valid qualified
  name) and joins ``endpoint`` to the directory; it dials back synchronously, calls
  ``GetDevicePluginOptions``, keeps that answer and returns; then a thread runs
  ``ListAndWatch`` and records every snapshot. Endpoints are keyed by resource name: a
  stream that ends while kubelet did not close it marks the resource stopped (every device
  unhealthy), whichever registration it belonged to.
* :meth:`KubeletStandin.preferred_allocation` and :meth:`KubeletStandin.allocate` call the
  plugin as kubelet does (one container per request, no timeout by default).
* :meth:`KubeletStandin.restart` does what a kubelet restart does to the directory: every
  socket in it is deleted, ``kubelet.sock`` is created again (a new inode), and registered
  endpoints are forgotten.
* :class:`PodResourcesStandin` serves ``v1.PodResourcesLister`` (``List`` and
  ``GetAllocatableResources``) from given answers.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from deviceplugin.api.podresources.v1 import api_pb2 as pr_pb2
from deviceplugin.api.podresources.v1 import api_pb2_grpc as pr_grpc
from deviceplugin.api.v1beta1 import api_pb2, api_pb2_grpc

SUPPORTED_VERSIONS = ("v1beta1",)
_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

#: A snapshot: device id → (health, NUMA node ids).
Snapshot = dict[str, tuple[str, tuple[int, ...]]]


def valid_extended_resource_name(name: str) -> bool:
    """Kubelet's extended resource name rule (reference §1.4 step 4)."""
    if "/" not in name or name.startswith("kubernetes.io/") or name.startswith("requests."):
        return False
    prefix, _, short = f"requests.{name}".partition("/")
    if "/" in short or not short or len(short) > 63 or not _NAME.match(short):
        return False
    return 0 < len(prefix) <= 253 and all(_DNS_LABEL.match(label) for label in prefix.split("."))


@dataclass
class Registration:
    """One successful ``Register``: what the plugin sent and what kubelet dialled."""

    request: Any
    options: Any
    socket_path: Path
    at: float
    snapshots: list[Snapshot] = field(default_factory=list)
    ended: bool = False
    closed_by_kubelet: bool = False
    channel: grpc.Channel | None = None


class _Registrar(api_pb2_grpc.RegistrationServicer):
    def __init__(self, kubelet: KubeletStandin) -> None:
        self.kubelet = kubelet

    def Register(self, request: Any, context: Any) -> Any:
        error = self.kubelet._register(request)
        if error:
            context.abort(grpc.StatusCode.UNKNOWN, error)
        return api_pb2.Empty()


class KubeletStandin:
    """See the module docstring. ``start()`` listens; ``stop()`` ends everything."""

    def __init__(self, plugin_dir: Path) -> None:
        self.plugin_dir = Path(plugin_dir)
        self.socket = self.plugin_dir / "kubelet.sock"
        self.registrations: list[Registration] = []
        self.rejections: list[str] = []
        self.stopped_resources: set[str] = set()
        self._endpoints: dict[str, Registration] = {}
        self._cond = threading.Condition()
        self._server: grpc.Server | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        server = grpc.server(ThreadPoolExecutor(4))
        api_pb2_grpc.add_RegistrationServicer_to_server(_Registrar(self), server)
        server.add_insecure_port(f"unix://{self.socket}")
        server.start()
        self._server = server

    def stop(self) -> None:
        with self._cond:
            endpoints, self._endpoints = list(self._endpoints.values()), {}
        for reg in endpoints:
            self._close(reg)
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def restart(self) -> None:
        """Kubelet restarts: stop, delete every socket in the directory, listen again."""
        self.stop()
        for p in self.plugin_dir.iterdir():
            if stat.S_ISSOCK(os.lstat(p).st_mode):
                p.unlink()
        self.start()

    # --------------------------------------------------------- registration
    def _register(self, request: Any) -> str | None:
        if request.version not in SUPPORTED_VERSIONS:
            return self._reject(
                f"requested API version {request.version!r} is not supported by kubelet. "
                f"Supported version is {SUPPORTED_VERSIONS[0]!r}"
            )
        if not valid_extended_resource_name(request.resource_name):
            return self._reject(f"the ResourceName {request.resource_name!r} is invalid")
        path = self.plugin_dir / request.endpoint
        channel = grpc.insecure_channel(f"unix://{path}")
        try:
            grpc.channel_ready_future(channel).result(timeout=10)
            options = api_pb2_grpc.DevicePluginStub(channel).GetDevicePluginOptions(api_pb2.Empty())
        except (grpc.FutureTimeoutError, grpc.RpcError) as e:
            channel.close()
            return self._reject(f"failed to dial device plugin: {e!r}")
        reg = Registration(request, options, path, time.monotonic(), channel=channel)
        with self._cond:
            old = self._endpoints.get(request.resource_name)
            self._endpoints[request.resource_name] = reg
            self.registrations.append(reg)
            self.stopped_resources.discard(request.resource_name)
            self._cond.notify_all()
        if old is not None:
            self._close(old)
        threading.Thread(target=self._list_and_watch, args=(reg,), daemon=True).start()
        return None

    def _close(self, reg: Registration) -> None:
        with self._cond:
            reg.closed_by_kubelet = True
        if reg.channel is not None:
            reg.channel.close()

    def _reject(self, message: str) -> str:
        with self._cond:
            self.rejections.append(message)
            self._cond.notify_all()
        return message

    def _list_and_watch(self, reg: Registration) -> None:
        assert reg.channel is not None
        stub = api_pb2_grpc.DevicePluginStub(reg.channel)
        try:
            for msg in stub.ListAndWatch(api_pb2.Empty()):
                snap = {d.ID: (d.health, tuple(n.ID for n in d.topology.nodes)) for d in msg.devices}
                with self._cond:
                    reg.snapshots.append(snap)
                    self._cond.notify_all()
        except grpc.RpcError:
            pass
        with self._cond:
            reg.ended = True
            if not reg.closed_by_kubelet and reg.request.resource_name in self._endpoints:
                # "ListAndWatch ended unexpectedly": keyed by resource name only.
                self.stopped_resources.add(reg.request.resource_name)
            self._cond.notify_all()

    # --------------------------------------------------------------- queries
    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until ``predicate()`` is truthy (evaluated under the lock); return its value."""
        with self._cond:
            value = self._cond.wait_for(predicate, timeout)
        if not value:
            raise TimeoutError(f"condition not met within {timeout} s")
        return value

    def endpoint(self, resource: str) -> Registration | None:
        with self._cond:
            return self._endpoints.get(resource)

    def wait_registered(self, resource: str, count: int = 1, timeout: float = 5.0) -> Registration:
        def done() -> Registration | None:
            regs = [r for r in self.registrations if r.request.resource_name == resource]
            return regs[count - 1] if len(regs) >= count else None

        reg: Registration = self.wait_for(done, timeout)
        return reg

    def wait_snapshot(
        self, resource: str, predicate: Callable[[Snapshot], bool] = lambda s: True, timeout: float = 5.0
    ) -> Snapshot:
        """Wait until the latest snapshot of the resource's endpoint satisfies ``predicate``."""

        def found() -> Snapshot | None:
            reg = self._endpoints.get(resource)
            if reg is None or not reg.snapshots or not predicate(reg.snapshots[-1]):
                return None
            return reg.snapshots[-1]

        snap: Snapshot = self.wait_for(found, timeout)
        return snap

    def allocatable(self, resource: str) -> int:
        """Healthy devices of the resource's latest snapshot (0 while stopped)."""
        with self._cond:
            reg = self._endpoints.get(resource)
            if reg is None or not reg.snapshots or resource in self.stopped_resources:
                return 0
            return sum(1 for health, _ in reg.snapshots[-1].values() if health == "Healthy")

    # ------------------------------------------------------------ allocation
    def _stub(self, resource: str) -> Any:
        reg = self.endpoint(resource)
        if reg is None or reg.channel is None:
            raise LookupError(f"no endpoint registered for {resource}")
        return api_pb2_grpc.DevicePluginStub(reg.channel)

    def preferred_allocation(
        self,
        resource: str,
        available: Sequence[str],
        must_include: Sequence[str],
        size: int,
        timeout: float | None = None,
    ) -> list[str]:
        req = api_pb2.PreferredAllocationRequest(
            container_requests=[
                api_pb2.ContainerPreferredAllocationRequest(
                    available_deviceIDs=list(available),
                    must_include_deviceIDs=list(must_include),
                    allocation_size=size,
                )
            ]
        )
        reply = self._stub(resource).GetPreferredAllocation(req, timeout=timeout)
        return list(reply.container_responses[0].deviceIDs)

    def allocate(self, resource: str, ids: Sequence[str], timeout: float | None = None) -> Any:
        req = api_pb2.AllocateRequest(
            container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=list(ids))]
        )
        reply = self._stub(resource).Allocate(req, timeout=timeout)
        if not reply.container_responses:
            raise ValueError("no containers return in allocation response")
        return reply.container_responses[0]

    def call(self, resource: str, method: str, request: Any, timeout: float | None = None) -> Any:
        """Any DevicePlugin RPC with a hand-made request (bad input tests)."""
        return getattr(self._stub(resource), method)(request, timeout=timeout)


class _Lister(pr_grpc.PodResourcesListerServicer):
    def __init__(self, standin: PodResourcesStandin) -> None:
        self.standin = standin

    def List(self, request: Any, context: Any) -> Any:
        return self.standin.list_response

    def GetAllocatableResources(self, request: Any, context: Any) -> Any:
        return self.standin.allocatable_response


class PodResourcesStandin:
    """Kubelet's ``v1.PodResourcesLister`` on ``socket``, answering the responses it holds."""

    def __init__(self, socket: Path, list_response: Any = None, allocatable_response: Any = None) -> None:
        self.socket = Path(socket)
        self.list_response = list_response or pr_pb2.ListPodResourcesResponse()
        self.allocatable_response = allocatable_response or pr_pb2.AllocatableResourcesResponse()
        self._server: grpc.Server | None = None

    def __enter__(self) -> PodResourcesStandin:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self._server = grpc.server(ThreadPoolExecutor(2))
        pr_grpc.add_PodResourcesListerServicer_to_server(_Lister(self), self._server)
        self._server.add_insecure_port(f"unix://{self.socket}")
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
