"""The allocator's view (CPUTopology) against the model (Topology): one vocabulary.

The view is built from the model and shares no public name with it, so a name never
means two things (``sockets_in_numa_nodes`` used to return a CPUSet on one and a list on
the other). Its level-generic helpers answer what the model's queries answer.
"""

from __future__ import annotations

import pytest

from cpumanager.cpu_topology import CPUTopology, cpus_of_units, units_holding
from tests.unit.test_model import kubelet_dual_socket_ht, sparse_dual_socket_ht
from topology.cpuset import CPUSet
from topology.model import Topology


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


def test_view_and_model_share_no_public_name() -> None:
    assert _public(CPUTopology) & _public(Topology) == set()


MODELS = [
    pytest.param(sparse_dual_socket_ht(), id="sparse"),
    pytest.param(kubelet_dual_socket_ht(), id="kubelet-ht"),
]


@pytest.mark.parametrize("topo", MODELS)
def test_view_answers_what_the_model_answers(topo: Topology) -> None:
    view = CPUTopology.from_topology(topo)
    assert view.cpuset == topo.online_cpus
    for n in topo.numa_node_ids():
        assert cpus_of_units(view.numa_cpus, [n]) == topo.cpus_in_numa_nodes(n)
        sockets = {s for s in view.numa_sockets.get(n, {})}
        assert CPUSet(sockets) == topo.sockets_in_numa_nodes(n)
    for s in topo.socket_ids():
        assert cpus_of_units(view.socket_cpus, [s]) == topo.cpus_in_sockets(s)
    for c in topo.core_ids():
        assert cpus_of_units(view.core_cpus, [c]) == topo.cpus_in_cores(c)
    for group in topo.l3_groups:
        assert cpus_of_units(view.l3_cpus, [group]) == topo.cpus_in_l3_groups(group)
    every = topo.online_cpus
    assert CPUSet(units_holding(view.numa_cpus, every)) == topo.numa_nodes_of(every)
    assert view.declared_cpus_per_core() == topo.threads_per_core()
    assert view.declared_cpus_per_socket() == topo.cpus_per_socket()


@pytest.mark.parametrize(
    ("ids", "expected"),
    [([], ""), ([0], "0-1"), ([0, 2], "0-1,4-5"), ([2, 99], "4-5")],
    ids=["none", "one", "two", "absent-id-adds-nothing"],
)
def test_cpus_of_units(ids: list[int], expected: str) -> None:
    units = {0: CPUSet.parse("0-1"), 2: CPUSet.parse("4-5")}
    assert str(cpus_of_units(units, ids)) == expected


def test_declared_counts_override_the_sizes() -> None:
    """kubelet fixtures may declare counts that differ from their CPU lists; the allocator's
    unit sizes are integer divisions of the declared counts, as kubelet computes them."""
    view = CPUTopology.from_topology(
        sparse_dual_socket_ht(), declared_cpus=12, declared_cores=4, declared_l3_caches=5
    )
    assert (view.declared_cpus_per_core(), view.declared_cpus_per_l3()) == (3, 2)
