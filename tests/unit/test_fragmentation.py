"""Fragmentation-aware CPU choice and the fragmentation measure, on hand-built situations.

The machine: 2 sockets x 3 cores x 2 threads, one NUMA node per socket, Linux-style
numbering (socket 0 holds cores {0,6} {1,7} {2,8}; socket 1 holds {3,9} {4,10} {5,11}).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpumanager.allocation import take_by_topology
from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import InsufficientCPUsError
from cpumanager.fragmentation import best_fit_unit, measure, take_best_fit
from cpumanager.options import StaticPolicyOptions
from cpumanager.policy_static import StaticPolicy
from cpumanager.state import MemoryState
from topology.cpuset import CPUSet
from topology.model import Core, NumaNode, Package, Topology


def _dual_socket_ht() -> Topology:
    cores = [Core(id=c, core_id=c % 3, package=c // 3, cpus=CPUSet([c, c + 6])) for c in range(6)]
    sockets = [CPUSet.parse("0-2,6-8"), CPUSet.parse("3-5,9-11")]
    return Topology.build(
        packages=[Package(id=s, cpus=cpus, os_index=s) for s, cpus in enumerate(sockets)],
        numa_nodes=[NumaNode(id=s, cpus=cpus) for s, cpus in enumerate(sockets)],
        cores=cores,
    )


TOPO = _dual_socket_ht()
VIEW: CPUTopology = CPUTopology.from_topology(TOPO)


def _policy(*, fragmentation_aware: bool, full_pcpus_only: bool = False) -> StaticPolicy:
    options = StaticPolicyOptions(
        fragmentation_aware=fragmentation_aware, full_physical_cpus_only=full_pcpus_only
    )
    return StaticPolicy(VIEW, num_reserved_cpus=0, options=options)


# (available, request, kubelet's choice, fragmentation-aware choice)
SITUATIONS = [
    pytest.param(
        "0-1,3-5,9-11",
        2,
        "3,9",
        "0-1",
        id="dual-socket-HT/half-cores-on-used-socket/2-cpus/expect-socket1-kept-whole",
    ),
    pytest.param(
        "0-2,3-6,9-11",
        4,
        "0,3,6,9",
        "0-2,6",
        id="dual-socket-HT/whole-core-plus-halves/4-cpus/expect-single-socket",
    ),
    pytest.param(
        "0-2,3-5,9-11",
        3,
        "0,3,9",
        "0-2",
        id="dual-socket-HT/three-halves-on-used-socket/3-cpus/expect-single-socket",
    ),
    pytest.param(
        "0-1,3-5,9-11",
        3,
        "0,3,9",
        "3-4,9",
        id="dual-socket-HT/used-socket-too-small/3-cpus/expect-aligned-on-free-socket",
    ),
    pytest.param(
        "0-2,6-7,3-5,9-11",
        3,
        "0,2,6",
        "0,2,6",
        id="dual-socket-HT/odd-request/3-cpus/expect-half-core-used-both",
    ),
    pytest.param("0-11", 6, "0-2,6-8", "0-2,6-8", id="dual-socket-HT/all-free/whole-socket/expect-same"),
    pytest.param("1,3-5,7,9-11", 1, "1", "1", id="dual-socket-HT/one-core-left-on-socket0/1-cpu/expect-same"),
]


@pytest.mark.parametrize(("available", "n", "kubelet", "aware"), SITUATIONS)
def test_choice_differs_from_kubelet_where_it_keeps_units_whole(
    available: str, n: int, kubelet: str, aware: str
) -> None:
    free = CPUSet.parse(available)
    assert str(_policy(fragmentation_aware=False).take(free, n)) == kubelet
    assert str(_policy(fragmentation_aware=True).take(free, n)) == aware


@pytest.mark.parametrize(("available", "n", "kubelet", "aware"), SITUATIONS)
def test_option_off_is_kubelets_taker(available: str, n: int, kubelet: str, aware: str) -> None:
    free = CPUSet.parse(available)
    assert _policy(fragmentation_aware=False).take(free, n) == take_by_topology(VIEW, free, n)


def test_full_pcpus_only_counts_whole_cores_when_fitting() -> None:
    # socket 0 has three free threads but no whole core; a 2-CPU request needs one.
    free = CPUSet.parse("0-2,3-5,9-11")
    assert str(_policy(fragmentation_aware=True, full_pcpus_only=True).take(free, 2)) == "3,9"
    assert str(best_fit_unit(VIEW, free, 2, whole_cores_only=True)) == "3-5,9-11"
    assert str(best_fit_unit(VIEW, free, 2)) == "0-2"


def test_policy_allocate_keeps_the_free_socket_whole_under_churn() -> None:
    """Six 1-CPU containers fill socket 0's first threads; two leave; a 2-CPU container
    then lands on the freed threads of socket 0 only with the option on."""
    results = {}
    for aware in (False, True):
        policy, state = _policy(fragmentation_aware=aware), MemoryState()
        policy.start(state)
        for i in range(6):
            policy.allocate(state, f"pod{i}", "app", 1)
        policy.release(state, "pod0", "app")
        policy.release(state, "pod2", "app")
        results[aware] = policy.allocate(state, "big", "app", 2)
        assert measure(VIEW, policy.available_cpus(state)).free_cpus == 6
    assert str(results[False]) == "3,9"
    assert len(TOPO.numa_nodes_of(results[True])) == 1
    assert results[True] <= CPUSet.parse("0-2,6-8")


def test_option_is_parsed_without_a_feature_gate() -> None:
    parsed = StaticPolicyOptions.parse({"fragmentation-aware": "true"}, alpha_enabled=False)
    assert parsed.fragmentation_aware
    assert not StaticPolicyOptions.parse({}).fragmentation_aware


def test_too_few_cpus_is_an_error_with_the_option() -> None:
    with pytest.raises(InsufficientCPUsError):
        _policy(fragmentation_aware=True).take(CPUSet.parse("0-2"), 4)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=(1 << 12) - 1), st.integers(min_value=1, max_value=12))
def test_best_fit_takes_exactly_n_of_available_inside_one_unit_when_one_fits(bits: int, n: int) -> None:
    free = CPUSet.from_bits(bits)
    if len(free) < n:
        return
    policy = _policy(fragmentation_aware=True)
    got = take_best_fit(VIEW, free, n, policy.take_kubelet)
    assert len(got) == n and got <= free
    if any(len(free & cpus) >= n for cpus in VIEW.numa_cpus.values()):
        assert len(TOPO.numa_nodes_of(got)) == 1


# (free set, free whole cores, partly free cores, free sockets, core/numa/socket score)
MEASURES = [
    pytest.param("0-11", 6, 0, (0, 1), (0.0, 0.0, 0.0), id="all-free/expect-packed"),
    pytest.param("0-2,6-8", 3, 0, (0,), (0.0, 0.0, 0.0), id="one-socket-free/expect-packed"),
    pytest.param("0-5", 0, 6, (), (0.5, 0.5, 0.5), id="one-thread-per-core/expect-half-scattered"),
    pytest.param("0,3,6,9", 2, 0, (), (0.0, 0.5, 0.5), id="whole-cores-split-over-sockets"),
    pytest.param("", 0, 0, (), (0.0, 0.0, 0.0), id="nothing-free/expect-zero"),
]


@pytest.mark.parametrize(("free", "whole", "partly", "sockets", "scores"), MEASURES)
def test_measure(
    free: str, whole: int, partly: int, sockets: tuple[int, ...], scores: tuple[float, float, float]
) -> None:
    frag = measure(VIEW, CPUSet.parse(free))
    assert frag.free_cpus == len(CPUSet.parse(free))
    assert (frag.free_whole_cores, frag.partly_free_cores, frag.free_sockets) == (whole, partly, sockets)
    assert (frag.core_score, frag.numa_score, frag.socket_score) == pytest.approx(scores)
    assert frag.score == pytest.approx(sum(scores) / 3)


def test_measure_largest_free_share() -> None:
    frag = measure(VIEW, CPUSet.parse("0-2,3-4"))
    assert frag.largest_numa_free == 3
    assert frag.largest_numa_fraction == pytest.approx(0.5)
    assert frag.largest_socket_free == 3
