"""Exclusive CPUs as a kubelet extended resource, ``topolet.io/exclusive-cpus``.

One device per logical CPU, id ``cpu<N>``, with the CPU's NUMA node. The CPU manager stays
the one owner of every exclusive CPU:

* the device list is the CPUs an exclusive request could be given now
  (:meth:`CPUManager.assignable_cpus`) plus the CPUs this resource already handed out:
  kubelet counts those as allocated, so they stay listed; CPUs the CPU manager gave to
  Guaranteed containers directly vanish from the list, so kubelet never offers them;
* ``GetPreferredAllocation`` keeps the must-include CPUs and adds the CPU manager policy's
  topology-aware choice (sockets → cores → threads) from the rest;
* ``Allocate`` records the CPUs through one locked call, :meth:`CPUManager.assign_exact`,
  which refuses any CPU that is already exclusive: no CPU is ever handed out twice.

Kubelet's ``Allocate`` does not say which pod it is for, so an allocation is recorded under
a placeholder owner: pod UID ``devplugin-<hash of the cpu list>``, container
``exclusive-cpus`` (:func:`placeholder_owner`). Once the container runs, the node agent
lists pod resources (podresources v1 ``List``) and calls :meth:`ExclusiveCPUResource.reassign`,
which re-keys every placeholder whose CPUs a container holds to that pod UID and container
name. The node agent does this before its reconcile sweep, which would otherwise release
placeholders as stale. After an agent restart, the re-keyed owners are found again from
the same ``List``.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Sequence

from cpumanager.errors import CPUManagerError, InsufficientCPUsError
from cpumanager.manager import CPUManager
from deviceplugin.errors import InsufficientDevicesError, InvalidRequestError
from deviceplugin.podresources import PodResources
from deviceplugin.resources import ContainerAllocation, Device
from topology.cpuset import CPUSet

__all__ = [
    "CPU_RESOURCE_NAME",
    "PLACEHOLDER_CONTAINER",
    "PLACEHOLDER_PREFIX",
    "ExclusiveCPUResource",
    "cpu_id",
    "parse_cpu_ids",
    "placeholder_owner",
]

CPU_RESOURCE_NAME = "topolet.io/exclusive-cpus"
PLACEHOLDER_PREFIX = "devplugin-"
PLACEHOLDER_CONTAINER = "exclusive-cpus"
_ID = re.compile(r"^cpu(0|[1-9][0-9]*)$")


def cpu_id(cpu: int) -> str:
    return f"cpu{cpu}"


def parse_cpu_ids(field: str, ids: Iterable[str]) -> CPUSet:
    """``["cpu3", "cpu0"]`` → CPUSet 0,3; a malformed id raises InvalidRequestError."""
    cpus: list[int] = []
    for i in ids:
        m = _ID.match(i)
        if m is None:
            raise InvalidRequestError(field, f"device id {i!r} is not of the form 'cpu<N>' (e.g. 'cpu12')")
        cpus.append(int(m[1]))
    return CPUSet.of(*cpus)


def placeholder_owner(cpus: CPUSet) -> tuple[str, str]:
    """(pod UID, container name) an allocation is recorded under until it is re-keyed."""
    digest = hashlib.sha256(str(cpus).encode()).hexdigest()[:16]
    return f"{PLACEHOLDER_PREFIX}{digest}", PLACEHOLDER_CONTAINER


class ExclusiveCPUResource:
    """The ``topolet.io/exclusive-cpus`` resource over a :class:`CPUManager`."""

    def __init__(self, manager: CPUManager, *, resource_name: str = CPU_RESOURCE_NAME) -> None:
        self.manager = manager
        self._name = resource_name
        self._lock = threading.Lock()
        self._owners: set[tuple[str, str]] = set()  # owners re-keyed from placeholders

    @property
    def resource_name(self) -> str:
        return self._name

    def subscribe(self, callback: Callable[[], None]) -> None:
        self.manager.subscribe(callback)

    # --------------------------------------------------------------- devices
    def pool(self) -> CPUSet:
        """The CPUs advertised: assignable now, plus those this resource handed out."""
        assignable, assignments = self.manager.assignable_and_assignments()
        with self._lock:
            owners = set(self._owners)
        out = assignable
        for pod, containers in assignments.items():
            for name, cpus in containers.items():
                if pod.startswith(PLACEHOLDER_PREFIX) or (pod, name) in owners:
                    out |= cpus
        return out

    def devices(self) -> list[Device]:
        cpus = self.manager.topology.cpus
        return [Device(cpu_id(c), True, (cpus[c].numa,) if c in cpus else ()) for c in self.pool()]

    # ------------------------------------------------------------ allocation
    def preferred_allocation(
        self, available: Sequence[str], must_include: Sequence[str], size: int
    ) -> list[str]:
        """Every must-include CPU, then free siblings of their cores, then free CPUs of their
        NUMA nodes, then the rest, each step by the policy's topology-aware choice."""
        free = parse_cpu_ids("available_deviceIDs", available)
        chosen = parse_cpu_ids("must_include_deviceIDs", must_include)
        topo = self.manager.topology
        near = [
            topo.cpus_in_cores(*{topo.cpus[c].core for c in chosen if c in topo.cpus}),
            topo.cpus_in_numa_nodes(*{topo.cpus[c].numa for c in chosen if c in topo.cpus}),
            free,
        ]
        try:
            for pool in near:
                candidates = (pool & free) - chosen
                chosen |= self.manager.policy.take(candidates, min(size - len(chosen), len(candidates)))
        except CPUManagerError as e:
            raise InsufficientDevicesError(
                "allocation_size", str(e), requested=size, available=len(free)
            ) from e
        return [cpu_id(c) for c in chosen]

    def allocate(self, device_ids: Sequence[str]) -> ContainerAllocation:
        cpus = parse_cpu_ids("devices_ids", device_ids)
        pod, container = placeholder_owner(cpus)
        try:
            self.manager.assign_exact(pod, container, cpus)
        except InsufficientCPUsError as e:
            raise InsufficientDevicesError(
                "devices_ids",
                f'cpus "{cpus - e.available}" are not free for exclusive use (free now: "{e.available}")',
                requested=len(cpus),
                available=len(e.available),
            ) from e
        except CPUManagerError as e:
            raise InvalidRequestError("devices_ids", str(e)) from e
        return ContainerAllocation(
            envs={"TOPOLET_CPUS": str(cpus)}, annotations={"topolet.io/exclusive-cpus": str(cpus)}
        )

    def pre_start(self, device_ids: Sequence[str]) -> None:
        parse_cpu_ids("devices_ids", device_ids)

    # --------------------------------------------------------------- re-keying
    def reassign(self, pods: Iterable[PodResources], uid_of: Callable[[str, str], str | None]) -> int:
        """Re-key placeholder owners to the containers that hold their CPUs, as podresources
        ``List`` reports them (``uid_of(namespace, name)`` gives a pod's UID, from the pod
        watch; podresources has none). Containers already keyed with the same CPUs are
        remembered as this resource's (after a restart). Returns how many were re-keyed."""
        moved = 0
        for pod in pods:
            uid = uid_of(pod.namespace, pod.name)
            if not uid:
                continue
            for container in pod.containers:
                ids = [i for d in container.devices if d.resource_name == self._name for i in d.device_ids]
                if not ids:
                    continue
                cpus = parse_cpu_ids("device_ids", ids)
                old_pod, old_name = placeholder_owner(cpus)
                if self.manager.state.get_cpuset(old_pod, old_name) == cpus:
                    self.manager.reassign(old_pod, old_name, uid, container.name)
                    moved += 1
                elif self.manager.state.get_cpuset(uid, container.name) != cpus:
                    continue
                with self._lock:
                    self._owners.add((uid, container.name))
        return moved
