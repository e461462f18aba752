"""NodeResourceTopologyMatch conformance: every case of the NRT set (``conformance_data/nrt``).

Each case list present in the file is read at run time and every case is one test id
(its ``id`` plus the upstream subtest name), so cases added later run with no code
change. Inputs go through the project's own adapters (``NodeResourceTopology.from_dict``,
``parse_pod``), and the pure core answers: :func:`scheduler.filter.fit`,
:class:`scheduler.score.Scorer`, the LeastNUMANodes helpers and the NRT topology
manager config.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest

from scheduler.filter import Victim, fit
from scheduler.pod import QOSClass, parse_pod
from scheduler.score import Scorer
from scheduler.strategies import Cell, min_avg_distance, normalize_score, numa_nodes_required
from tests.conformance_sets import load_cases
from topology.nrt import (
    AttributeInfo,
    NodeResourceTopology,
    TopologyManagerConfig,
    config_from_attributes,
    config_from_topology_policies,
    is_valid_policy,
    is_valid_scope,
)
from topology.quantity import parse_amount

DATA: dict[str, Any] = load_cases("nrt")
KNOWN_LISTS = {
    "filter_cases",
    "score_cases",
    "least_numa_cases",
    "topology_manager_config_cases",
    "scheduling_cases",
}


def cases(key: str) -> list[Any]:
    return [pytest.param(c, id=f"{c['id']}:{c.get('subtest', '')}") for c in DATA.get(key, [])]


def nrt_of(obj: dict[str, Any] | None) -> NodeResourceTopology | None:
    return None if obj is None else NodeResourceTopology.from_dict(obj)


def test_every_case_list_is_checked() -> None:
    lists = {k for k, v in DATA.items() if isinstance(v, list)}
    assert lists <= KNOWN_LISTS, f"case lists with no test: {sorted(lists - KNOWN_LISTS)}"


# ------------------------------------------------------------------ filter
@pytest.mark.parametrize("case", cases("filter_cases"))
def test_filter(case: dict[str, Any]) -> None:
    preemption = case.get("preemption")
    victims = (
        None
        if preemption is None
        else [Victim(parse_pod(v["pod"]), v.get("container_numa_affinity")) for v in preemption["victims"]]
    )
    got = fit(parse_pod(case["pod"]), nrt_of(case["nrt"]), case["node_allocatable"], victims=victims)
    want = case["expected"]
    assert (got.fits, got.status) == (want["fits"], want["status"]), got.detail
    if want["reason"] is None:
        assert got.reason is None
    else:
        assert got.reason is not None and got.reason.startswith(want["reason"])
    side_effects = case.get("expected_side_effects") or {}
    if "node_marked_maybe_overreserved" in side_effects:
        assert got.maybe_overreserved is side_effects["node_marked_maybe_overreserved"]


# ------------------------------------------------------------------- score
@pytest.mark.parametrize("case", cases("score_cases"))
def test_score(case: dict[str, Any]) -> None:
    scorer = Scorer(case["strategy"], case["resource_weights"])
    pod = parse_pod(case["pod"])
    got = scorer.score_all(pod, ((n["name"], nrt_of(n["nrt"])) for n in case["nodes"]))
    want = case["expected_scores"]
    if case["check"] == "all_nodes":
        assert got == want
    elif case["check"] == "best_node":
        best = case["expected_best_node"]
        assert got[best] == want[best]
        assert all(score < got[best] for name, score in got.items() if name != best), got
    else:
        assert case["check"] == "status_only", f"unknown check {case['check']!r}"
        assert set(got) == {n["name"] for n in case["nodes"]}
    if "derived_scores_all_nodes" in case:
        assert got == case["derived_scores_all_nodes"]


# -------------------------------------------------------------- scheduling
def _place(case: dict[str, Any]) -> tuple[set[str], dict[str, str]]:
    """Filter every node, score the survivors; the top-scoring nodes and the failures."""
    profile = case["profile"]
    scorer = Scorer(profile["strategy"], profile["resource_weights"])
    pod = parse_pod(case["pod"])
    survivors: dict[str, int] = {}
    failures: dict[str, str] = {}
    for node in case["nodes"]:
        nrt = nrt_of(node["nrt"])
        verdict = fit(pod, nrt, node["node_allocatable"])
        if verdict.fits:
            survivors[node["name"]] = scorer.score(pod, nrt)
        else:
            failures[node["name"]] = f"{verdict.reason}: {verdict.detail}"
    top = max(survivors.values(), default=None)
    return {n for n, s in survivors.items() if s == top}, failures


@pytest.mark.parametrize("case", cases("scheduling_cases"))
def test_scheduling(case: dict[str, Any]) -> None:
    winners, failures = _place(case)
    want = case["expected"]
    if want["schedulable"]:
        # Ties are broken at random upstream: every top-scoring node must be acceptable.
        assert winners and winners <= set(want["any_of_nodes"]), (winners, failures)
    else:
        assert not winners, winners
        needle = want["reason_contains"]
        assert needle is None or any(needle in msg for msg in failures.values()), failures


# -------------------------------------------------------------- least NUMA
def _cells(numa_nodes: list[dict[str, Any]]) -> list[Cell]:
    return [
        Cell(
            n["numa_id"],
            {k: parse_amount(k, v, field=k) for k, v in n["resources"].items()},
            {int(k): v for k, v in n["costs"].items()},
        )
        for n in numa_nodes
    ]


@pytest.mark.parametrize("case", cases("least_numa_cases"))
def test_least_numa(case: dict[str, Any]) -> None:
    want = case["expected"]
    if case["kind"] == "numa_nodes_required":
        request = {k: parse_amount(k, v, field=k) for k, v in case["request"].items()}
        ids, is_min = numa_nodes_required(_cells(case["numa_nodes"]), request, QOSClass(case["qos"]))
        assert (None if ids is None else sorted(ids)) == want["numa_ids"]
        assert is_min == want["is_min_avg_distance"]
    elif case["kind"] == "normalize_score":
        assert normalize_score(case["numa_count"], case["is_min_avg_distance"]) == want["score"]
    else:
        assert case["kind"] == "min_avg_distance", f"unknown kind {case['kind']!r}"
        got = min_avg_distance(_cells(case["numa_nodes"]), case["combinations"])
        assert got == Fraction(want["exact"])
        assert math.isclose(float(got), want["min_avg_distance"], rel_tol=1e-6)


# ------------------------------------------------------ topology manager
def _attributes(raw: list[dict[str, str]] | None) -> list[AttributeInfo] | None:
    return None if raw is None else [AttributeInfo(a["name"], a["value"]) for a in raw]


@pytest.mark.parametrize("case", cases("topology_manager_config_cases"))
def test_topology_manager_config(case: dict[str, Any]) -> None:
    kind, given, want = case["kind"], case["input"], case["expected"]
    if kind in ("is_valid_scope", "is_valid_policy"):
        check = is_valid_scope if kind == "is_valid_scope" else is_valid_policy
        assert check(given) is want["valid"]
        return
    if kind == "from_attributes":
        conf = config_from_attributes(_attributes(given["attributes"]), TopologyManagerConfig())
    elif kind == "from_topology_policies":
        conf = config_from_topology_policies(given["topologyPolicies"], TopologyManagerConfig())
    else:
        assert kind == "from_nrt", f"unknown kind {kind!r}"
        conf = NodeResourceTopology.from_dict(
            {"metadata": {"name": "n"}, "zones": [], **given}
        ).topology_manager()
    assert (conf.policy, conf.scope) == (want["policy"], want["scope"])
