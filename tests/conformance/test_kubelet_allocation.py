"""kubelet's CPU allocation test cases, replayed against topolet's CPU manager core.

Every entry of ``allocation_cases`` in the kubelet conformance set is one test
id (case id + description); cases added later run with no code change. A case of a kind
this module does not know fails loudly rather than being skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from cpumanager.allocation import CPUAccumulator, take_by_topology
from cpumanager.cpu_topology import CPUTopology, units_holding
from cpumanager.distributed import take_by_topology_numa_distributed
from cpumanager.errors import (
    CPUManagerError,
    InsufficientCPUsError,
    PolicyConfigError,
    SMTAlignmentError,
    StateValidationError,
)
from cpumanager.options import StaticPolicyOptions
from cpumanager.policy_static import ContainerKind, StaticPolicy
from cpumanager.state import MemoryState
from kube.pod import parse_pod
from tests.conformance.kubelet_fixtures import (
    build_topology,
    declared_counts,
    load_kubelet_cases,
    topology_entry,
)
from topology.cpuset import CPUSet

Case = dict[str, Any]
CASES: list[Case] = load_kubelet_cases()["allocation_cases"]

ERROR_TYPES: dict[str, type[CPUManagerError]] = {
    "InsufficientCPUs": InsufficientCPUsError,
    "SMTAlignmentError": SMTAlignmentError,
    "StartValidationError": StateValidationError,
    "NewStaticPolicyError": PolicyConfigError,
}


def case_id(case: Case) -> str:
    short = re.sub(r"[^A-Za-z0-9]+", "-", case["description"]).strip("-")[:70]
    return f"{case['id']}/{short}"


def cpus(text: str) -> CPUSet:
    return CPUSet.parse(text)


def view(case: Case) -> CPUTopology:
    """The fixture as kubelet sees it: its declared counts, and L3 id 0 (Go's zero
    value) on CPUs for which the fixture names no uncore cache (kubelet's word for L3)."""
    entry = topology_entry(case["topology"])
    return CPUTopology.from_topology(build_topology(entry), default_l3=0, **declared_counts(entry))


def options(case: Case) -> StaticPolicyOptions:
    return StaticPolicyOptions.parse(case.get("options", {}), alpha_enabled=True)


def policy(case: Case) -> StaticPolicy:
    reserved = case.get("reserved_cpus")
    return StaticPolicy(
        view(case),
        num_reserved_cpus=case.get("num_reserved_cpus", 0),
        reserved_cpus=cpus(reserved) if reserved is not None else None,
        options=options(case),
    )


def state(case: Case) -> MemoryState:
    st = case["state"]
    assignments = {
        pod: {name: cpus(s) for name, s in containers.items()}
        for pod, containers in st["assignments"].items()
    }
    return MemoryState(cpus(st["default_cpuset"]), assignments)


def setup(case: Case) -> tuple[StaticPolicy, MemoryState]:
    """The case's policy and state, checked against the case's derived pools."""
    p, st = policy(case), state(case)
    if "reserved_cpus_effective" in case:
        assert p.reserved_cpus == cpus(case["reserved_cpus_effective"])
    if "assignable_cpuset" in case:
        assert p.available_cpus(st) == cpus(case["assignable_cpuset"])
    return p, st


def ids_match(case: Case, got: list[int], expected: list[int]) -> None:
    if case.get("order_significant", True):
        assert got == expected
    else:
        assert sorted(got) == sorted(expected)


def expect_error(case: Case, action: Callable[[], object]) -> None:
    err = case["expected_error"]
    with pytest.raises(ERROR_TYPES[err["kind"]]) as info:
        action()
    assert info.value.detail == err["message"]


# ----------------------------------------------------------------- per kind
def check_free_units(case: Case) -> None:
    acc = CPUAccumulator(view(case), cpus(case["available"]), 0)
    generator = {
        "free_sockets": acc.free_sockets,
        "free_numa_nodes": acc.free_numa_nodes,
        "free_cores": acc.free_cores,
        "free_cpus_order": acc.free_cpus,
    }[case["kind"]]
    ids_match(case, generator(), case["expected_ids"])


def check_free_sockets_and_numa_nodes(case: Case) -> None:
    acc = CPUAccumulator(view(case), cpus(case["available"]), 0)
    ids_match(case, acc.free_sockets(), case["expected_sockets"])
    ids_match(case, acc.free_numa_nodes(), case["expected_numa_nodes"])


def check_accumulator_take(case: Case) -> None:
    acc = CPUAccumulator(view(case), cpus(case["available"]), case["num_requested"])
    for taken in case["take_sequence"]:
        acc.take(cpus(taken))
    assert (acc.is_satisfied(), acc.is_failed()) == (case["expected_satisfied"], case["expected_failed"])


def check_take_packed(case: Case) -> None:
    def run() -> CPUSet:
        return take_by_topology(
            view(case),
            cpus(case["available"]),
            case["num_requested"],
            strategy=case["cpu_sorting_strategy"],
            align_by_l3=options(case).prefer_align_by_l3,
        )

    if "expected_error" in case:
        expect_error(case, run)
    else:
        assert run() == cpus(case["expected"])


def check_take_distributed(case: Case) -> None:
    def run() -> CPUSet:
        return take_by_topology_numa_distributed(
            view(case),
            cpus(case["available"]),
            case["num_requested"],
            group_size=case["cpu_group_size"],
            strategy=case["cpu_sorting_strategy"],
        )

    if "expected_error" in case:
        expect_error(case, run)
    else:
        assert run() == cpus(case["expected"])


def check_policy_start(case: Case) -> None:
    if case.get("expected_error", {}).get("kind") == "NewStaticPolicyError":
        expect_error(case, lambda: policy(case))
        return
    p, st = setup(case)
    if "expected_error" in case:
        expect_error(case, lambda: p.start(st))
    else:
        p.start(st)
        assert st.get_default_cpuset() == cpus(case["expected_default_cpuset"])


def check_policy_allocate(case: Case) -> None:
    p, st = setup(case)
    container = case["container"]
    # kubelet's makePod(uid, name, cpuRequest, cpuLimit): cpu and memory "1G" in both lists
    resources = {
        "requests": {"cpu": container["cpu_request"], "memory": "1G"},
        "limits": {"cpu": container["cpu_limit"], "memory": "1G"},
    }
    pod = parse_pod({"spec": {"containers": [{"name": container["name"], "resources": resources}]}})
    n = pod.exclusive_cpus(container["name"])
    assert n == case["num_requested"]
    hint = case.get("topology_hint")
    before = st.get_default_cpuset()

    def run() -> CPUSet:
        return p.allocate(
            st, case["pod_uid"], container["name"], n, numa_affinity=hint["numa_affinity"] if hint else None
        )

    if "expected_error" in case:
        expect_error(case, run)
        assert st.get_default_cpuset() == before
    elif case.get("expected_no_exclusive_allocation"):
        assert run() == CPUSet()
        assert st.get_cpuset(case["pod_uid"], container["name"]) is None
        assert st.get_default_cpuset() == before
    else:
        got = run()
        assert got == cpus(case["expected"])
        assert st.get_cpuset(case["pod_uid"], container["name"]) == got
        assert st.get_default_cpuset() == before - got


def check_policy_allocate_cpus(case: Case) -> None:
    p, st = setup(case)
    got = p.allocate_cpus(st, case["num_requested"], numa_affinity=case.get("numa_affinity"))
    assert got == cpus(case["expected"])


def check_policy_remove(case: Case) -> None:
    p, st = setup(case)
    p.release(st, case["pod_uid"], case["container_name"])
    assert st.get_default_cpuset() == cpus(case["expected_default_cpuset"])
    assert st.get_cpuset(case["pod_uid"], case["container_name"]) is None


def check_policy_reuse_sequence(case: Case) -> None:
    (p, st), pod = setup(case), "fakePod"
    for c in case["init_containers"]:
        kind = ContainerKind.SIDECAR if c.get("restartPolicy") == "Always" else ContainerKind.INIT
        p.allocate(st, pod, c["name"], c["cpus"], kind=kind)
    for c in case["app_containers"]:
        p.allocate(st, pod, c["name"], c["cpus"])
    assert st.get_default_cpuset() == cpus(case["expected_default_cpuset_after_allocation"])
    if "remove_container" in case:
        p.release(st, pod, case["remove_container"])
        assert st.get_default_cpuset() == cpus(case["expected_default_cpuset_after_remove"])


def check_policy_allocate_multi_container(case: Case) -> None:
    (p, st), topo = setup(case), view(case)
    allocated = [
        p.allocate(st, "fakePod", f"appContainer-{i}", n)
        for i, n in enumerate(case["app_container_cpu_requests"])
    ]
    assert [len(a) for a in allocated] == case["app_container_cpu_requests"]
    if "expected_first_container" in case:
        assert allocated[0] == cpus(case["expected_first_container"])
    if "expected_uncore_cache_ids" in case:
        assert units_holding(topo.l3_cpus, CPUSet().union(*allocated)) == case["expected_uncore_cache_ids"]


CHECKS: dict[str, Callable[[Case], None]] = {
    "free_sockets": check_free_units,
    "free_numa_nodes": check_free_units,
    "free_cores": check_free_units,
    "free_cpus_order": check_free_units,
    "free_sockets_and_numa_nodes": check_free_sockets_and_numa_nodes,
    "accumulator_take": check_accumulator_take,
    "take_by_topology_packed": check_take_packed,
    "take_by_topology_distributed": check_take_distributed,
    "policy_start": check_policy_start,
    "policy_allocate": check_policy_allocate,
    "policy_allocate_cpus": check_policy_allocate_cpus,
    "policy_remove": check_policy_remove,
    "policy_reuse_sequence": check_policy_reuse_sequence,
    "policy_allocate_multi_container": check_policy_allocate_multi_container,
}


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_kubelet_allocation_case(case: Case) -> None:
    check = CHECKS.get(case["kind"])
    assert check is not None, f"no check for case kind {case['kind']!r}: add one to CHECKS"
    check(case)
