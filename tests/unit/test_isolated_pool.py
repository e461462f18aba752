"""isolcpus: isolated CPUs stay out of the shared pool and go only to pods that ask."""

from __future__ import annotations

import pytest

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
    return Topology.build(packages=[Package(0, all_cpus, 0)], numa_nodes=[NumaNode(0, all_cpus)],
                          cores=cores, isolated_cpus=CPUSet.parse(isolated))


@pytest.fixture
def setup() -> tuple[Topology, StaticPolicy, MemoryState]:
    topo = eight_cpus_ht("2-3,6-7")
    policy = StaticPolicy(topo, num_reserved_cpus=1)
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
    policy = StaticPolicy(topo, num_reserved_cpus=1)
    state = MemoryState()
    policy.start(state)
    seed_isolated_pool(state, topo.isolated_cpus, policy.reserved_cpus)
    assert policy.reserved_cpus <= state.get_default_cpuset()
    assert free_isolated(state) == topo.isolated_cpus - policy.reserved_cpus
