"""The periodic reconcile loop on a real manager and a cgroup tree in a temp directory."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cpumanager.cgroupfs import CgroupV1Cpuset, ContainerCgroup
from cpumanager.cpu_topology import CPUTopology
from cpumanager.manager import ContainerInfo, CPUManager
from cpumanager.policy_static import StaticPolicy
from cpumanager.reconcile_loop import ReconcileLoop
from topology.cpuset import CPUSet
from topology.model import Core, NumaNode, Package, Topology


def four_cpus() -> Topology:
    cpus = CPUSet.range(0, 3)
    return Topology.build(
        packages=[Package(0, cpus, 0)],
        numa_nodes=[NumaNode(0, cpus)],
        cores=[Core(id=c, core_id=c, package=0, cpus=CPUSet.of(c)) for c in range(4)],
    )


def cgroup_dir(writer: CgroupV1Cpuset, ref: ContainerCgroup) -> Path:
    """A container cgroup with the cpuset files the kernel would create on mkdir."""
    path = writer.path_for(ref)
    path.mkdir(parents=True)
    for name in ("cpuset.cpus", "cpuset.mems"):
        (path / name).write_text("")
    return path


class ListSource:
    def __init__(self, infos: list[ContainerInfo]) -> None:
        self.infos = infos

    def running(self) -> list[ContainerInfo]:
        return list(self.infos)


class BrokenSource:
    def __init__(self) -> None:
        self.calls = 0

    def running(self) -> list[ContainerInfo]:
        self.calls += 1
        if self.calls == 1:
            raise OSError("pod list unavailable")
        return []


def wait_for(cond, timeout: float = 2.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def setup(tmp_path: Path) -> tuple[CPUManager, CgroupV1Cpuset, ContainerInfo, ContainerInfo]:
    topo = four_cpus()
    writer = CgroupV1Cpuset(tmp_path)
    mgr = CPUManager(topo, StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1), writer=writer)
    mgr.start()
    excl_ref = ContainerCgroup(pod_uid="pod-a", container_id="aaa")
    shared_ref = ContainerCgroup(pod_uid="pod-b", container_id="bbb", qos="burstable")
    cgroup_dir(writer, excl_ref)
    cgroup_dir(writer, shared_ref)
    excl = ContainerInfo("pod-a", "a", excl_ref, exclusive_cpus=2)
    shared = ContainerInfo("pod-b", "b", shared_ref)
    mgr.add_container(excl)
    mgr.add_container(shared)
    return mgr, writer, excl, shared


def test_loop_repairs_drift_within_one_period(
    setup: tuple[CPUManager, CgroupV1Cpuset, ContainerInfo, ContainerInfo],
) -> None:
    mgr, writer, excl, shared = setup
    assert excl.cgroup is not None and shared.cgroup is not None
    want_excl, want_shared = writer.read(excl.cgroup), writer.read(shared.cgroup)
    assert want_excl is not None and want_shared == mgr.shared_pool()
    loop = ReconcileLoop(mgr, [ListSource([excl, shared])], period_s=0.05).start()
    try:
        (writer.path_for(shared.cgroup) / "cpuset.cpus").write_text("0-3")  # drift by hand
        (writer.path_for(excl.cgroup) / "cpuset.cpus").write_text("0")
        assert wait_for(
            lambda: writer.read(shared.cgroup) == want_shared and writer.read(excl.cgroup) == want_excl
        )
    finally:
        started = time.monotonic()
        loop.stop()
        assert time.monotonic() - started < 1.0
    repaired = mgr.metrics.registry.get_sample_value(
        "topolet_cpu_manager_reconcile_repairs_total", {"action": "repinned"}
    )
    assert repaired is not None and repaired >= 2


def test_loop_releases_containers_that_are_gone(
    setup: tuple[CPUManager, CgroupV1Cpuset, ContainerInfo, ContainerInfo],
) -> None:
    mgr, _, excl, shared = setup
    source = ListSource([excl, shared])
    loop = ReconcileLoop(mgr, [source], period_s=0.05).start()
    try:
        source.infos = [shared]
        assert wait_for(lambda: mgr.exclusive_cpus() == CPUSet())
        assert mgr.shared_pool() == CPUSet.range(0, 3)
    finally:
        loop.stop()


def test_a_failing_tick_is_logged_and_the_loop_goes_on(
    setup: tuple[CPUManager, CgroupV1Cpuset, ContainerInfo, ContainerInfo],
    caplog: pytest.LogCaptureFixture,
) -> None:
    mgr, _, _, _ = setup
    broken = BrokenSource()
    loop = ReconcileLoop(mgr, [broken], period_s=0.05)
    assert loop.tick() is None
    assert "reconcile pass failed" in caplog.text
    loop.start()
    try:
        # The next ticks succeed: nothing runs any more, so the exclusive CPUs come back.
        assert wait_for(lambda: mgr.exclusive_cpus() == CPUSet())
    finally:
        loop.stop()
    assert mgr.metrics.registry.get_sample_value("topolet_cpu_manager_reconcile_errors_total") == 1
    runs = mgr.metrics.registry.get_sample_value("topolet_cpu_manager_reconcile_runs_total")
    assert runs is not None and runs >= 2


def test_bad_period_rejected(setup: tuple[CPUManager, CgroupV1Cpuset, ContainerInfo, ContainerInfo]) -> None:
    with pytest.raises(ValueError, match="period_s"):
        ReconcileLoop(setup[0], [], period_s=0)
