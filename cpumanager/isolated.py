"""The isolated pool: CPUs listed in ``isolcpus=`` (or ``/sys/devices/system/cpu/isolated``).

The kernel keeps the scheduler's load balancing off isolated CPUs, so a process put
there stays where it is put, and nothing else lands there by accident. kubelet ignores
this and mixes them into its shared pool, where shared containers then run unbalanced.
topolet keeps them apart:

* isolated CPUs never join the shared pool;
* they are handed out only to containers that ask for them, with the pod annotation
  ``topolet.io/isolated-cpus: "true"`` (the container's whole-CPU request is then served
  from the isolated pool instead of the shared one);
* released isolated CPUs return to the isolated pool.

The free isolated CPUs are kept in the state as one assignment owned by the pseudo
container (:data:`POOL_POD_UID`, :data:`POOL_CONTAINER`). That keeps the state in
kubelet's checkpoint format and its invariants intact (shared + assignments = online, no
CPU in two places): a restart restores the pool like any other assignment.

Pure: functions of the state and the policy, no I/O.
"""

from __future__ import annotations

from cpumanager.errors import InsufficientCPUsError
from cpumanager.policy_static import StaticPolicy
from cpumanager.state import State
from topology.cpuset import CPUSet

__all__ = [
    "ISOLATED_ANNOTATION",
    "POOL_CONTAINER",
    "POOL_POD_UID",
    "free_isolated",
    "release_isolated",
    "seed_isolated_pool",
    "take_isolated",
]

#: Pod annotation a pod sets to have its exclusive CPUs served from the isolated pool.
ISOLATED_ANNOTATION = "topolet.io/isolated-cpus"
POOL_POD_UID = "topolet-isolated-pool"
POOL_CONTAINER = "free"


def free_isolated(state: State) -> CPUSet:
    return state.get_cpuset(POOL_POD_UID, POOL_CONTAINER) or CPUSet()


def _set_pool(state: State, cpus: CPUSet) -> None:
    if cpus:
        state.set_cpuset(POOL_POD_UID, POOL_CONTAINER, cpus)
    else:
        state.delete(POOL_POD_UID, POOL_CONTAINER)


def seed_isolated_pool(state: State, isolated: CPUSet, reserved: CPUSet) -> CPUSet:
    """Move isolated CPUs that sit in the shared pool into the isolated pool.

    Reserved CPUs stay reserved (the system asked for them first). Returns the CPUs moved.
    """
    movable = (state.get_default_cpuset() & isolated) - reserved
    if movable:
        state.set_default_cpuset(state.get_default_cpuset() - movable)
        _set_pool(state, free_isolated(state) | movable)
    return movable


def take_isolated(state: State, policy: StaticPolicy, pod_uid: str, container_name: str, n: int) -> CPUSet:
    """Give a container *n* CPUs from the isolated pool, topology-aware (whole cores and
    sockets first, as for any exclusive request). Idempotent per container."""
    existing = state.get_cpuset(pod_uid, container_name)
    if existing is not None:
        return existing
    pool = free_isolated(state)
    if n > len(pool):
        raise InsufficientCPUsError(n, pool)
    cpus = policy.take(pool, n)
    _set_pool(state, pool - cpus)
    state.set_cpuset(pod_uid, container_name, cpus)
    return cpus


def release_isolated(state: State, pod_uid: str, container_name: str, isolated: CPUSet) -> CPUSet:
    """Forget a container's assignment; its isolated CPUs go back to the isolated pool
    (its other CPUs, if any, to the shared pool). Returns the CPUs freed."""
    cpus = state.get_cpuset(pod_uid, container_name)
    if cpus is None:
        return CPUSet()
    state.delete(pod_uid, container_name)
    _set_pool(state, free_isolated(state) | (cpus & isolated))
    if cpus - isolated:
        state.set_default_cpuset(state.get_default_cpuset() | (cpus - isolated))
    return cpus
