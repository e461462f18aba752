"""One answer to "who owns CPU 7 and why" (pure, no I/O).

:func:`cpu_rows` turns the state and its owner records into one row per online CPU; the
manager's :meth:`~cpumanager.manager.CPUManager.status`, ``topolet cpumanager status`` and
``topolet describe`` (``--cpu N`` included) all print from it, so they cannot disagree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from cpumanager.checkpoint import CheckpointStore
from cpumanager.checkpoint_format import CPUManagerCheckpoint
from cpumanager.errors import StateValidationError
from cpumanager.isolated import POOL_POD_UID, seed_isolated_pool
from cpumanager.owners import ISOLATED_POOL, RESERVED, Owner, infer_owner
from cpumanager.policy_static import StaticPolicy
from cpumanager.state import MemoryState, State
from topology.model import Topology

__all__ = ["cpu_rows", "describe_state", "format_since", "read_view"]


def read_view(
    store: CheckpointStore, topology: Topology, policy: StaticPolicy
) -> tuple[MemoryState, dict[tuple[str, str], Owner], bool]:
    """The state and owners as the files hold them now, read without the lock and without
    writing (third item: a checkpoint was there). With no checkpoint yet, the pools a fresh
    static policy starts with. Raises :class:`StateValidationError` (naming the file) on a
    corrupt or overlapping checkpoint or owners file."""
    stored = store.load_state(repair=False)
    cp = stored.checkpoint
    if cp is None:
        state = MemoryState()
        policy.start(state)
        seed_isolated_pool(state, topology.isolated_cpus, policy.reserved_cpus)
        return state, {}, False
    if not isinstance(cp, CPUManagerCheckpoint):
        raise StateValidationError(
            f"{store.path} uses the legacy container-ID layout; restart the node agent once to rewrite it"
        )
    state = MemoryState(cp.default_cpu_set, cp.entries)
    owners = dict(stored.owners)
    for pod, containers in cp.entries.items():
        for name in containers:
            if (pod, name) not in owners:
                owners[(pod, name)] = infer_owner(pod, name, pool_uid=POOL_POD_UID)
    return state, owners, True


def format_since(since: float) -> str:
    return dt.datetime.fromtimestamp(since, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def cpu_rows(
    topology: Topology, policy: StaticPolicy, state: State, owners: Mapping[tuple[str, str], Owner]
) -> list[dict[str, Any]]:
    """One row per online CPU: where it sits, its pool and its owner (None on the shared pool).

    ``pool`` is ``exclusive`` (a container, claim or run holds it), ``isolated`` (the free
    isolated pool), ``reserved`` or ``shared``.
    """
    holders: dict[int, list[tuple[str, str]]] = {}
    for pod, containers in sorted(state.assignments().items()):
        for name, cpus in sorted(containers.items()):
            for cpu in cpus:
                holders.setdefault(cpu, []).append((pod, name))
    rows = []
    for cpu in topology.online_cpus:
        info = topology.cpus.get(cpu)
        keys = holders.get(cpu, [])
        row: dict[str, Any] = {
            "cpu": cpu,
            "numaNode": info.numa if info is not None else None,
            "socket": info.socket if info is not None else None,
            "core": info.core if info is not None else None,
            "pool": "shared",
            "owner": None,
        }
        if keys:
            pod, name = keys[-1]  # an app container reusing its init container's CPUs
            owner = owners.get((pod, name))
            row["pool"] = "isolated" if pod == POOL_POD_UID else "exclusive"
            row["owner"] = _owner_doc(pod, name, owner)
        elif cpu in policy.reserved_cpus:
            row["pool"] = "reserved"
            row["owner"] = {
                "kind": RESERVED,
                "identity": "system daemons",
                "source": "topolet",
                "since": None,
                "why": "reservedSystemCPUs / numReservedCPUs: kept for the system"
                + (
                    "; strict-cpu-reservation: off the shared pool too"
                    if policy.options.strict_cpu_reservation
                    else ""
                ),
                "podUID": None,
                "container": None,
            }
        rows.append(row)
    return rows


def _owner_doc(pod: str, name: str, owner: Owner | None) -> dict[str, Any]:
    if owner is None:
        return {
            "kind": ISOLATED_POOL if pod == POOL_POD_UID else "unknown",
            "identity": f"pod {pod} container {name}",
            "source": None,
            "since": None,
            "why": "no owner record",
            "podUID": pod,
            "container": name,
        }
    return {
        "kind": owner.kind,
        "identity": owner.identity,
        "source": owner.source,
        "since": format_since(owner.since),
        "why": owner.why,
        "podUID": pod,
        "container": name,
    }


def describe_state(
    topology: Topology, policy: StaticPolicy, state: State, owners: Mapping[tuple[str, str], Owner]
) -> dict[str, object]:
    """Pools, per-entry assignments with their owners and per-CPU rows, as one document."""
    assignments = []
    for pod, containers in sorted(state.assignments().items()):
        for name, cpus in sorted(containers.items()):
            doc = _owner_doc(pod, name, owners.get((pod, name)))
            assignments.append(
                {
                    "podUID": pod,
                    "container": name,
                    "cpus": str(cpus),
                    "numaNodes": sorted(topology.numa_nodes_of(cpus)),
                    "owner": {k: v for k, v in doc.items() if k not in ("podUID", "container")},
                }
            )
    return {
        "policy": policy.name,
        "options": policy.options.enabled(),
        "online": str(topology.online_cpus),
        "shared": str(state.get_default_cpuset()),
        "reserved": str(policy.reserved_cpus),
        "assignable": str(policy.available_cpus(state)),
        "isolated": str(topology.isolated_cpus),
        "assignments": assignments,
        "cpus": cpu_rows(topology, policy, state, owners),
    }
