"""kubelet's CPU-manager topology hints, case by case (``cpu_topology_hint_cases``).

Every case present in the kubelet ``cases.json`` is one test id, so cases added later run
with no code change. Hints are compared as ordered lists: kubelet emits them by subset
size, then in lexicographic NUMA-id order, and so does :func:`cpu_topology_hints`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.kubelet_fixtures import build_topology, load_kubelet_cases, topology_entry
from topology.cpuset import CPUSet
from topology.hints import TopologyHint, cpu_hints_for_assignment, cpu_topology_hints, parse_option_bool

CASES: list[dict[str, Any]] = load_kubelet_cases()["cpu_topology_hint_cases"]


def _hints(raw: list[dict[str, Any]]) -> list[TopologyHint]:
    return [TopologyHint.on(h["numa_affinity"], preferred=h["preferred"]) for h in raw]


def _hints_for(case: dict[str, Any]) -> list[TopologyHint]:
    topo = build_topology(topology_entry(case["topology"]))
    align = parse_option_bool("align-by-socket", case.get("options", {}).get("align-by-socket", "false"))
    request = case["num_requested"]
    assigned = case.get("existing_assignment", {}).get(case.get("container"))
    if assigned is not None:
        return cpu_hints_for_assignment(topo, CPUSet.parse(assigned), request, align_by_socket=align)
    available = CPUSet.parse(case["default_cpuset"])
    return cpu_topology_hints(topo, available, CPUSet(), request, align_by_socket=align)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['topology']}/{c['description']}" for c in CASES])
def test_cpu_topology_hints(case: dict[str, Any]) -> None:
    got = _hints_for(case)
    assert [str(h) for h in got] == [str(h) for h in _hints(case["expected_hints"])]
    assert got == _hints(case["expected_hints"])
