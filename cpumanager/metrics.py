"""Prometheus metrics of the CPU manager.

Names follow kubelet's own where kubelet has one (kubelet's ``kubelet_`` prefix becomes
``topolet_``, so dashboards built for kubelet need only the prefix changed); the others
are topolet's. The registry is a constructor parameter so tests and several managers in
one process do not collide on the global registry.

| metric | type | meaning |
|---|---|---|
| ``topolet_cpu_manager_pinning_requests_total`` | counter | exclusive CPU allocations requested |
| ``topolet_cpu_manager_pinning_errors_total`` | counter | CPU/hugepage allocations, cpuset writes failed |
| ``topolet_cpu_manager_shared_pool_size_millicores`` | gauge | size of the shared pool, millicores |
| ``topolet_cpu_manager_exclusive_cpu_allocation_count`` | gauge | CPUs held exclusively by containers |
| ``topolet_cpu_manager_hugepages_allocated_bytes`` | gauge | hugepages handed out per NUMA node |
| ``topolet_cpu_manager_reconcile_runs_total`` | counter | periodic reconcile passes run |
| ``topolet_cpu_manager_reconcile_repairs_total`` | counter | what reconcile repaired, per action |
| ``topolet_cpu_manager_reconcile_errors_total`` | counter | failed passes, containers not admitted |

The first four are kubelet's (``kubelet_cpu_manager_*``). ``hugepages_allocated_bytes``
has the labels ``numa_node`` and ``resource`` (``hugepages-2Mi``, ``hugepages-1Gi``).
``reconcile_repairs_total`` has the label ``action``: ``admitted`` (a container the events
missed), ``repinned`` (a cgroup whose cpuset drifted) or ``released`` (state of a
container that is gone).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["CPUManagerMetrics"]

REPAIR_ACTIONS = ("admitted", "repinned", "released")


class CPUManagerMetrics:
    """The CPU manager's counters and gauges, registered in *registry*."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.registry = reg
        self.pinning_requests = Counter(
            "topolet_cpu_manager_pinning_requests",
            "Exclusive CPU allocations requested.",
            registry=reg,
        )
        self.pinning_errors = Counter(
            "topolet_cpu_manager_pinning_errors",
            "Exclusive CPU or hugepage allocations and cpuset writes that failed.",
            registry=reg,
        )
        self.shared_pool_size = Gauge(
            "topolet_cpu_manager_shared_pool_size_millicores",
            "Size of the shared CPU pool, in millicores.",
            registry=reg,
        )
        self.exclusive_cpus = Gauge(
            "topolet_cpu_manager_exclusive_cpu_allocation_count",
            "CPUs exclusively allocated to containers.",
            registry=reg,
        )
        self.hugepages_allocated = Gauge(
            "topolet_cpu_manager_hugepages_allocated_bytes",
            "Hugepages handed out to containers, per NUMA node and page size.",
            ["numa_node", "resource"],
            registry=reg,
        )
        self.reconcile_runs = Counter(
            "topolet_cpu_manager_reconcile_runs",
            "Periodic reconcile passes run.",
            registry=reg,
        )
        self.reconcile_repairs = Counter(
            "topolet_cpu_manager_reconcile_repairs",
            "What reconcile repaired: admitted, repinned or released.",
            ["action"],
            registry=reg,
        )
        self.reconcile_errors = Counter(
            "topolet_cpu_manager_reconcile_errors",
            "Reconcile passes that failed and containers a pass could not admit.",
            registry=reg,
        )

    def set_pools(self, *, shared: int, exclusive: int) -> None:
        """Shared pool size and exclusive CPU count, both in whole CPUs."""
        self.shared_pool_size.set(shared * 1000)
        self.exclusive_cpus.set(exclusive)

    def set_hugepages(self, allocated: Mapping[int, Mapping[str, int]]) -> None:
        """Bytes allocated per NUMA node and resource."""
        for node, per_resource in allocated.items():
            for resource, amount in per_resource.items():
                self.hugepages_allocated.labels(numa_node=str(node), resource=resource).set(amount)

    def record_reconcile(self, counts: Mapping[str, int]) -> None:
        """One reconcile pass and what it did (``CPUManager.reconcile``'s counts)."""
        self.reconcile_runs.inc()
        for action in REPAIR_ACTIONS:
            if counts.get(action):
                self.reconcile_repairs.labels(action=action).inc(counts[action])
        if counts.get("failed"):
            self.reconcile_errors.inc(counts["failed"])
