"""The node agent (``topolet node``): every node-side component wired together.

:class:`NodeAgent` discovers the topology, restores the CPU manager from its checkpoint,
starts the pod source, the GPU and exclusive-CPU device plugins, the NodeResourceTopology
publisher, the udev GPU watch and one HTTP endpoint, and runs the reconcile sweep
(:class:`~cpumanager.reconcile_loop.ReconcileLoop` ticks over :class:`RekeyingView`):

1. list the running containers from the pod source;
2. re-key CPU device-plugin claims (placeholder owners ``devplugin-<hash>``) to the
   containers podresources says hold them, and release the claims whose containers are
   gone or that no container took within :data:`PLACEHOLDER_GRACE_S` (the device plugin
   releases only its own claims);
3. :meth:`CPUManager.reconcile` with the pod source's owner kinds: admit, re-pin drifted
   cgroups, release the source's own owners that are gone (``pod`` once the Kubernetes
   source has synced; ``run`` for the standalone source, whose orphans of killed
   ``topolet run`` processes are then removed with their cgroups).

The sweep runs every ``cpuManagerReconcilePeriod`` and at once when the checkpoint or the
standalone records change (the Kubernetes pod source also admits and releases on each
pod event). Every change is one transaction of the CPU manager (lock, reload when another
process changed the files, change, save, unlock), so ``topolet run`` can admit containers
beside a running agent; a second agent on the same state directory is refused by
``topolet-node.lock``. The agent sees the whole machine whatever cpuset it runs in.
Containers are aligned with their devices: the NUMA nodes of the devices podresources
lists for a container are where its exclusive CPUs and hugepages are taken.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from prometheus_client import CollectorRegistry

from cpumanager.device_claims import DeviceClaims
from cpumanager.manager import ContainerInfo, CPUManager
from cpumanager.metrics import CPUManagerMetrics
from cpumanager.reconcile_loop import ReconcileLoop, owner_kinds
from cpumanager.standalone import StandaloneSource
from deviceplugin.cpus import PLACEHOLDER_GRACE_S, ExclusiveCPUResource
from deviceplugin.gpu import GPUResource, UdevGPUHealth, gpu_resources
from deviceplugin.podresources import PodResources, PodResourcesClient, PodResourcesError, device_numa_nodes
from deviceplugin.resources import ContainerAllocation, Device, HealthSource
from deviceplugin.server import DevicePluginServer
from topolet.dra_node import DRANode
from topolet.errors import TopoletError
from topolet.node_config import NodeConfig, detect_cgroup_writer
from topolet.node_http import AgentMetrics, NodeHTTPServer
from topolet.nrt_publisher import NRTPublisher, free_hugepages, kube_api_client, node_nrt
from topology.model import Topology
from topology.nrt import NodeResourceTopology
from topology.sysfs import discover

__all__ = [
    "PLACEHOLDER_GRACE_S",
    "AgentError",
    "NodeAgent",
    "RekeyingView",
    "SwappableGPUs",
]

log = logging.getLogger("topolet.node")

#: How long one podresources ``List`` answers device-affinity questions.
_PODRESOURCES_TTL_S = 1.0
#: How often the sweep loop looks for changed checkpoint or standalone records.
_TICK_S = 0.1


class AgentError(TopoletError):
    """The agent cannot start; the message says why and what to do."""


class SwappableGPUs:
    """One GPU resource whose device list is replaced when udev re-discovery finds others."""

    def __init__(self, resource: GPUResource) -> None:
        self.current = resource
        self._callbacks: list[Callable[[], None]] = []

    @property
    def resource_name(self) -> str:
        return self.current.resource_name

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def swap(self, resource: GPUResource) -> None:
        self.current = resource
        for callback in self._callbacks:
            callback()

    def devices(self) -> list[Device]:
        return self.current.devices()

    def preferred_allocation(
        self, available: Sequence[str], must_include: Sequence[str], size: int
    ) -> list[str]:
        return self.current.preferred_allocation(available, must_include, size)

    def allocate(self, device_ids: Sequence[str]) -> ContainerAllocation:
        return self.current.allocate(device_ids)

    def pre_start(self, device_ids: Sequence[str]) -> None:
        self.current.pre_start(device_ids)


class RekeyingView:
    """The agent's pod sources as the reconcile sweep sees them (the owner kinds of all)."""

    def __init__(self, agent: NodeAgent) -> None:
        self.agent = agent
        self._lock = threading.Lock()

    @property
    def owner_kinds(self) -> frozenset[str]:
        return frozenset().union(*(owner_kinds(s) for s in self.agent.sources))

    def running(self) -> list[ContainerInfo]:
        with self._lock:
            return [info for source in self.agent.sources for info in source.running()]


class NodeAgent:
    """See the module docstring. ``start()``, then ``stop()`` (on SIGTERM)."""

    def __init__(self, config: NodeConfig, *, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.node_name = config.effective_node_name()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = AgentMetrics(self.registry)
        self.topology: Topology | None = None
        self.manager: CPUManager | None = None
        self.sources: list[Any] = []
        self.reconciler: ReconcileLoop | None = None
        self.cpu_resource: ExclusiveCPUResource | None = None
        self.gpus: dict[str, SwappableGPUs] = {}
        self.servers: list[DevicePluginServer] = []
        self.publisher: NRTPublisher | None = None
        self.dra: DRANode | None = None
        self.http: NodeHTTPServer | None = None
        self._restored = False
        self._stopping = threading.Event()
        self._rediscover = threading.Event()
        self.placeholder_grace_s = PLACEHOLDER_GRACE_S
        self._pods_cache: tuple[float, list[PodResources]] | None = None
        self._gpus_in_use: set[str] = set()
        self._lockfile: IO[bytes] | None = None
        self._loop: threading.Thread | None = None
        self._monitor: Any = None
        self._sweep_lock = threading.Lock()

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.http = NodeHTTPServer(self.config.metrics_bind_address, self.registry, self.readiness).start()
        self._lock_state_dir()
        self.topology = self._discover()
        self.manager = self._start_manager(self.topology)
        self.dra = self._dra_node()  # before the pod source: its first list reads claims
        self.sources = [self._pod_source()]
        self.reconciler = ReconcileLoop(self.manager, [RekeyingView(self)], self.config.reconcile_period_s)
        self._start_plugins(self.topology)
        self.sweep()
        self._restored = True
        for server in self.servers:
            server.start()
        self._start_publisher()
        if self.dra is not None:
            self.dra.start()
        self._start_udev()
        self._loop = threading.Thread(target=self._run, name="topolet-node-reconcile", daemon=True)
        self._loop.start()
        log.info(
            "node agent started on %s (pod source %s, %d device plugins)",
            self.node_name,
            self.config.pod_source,
            len(self.servers),
            extra={"node": self.node_name},
        )

    def stop(self) -> None:
        """Stop accepting, finish in-flight work, checkpoint, remove our sockets."""
        self._stopping.set()
        self._restored = False
        for server in self.servers:
            server.stop()
        if self._loop is not None:
            self._loop.join()
        if self._monitor is not None:
            self._monitor.stop()
        if self.publisher is not None:
            self.publisher.stop()
        if self.dra is not None:
            self.dra.stop()
        for source in self.sources:
            if hasattr(source, "stop"):
                source.stop()
        if self.manager is not None:
            self.manager.close()
            log.info("CPU manager state checkpointed to %s", self.config.checkpoint_path)
        if self.http is not None:
            self.http.stop()
        if self._lockfile is not None:
            self._lockfile.close()
        log.info("node agent stopped")

    def readiness(self) -> tuple[bool, str]:
        if not self._restored:
            ok, reason = False, "CPU manager state not restored yet"
        else:
            missing = [s.resource.resource_name for s in self.servers if not s.registered]
            ok, reason = not missing, f"device plugins not registered with kubelet: {', '.join(missing)}"
        self.metrics.ready.set(1 if ok else 0)
        return ok, "" if ok else reason

    # ------------------------------------------------------------ components
    def _lock_state_dir(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.config.state_dir / "topolet-node.lock"
        f = open(path, "ab")  # noqa: SIM115 - held while the agent runs
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise AgentError(
                f"another topolet node agent holds {path}; stop it, or give this one another stateDir"
            ) from None
        self._lockfile = f

    def _discover(self) -> Topology:
        self.metrics.discoveries.inc()
        return discover(self.config.sysfs_root, whole_machine=True)

    def _start_manager(self, topo: Topology) -> CPUManager:
        c = self.config
        writer = detect_cgroup_writer(c.cgroup_root, c.cgroup_version, c.cgroup_driver)
        if c.pod_source == "standalone":
            writer.ensure_root()
        store = c.settings().store()
        manager = CPUManager(
            topo,
            c.settings().policy(topo),
            store=store,
            writer=writer,
            metrics=CPUManagerMetrics(self.registry),
            topology_manager_policy=c.topology_manager_policy,
        )
        manager.start()
        return manager

    def _pod_source(self) -> Any:
        assert self.manager is not None and self.manager.writer is not None
        if self.config.pod_source == "standalone":
            return StandaloneSource(self.config.state_dir, self.manager.writer)
        from cpumanager.kube_source import KubePodSource

        return KubePodSource(
            kube_api_client(self.config.kubeconfig),
            self.node_name,
            self.manager,
            device_affinity=self.device_affinity,
            claim_affinity=self.claim_affinity,
        ).start()

    def _pod_resources(self, *, fresh: bool = False) -> list[PodResources] | None:
        """podresources ``List`` (cached for a second unless *fresh*); None when kubelet's
        socket is not there or does not answer."""
        now = time.monotonic()
        if not fresh and self._pods_cache is not None and now - self._pods_cache[0] < _PODRESOURCES_TTL_S:
            return self._pods_cache[1]
        sock = self.config.pod_resources_socket
        if not sock.is_socket():
            return None
        try:
            with PodResourcesClient(sock, timeout=2.0) as client:
                pods = client.list()
        except PodResourcesError as e:
            log.warning("%s; device-plugin CPUs are not re-keyed and devices not aligned this time", e)
            return None
        self._pods_cache = (now, pods)
        return pods

    def device_affinity(self, info: ContainerInfo) -> frozenset[int] | None:
        """The NUMA nodes of the devices kubelet gave the container (any resource)."""
        pods = self._pod_resources()
        if pods is not None and not any(
            p.namespace == info.namespace and p.name == info.pod_name for p in pods
        ):
            pods = self._pod_resources(fresh=True)  # the cached listing predates the pod
        if pods is None:
            return None
        return device_numa_nodes(pods, info.namespace, info.pod_name, info.container_name)

    def claim_affinity(self, namespace: str, claims: frozenset[str]) -> frozenset[int] | None:
        """The NUMA nodes of the GPUs of the DRA claims *claims* of *namespace* that this
        node's DRA driver prepared (None without the driver or when none is known)."""
        if self.dra is None:
            return None
        nodes = frozenset().union(*(self.dra.plugin.claim_numa_nodes(namespace, c) or () for c in claims))
        return nodes or None

    def _start_plugins(self, topo: Topology) -> None:
        c = self.config
        assert self.manager is not None
        if c.exclusive_cpu_resource_name:
            self.cpu_resource = ExclusiveCPUResource(
                DeviceClaims(self.manager),
                resource_name=c.exclusive_cpu_resource_name,
                grace_s=self.placeholder_grace_s,
            )
            self.servers.append(DevicePluginServer(self.cpu_resource, plugin_dir=c.device_plugin_dir))
        for resource in gpu_resources(topo, root=c.sysfs_root, resource_names=c.gpu_resource_names):
            self._add_gpu_plugin(resource)

    def _nvml(self) -> Any | None:
        """The NVML module per the ``nvml`` key, or None (loaded once)."""
        if self.config.nvml == "false":
            return None
        if not hasattr(self, "_nvml_module"):
            from deviceplugin.nvml import NVMLUnavailableError, load_nvml

            try:
                self._nvml_module: Any | None = load_nvml()
            except NVMLUnavailableError as err:
                if self.config.nvml == "true":
                    raise
                log.info("NVIDIA GPUs without NVML (udev health only, no link scores): %s", err)
                self._nvml_module = None
        return self._nvml_module

    def _with_nvml(self, resource: GPUResource) -> tuple[GPUResource, list[HealthSource]]:
        """NVIDIA GPUs get NVML link scores and XID health when NVML is there."""
        if not resource.gpus or any(g.vendor != "nvidia" for g in resource.gpus.values()):
            return resource, []
        nvml = self._nvml()
        if nvml is None:
            return resource, []
        from deviceplugin.nvml import NVMLXidHealth, discover_links

        ids = list(resource.gpus)
        linked = GPUResource(
            list(resource.gpus.values()),
            resource.resource_name,
            root=resource.root,
            links=discover_links(nvml, ids),
        )
        log.info("NVML: link scores and XID health for %d GPUs of %s", len(ids), resource.resource_name)
        return linked, [NVMLXidHealth(ids, nvml)]

    def _add_gpu_plugin(self, resource: GPUResource) -> DevicePluginServer:
        resource, sources = self._with_nvml(resource)
        slot = SwappableGPUs(resource)
        self.gpus[resource.resource_name] = slot
        if self.config.watch_udev:
            sources.insert(0, UdevGPUHealth(resource.gpus))
        health: HealthSource | None = None
        if len(sources) == 1:
            health = sources[0]
        elif sources:
            from deviceplugin.health import MergedHealth

            health = MergedHealth(sources)
        server = DevicePluginServer(slot, health, plugin_dir=self.config.device_plugin_dir)
        self.servers.append(server)
        log.info(
            "GPU plugin %s: %d GPUs %s",
            resource.resource_name,
            len(resource.gpus),
            ", ".join(resource.gpus),
            extra={"resource": resource.resource_name},
        )
        return server

    def _start_publisher(self) -> None:
        c = self.config
        if c.pod_source != "kubernetes" and not c.publish_nrt:
            return
        from kube.resources import node_resource_topologies

        self.publisher = NRTPublisher(
            node_resource_topologies(kube_api_client(c.kubeconfig)),
            self.build_nrt,
            resync_s=c.nrt_resync_period_s,
            on_write=lambda verb: self.metrics.nrt_publishes.labels(verb).inc(),
            on_error=self.metrics.nrt_errors.inc,
        )
        assert self.manager is not None
        self.manager.subscribe(self.publisher.trigger)
        self.publisher.start()

    def _dra_node(self) -> DRANode | None:
        """DRA driver gpu.topolet.io (ResourceSlices + kubelet plugin) when configured, not
        started yet (``start()`` starts it once the device plugins are up)."""
        if not self.config.dra_driver or self.topology is None:
            return None
        topo, nvml = self.topology, self._nvml()
        if nvml is not None:
            from deviceplugin.nvml_info import with_nvml_attributes

            topo = with_nvml_attributes(topo, nvml)
        return DRANode(
            topo,
            node_name=self.node_name,
            api_client=kube_api_client(self.config.kubeconfig),
            root=self.config.sysfs_root,
            unhealthy=self.unhealthy_gpus,
        )

    def unhealthy_gpus(self) -> set[str]:
        """PCI addresses of the GPUs the GPU plugins hold Unhealthy now."""
        return {
            d.id
            for s in self.servers
            if s.resource.resource_name in self.gpus
            for d in s.device_list()
            if not d.healthy
        }

    def _start_udev(self) -> None:
        if not self.config.watch_udev:
            return
        try:
            from topology.udev import GPUMonitor

            self._monitor = GPUMonitor(
                lambda action, _dev: self._rediscover.set() if action in ("add", "remove") else None
            )
            self._monitor.start()
        except Exception as e:
            self._monitor = None
            log.warning("udev GPU events unavailable (%s); GPUs are not re-discovered", e)

    # ------------------------------------------------------------------ NRT
    def build_nrt(self) -> NodeResourceTopology:
        """This node's NRT object with what is free now."""
        assert self.manager is not None and self.topology is not None
        counts: dict[str, dict[int, tuple[int, int]]] = {}
        for name, slot in self.gpus.items():
            per: dict[int, tuple[int, int]] = {}
            for d in slot.devices():
                for numa in d.numa_nodes[:1]:
                    total, free = per.get(numa, (0, 0))
                    per[numa] = (total + 1, free + int(d.healthy and d.id not in self._gpus_in_use))
            counts[name] = per
        c = self.config
        return node_nrt(
            self.topology,
            node_name=self.node_name,
            policy=c.topology_manager_policy,
            scope=c.topology_manager_scope,
            reserved=self.manager.policy.reserved_cpus,
            assignable=self.manager.assignable_cpus(),
            exclusive_cpu_resource=c.exclusive_cpu_resource_name,
            gpus=counts,
            hugepages=free_hugepages(c.sysfs_root, self.topology),
        )

    # ---------------------------------------------------------------- sweep
    def sweep(self) -> dict[str, int] | None:
        """One reconcile tick: re-key device-plugin allocations, then reconcile (see the
        module docstring). None when the tick failed (logged and counted)."""
        assert self.reconciler is not None and self.manager is not None
        with self._sweep_lock, self.metrics.reconcile_seconds.time():
            # Device-plugin claims first (podresources is asked outside the state lock).
            self.rekey([info for source in self.sources for info in source.running()])
            counts = self.reconciler.tick()
            for source in self.sources:
                if isinstance(source, StandaloneSource):
                    source.sweep(self.manager)  # orphans of killed runs
        if self.publisher is not None:
            self.publisher.trigger()
        return counts

    def rekey(self, active: Sequence[ContainerInfo]) -> None:
        """Re-key CPU device-plugin claims to the containers podresources names, then let
        the device plugin release its claims that are gone or expired."""
        pods = self._pod_resources(fresh=True)
        if self.cpu_resource is not None:
            self.cpu_resource.grace_s = self.placeholder_grace_s
        if pods is None:
            if self.cpu_resource is not None:  # no listing: only expired placeholders go
                self.cpu_resource.release_gone([], lambda _ns, _n: None, only_placeholders=True)
            return
        self._gpus_in_use = _device_ids(pods, set(self.gpus))
        if self.cpu_resource is None:
            return
        uids = {(i.namespace, i.pod_name): i.pod_uid for i in active}
        moved = self.cpu_resource.reassign(pods, lambda ns, name: uids.get((ns, name)))
        if moved:
            self.metrics.rekeyed.inc(moved)
            log.info("re-keyed %d device-plugin CPU allocations to their containers", moved)
        freed = self.cpu_resource.release_gone(pods, lambda ns, name: uids.get((ns, name)))
        if freed:
            log.info("device-plugin CPUs %s released: their containers are gone", freed)

    def _run(self) -> None:
        period = self.config.reconcile_period_s
        due, marks = time.monotonic() + period, self._marks()
        while not self._stopping.wait(_TICK_S):
            if self._rediscover.is_set():
                self._rediscover.clear()
                self._safely(self.rediscover_gpus)
            now_marks = self._marks()
            if now_marks != marks or time.monotonic() >= due:
                marks, due = now_marks, time.monotonic() + period
                self._safely(self.sweep)
            self._update_device_gauges()
            if self.dra is not None:
                self.dra.check_health()

    def _safely(self, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception:
            self.metrics.step_errors.labels(getattr(step, "__name__", "step")).inc()
            log.exception("node agent step %s failed", getattr(step, "__name__", step))

    def _marks(self) -> tuple[int, int]:
        return (_mtime(self.config.checkpoint_path), _mtime(self.config.state_dir / "standalone"))

    def _update_device_gauges(self) -> None:
        for server in self.servers:
            name = server.resource.resource_name
            self.metrics.registered.labels(name).set(1 if server.registered else 0)
            devices = server.device_list()
            healthy = sum(d.healthy for d in devices)
            self.metrics.devices.labels(name, "Healthy").set(healthy)
            self.metrics.devices.labels(name, "Unhealthy").set(len(devices) - healthy)

    def rediscover_gpus(self) -> None:
        """udev said a GPU came or went: discover again and update the GPU plugins."""
        c = self.config
        topo = self._discover()
        found = {
            r.resource_name: r
            for r in gpu_resources(topo, root=c.sysfs_root, resource_names=c.gpu_resource_names)
        }
        for name, slot in self.gpus.items():
            new = found.pop(name, None) or GPUResource([], name, root=c.sysfs_root)
            if set(new.gpus) != set(slot.current.gpus):
                log.info("GPUs of %s now %s", name, ", ".join(new.gpus) or "none", extra={"resource": name})
                slot.swap(new)
        for resource in found.values():
            self._add_gpu_plugin(resource).start()
        if self.publisher is not None:
            self.publisher.trigger()


def _device_ids(pods: Sequence[PodResources], resources: set[str]) -> set[str]:
    return {
        i
        for p in pods
        for c in p.containers
        for d in c.devices
        if d.resource_name in resources
        for i in d.device_ids
    }


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
