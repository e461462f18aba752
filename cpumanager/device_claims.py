"""The CPU manager as the exclusive-CPU device plugin sees it: a narrow port.

The device plugin never reads the manager's state or policy; it calls five things, each one
transaction of the manager:

* :meth:`DeviceClaims.advertise`: the CPUs to list (assignable now, plus the CPUs its own
  claims hold: kubelet counts those as allocated, so they stay listed), with NUMA nodes;
* :meth:`DeviceClaims.prefer`: the policy's topology-aware choice among given CPUs;
* :meth:`DeviceClaims.claim`: record the CPUs of every container of one ``Allocate``, all
  or nothing, under placeholder owners (kubelet does not say which pod it allocates for);
* :meth:`DeviceClaims.rekey`: move a placeholder to the container that holds its CPUs;
* :meth:`DeviceClaims.release`: release the claims the device plugin no longer vouches
  for (placeholders past their grace, containers podresources no longer lists).

Only ``device-plugin`` owners are ever released here.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

from cpumanager.manager import CPUManager
from cpumanager.owners import DEVICE_PLUGIN, PLACEHOLDER_PREFIX, Owner
from topology.cpuset import CPUSet

__all__ = ["PLACEHOLDER_CONTAINER", "PLACEHOLDER_PREFIX", "DeviceClaims", "placeholder_owner"]

PLACEHOLDER_CONTAINER = "exclusive-cpus"


def placeholder_owner(cpus: CPUSet) -> tuple[str, str]:
    """(pod UID, container name) a claim is recorded under until it is re-keyed."""
    digest = hashlib.sha256(str(cpus).encode()).hexdigest()[:16]
    return f"{PLACEHOLDER_PREFIX}{digest}", PLACEHOLDER_CONTAINER


class DeviceClaims:
    """The port; see the module docstring."""

    def __init__(self, manager: CPUManager) -> None:
        self._manager = manager

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._manager.subscribe(callback)

    def numa_node(self, cpu: int) -> int | None:
        info = self._manager.topology.cpus.get(cpu)
        return None if info is None else info.numa

    def core_siblings(self, cpus: CPUSet) -> CPUSet:
        topo = self._manager.topology
        return topo.cpus_in_cores(*{topo.cpus[c].core for c in cpus if c in topo.cpus})

    def numa_siblings(self, cpus: CPUSet) -> CPUSet:
        topo = self._manager.topology
        return topo.cpus_in_numa_nodes(*{topo.cpus[c].numa for c in cpus if c in topo.cpus})

    def advertise(self) -> CPUSet:
        assignable, assignments, owners = self._manager.snapshot()
        out = assignable
        for pod, containers in assignments.items():
            for name, cpus in containers.items():
                owner = owners.get((pod, name))
                if owner is not None and owner.kind == DEVICE_PLUGIN:
                    out |= cpus
        return out

    def prefer(self, candidates: CPUSet, n: int) -> CPUSet:
        """*n* of *candidates* by the policy's topology-aware take (pure)."""
        return self._manager.policy.take(candidates, n)

    def claim(self, requests: Sequence[CPUSet]) -> None:
        """Claim every request's CPUs, or none: overlapping requests or a CPU that is not
        free now (a second claim of the same CPUs included) raise
        :class:`~cpumanager.errors.InsufficientCPUsError` and nothing is recorded."""
        self._manager.assign_many([(*placeholder_owner(cpus), cpus) for cpus in requests], kind=DEVICE_PLUGIN)

    def claims(self) -> dict[tuple[str, str], tuple[CPUSet, Owner]]:
        _, assignments, owners = self._manager.snapshot()
        return {
            key: (assignments[key[0]][key[1]], o)
            for key, o in owners.items()
            if o.kind == DEVICE_PLUGIN and key[1] in assignments.get(key[0], {})
        }

    def rekey(self, cpus: CPUSet, pod_uid: str, container: str, identity: str) -> bool:
        """Move the placeholder claim holding exactly *cpus* to the container. False when
        there is no such placeholder (already re-keyed, or never claimed here)."""
        with self._manager.transaction():
            old = placeholder_owner(cpus)
            held = self.claims().get(old)
            if held is None or held[0] != cpus:
                return False
            self._manager.reassign(*old, pod_uid, container, identity=identity)
            return True

    def release(self, keep: Callable[[tuple[str, str], Owner], bool]) -> CPUSet:
        """Release the device plugin's claims for which ``keep(key, owner)`` is false."""
        return self._manager.release_owned(DEVICE_PLUGIN, keep)

    @staticmethod
    def expired(owner: Owner, grace_s: float, now: float | None = None) -> bool:
        return (time.time() if now is None else now) - owner.since >= grace_s
