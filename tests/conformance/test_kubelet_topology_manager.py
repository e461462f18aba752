"""kubelet's topology-manager merge, case by case.

Reads every case of ``topology_manager_cases`` (policy merge and admission),
``topology_manager_compare_cases`` (the best-hint comparison),
``topology_manager_max_of_min_cases`` and the ``numa_info`` fixtures from the kubelet
``cases.json``; one test id per case, so cases added later run with no code change.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from tests.conformance.kubelet_fixtures import load_kubelet_cases
from topology import numa_bitmask as nb
from topology.hints import (
    HintMerger,
    NUMAInfo,
    PolicyOptions,
    ProviderHints,
    TopologyHint,
    max_of_min_affinity_counts,
    merge_hints,
    new_policy,
)

DATA: dict[str, Any] = load_kubelet_cases()
NUMA_INFO: dict[str, dict[str, Any]] = dict(DATA["numa_info"])
MERGE_CASES: list[dict[str, Any]] = DATA["topology_manager_cases"]
COMPARE_CASES: list[dict[str, Any]] = DATA["topology_manager_compare_cases"]
MAX_OF_MIN_CASES: list[dict[str, Any]] = DATA["topology_manager_max_of_min_cases"]


def numa_info(name: str) -> NUMAInfo:
    entry = NUMA_INFO[name]
    rows = {int(node): row for node, row in entry["distances"].items()}
    return NUMAInfo.from_distance_rows(entry["nodes"], rows)


def hint(raw: dict[str, Any]) -> TopologyHint:
    return TopologyHint.on(raw["numa_affinity"], preferred=raw["preferred"])


def provider(raw: dict[str, Any] | None) -> ProviderHints:
    if raw is None:
        return None
    return {res: None if hints is None else [hint(h) for h in hints] for res, hints in raw.items()}


def _merge_id(case: dict[str, Any]) -> str:
    compare = "closest" if case["prefer_closest_numa_nodes"] else "narrowest"
    return f"{case['policy']}/{case['numa_info']}/{compare}/{case['description']}"


@pytest.mark.parametrize("case", MERGE_CASES, ids=[_merge_id(c) for c in MERGE_CASES])
def test_policy_merge(case: dict[str, Any]) -> None:
    info = numa_info(case["numa_info"])
    assert list(info.nodes) == case["numa_nodes"]
    options = PolicyOptions(prefer_closest_numa_nodes=case["prefer_closest_numa_nodes"])
    providers = [provider(p) for p in case["providers"]]
    got, admit = merge_hints(providers, info, case["policy"], options)
    assert str(got) == str(hint(case["expected_hint"]))
    assert got == hint(case["expected_hint"])
    assert admit is case["expected_admit"]
    # The policy built once from the registry answers the same as the one-shot call.
    assert new_policy(case["policy"], info, options).merge(providers) == (got, admit)


def _as_hint(raw: dict[str, Any] | None) -> TopologyHint | None:
    return None if raw is None else hint(raw)


@pytest.mark.parametrize("case", COMPARE_CASES, ids=[c["description"] for c in COMPARE_CASES])
def test_compare(case: dict[str, Any]) -> None:
    merger = HintMerger(NUMAInfo((0, 1, 2, 3)), case["best_non_preferred_affinity_count"])
    current, candidate = _as_hint(case["current"]), hint(case["candidate"])
    winner = merger.compare(current, candidate)
    expected = {"current": current, "candidate": candidate}[case["expected"]]
    assert winner is expected


def _masks_id(case: dict[str, Any]) -> str:
    lists = [
        "|".join(",".join(map(str, m)) or "empty" for m in masks) for masks in case["provider_hint_masks"]
    ]
    return " x ".join(f"[{lst}]" for lst in lists) + f" -> {case['expected']}"


@pytest.mark.parametrize("case", MAX_OF_MIN_CASES, ids=[_masks_id(c) for c in MAX_OF_MIN_CASES])
def test_max_of_min_affinity_counts(case: dict[str, Any]) -> None:
    lists = [[TopologyHint.on(m, preferred=False) for m in masks] for masks in case["provider_hint_masks"]]
    assert max_of_min_affinity_counts(lists) == case["expected"]


@pytest.mark.parametrize("name", list(NUMA_INFO), ids=list(NUMA_INFO))
def test_numa_info(name: str) -> None:
    entry = NUMA_INFO[name]
    info = numa_info(name)
    nodes = sorted(entry["nodes"])
    assert info.nodes == tuple(nodes)
    assert info.default_affinity == frozenset(nodes)
    assert info.default_mask == nb.mask_of(nodes)
    assert info.has_distances()
    for node, row in entry["distances"].items():
        for position, other in enumerate(nodes):
            assert info.distance(int(node), other) == row[position]
    # Average over all ordered pairs, the diagonal included.
    table = [entry["distances"][str(a)][nodes.index(b)] for a in nodes for b in nodes]
    assert info.average_distance(info.default_mask) == Fraction(sum(table), len(table))
