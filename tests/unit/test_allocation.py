"""Table tests of the topology-aware CPU allocator on small named machines.

Machines use Linux-style numbering (hyperthread siblings are ``cpu`` and
``cpu + cores_total``) unless a row says otherwise; ids are deliberately sparse in some
rows, because real NUMA/CPU ids need not run 0..n-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpumanager.allocation import CPUAccumulator, Strategy, take_by_topology
from cpumanager.cpu_topology import CPUTopology
from cpumanager.distributed import balance_score, take_by_topology_numa_distributed
from cpumanager.errors import InsufficientCPUsError
from topology.cpuset import CPUSet
from topology.model import CacheGroup, Core, NumaNode, Package, Topology


def machine(
    *,
    sockets: int,
    numa_per_socket: int = 1,
    cores_per_numa: int,
    threads: int = 2,
    l3_per_numa: int = 1,
    numa_ids: list[int] | None = None,
    cpu_offset: int = 0,
) -> Topology:
    """A regular machine; sibling threads of core k are ``offset + k + t * total_cores``."""
    total_cores = sockets * numa_per_socket * cores_per_numa
    nodes = numa_ids or list(range(sockets * numa_per_socket))
    cores, packages, numas, l3s = [], [], [], []
    per_l3 = cores_per_numa // l3_per_numa
    for s in range(sockets):
        socket_cpus = CPUSet()
        for i in range(numa_per_socket):
            numa_index = s * numa_per_socket + i
            numa_cpus = CPUSet()
            for c in range(cores_per_numa):
                k = numa_index * cores_per_numa + c
                cpus = CPUSet(cpu_offset + k + t * total_cores for t in range(threads))
                cores.append(Core(id=min(cpus), core_id=c, package=s, cpus=cpus))
                numa_cpus |= cpus
            numas.append(NumaNode(id=nodes[numa_index], cpus=numa_cpus))
            for g in range(l3_per_numa):
                members = [co.cpus for co in cores[-cores_per_numa:][g * per_l3 : (g + 1) * per_l3]]
                l3s.append(
                    CacheGroup(id=numa_index * l3_per_numa + g, level=3, cpus=CPUSet().union(*members))
                )
            socket_cpus |= numa_cpus
        packages.append(Package(id=s, cpus=socket_cpus, os_index=s))
    return Topology.build(packages=packages, numa_nodes=numas, cores=cores, l3_groups=l3s)


SINGLE_SOCKET_HT = machine(sockets=1, cores_per_numa=4)  # 0-3 + siblings 4-7
DUAL_SOCKET_HT = machine(sockets=2, cores_per_numa=3)  # socket 0: 0-2,6-8; socket 1: 3-5,9-11
DUAL_SOCKET_4NUMA_HT = machine(sockets=2, numa_per_socket=2, cores_per_numa=4)  # 32 CPUs
SPARSE_NUMA = machine(sockets=2, cores_per_numa=4, threads=1, numa_ids=[1, 3], cpu_offset=8)  # 8-15
SPLIT_L3 = machine(sockets=1, cores_per_numa=8, l3_per_numa=2)  # L3 0: 0-3,8-11; L3 1: 4-7,12-15


@dataclass(frozen=True)
class TakeCase:
    id: str
    topo: Topology
    available: str
    n: int
    expected: str
    strategy: Strategy = "packed"
    l3: bool = False


TAKE_CASES = [
    TakeCase("single-socket-HT/nothing-requested/expect-empty", SINGLE_SOCKET_HT, "0-7", 0, ""),
    TakeCase("single-socket-HT/two-cpus/expect-one-whole-core", SINGLE_SOCKET_HT, "0-7", 2, "0,4"),
    TakeCase(
        "single-socket-HT/three-cpus/expect-core-then-sibling-pair-start", SINGLE_SOCKET_HT, "0-7", 3, "0-1,4"
    ),
    TakeCase("single-socket-HT/half-used-core/expect-leftover-thread-first", SINGLE_SOCKET_HT, "1-7", 1, "4"),
    TakeCase(
        "dual-socket-HT/one-socket-free/expect-whole-socket", DUAL_SOCKET_HT, "0-2,4-8,10-11", 6, "0-2,6-8"
    ),
    TakeCase("dual-socket-HT/socket-0-partly-used/expect-pack-into-it", DUAL_SOCKET_HT, "1-11", 2, "1,7"),
    TakeCase(
        "dual-socket-HT/socket-1-partly-used/expect-pack-into-it", DUAL_SOCKET_HT, "0-8,10-11", 2, "4,10"
    ),
    TakeCase("dual-socket-HT/socket-and-core/expect-socket-then-core", DUAL_SOCKET_HT, "0-11", 8, "0-3,6-9"),
    TakeCase("dual-socket-HT/spread/expect-one-thread-per-core", DUAL_SOCKET_HT, "0-11", 3, "0-2", "spread"),
    TakeCase(
        "dual-socket-HT/spread-whole-socket/expect-socket", DUAL_SOCKET_HT, "0-11", 6, "0-2,6-8", "spread"
    ),
    TakeCase("4-numa-HT/one-numa-node/expect-whole-node", DUAL_SOCKET_4NUMA_HT, "0-31", 8, "0-3,16-19"),
    TakeCase("4-numa-HT/node-0-used/expect-next-free-node", DUAL_SOCKET_4NUMA_HT, "1-31", 8, "4-7,20-23"),
    TakeCase("4-numa-HT/whole-socket/expect-socket", DUAL_SOCKET_4NUMA_HT, "0-31", 16, "0-7,16-23"),
    TakeCase("sparse-numa-1-3/node-3-used/expect-pack-into-node-3", SPARSE_NUMA, "8-14", 1, "12"),
    TakeCase("sparse-numa-1-3/one-node/expect-node-1", SPARSE_NUMA, "8-15", 4, "8-11"),
    TakeCase(
        "split-L3/L3-0-partly-used/l3-aligned/expect-rest-of-L3-0",
        SPLIT_L3,
        "1-7,9-15",
        6,
        "1-3,9-11",
        l3=True,
    ),
    TakeCase("split-L3/L3-0-partly-used/no-l3/expect-cores-by-id", SPLIT_L3, "1-7,9-15", 6, "1-3,9-11"),
    TakeCase("split-L3/whole-L3-fits/l3-aligned/expect-free-L3", SPLIT_L3, "1-15", 8, "4-7,12-15", l3=True),
]


@pytest.mark.parametrize("case", TAKE_CASES, ids=[c.id for c in TAKE_CASES])
def test_take_by_topology(case: TakeCase) -> None:
    got = take_by_topology(
        CPUTopology.from_topology(case.topo),
        CPUSet.parse(case.available),
        case.n,
        strategy=case.strategy,
        align_by_l3=case.l3,
    )
    assert str(got) == case.expected


@pytest.mark.parametrize(
    ("available", "n", "message"),
    [
        ("0-3", 5, 'requested=5, available=4; available CPUs: "0-3"'),
        ("", 1, "requested=1, available=0"),
    ],
    ids=["four-free/ask-five", "none-free/ask-one"],
)
def test_insufficient_cpus_names_the_numbers_and_the_set(available: str, n: int, message: str) -> None:
    with pytest.raises(InsufficientCPUsError) as info:
        take_by_topology(CPUTopology.from_topology(SINGLE_SOCKET_HT), CPUSet.parse(available), n)
    assert message in str(info.value)
    assert info.value.requested == n
    assert info.value.available == CPUSet.parse(available)


@pytest.mark.parametrize(
    ("topo", "available", "sockets", "numa", "cores"),
    [
        (DUAL_SOCKET_HT, "0-11", [0, 1], [0, 1], [0, 1, 2, 3, 4, 5]),
        (DUAL_SOCKET_HT, "1-11", [1], [1], [1, 2, 3, 4, 5]),
        # sockets-first (4 NUMA > 2 sockets): socket 0 has fewer free CPUs, so its units lead
        (DUAL_SOCKET_4NUMA_HT, "1-31", [1], [1, 2, 3], list(range(1, 16))),
        # NUMA-first: node 1 (3 free) before node 3 (4 free), so cores 8-10 lead
        (SPARSE_NUMA, "8-10,12-15", [1], [3], [8, 9, 10, 12, 13, 14, 15]),
    ],
    ids=[
        "dual-socket-HT/all-free",
        "dual-socket-HT/cpu-0-used",
        "4-numa-HT/cpu-0-used",
        "sparse-numa/cpu-11-used",
    ],
)
def test_free_unit_lists(
    topo: Topology, available: str, sockets: list[int], numa: list[int], cores: list[int]
) -> None:
    acc = CPUAccumulator(CPUTopology.from_topology(topo), CPUSet.parse(available), 0)
    assert (acc.free_sockets(), acc.free_numa_nodes(), acc.free_cores()) == (sockets, numa, cores)


@pytest.mark.parametrize(
    ("available", "n", "group", "expected"),
    [
        # fewest nodes first: ceil(16 / 8) = 2 nodes; every pair balances alike -> first pair
        ("0-31", 16, 1, "0-7,16-23"),
        ("0-31", 16, 2, "0-7,16-23"),
        # node 0 has 7 free < the 8 a 2-node split needs; pairs (1,2),(1,3),(2,3) tie -> (1,2)
        ("1-31", 16, 1, "4-11,20-27"),
        # 2 nodes x 6 (3 whole cores each)
        ("0-31", 12, 2, "0-2,4-6,16-18,20-22"),
        # ceil(18 / 8) = 3 nodes x 6, remainder 0
        ("0-31", 18, 1, "0-2,4-6,8-10,16-18,20-22,24-26"),
        # 3 is not a multiple of 2: packed taker (core 0, then a thread of core 1)
        ("0-31", 3, 2, "0-1,16"),
    ],
    ids=[
        "4-numa-HT/16-cpus/expect-two-whole-nodes",
        "4-numa-HT/16-cpus-groups-of-2/expect-two-whole-nodes",
        "4-numa-HT/node-0-used/expect-next-two-whole-nodes",
        "4-numa-HT/12-cpus-groups-of-2/expect-6-on-each-of-2-nodes",
        "4-numa-HT/18-cpus/expect-6-on-each-of-3-nodes",
        "4-numa-HT/odd-request-groups-of-2/expect-packed-fallback",
    ],
)
def test_numa_distributed(available: str, n: int, group: int, expected: str) -> None:
    got = take_by_topology_numa_distributed(
        CPUTopology.from_topology(DUAL_SOCKET_4NUMA_HT), CPUSet.parse(available), n, group_size=group
    )
    assert str(got) == expected


@pytest.mark.parametrize(
    ("counts", "score"),
    [([4, 4, 4], 0.0), ([1, 2], 0.5), ([0, 0, 1], 0.471), ([0, 8], 4.0)],
    ids=["even", "one-apart", "mean-rounded-first", "all-on-one"],
)
def test_balance_score(counts: list[int], score: float) -> None:
    assert balance_score(counts) == score


@st.composite
def requests(draw: st.DrawFn) -> tuple[Topology, CPUSet, int]:
    topo = draw(
        st.sampled_from([SINGLE_SOCKET_HT, DUAL_SOCKET_HT, DUAL_SOCKET_4NUMA_HT, SPARSE_NUMA, SPLIT_L3])
    )
    cpus = sorted(topo.cpus)
    available = CPUSet(draw(st.sets(st.sampled_from(cpus))))
    return topo, available, draw(st.integers(0, len(available)))


@settings(max_examples=150, deadline=None)
@given(
    req=requests(),
    strategy=st.sampled_from(["packed", "spread"]),
    l3=st.booleans(),
    group=st.sampled_from([1, 2]),
)
def test_every_taker_returns_n_available_cpus(
    req: tuple[Topology, CPUSet, int], strategy: Strategy, l3: bool, group: int
) -> None:
    topo, available, n = req
    view = CPUTopology.from_topology(topo)
    packed = take_by_topology(view, available, n, strategy=strategy, align_by_l3=l3)
    spread = take_by_topology_numa_distributed(view, available, n, group_size=group, strategy=strategy)
    for got in (packed, spread):
        assert len(got) == n
        assert got <= available
