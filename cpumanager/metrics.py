"""Prometheus metrics of the CPU manager, named after kubelet's own
(``kubelet_cpu_manager_pinning_requests_total`` → ``topolet_cpu_manager_pinning_requests_total``).

The registry is a constructor parameter so tests and several managers in one process do
not collide on the global registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["CPUManagerMetrics"]


class CPUManagerMetrics:
    """The CPU manager's counters and gauges, registered in *registry*."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.registry = reg
        self.pinning_requests = Counter(
            "topolet_cpu_manager_pinning_requests",
            "Exclusive CPU allocations requested (kubelet: cpu_manager_pinning_requests_total).",
            registry=reg,
        )
        self.pinning_errors = Counter(
            "topolet_cpu_manager_pinning_errors",
            "Exclusive CPU allocations or cpuset writes that failed "
            "(kubelet: cpu_manager_pinning_errors_total).",
            registry=reg,
        )
        self.shared_pool_size = Gauge(
            "topolet_cpu_manager_shared_pool_size_cpus",
            "CPUs in the shared pool (kubelet reports millicores: shared_pool_size_millicores).",
            registry=reg,
        )
        self.exclusive_cpus = Gauge(
            "topolet_cpu_manager_exclusive_cpu_allocation_count",
            "CPUs exclusively allocated to containers (kubelet: exclusive_cpu_allocation_count).",
            registry=reg,
        )
