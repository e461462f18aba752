"""Regression cases found by the differential tests against kubelet (no Go needed here).

Each case is kubelet's recorded answer to a question where topolet once answered
differently (``tests/conformance_data/oracle/cases.json``).
"""

from __future__ import annotations

from typing import Any

import pytest

from cpumanager.errors import CPUManagerError
from cpumanager.policy_static import ContainerKind
from kube.pod import Container, QOSClass, exclusive_cpus
from tests.conformance_sets import load_cases
from tests.differential.machines import Machine, Setup
from tests.differential.test_allocator_oracle import topolet_policy
from tests.differential.test_merge_oracle import topolet_merge
from topology.quantity import CPU, parse_amount

DATA = load_cases("oracle")


@pytest.mark.parametrize("case", DATA["merge_cases"], ids=[c["id"] for c in DATA["merge_cases"]])
def test_merge_case(case: dict[str, Any]) -> None:
    got = topolet_merge(case["request"])
    assert {k: got.get(k) for k in case["expected"]} == case["expected"]


@pytest.mark.parametrize("case", DATA["allocation_cases"], ids=[c["id"] for c in DATA["allocation_cases"]])
def test_allocation_case(case: dict[str, Any]) -> None:
    machine = Machine(tuple(tuple(c) for c in case["cpus"]), case["id"])
    setup = Setup(machine, case["num_reserved"], tuple(case["reserved"]), case["options"], case["tm_policy"])
    policy, state = topolet_policy(setup)
    for step in case["steps"]:
        pod, name, want = step["pod"], step["container"], step["expected"]
        if step["op"] == "remove":
            policy.release(state, pod, name)
        else:
            spec = next(c for c in pod["init"] + pod["containers"] if c["name"] == name)
            cpu = parse_amount(CPU, spec["cpu"], field="cpu")
            n = exclusive_cpus(QOSClass.GUARANTEED, Container(name, {CPU: cpu}))
            kind = ContainerKind.APP if spec in pod["containers"] else ContainerKind.INIT
            try:
                policy.allocate(state, pod["uid"], name, n, numa_affinity=step["affinity"], kind=kind)
                error = ""
            except CPUManagerError as e:
                error = e.detail
            assert error == want["error"]
            if not error:
                got = state.get_cpuset(pod["uid"], name)
                assert (str(got) if got is not None else "") == want["cpus"]
        assert str(state.get_default_cpuset()) == want["default"]
