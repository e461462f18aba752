"""kill -9 at any point of allocate/release/checkpoint leaves a state from which a restart
yields no double-assigned CPU.

Each example forks a real process that runs a random history of allocations and releases
through the real manager and checkpoint file, SIGKILLs it after a random delay, then
restarts a manager on the same file (twice per example) and checks the invariants.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpumanager.checkpoint import CheckpointStore
from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import CPUManagerError
from cpumanager.manager import CPUManager
from cpumanager.policy_static import StaticPolicy
from tests.fakesysfs import dual_socket_ht, write_fake_sysfs
from topology.cpuset import CPUSet
from topology.model import Topology
from topology.sysfs import discover

Op = tuple[str, int, int]
ops = st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 5), st.integers(1, 4)),
    st.tuples(st.just("release"), st.integers(0, 5), st.just(0)),
)


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    return discover(write_fake_sysfs(tmp_path_factory.mktemp("sys"), dual_socket_ht))


def _manager(topo: Topology, state: Path) -> CPUManager:
    return CPUManager(
        topo,
        StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1),
        store=CheckpointStore(state, policy_name="static"),
    )


def _run_child(topo: Topology, state: Path, history: list[Op]) -> None:
    try:
        mgr = _manager(topo, state)
        mgr.start()
        for kind, pod, n in history:
            if kind == "alloc":
                with contextlib.suppress(CPUManagerError):
                    mgr.allocate(f"pod-{pod}", "app", n)
            else:
                mgr.remove_container(f"pod-{pod}", "app")
        mgr.close()
    finally:
        os._exit(0)


def _check_restart(topo: Topology, state: Path) -> None:
    mgr = _manager(topo, state)
    mgr.start()  # raises when the invariants do not hold
    seen = CPUSet()
    for containers in mgr.state.assignments().values():
        for cpus in containers.values():
            assert seen.isdisjoint(cpus), f"CPU {seen & cpus} exclusive to two containers"
            seen |= cpus
    assert seen.isdisjoint(mgr.shared_pool())
    assert seen | mgr.shared_pool() == topo.online_cpus
    assert mgr.policy.reserved_cpus <= mgr.shared_pool()
    mgr.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rounds=st.lists(
        st.tuples(st.lists(ops, min_size=1, max_size=10), st.integers(0, 4000)), min_size=2, max_size=2
    )
)
def test_kill9_anywhere_then_restart_keeps_invariants(
    topo: Topology, tmp_path_factory: pytest.TempPathFactory, rounds: list[tuple[list[Op], int]]
) -> None:
    state = tmp_path_factory.mktemp("crash") / "cpu_manager_state"
    for history, kill_after_us in rounds:
        pid = os.fork()
        if pid == 0:
            _run_child(topo, state, history)
        time.sleep(kill_after_us / 1e6)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        _check_restart(topo, state)
