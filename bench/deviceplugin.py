"""How long do kubelet's calls to a device plugin take, over the unix socket?

A :class:`~deviceplugin.server.DevicePluginServer` serves the exclusive-CPU resource of a
real CPU manager (in memory) for a synthetic 2-socket SMT-2 machine, on a socket in a
temporary directory (no kubelet: the plugin serves and waits for one). A client dials the
socket as kubelet does and times, with a monotonic clock, ``repeat`` round trips each of:

* ``GetPreferredAllocation``: all free CPUs available, ``size`` wanted;
* ``Allocate`` of that choice (the CPUs are released again, untimed, after each call).

Reported: p50, p99 and max in microseconds per RPC.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.stats import percentile
from cpumanager.cpu_topology import CPUTopology
from cpumanager.manager import CPUManager
from cpumanager.policy_static import StaticPolicy
from deviceplugin.api.v1beta1 import api_pb2, api_pb2_grpc
from deviceplugin.cpus import ExclusiveCPUResource, parse_cpu_ids, placeholder_owner
from deviceplugin.server import DevicePluginServer
from topology.cpuset import CPUSet
from topology.model import Core, NumaNode, Package, Topology

__all__ = ["LatencyResult", "bench_deviceplugin", "machine"]


@dataclass(frozen=True, slots=True)
class LatencyResult:
    """Round-trip latency of one RPC, in microseconds."""

    rpc: str
    calls: int
    p50_us: float
    p99_us: float
    max_us: float

    def __str__(self) -> str:
        return (
            f"{self.rpc:<24} calls={self.calls:<6} p50={self.p50_us:8.1f} us  "
            f"p99={self.p99_us:8.1f} us  max={self.max_us:8.1f} us"
        )


def machine(cpus: int = 64) -> Topology:
    """``cpus`` CPUs on 2 sockets (one NUMA node each) of SMT-2 cores, Linux numbering."""
    cores, half = cpus // 2, cpus // 4
    sockets = [
        CPUSet.range(s * half, s * half + half - 1)
        | CPUSet.range(cores + s * half, cores + s * half + half - 1)
        for s in range(2)
    ]
    return Topology.build(
        packages=[Package(id=s, cpus=c, os_index=s) for s, c in enumerate(sockets)],
        numa_nodes=[NumaNode(id=s, cpus=c) for s, c in enumerate(sockets)],
        cores=[
            Core(id=k, core_id=k % half, package=k // half, cpus=CPUSet.of(k, k + cores))
            for k in range(cores)
        ],
    )


def _result(rpc: str, seconds: list[float]) -> LatencyResult:
    us = [s * 1e6 for s in seconds]
    return LatencyResult(rpc, len(us), percentile(us, 50), percentile(us, 99), max(us))


def bench_deviceplugin(
    repeat: int = 1000, *, cpus: int = 64, size: int = 4, warmup: int = 50
) -> list[LatencyResult]:
    """Time ``repeat`` GetPreferredAllocation and Allocate round trips (after ``warmup``)."""
    logging.getLogger("deviceplugin").setLevel(logging.WARNING)
    logging.getLogger("cpumanager").setLevel(logging.WARNING)
    topo = machine(cpus)
    manager = CPUManager(topo, StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=2))
    manager.start()
    times: dict[str, list[float]] = {"GetPreferredAllocation": [], "Allocate": []}
    with tempfile.TemporaryDirectory(prefix="topolet-dp-") as tmp:
        server = DevicePluginServer(ExclusiveCPUResource(manager), None, plugin_dir=Path(tmp))
        server.start()
        try:
            with grpc.insecure_channel(f"unix://{server.socket_path}") as channel:
                stub = api_pb2_grpc.DevicePluginStub(channel)
                for i in range(warmup + repeat):
                    _round(stub, manager, size, times if i >= warmup else None)
        finally:
            server.stop()
    return [_result(rpc, seconds) for rpc, seconds in times.items()]


def _round(
    stub: api_pb2_grpc.DevicePluginStub, manager: CPUManager, size: int, times: dict[str, list[float]] | None
) -> None:
    free = [f"cpu{c}" for c in manager.assignable_cpus()]
    request = api_pb2.PreferredAllocationRequest(
        container_requests=[
            api_pb2.ContainerPreferredAllocationRequest(available_deviceIDs=free, allocation_size=size)
        ]
    )
    t0 = time.perf_counter()
    chosen = list(stub.GetPreferredAllocation(request).container_responses[0].deviceIDs)
    t1 = time.perf_counter()
    stub.Allocate(
        api_pb2.AllocateRequest(container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=chosen)])
    )
    t2 = time.perf_counter()
    manager.remove_container(*placeholder_owner(parse_cpu_ids("devices_ids", chosen)))
    if times is not None:
        times["GetPreferredAllocation"].append(t1 - t0)
        times["Allocate"].append(t2 - t1)


if __name__ == "__main__":
    for line in bench_deviceplugin():
        print(line)
