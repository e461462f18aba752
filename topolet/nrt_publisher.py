"""The node's NodeResourceTopology object: built from live availability, published when it changes.

:func:`node_nrt` feeds :func:`topology.nrt.build_nrt` what is free now: per NUMA node the
CPUs an exclusive request could get (the CPU manager's assignable CPUs, also as the
exclusive-CPU resource), the GPUs of each GPU resource that are healthy and not held by a
container, and the free hugepages read from sysfs.

:class:`NRTPublisher` writes it through :func:`kube.resources.node_resource_topologies`
(cluster scoped, ``topology.node.k8s.io/v1alpha2``, plural ``noderesourcetopologies``, name
= node name): create when absent, replace with the server's ``resourceVersion`` when its
content differs, nothing when it is the same. A background thread publishes on
:meth:`NRTPublisher.trigger` (coalescing bursts) and every resync period; API errors are
logged and retried with exponential backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from kube.objects import NRT_GROUP, NRT_PLURAL, NRT_VERSION
from topology.cpuset import CPUSet
from topology.model import Topology
from topology.nrt import NodeResourceTopology, build_nrt

__all__ = [
    "GROUP",
    "PLURAL",
    "VERSION",
    "NRTObjects",
    "NRTPublisher",
    "free_hugepages",
    "kube_api_client",
    "node_nrt",
]

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = NRT_GROUP, NRT_VERSION, NRT_PLURAL
#: Keys of the object compared with the server's copy (metadata is the server's business).
_CONTENT_KEYS = ("topologyPolicies", "attributes", "zones")

#: ``{resource name: {numa id: (total, available)}}``.
GPUCounts = Mapping[str, Mapping[int, tuple[int, int]]]


def free_hugepages(root: Path, topo: Topology) -> dict[int, dict[str, int]]:
    """Free hugepage bytes per NUMA node and pool (``hugepages-2Mi``), read now from
    ``<root>/sys/devices/system/node/node<N>/hugepages/``; unreadable pools are left out."""
    out: dict[int, dict[str, int]] = {}
    for numa, node in topo.numa_nodes.items():
        for size_kb, pool in node.hugepages.items():
            if pool.total <= 0:
                continue
            f = root / f"sys/devices/system/node/node{numa}/hugepages/hugepages-{size_kb}kB/free_hugepages"
            try:
                free = int(f.read_text().strip())
            except (OSError, ValueError):
                continue
            out.setdefault(numa, {})[pool.resource_name] = min(free, pool.total) * size_kb * 1024
    return out


def node_nrt(
    topo: Topology,
    *,
    node_name: str,
    policy: str,
    scope: str,
    reserved: CPUSet,
    assignable: CPUSet,
    exclusive_cpu_resource: str = "",
    gpus: GPUCounts | None = None,
    hugepages: Mapping[int, Mapping[str, int]] | None = None,
) -> NodeResourceTopology:
    """The NRT object of this node with what is free now (see the module docstring)."""
    extra: dict[int, dict[str, int]] = {}
    avail: dict[int, dict[str, int]] = {}
    for numa in topo.numa_node_ids():
        cpus = topo.cpus_in_numa_nodes(numa) & topo.online_cpus
        free = len((cpus & assignable) - reserved)
        extra[numa], avail[numa] = {}, {"cpu": free * 1000, **(hugepages or {}).get(numa, {})}
        if exclusive_cpu_resource:
            extra[numa][exclusive_cpu_resource] = len(cpus - reserved)
            avail[numa][exclusive_cpu_resource] = free
        for resource, per_numa in (gpus or {}).items():
            total, available = per_numa.get(numa, (0, 0))
            if total:
                extra[numa][resource], avail[numa][resource] = total, min(available, total)
    return build_nrt(
        topo,
        node_name=node_name,
        policy=policy,
        scope=scope,
        reserved_cpus=reserved,
        extra_resources=extra,
        available_by_numa=avail,
    )


class NRTObjects(Protocol):
    """The NRT calls the publisher makes (:class:`kube.resources.ClusterObjects`)."""

    def get(self, name: str) -> dict[str, Any] | None: ...

    def create(self, body: dict[str, Any]) -> Any: ...

    def replace(self, name: str, body: dict[str, Any]) -> Any: ...


def kube_api_client(kubeconfig: str) -> Any:
    """A client from *kubeconfig*, or in-cluster when it is empty. A missing or unusable
    configuration raises ValueError (:class:`kube.errors.KubeConfigError`) naming the key."""
    from kube.client import api_client  # the client library loads only when the API is used

    return api_client(kubeconfig)


def _content(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: obj[k] for k in _CONTENT_KEYS if obj.get(k)}


class NRTPublisher:
    """Publish the object *build* returns, when it changed (see the module docstring).

    ``on_write(verb)`` and ``on_error()`` are called after each write and each failure
    (metrics).
    """

    def __init__(
        self,
        api: NRTObjects,
        build: Callable[[], NodeResourceTopology],
        *,
        resync_s: float = 60.0,
        coalesce_s: float = 0.1,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        on_write: Callable[[str], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.api, self.build = api, build
        self.resync_s, self.coalesce_s = resync_s, coalesce_s
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        self._on_write, self._on_error = on_write, on_error
        self._last: dict[str, Any] | None = None
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = threading.Event()

    def publish(self, *, force: bool = False) -> str:
        """Write the object if it differs from the last one written (with *force*: from the
        server's copy). Returns ``create``, ``replace`` or ``unchanged``; API errors raise."""
        body = self.build().to_dict()
        if not force and self._last is not None and _content(body) == self._last:
            return "unchanged"
        name = body["metadata"]["name"]
        current = self.api.get(name)
        if current is None:
            self.api.create(body)
            verb = "create"
        elif _content(current) == _content(body):
            verb = "unchanged"
        else:
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self.api.replace(name, body)
            verb = "replace"
        self._last = _content(body)
        if verb != "unchanged":
            log.info("NodeResourceTopology %s: %s", name, verb, extra={"node": name})
            if self._on_write is not None:
                self._on_write(verb)
        self.published.set()
        return verb

    # ------------------------------------------------------------- background
    def trigger(self) -> None:
        """Availability may have changed: publish soon (cheap; safe under any lock)."""
        self._dirty.set()

    def start(self) -> None:
        self._stopping.clear()
        self._dirty.set()
        self._thread = threading.Thread(target=self._run, name="topolet-nrt-publisher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        backoff = self.min_backoff_s
        force = True
        while not self._stopping.is_set():
            if not self._dirty.wait(self.resync_s):
                force = True
            if self._stopping.wait(self.coalesce_s):
                return
            self._dirty.clear()
            try:
                self.publish(force=force)
            except Exception as e:
                log.warning(
                    "publishing NodeResourceTopology failed (%s: %s); retrying in %.1fs",
                    type(e).__name__,
                    str(e).splitlines()[0] if str(e) else "",
                    backoff,
                )
                if self._on_error is not None:
                    self._on_error()
                self._dirty.set()
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            backoff, force = self.min_backoff_s, False
