"""GPU preferred allocation: must-include, NUMA packing before link score, sparse NUMA ids,
bad input, and the fast search checked against a plain scan of every partition."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest

from deviceplugin.errors import (
    DeviceAllocationError,
    DevicePluginConfigError,
    GPUModelError,
    InsufficientDevicesError,
    InvalidRequestError,
    UnknownDeviceError,
)
from deviceplugin.gpu_allocation import (
    GPU,
    MAX_SEARCH_GPUS,
    GPULink,
    GPUTopology,
    PCIeLink,
    allocation_policy,
    gpu_partitions,
    gpu_sets,
    preferred_allocation,
)

PIX, PHB, NODE, SYS = PCIeLink.PIX, PCIeLink.PHB, PCIeLink.NODE, PCIeLink.SYS


def node(numa: Mapping[int, int | None], links: Mapping[tuple[int, int], GPULink]) -> GPUTopology:
    """GPUs ``g<index>`` with the given NUMA nodes; pairs not in ``links`` are SYS when the
    GPUs sit on different nodes and NODE otherwise."""
    gpus = [GPU(f"g{i}", i, numa_node=n) for i, n in numa.items()]
    full: dict[tuple[str, str], GPULink] = {}
    for a in numa:
        for b in numa:
            if a < b:
                default = GPULink(NODE if numa[a] == numa[b] else SYS)
                full[(f"g{a}", f"g{b}")] = links.get((a, b), default)
    return GPUTopology(gpus, full)


def ids(*indices: int) -> list[str]:
    return [f"g{i}" for i in indices]


# Two NUMA nodes of four GPUs; NVLink pairs 0-1, 2-3 (node 0) and 4-5 (node 1), and one
# 4-NVLink bridge 3-4 across the nodes.
TWO_NODES = node(
    dict.fromkeys(range(4), 0) | dict.fromkeys(range(4, 8), 1),
    {(0, 1): GPULink(PIX, 2), (2, 3): GPULink(PIX, 2), (4, 5): GPULink(PIX, 2), (3, 4): GPULink(SYS, 4)},
)
# Sparse NUMA ids 2 and 7 plus a GPU whose node is unknown.
SPARSE = node({0: 7, 1: 7, 2: 2, 3: 2, 4: 2, 5: None}, {(2, 3): GPULink(PIX, 1), (0, 1): GPULink(PHB)})


@dataclass(frozen=True)
class Case:
    description: str
    gpus: GPUTopology
    available: list[str]
    must_include: list[str]
    size: int
    expected: set[str]


CASES = [
    # must_include honoured
    Case(
        "MustInclude, TwoNodes, ExpectItsNVLinkPartner", TWO_NODES, ids(*range(8)), ids(2), 2, set(ids(2, 3))
    ),
    Case(
        "MustIncludeTwo, TwoNodes, ExpectBothPlusBestPair",
        TWO_NODES,
        ids(*range(8)),
        ids(0, 6),
        4,
        set(ids(0, 1, 6, 7)),
    ),  # spans two nodes anyway: 0-1 (250) beats any other partner
    Case(
        "MustIncludeAll, TwoNodes, ExpectExactlyThem",
        TWO_NODES,
        ids(*range(8)),
        ids(1, 5, 7),
        3,
        set(ids(1, 5, 7)),
    ),
    # {5,6,7} scores 60 against 290 for {4,5,7}, but leaves the partition {0,1}{2,3,4}{5,6,7}
    # (250 + 670 + 60 = 980), which beats every partition holding {4,5,7} (at most 810)
    Case(
        "MustIncludeOnNode1, TwoNodes, ExpectPartitionKeepingBridge",
        TWO_NODES,
        ids(*range(8)),
        ids(7),
        3,
        set(ids(5, 6, 7)),
    ),
    # NUMA packing beats link score: 3-4 (4 NVLinks, 410) crosses nodes, so 2-3 (250) wins
    Case(
        "PairWith3, TwoNodes, ExpectSameNodePartnerNotBridge",
        TWO_NODES,
        ids(*range(8)),
        ids(3),
        2,
        set(ids(2, 3)),
    ),
    Case("Pair, Free 3 4 6, ExpectNodeOnePairOverBridge", TWO_NODES, ids(3, 4, 6), [], 2, set(ids(4, 6))),
    Case("Four, TwoNodes, ExpectOneWholeNode", TWO_NODES, ids(*range(8)), [], 4, set(ids(0, 1, 2, 3))),
    Case(
        "Five, TwoNodes, ExpectNodePlusBridgePartner",
        TWO_NODES,
        ids(*range(8)),
        ids(0),
        5,
        set(ids(0, 1, 2, 3, 4)),
    ),
    # sparse NUMA ids and an unknown node
    Case("Pair, Sparse, ExpectNVLinkedPairOnNode2", SPARSE, ids(*range(6)), [], 2, set(ids(2, 3))),
    Case("Three, Sparse, ExpectWholeNode2", SPARSE, ids(*range(6)), [], 3, set(ids(2, 3, 4))),
    Case(
        "MustIncludeUnknownNode, Sparse, ExpectFillFromBiggestNode",
        SPARSE,
        ids(*range(6)),
        ids(5),
        4,
        set(ids(2, 3, 4, 5)),
    ),
    Case("Pair, Sparse, Only 0 1 5 Free, ExpectNode7Pair", SPARSE, ids(0, 1, 5), [], 2, set(ids(0, 1))),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.description)
def test_preferred_allocation(case: Case) -> None:
    got = preferred_allocation(case.gpus, case.available, case.must_include, case.size)
    assert set(got) == case.expected
    assert len(got) == case.size


@pytest.mark.parametrize(
    ("available", "must_include", "size", "error", "message"),
    [
        pytest.param(ids(0, 1), [], 0, InvalidRequestError, "allocation_size: got 0", id="size-zero"),
        pytest.param(ids(0, 1), [], -2, InvalidRequestError, "positive", id="size-negative"),
        pytest.param([*ids(0, 1), "GPU-x"], [], 1, UnknownDeviceError, "'GPU-x'", id="unknown-available"),
        pytest.param(ids(0, 1), ["nope"], 1, UnknownDeviceError, "must_include_deviceIDs", id="unknown-must"),
        pytest.param(ids(0, 0, 1), [], 2, InvalidRequestError, "more than once", id="duplicate-available"),
        pytest.param(ids(0, 1), ids(0, 0), 2, InvalidRequestError, "more than once", id="duplicate-must"),
        pytest.param(
            ids(1, 2),
            ids(0),
            2,
            InvalidRequestError,
            "not in available_deviceIDs",
            id="must-include-not-available",
        ),
        pytest.param(
            ids(0, 1, 2),
            ids(0, 1, 2),
            2,
            InvalidRequestError,
            "exceed allocation_size",
            id="must-include-more-than-size",
        ),
        pytest.param(
            ids(0, 1), [], 3, InsufficientDevicesError, "only 2 available", id="size-over-available"
        ),
        pytest.param([], [], 1, InsufficientDevicesError, "only 0 available", id="nothing-available"),
    ],
)
def test_bad_request(
    available: list[str], must_include: list[str], size: int, error: type[DeviceAllocationError], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        preferred_allocation(TWO_NODES, available, must_include, size)
    assert info.value.field in {"available_deviceIDs", "must_include_deviceIDs", "allocation_size"}


def test_too_many_gpus_for_the_search() -> None:
    big = node(dict.fromkeys(range(MAX_SEARCH_GPUS + 1), 0), {})
    with pytest.raises(InvalidRequestError, match=f"at most {MAX_SEARCH_GPUS}"):
        preferred_allocation(big, list(big.gpus), [], 2)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(lambda: GPULink(PIX, 13), "0..12", id="too-many-nvlinks"),
        pytest.param(lambda: GPU("", 0), "non-empty", id="empty-id"),
        pytest.param(lambda: GPU("a", -1), "index", id="negative-index"),
        pytest.param(lambda: GPU("a", 0, numa_node=-1), "numa_node", id="negative-numa"),
        pytest.param(lambda: GPUTopology([GPU("a", 0), GPU("a", 1)], {}), "repeats", id="duplicate-id"),
        pytest.param(lambda: GPUTopology([GPU("a", 0), GPU("b", 0)], {}), "repeats", id="duplicate-index"),
        pytest.param(
            lambda: GPUTopology([GPU("a", 0)], {("a", "z"): GPULink()}),
            "unknown GPU 'z'",
            id="link-to-unknown",
        ),
        pytest.param(lambda: GPUTopology([GPU("a", 0)], {("a", "a"): GPULink()}), "itself", id="self-link"),
        pytest.param(
            lambda: GPUTopology([GPU("a", 0), GPU("b", 1)], {("a", "b"): GPULink(), ("b", "a"): GPULink()}),
            "twice",
            id="pair-twice",
        ),
    ],
)
def test_bad_model(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises(GPUModelError, match=message):
        build()


def test_unknown_policy_lists_valid_names() -> None:
    with pytest.raises(
        DevicePluginConfigError, match="besteffort, simple, static-dgx1-pascal, static-dgx1-volta"
    ):
        allocation_policy("greedy")


# --------------------------------------------------------------------------- exhaustive check


def scan(gpus: GPUTopology, available: Sequence[str], must: Sequence[str], size: int) -> list[str]:
    """The policy as written: visit every partition, keep the first best qualifying one,
    return its first best eligible group."""

    def nodes(group: Sequence[str | None]) -> int:
        return len({gpus.gpus[g].numa_node for g in group if g is not None})

    fewest = min(nodes(s) for s in gpu_sets(available, size) if set(must) <= set(s))

    def eligible(group: Sequence[str | None]) -> bool:
        return None not in group and set(must) <= set(group) and nodes(group) == fewest

    def score(group: Sequence[str | None]) -> int:
        return gpus.set_score(g for g in group if g is not None)

    best_score, best_partition = -1, None
    for partition in gpu_partitions(available, size):
        total = sum(score(g) for g in partition)
        if total > best_score and any(eligible(g) for g in partition):
            best_score, best_partition = total, partition
    assert best_partition is not None
    picks = [g for g in best_partition if eligible(g)]
    top = max(score(g) for g in picks)
    return [g for g in next(g for g in picks if score(g) == top) if g is not None]


def random_node(seed: int, n: int) -> GPUTopology:
    """Random links and NUMA nodes (sparse ids, some unknown). Odd seeds draw from two link
    kinds only, so that equal-scoring partitions and groups are common."""
    rng = random.Random(seed)
    numa = {i: rng.choice([0, 3, 3, None]) for i in range(n)}
    kinds = [GPULink(p, k) for p in PCIeLink for k in (0, 1, 2)]
    if seed % 2:
        kinds = [GPULink(SYS), GPULink(PIX, 1)]
    links = {(a, b): rng.choice(kinds) for a in range(n) for b in range(a + 1, n) if rng.random() < 0.8}
    gpus = [GPU(f"g{i}", i, numa_node=numa[i]) for i in range(n)]
    return GPUTopology(gpus, {(f"g{a}", f"g{b}"): link for (a, b), link in links.items()})


EXHAUSTIVE = [
    (seed, n, size, must)
    for seed, n in ((1, 5), (2, 6), (3, 7), (4, 8), (5, 9), (7, 8), (9, 6))
    for size in range(2 if n < 9 else 4, n)  # 9 GPUs in pairs is 945 partitions per scan: slow
    for must in (0, 1, 2)
    if must <= size
]


@pytest.mark.parametrize(
    ("seed", "n", "size", "must"),
    EXHAUSTIVE,
    ids=[f"seed{s}-{n}gpus-size{z}-must{m}" for s, n, z, m in EXHAUSTIVE],
)
def test_search_matches_scan_of_every_partition(seed: int, n: int, size: int, must: int) -> None:
    gpus = random_node(seed, n)
    available = list(gpus.gpus)
    random.Random(seed * 100 + size).shuffle(available)
    required = available[n // 2 : n // 2 + must]
    got = preferred_allocation(gpus, available, required, size)
    assert got == [a for a in available if a in scan(gpus, available, required, size)]
