"""topolet's static CPU policy against kubelet's own, step by step, on random machines.

Each example is one machine, reservation, option set and topology-manager policy, then a
random sequence of pods admitted (every container allocated in order: init containers,
restartable or not, then app containers, each with a random NUMA affinity from the
topology manager) and containers removed. After every step topolet's answer must be
kubelet's: the same error text, or the same CPUs for the container and the same shared
pool. A failure shows the smallest sequence hypothesis finds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import CPUManagerError
from cpumanager.options import StaticPolicyOptions
from cpumanager.policy_static import ContainerKind, StaticPolicy
from cpumanager.state import MemoryState
from kube.pod import Container, QOSClass, exclusive_cpus
from tests.differential.machines import Setup, setups
from tests.oracle_client import Oracle
from topology.cpuset import CPUSet
from topology.quantity import CPU, parse_amount

MIN_STEPS = 10_000
CPU_REQUESTS = ("1", "1", "2", "2", "3", "4", "6", "8", "500m", "1500m", "2000m")


def policy_request(setup: Setup) -> dict[str, Any]:
    return {
        "op": "policy",
        "cpus": [list(c) for c in setup.machine.cpus],
        "num_reserved": setup.num_reserved,
        "reserved": str(CPUSet(setup.reserved)),
        "options": setup.options,
        "tm_policy": setup.tm_policy,
    }


def topolet_policy(setup: Setup) -> tuple[StaticPolicy, MemoryState]:
    cpus = setup.machine.cpus
    topo = CPUTopology.from_ids(
        numa={c[0]: c[3] for c in cpus},
        socket={c[0]: c[2] for c in cpus},
        core={c[0]: c[1] for c in cpus},
        l3={c[0]: c[4] for c in cpus},
    )
    options = StaticPolicyOptions.parse(setup.options, alpha_enabled=True)
    policy = StaticPolicy(
        topo,
        num_reserved_cpus=setup.num_reserved,
        reserved_cpus=CPUSet(setup.reserved) if setup.reserved else None,
        options=options,
        topology_manager_policy=setup.tm_policy,
    )
    state = MemoryState()
    policy.start(state)
    return policy, state


@dataclass
class Pod:
    uid: str
    init: list[dict[str, Any]] = field(default_factory=list)
    containers: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"uid": self.uid, "init": self.init, "containers": self.containers}

    def names(self) -> list[str]:
        return [c["name"] for c in self.init + self.containers]

    def kind(self, name: str) -> ContainerKind:
        for c in self.init:
            if c["name"] == name:
                return ContainerKind.SIDECAR if c["restartable"] else ContainerKind.INIT
        return ContainerKind.APP

    def cpu(self, name: str) -> str:
        return next(str(c["cpu"]) for c in self.init + self.containers if c["name"] == name)


class Run:
    """One example: the oracle's policy and topolet's, fed the same steps."""

    steps = 0

    def __init__(self, oracle: Oracle, setup: Setup) -> None:
        self.oracle, self.setup = oracle, setup
        self.log: list[str] = [f"machine: {setup.machine.description}; setup: {setup}"]
        go = oracle.ask(policy_request(setup))
        try:
            self.policy, self.state = topolet_policy(setup)
            mine = ""
        except CPUManagerError as e:
            mine = e.detail
        Run.steps += 1
        self.check("policy", go["error"], mine)
        self.ok = not go["error"]
        if self.ok:
            self.check("policy default set", go["default"], str(self.state.get_default_cpuset()))
            self.check("allocatable", go["allocatable"], str(self.policy.allocatable_cpus()))

    def check(self, what: str, kubelet: object, topolet: object) -> None:
        if kubelet != topolet:
            trail = "\n  ".join(self.log[-30:])
            raise AssertionError(f"{what}: kubelet {kubelet!r} != topolet {topolet!r}\n  {trail}")

    def allocate(self, pod: Pod, name: str, affinity: list[int] | None) -> None:
        self.log.append(f"allocate {pod.uid}/{name} cpu={pod.cpu(name)} affinity={affinity}")
        go = self.oracle.ask(
            {"op": "allocate", "pod": pod.as_json(), "container": name, "affinity": affinity}
        )
        n = exclusive_cpus(
            QOSClass.GUARANTEED, Container(name, {CPU: parse_amount(CPU, pod.cpu(name), field="cpu")})
        )
        try:
            self.policy.allocate(self.state, pod.uid, name, n, numa_affinity=affinity, kind=pod.kind(name))
            mine = ""
        except CPUManagerError as e:
            mine = e.detail
        Run.steps += 1
        self.check(f"allocate {pod.uid}/{name} error", go["error"], mine)
        got = self.state.get_cpuset(pod.uid, name)
        if not go["error"]:
            self.check(f"allocate {pod.uid}/{name} cpus", go["cpus"], str(got) if got is not None else "")
        self.check(
            f"allocate {pod.uid}/{name} shared pool", go["default"], str(self.state.get_default_cpuset())
        )
        self.log.append(f"  -> {go.get('cpus', go['error'])}; shared {go['default']}")

    def remove(self, pod: Pod, name: str) -> None:
        self.log.append(f"remove {pod.uid}/{name}")
        go = self.oracle.ask({"op": "remove", "pod": pod.uid, "container": name})
        self.policy.release(self.state, pod.uid, name)
        Run.steps += 1
        self.check(f"remove {pod.uid}/{name} error", go["error"], "")
        self.check(
            f"remove {pod.uid}/{name} shared pool", go["default"], str(self.state.get_default_cpuset())
        )


def container(draw: st.DataObject, name: str, init: bool) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "cpu": draw.draw(st.sampled_from(CPU_REQUESTS))}
    if init:
        c["restartable"] = draw.draw(st.booleans())
    return c


def affinity(data: st.DataObject, nodes: list[int]) -> list[int] | None:
    if data.draw(st.integers(0, 2)) == 0:
        return None
    return sorted(data.draw(st.sets(st.sampled_from(nodes), min_size=1, max_size=3)))


def run_example(oracle: Oracle, setup: Setup, data: st.DataObject) -> None:
    run = Run(oracle, setup)
    if not run.ok:
        return
    nodes = setup.machine.numa_nodes
    pods: dict[str, Pod] = {}
    for step in range(data.draw(st.integers(4, 40), label="steps")):
        action = data.draw(st.sampled_from(["admit", "admit", "remove-pod", "remove-one", "again"]))
        if action == "admit" or not pods:
            pod = Pod(f"pod{step}")
            pod.init = [container(data, f"init{i}", True) for i in range(data.draw(st.integers(0, 2)))]
            pod.containers = [container(data, f"app{i}", False) for i in range(data.draw(st.integers(1, 3)))]
            pods[pod.uid] = pod
            for name in pod.names():
                run.allocate(pod, name, affinity(data, nodes))
            continue
        pod = pods[data.draw(st.sampled_from(sorted(pods)))]
        if action == "remove-pod":
            for name in pod.names():
                run.remove(pod, name)
            del pods[pod.uid]
        elif action == "remove-one":
            run.remove(pod, data.draw(st.sampled_from(pod.names())))
        else:
            run.allocate(pod, data.draw(st.sampled_from(pod.names())), affinity(data, nodes))


def test_static_policy_matches_kubelet_step_by_step(oracle: Oracle) -> None:
    Run.steps = 0

    @settings(
        max_examples=700,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(setup=setups(), data=st.data())
    def check(setup: Setup, data: st.DataObject) -> None:
        run_example(oracle, setup, data)

    check()
    assert Run.steps >= MIN_STEPS, f"only {Run.steps} allocator steps compared (want {MIN_STEPS})"
