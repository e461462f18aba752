"""isolcpus: isolated CPUs stay out of the shared pool and go only to pods that ask."""

from __future__ import annotations

import pytest

from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import InsufficientCPUsError
from cpumanager.isolated import free_isolated, release_isolated, seed_isolated_pool, take_isolated
from cpumanager.policy_static import StaticPolicy
from cpumanager.state import MemoryState
from topology.cpuset import CPUSet
from topology.model import Core, NumaNode, Package, Topology


def eight_cpus_ht(isolated: str) -> Topology:
    """1 socket, 4 cores x 2 threads (siblings n and n+4), isolated CPUs as given."""
    cores = [Core(id=c, core_id=c, package=0, cpus=CPUSet.of(c, c + 4)) for c in range(4)]
    all_cpus = CPUSet.range(0, 7)
    return Topology.build(
        packages=[Package(0, all_cpus, 0)],
        numa_nodes=[NumaNode(0, all_cpus)],
        cores=cores,
        isolated_cpus=CPUSet.parse(isolated),
    )


@pytest.fixture
def setup() -> tuple[Topology, StaticPolicy, MemoryState]:
    topo = eight_cpus_ht("2-3,6-7")
    policy = StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1)
    state = MemoryState()
    policy.start(state)
    seed_isolated_pool(state, topo.isolated_cpus, policy.reserved_cpus)
    policy.validate_state(state)  # still a valid kubelet-format state
    return topo, policy, state


def test_isolated_never_in_shared_pool(setup: tuple[Topology, StaticPolicy, MemoryState]) -> None:
    topo, policy, state = setup
    assert state.get_default_cpuset() == CPUSet.parse("0-1,4-5")
    assert free_isolated(state) == CPUSet.parse("2-3,6-7")
    # A normal exclusive request is served from the shared pool only.
    got = policy.allocate(state, "pod-a", "app", 2)
    assert got.isdisjoint(topo.isolated_cpus)


def test_isolated_request_gets_whole_isolated_cores_and_returns_them(
    setup: tuple[Topology, StaticPolicy, MemoryState],
) -> None:
    topo, policy, state = setup
    got = take_isolated(state, policy, "pod-rt", "rt", 2)
    assert got <= topo.isolated_cpus and len(got) == 2
    assert got in (CPUSet.of(2, 6), CPUSet.of(3, 7))  # one whole core
    shared_before = state.get_default_cpuset()
    release_isolated(state, "pod-rt", "rt", topo.isolated_cpus)
    assert free_isolated(state) == topo.isolated_cpus
    assert state.get_default_cpuset() == shared_before
    policy.validate_state(state)


def test_isolated_pool_exhausted(setup: tuple[Topology, StaticPolicy, MemoryState]) -> None:
    _, policy, state = setup
    with pytest.raises(InsufficientCPUsError):
        take_isolated(state, policy, "pod-rt", "rt", 5)
    assert len(free_isolated(state)) == 4  # unchanged on error


def test_reserved_cpu_that_is_isolated_stays_reserved() -> None:
    topo = eight_cpus_ht("0,4")
    policy = StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1)
    state = MemoryState()
    policy.start(state)
    seed_isolated_pool(state, topo.isolated_cpus, policy.reserved_cpus)
    assert policy.reserved_cpus <= state.get_default_cpuset()
    assert free_isolated(state) == topo.isolated_cpus - policy.reserved_cpus


def test_manager_serves_isolated_on_request_and_survives_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cpumanager.checkpoint import CheckpointStore
    from cpumanager.manager import ContainerInfo, CPUManager

    topo = eight_cpus_ht("2-3,6-7")
    store_path = tmp_path / "cpu_manager_state"

    def manager() -> CPUManager:
        return CPUManager(
            topo,
            StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1),
            store=CheckpointStore(store_path, policy_name="static"),
        )

    mgr = manager()
    mgr.start()
    assert mgr.shared_pool() == CPUSet.parse("0-1,4-5")
    mgr.add_container(ContainerInfo("pod-rt", "rt", None, exclusive_cpus=2, isolated=True))
    mgr.add_container(ContainerInfo("pod-n", "app", None, exclusive_cpus=2))
    rt, app = mgr.state.get_cpuset("pod-rt", "rt"), mgr.state.get_cpuset("pod-n", "app")
    assert rt is not None and rt <= topo.isolated_cpus
    assert app is not None and app.isdisjoint(topo.isolated_cpus)
    assert mgr.exclusive_cpus() == rt | app
    mgr.close()
    again = manager()
    again.start()  # the pool entry keeps the invariants: restart validates
    assert again.state.get_cpuset("pod-rt", "rt") == rt
    # The sweep frees the gone containers; isolated CPUs return to the pool, not the shared pool.
    again.reconcile([])
    assert again.shared_pool() == CPUSet.parse("0-1,4-5")
    assert free_isolated(again.state) == topo.isolated_cpus
    again.close()
