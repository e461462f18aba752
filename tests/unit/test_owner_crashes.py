"""Three kinds of owners across processes, with kill -9 at random points (hypothesis).

Each history is a list of steps; a step runs one or two operations, each in its own
forked process working on the same checkpoint and owners files through the real
:class:`CPUManager` (pods admitted and released by a pod source, device-plugin claims,
``topolet run``-style runs reconciled by their source). A process may be SIGKILLed at its
k-th file rename (before or after it). After every step a fresh manager restarts on the
files and checks:

* the files load (no overlap, every CPU in exactly one place, reserved CPUs shared);
* every entry has an owner record of the kind its key says;
* no owner lost its CPUs: every entry that existed and that no step released still holds
  the same CPUs (a killed operation is applied fully or not at all).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpumanager.checkpoint import CheckpointStore
from cpumanager.cpu_topology import CPUTopology
from cpumanager.device_claims import DeviceClaims, placeholder_owner
from cpumanager.errors import CPUManagerError
from cpumanager.manager import ContainerInfo, CPUManager
from cpumanager.policy_static import StaticPolicy
from tests.fakesysfs import dual_socket_no_ht, write_fake_sysfs
from topology.cpuset import CPUSet
from topology.model import Topology
from topology.sysfs import discover

#: (operation, target 0-3, size 1-3)
Op = tuple[str, int, int]
#: (op, kill at the k-th rename or never (0), kill after the rename instead of before)
Step = list[tuple[Op, int, bool]]

OPS = ("pod-add", "pod-remove", "pod-sweep", "claim", "claim-release", "run-add", "run-gone")
ops = st.tuples(st.sampled_from(OPS), st.integers(0, 3), st.integers(1, 3))
steps = st.lists(st.tuples(ops, st.integers(0, 4), st.booleans()), min_size=1, max_size=2)
HISTORIES = 500


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    return discover(write_fake_sysfs(tmp_path_factory.mktemp("sys"), dual_socket_no_ht))


def _manager(topo: Topology, state: Path) -> CPUManager:
    store = CheckpointStore(state / "cpu_manager_state", policy_name="static")
    mgr = CPUManager(topo, StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1), store=store)
    mgr.start()
    return mgr


def _apply(mgr: CPUManager, op: Op) -> None:
    name, i, n = op
    assignments = mgr.snapshot()[1]
    if name == "pod-add":
        mgr.add_container(ContainerInfo(f"pod-{i}", "app", None, exclusive_cpus=n, pod_name=f"p{i}"))
    elif name == "pod-remove":
        mgr.remove_container(f"pod-{i}", "app", kind="pod")
    elif name == "pod-sweep":  # the pod source lists every pod but pod-i
        alive = [
            ContainerInfo(p, "app", None) for p in assignments if p.startswith("pod-") and p != f"pod-{i}"
        ]
        mgr.reconcile(alive, kinds={"pod"})
    elif name == "claim":
        free = mgr.assignable_cpus()
        DeviceClaims(mgr).claim([CPUSet(list(free)[i % max(len(free), 1) :][:n])])
    elif name == "claim-release":
        keys = sorted(k for k, o in mgr.snapshot()[2].items() if o.kind == "device-plugin")
        gone = keys[i] if i < len(keys) else None
        DeviceClaims(mgr).release(lambda k, _o: k != gone)
    elif name == "run-add":
        mgr.allocate(f"run-{i}", "cmd", n, kind="run", identity=f"r{i}")
    elif name == "run-gone":  # the run source sees every run but run-i
        alive = [
            ContainerInfo(p, "cmd", None, kind="run")
            for p in assignments
            if p.startswith("run-") and p != f"run-{i}"
        ]
        mgr.reconcile(alive, kinds={"run"})


def _child(topo: Topology, state: Path, op: Op, kill_at: int, after: bool) -> None:
    try:
        if kill_at:
            real = os.replace
            calls = [0]

            def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
                calls[0] += 1
                if calls[0] == kill_at and not after:
                    os.kill(os.getpid(), signal.SIGKILL)
                real(src, dst)
                if calls[0] == kill_at and after:
                    os.kill(os.getpid(), signal.SIGKILL)

            os.replace = replace  # type: ignore[assignment]
        with contextlib.suppress(CPUManagerError):
            _apply(_manager(topo, state), op)
    finally:
        os._exit(0)


def _released_by(op: Op) -> Callable[[str], bool]:
    """Which entry keys *op* may release (nothing else may disappear)."""
    name, i, _ = op
    if name in ("pod-remove", "pod-sweep"):
        return lambda pod: pod == f"pod-{i}"
    if name == "claim-release":
        return lambda pod: pod.startswith("devplugin-")
    if name == "run-gone":
        return lambda pod: pod == f"run-{i}"
    return lambda _pod: False


def _check(topo: Topology, state: Path, before: dict[str, CPUSet], step: Step) -> dict[str, CPUSet]:
    mgr = _manager(topo, state)  # raises when the files do not hold together
    assignments = mgr.state.assignments()
    seen = CPUSet()
    now: dict[str, CPUSet] = {}
    for pod, containers in assignments.items():
        for name, cpus in containers.items():
            assert seen.isdisjoint(cpus), f"CPU {seen & cpus} exclusive to two owners"
            seen |= cpus
            now[pod] = cpus
            owner = mgr.owners[(pod, name)]
            kind = {"pod": "pod", "run": "run", "devplugin": "device-plugin"}[pod.split("-")[0]]
            assert owner.kind == kind, (pod, owner)
    assert seen.isdisjoint(mgr.shared_pool())
    assert seen | mgr.shared_pool() == topo.online_cpus
    assert mgr.policy.reserved_cpus <= mgr.shared_pool()
    for pod, cpus in before.items():
        if pod in now:
            assert now[pod] == cpus, f"{pod} changed CPUs {cpus} -> {now[pod]}"
        else:
            assert any(_released_by(op)(pod) for op, _, _ in step), f"{pod} lost its CPUs {cpus}"
    for pod in now:
        if pod.startswith("devplugin-") and pod not in before:
            assert pod == placeholder_owner(now[pod])[0]
    return now


@settings(
    max_examples=HISTORIES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=st.lists(steps, min_size=2, max_size=5))
def test_owners_survive_kill_9_at_any_point(
    topo: Topology, tmp_path_factory: pytest.TempPathFactory, history: list[Step]
) -> None:
    state = tmp_path_factory.mktemp("state")
    held: dict[str, CPUSet] = {}
    for step in history:
        pids = []
        for op, kill_at, after in step:
            pid = os.fork()
            if pid == 0:
                _child(topo, state, op, kill_at, after)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        held = _check(topo, state, held, step)
