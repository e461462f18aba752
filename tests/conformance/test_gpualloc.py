"""GPU preferred-allocation conformance: every case of ``conformance_data/gpualloc``.

The cases are NVIDIA go-gpuallocator's own test tables (DGX-1 Pascal, DGX-1 Volta, 4x RTX8000).
Each GPU gets the device id ``GPU-<index>``. Every case runs through the policy named by its
``policy`` field (best-effort = :func:`preferred_allocation`) and is compared as a set; an
``{"error": ...}`` expectation passes on an DeviceAllocationError or an empty answer. Cases, link
scores and enumeration tables are all read at collection time, so added cases run unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest

from deviceplugin.errors import DeviceAllocationError
from deviceplugin.gpu_allocation import (
    ALLOCATION_POLICIES,
    GPU,
    GPULink,
    GPUTopology,
    PCIeLink,
    allocation_policy,
    gpu_partitions,
    gpu_sets,
)
from tests.conformance_sets import load_cases

DATA: dict[str, Any] = load_cases("gpualloc")


def gpu_id(index: int) -> str:
    """Device id of the fixture GPU with this index."""
    return f"GPU-{index}"


def build(topology: Mapping[str, Any]) -> GPUTopology:
    """The project model of one ``topologies`` entry."""
    gpus = [GPU(gpu_id(g["index"]), g["index"], numa_node=g["numa"]) for g in topology["gpus"]]
    links = {
        (gpu_id(link["a"]), gpu_id(link["b"])): GPULink(
            PCIeLink(link["pcie"]) if link["pcie"] is not None else None, link["nvlinks"]
        )
        for link in topology["links"]
    }
    return GPUTopology(gpus, links)


TOPOLOGIES = {t["name"]: build(t) for t in DATA["topologies"]}


@pytest.mark.parametrize("topology", DATA["topologies"], ids=lambda t: t["name"])
def test_link_scores(topology: Mapping[str, Any]) -> None:
    """Each listed pair scores its derived ``score``; unlisted pairs score 0."""
    model = TOPOLOGIES[topology["name"]]
    listed = {frozenset((link["a"], link["b"])): link["score"] for link in topology["links"]}
    indices = [g["index"] for g in topology["gpus"]]
    for a in indices:
        for b in indices:
            expected = listed.get(frozenset((a, b)), 0) if a != b else 0
            assert model.pair_score(gpu_id(a), gpu_id(b)) == expected, (a, b)


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: c["id"])
def test_case(case: Mapping[str, Any]) -> None:
    model = TOPOLOGIES[case["topology"]]
    policy = allocation_policy(case["policy"])
    available = [gpu_id(i) for i in case["available"]]
    required = [gpu_id(i) for i in case["required"]]
    expected = case["expected"]
    try:
        got = policy(model, available, required, case["size"])
    except DeviceAllocationError as err:
        assert isinstance(expected, dict), f"unexpected error: {err}"
        return
    if isinstance(expected, dict):
        assert got == [], f"expected no devices ({expected['error']}), got {got}"
        return
    assert len(got) == len(set(got)) == case["size"]
    assert set(got) <= set(available)
    assert {model.gpus[d].index for d in got} == set(expected)


def test_every_case_policy_is_registered() -> None:
    assert {c["policy"] for c in DATA["cases"]} <= set(ALLOCATION_POLICIES)


def _slot(item: Any) -> tuple[int, int]:
    """Sort key of a set member; padding (None) sorts last."""
    return (1, 0) if item is None else (0, item)


def _canonical_sets(sets: Iterable[Sequence[Any]]) -> list[tuple[tuple[int, int], ...]]:
    return sorted(tuple(sorted(_slot(x) for x in s)) for s in sets)


def _canonical_partitions(partitions: Iterable[Sequence[Sequence[Any]]]) -> list[tuple[Any, ...]]:
    return sorted(tuple(_canonical_sets(p)) for p in partitions)


@pytest.mark.parametrize("case", DATA["enumeration_cases"], ids=lambda c: f"{c['test']}/{c['description']}")
def test_enumeration(case: Mapping[str, Any]) -> None:
    """Subset and partition enumeration match upstream's tables, compared order-insensitively."""
    if "sets" in case:
        assert _canonical_sets(gpu_sets(case["input"], case["size"])) == _canonical_sets(case["sets"])
    else:
        got = _canonical_partitions(gpu_partitions(case["input"], case["size"]))
        assert got == _canonical_partitions(case["partitions"])


def _sequences() -> dict[str, list[Mapping[str, Any]]]:
    """Stateful-allocator steps by sequence name, in step order."""
    seqs: dict[str, list[Mapping[str, Any]]] = {}
    for case in DATA["cases"]:
        if "sequence" in case:
            seqs.setdefault(case["sequence"]["name"], []).append(case)
    return {name: sorted(steps, key=lambda c: c["sequence"]["step"]) for name, steps in seqs.items()}


SEQUENCES = _sequences()


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_sequence_replay(name: str) -> None:
    """Replay a stateful allocator from a full node: each listed step's ``available`` must be
    what the earlier answers left free, so the answers of unlisted steps are checked too. An
    unlisted step runs with the size its sequence repeats; where that size cannot be told
    (sizes differ, or no earlier step is listed) the replay restarts from the next listed step."""
    listed = {c["sequence"]["step"]: c for c in SEQUENCES[name]}
    first = SEQUENCES[name][0]
    sizes = {c["size"] for c in SEQUENCES[name] if c["sequence"]["step"] < c["sequence"]["of"]}
    model, policy = TOPOLOGIES[first["topology"]], allocation_policy(first["policy"])
    free: list[int] | None = sorted(model.gpus[g].index for g in model.gpus)
    for step in range(1, first["sequence"]["of"] + 1):
        case = listed.get(step)
        if case is not None:
            if free is not None:
                assert case["available"] == free, f"step {step}: free GPUs differ from the listed ones"
            free = list(case["available"])
        if free is None or (case is None and len(sizes) != 1):
            free = None
            continue
        size = case["size"] if case is not None else next(iter(sizes))
        try:
            got = policy(model, [gpu_id(i) for i in free], [], size)
        except DeviceAllocationError:
            got = []
        if case is not None and isinstance(case["expected"], list):
            assert sorted(model.gpus[g].index for g in got) == case["expected"], f"step {step}"
        free = [i for i in free if gpu_id(i) not in got]
