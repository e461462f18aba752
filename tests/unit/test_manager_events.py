"""Every state-changing path of the manager tells its listeners (device-plugin ListAndWatch)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import InsufficientCPUsError
from cpumanager.manager import ContainerInfo, CPUManager
from cpumanager.policy_static import StaticPolicy
from topology.cpuset import CPUSet
from topology.model import Core, NumaNode, Package, Topology


def four_cpus() -> Topology:
    cpus = CPUSet.range(0, 3)
    return Topology.build(
        packages=[Package(0, cpus, 0)],
        numa_nodes=[NumaNode(0, cpus)],
        cores=[Core(id=c, core_id=c, package=0, cpus=CPUSet.of(c)) for c in range(4)],
    )


def started() -> tuple[CPUManager, list[CPUSet]]:
    topo = four_cpus()
    mgr = CPUManager(topo, StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1))
    mgr.start()
    seen: list[CPUSet] = []
    mgr.subscribe(lambda: seen.append(mgr.shared_pool()))
    return mgr, seen


STEPS: list[tuple[str, Callable[[CPUManager], object], list[str]]] = [
    ("allocate", lambda m: m.allocate("p", "c", 2), ["0,3"]),
    ("allocate-twice-is-one-change", lambda m: (m.allocate("p", "c", 2), m.allocate("p", "c", 2)), ["0,3"]),
    ("assign-exact", lambda m: m.assign_exact("p", "c", CPUSet.of(3)), ["0-2"]),
    ("add-container", lambda m: m.add_container(ContainerInfo("p", "c", None, exclusive_cpus=1)), ["0,2-3"]),
    (
        "allocate-then-release",
        lambda m: (m.allocate("p", "c", 1), m.remove_container("p", "c")),
        ["0,2-3", "0-3"],
    ),
]


@pytest.mark.parametrize(("step", "expect"), [pytest.param(s, e, id=i) for i, s, e in STEPS])
def test_listeners_see_every_change(step: Callable[[CPUManager], object], expect: list[str]) -> None:
    mgr, seen = started()
    step(mgr)
    assert [str(s) for s in seen] == expect


def test_failed_allocate_tells_nobody() -> None:
    mgr, seen = started()
    with pytest.raises(InsufficientCPUsError):
        mgr.allocate("p", "c", 4)
    assert seen == []
