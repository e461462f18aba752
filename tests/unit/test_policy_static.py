"""Table tests of the static policy, its options and the in-memory state.

The machine is a dual-socket HT box with Linux numbering: socket 0 holds cores 0-2
(threads 0-2 and 6-8), socket 1 cores 3-5 (threads 3-5 and 9-11); one NUMA node per socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import PolicyConfigError, SMTAlignmentError, StateValidationError
from cpumanager.options import StaticPolicyOptions
from cpumanager.policy_static import ContainerKind, StaticPolicy
from cpumanager.state import MemoryState, State
from topology.cpuset import CPUSet
from topology.model import Core, NumaNode, Package, Topology


def dual_socket_ht() -> Topology:
    cores = [Core(id=k, core_id=k % 3, package=k // 3, cpus=CPUSet.of(k, k + 6)) for k in range(6)]
    sockets = [CPUSet.parse("0-2,6-8"), CPUSet.parse("3-5,9-11")]
    return Topology.build(
        packages=[Package(id=s, cpus=c, os_index=s) for s, c in enumerate(sockets)],
        numa_nodes=[NumaNode(id=s, cpus=c) for s, c in enumerate(sockets)],
        cores=cores,
    )


TOPO = dual_socket_ht()


def cpus(text: str) -> CPUSet:
    return CPUSet.parse(text)


def opts(**values: str) -> StaticPolicyOptions:
    return StaticPolicyOptions.parse({k.replace("_", "-"): v for k, v in values.items()}, alpha_enabled=True)


# ------------------------------------------------------------- reservation
@pytest.mark.parametrize(
    ("num", "explicit", "options", "reserved", "default_after_start"),
    [
        (1, None, StaticPolicyOptions(), "0", "0-11"),
        (2, None, StaticPolicyOptions(), "0,6", "0-11"),
        (2, "1,6", StaticPolicyOptions(), "1,6", "0-11"),
        (2, None, opts(strict_cpu_reservation="true"), "0,6", "1-5,7-11"),
        (0, None, StaticPolicyOptions(), "", "0-11"),
    ],
    ids=[
        "dual-socket-HT/reserve-1/expect-cpu-0",
        "dual-socket-HT/reserve-2/expect-one-whole-core",
        "dual-socket-HT/explicit-list/expect-it-as-is",
        "dual-socket-HT/strict-reservation/expect-reserved-out-of-shared-pool",
        "dual-socket-HT/reserve-none/expect-nothing-reserved",
    ],
)
def test_reserved_selection_and_fresh_start(
    num: int, explicit: str | None, options: StaticPolicyOptions, reserved: str, default_after_start: str
) -> None:
    policy = StaticPolicy(
        CPUTopology.from_topology(TOPO),
        num_reserved_cpus=num,
        reserved_cpus=cpus(explicit) if explicit else None,
        options=options,
    )
    state = MemoryState()
    policy.start(state)
    assert str(policy.reserved_cpus) == reserved
    assert str(state.get_default_cpuset()) == default_after_start


def test_reserved_count_mismatch_is_a_config_error() -> None:
    with pytest.raises(PolicyConfigError, match=r"size of 0-2 did not equal 2"):
        StaticPolicy(CPUTopology.from_topology(TOPO), num_reserved_cpus=2, reserved_cpus=cpus("0-2"))


# --------------------------------------------------------- state validation
@dataclass(frozen=True)
class StartCase:
    id: str
    default: str
    assignments: dict[str, dict[str, str]] = field(default_factory=dict)
    message: str = ""


START_ERRORS = [
    StartCase(
        "assignments-but-empty-shared-pool", "", {"pod": {"c": "0-1"}}, "default cpuset cannot be empty"
    ),
    StartCase(
        "reserved-cpu-missing-from-shared-pool",
        "1-11",
        {"pod": {"c": "0"}},
        'not all reserved cpus: "0" are present in defaultCpuSet: "1-11"',
    ),
    StartCase(
        "assignment-overlaps-shared-pool",
        "0-11",
        {"pod": {"c": "3"}},
        'pod: pod, container: c cpuset: "3" overlaps with default cpuset "0-11"',
    ),
    StartCase(
        "cpu-11-went-offline",
        "0-10",
        {},
        'current set of available CPUs "0-11" doesn\'t match with CPUs in state "0-10"',
    ),
    StartCase(
        "unknown-cpu-12-in-state",
        "0-9",
        {"pod": {"c": "10-12"}},
        'current set of available CPUs "0-11" doesn\'t match with CPUs in state "0-12"',
    ),
]


@pytest.mark.parametrize(
    "case", START_ERRORS, ids=[f"dual-socket-HT/{c.id}/expect-error" for c in START_ERRORS]
)
def test_start_rejects_inconsistent_state(case: StartCase) -> None:
    policy = StaticPolicy(CPUTopology.from_topology(TOPO), num_reserved_cpus=1)
    state = MemoryState(
        cpus(case.default), {p: {c: cpus(s) for c, s in cs.items()} for p, cs in case.assignments.items()}
    )
    with pytest.raises(StateValidationError) as info:
        policy.start(state)
    assert info.value.detail == case.message
    assert "drain this node and delete the CPU manager checkpoint file" in str(info.value)


# --------------------------------------------------------------- allocation
def test_allocate_then_release_restores_the_shared_pool() -> None:
    policy, state = StaticPolicy(CPUTopology.from_topology(TOPO), num_reserved_cpus=1), MemoryState()
    policy.start(state)
    got = policy.allocate(state, "pod", "app", 4)
    assert got == cpus("1-2,7-8")  # socket 0 is partly used by reserved CPU 0: pack into it
    assert state.get_default_cpuset() == cpus("0,3-6,9-11")
    assert policy.allocate(state, "pod", "app", 4) == got  # already assigned: unchanged
    assert policy.release(state, "pod", "app") == got
    assert state.get_default_cpuset() == cpus("0-11")
    assert state.assignments() == {}


def test_allocate_prefers_the_hinted_numa_node() -> None:
    policy, state = StaticPolicy(CPUTopology.from_topology(TOPO), num_reserved_cpus=1), MemoryState()
    policy.start(state)
    assert policy.allocate(state, "pod", "app", 2, numa_affinity=[1]) == cpus("3,9")


@pytest.mark.parametrize(
    ("reserved", "n", "message"),
    [
        ("0,6", 3, "SMT Alignment Error: requested 3 cpus not multiple cpus per core = 2"),
        (
            "1,6",
            10,
            "SMT Alignment Error: not enough free physical CPUs: available physical CPUs = 8, "
            "requested CPUs = 10, CPUs per core = 2",
        ),
    ],
    ids=[
        "full-pcpus-only/odd-request/expect-SMTAlignmentError",
        "full-pcpus-only/reserved-non-siblings/expect-SMTAlignmentError",
    ],
)
def test_full_pcpus_only_rejects_what_whole_cores_cannot_meet(reserved: str, n: int, message: str) -> None:
    policy = StaticPolicy(
        CPUTopology.from_topology(TOPO),
        num_reserved_cpus=2,
        reserved_cpus=cpus(reserved),
        options=opts(full_pcpus_only="true"),
    )
    state = MemoryState()
    policy.start(state)
    with pytest.raises(SMTAlignmentError) as info:
        policy.allocate(state, "pod", "app", n)
    assert info.value.detail == message
    assert info.value.reason == "SMTAlignmentError"
    assert state.get_default_cpuset() == cpus("0-11")


def test_app_container_reuses_cpus_of_a_finished_init_container() -> None:
    policy, state = StaticPolicy(CPUTopology.from_topology(TOPO), num_reserved_cpus=0), MemoryState()
    policy.start(state)
    init = policy.allocate(state, "pod", "init", 2, kind=ContainerKind.INIT)
    app = policy.allocate(state, "pod", "app", 2)
    assert app == init
    assert policy.release(state, "pod", "init") == CPUSet()  # still held by the app container


# ------------------------------------------------------------------ options
@pytest.mark.parametrize(
    ("options", "alpha", "message"),
    [
        ({"no-such-option": "true"}, True, 'unknown CPU Manager Policy option: "no-such-option"'),
        ({"full-pcpus-only": "yes"}, True, 'bad value for option "full-pcpus-only": "yes"'),
        ({"align-by-socket": "true"}, False, 'Alpha-level Options not enabled, but option "align-by-socket"'),
        (
            {"full-pcpus-only": "1", "distribute-cpus-across-cores": "t"},
            True,
            "full-pcpus-only and distribute-cpus-across-cores can not be used at the same time",
        ),
    ],
    ids=["unknown-name", "bad-bool", "alpha-without-gate", "incompatible-pair"],
)
def test_bad_options_are_rejected(options: dict[str, str], alpha: bool, message: str) -> None:
    with pytest.raises(PolicyConfigError, match=message):
        StaticPolicyOptions.parse(options, alpha_enabled=alpha)


def test_unknown_option_error_lists_the_valid_names() -> None:
    with pytest.raises(PolicyConfigError) as info:
        StaticPolicyOptions.parse({"full-pcpu-only": "true"})
    assert "full-pcpus-only" in info.value.hint


@pytest.mark.parametrize(
    ("value", "expected"),
    [("True", True), ("1", True), ("F", False), ("false", False)],
    ids=["True", "1", "F", "false"],
)
def test_option_values_read_like_go_parsebool(value: str, expected: bool) -> None:
    assert StaticPolicyOptions.parse({"strict-cpu-reservation": value}).strict_cpu_reservation is expected


@pytest.mark.parametrize(
    "tm_policy", ["single-numa-node", "none"], ids=["single-numa-node", "more-sockets-than-numa"]
)
def test_align_by_socket_rejected_where_it_cannot_work(tm_policy: str) -> None:
    two_sockets_one_node = Topology.build(
        packages=[Package(id=0, cpus=cpus("0-1"), os_index=0), Package(id=1, cpus=cpus("2-3"), os_index=1)],
        numa_nodes=[NumaNode(id=0, cpus=cpus("0-3"))],
        cores=[Core(id=c, core_id=c, package=c // 2, cpus=CPUSet.of(c)) for c in range(4)],
    )
    topo = TOPO if tm_policy == "single-numa-node" else two_sockets_one_node
    with pytest.raises(PolicyConfigError):
        StaticPolicy(
            CPUTopology.from_topology(topo),
            num_reserved_cpus=1,
            options=opts(align_by_socket="true"),
            topology_manager_policy=tm_policy,
        )


# ---------------------------------------------------------- requests, state
def test_memory_state_is_a_state_and_copies_out() -> None:
    state = MemoryState(cpus("0-3"))
    assert isinstance(state, State)
    state.set_cpuset("pod", "a", cpus("2"))
    snapshot = state.assignments()
    state.delete("pod", "a")
    state.delete("pod", "missing")
    assert snapshot == {"pod": {"a": cpus("2")}}
    assert state.assignments() == {}
    assert state.get_cpuset("pod", "a") is None
