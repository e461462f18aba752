"""Exclusive CPUs as a kubelet extended resource, ``topolet.io/exclusive-cpus``.

One device per logical CPU, id ``cpu<N>``, with the CPU's NUMA node. The CPU manager stays
the one owner of every exclusive CPU:

* the device list is the CPUs an exclusive request could be given now
  (:meth:`CPUManager.assignable_cpus`) plus the CPUs this resource already handed out:
  kubelet counts those as allocated, so they stay listed; CPUs the CPU manager gave to
  Guaranteed containers directly vanish from the list, so kubelet never offers them;
* ``GetPreferredAllocation`` keeps the must-include CPUs and adds the CPU manager policy's
  topology-aware choice (sockets → cores → threads) from the rest;
* ``Allocate`` records the CPUs of every container of the request through one
  transaction, :meth:`DeviceClaims.claim`, which refuses any CPU that is already exclusive
  (or asked for twice in the request) and then records nothing: no CPU is ever handed out
  twice, and a refused request leaves nothing claimed.

The resource talks to the CPU manager only through :class:`cpumanager.device_claims.DeviceClaims`
(advertise, prefer, claim, rekey, release).

Kubelet's ``Allocate`` does not say which pod it is for, so an allocation is recorded under
a placeholder owner: pod UID ``devplugin-<hash of the cpu list>``, container
``exclusive-cpus`` (:func:`placeholder_owner`). Once the container runs, the node agent
lists pod resources (podresources v1 ``List``) and calls :meth:`ExclusiveCPUResource.reassign`,
which re-keys every placeholder whose CPUs a container holds to that pod UID and container
name, and then :meth:`ExclusiveCPUResource.release_gone`, which releases the claims whose
container podresources no longer lists and the placeholders no container took within the
grace period (counted from the claim's persisted ``since``). The pod source's sweep never
releases them: they are the device plugin's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from cpumanager.device_claims import (
    PLACEHOLDER_CONTAINER,
    PLACEHOLDER_PREFIX,
    DeviceClaims,
    placeholder_owner,
)
from cpumanager.errors import CPUManagerError, InsufficientCPUsError
from cpumanager.manager import CPUManager
from cpumanager.owners import Owner
from deviceplugin.errors import InsufficientDevicesError, InvalidRequestError
from deviceplugin.podresources import PodResources
from deviceplugin.resources import ContainerAllocation, Device
from topology.cpuset import CPUSet

__all__ = [
    "CPU_RESOURCE_NAME",
    "PLACEHOLDER_CONTAINER",
    "PLACEHOLDER_GRACE_S",
    "PLACEHOLDER_PREFIX",
    "ExclusiveCPUResource",
    "cpu_id",
    "parse_cpu_ids",
    "placeholder_owner",
]

CPU_RESOURCE_NAME = "topolet.io/exclusive-cpus"
#: How long a claim may wait for its container to appear (kubelet allocates first).
PLACEHOLDER_GRACE_S = 300.0
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


class ExclusiveCPUResource:
    """The ``topolet.io/exclusive-cpus`` resource over the CPU manager's device port."""

    def __init__(
        self,
        claims: DeviceClaims | CPUManager,
        *,
        resource_name: str = CPU_RESOURCE_NAME,
        grace_s: float = PLACEHOLDER_GRACE_S,
    ) -> None:
        self.claims = claims if isinstance(claims, DeviceClaims) else DeviceClaims(claims)
        self._name = resource_name
        self.grace_s = grace_s

    @property
    def resource_name(self) -> str:
        return self._name

    def subscribe(self, callback: Callable[[], None]) -> None:
        self.claims.subscribe(callback)

    # --------------------------------------------------------------- devices
    def pool(self) -> CPUSet:
        """The CPUs advertised: assignable now, plus those this resource handed out."""
        return self.claims.advertise()

    def devices(self) -> list[Device]:
        out = []
        for c in self.pool():
            numa = self.claims.numa_node(c)
            out.append(Device(cpu_id(c), True, () if numa is None else (numa,)))
        return out

    # ------------------------------------------------------------ allocation
    def preferred_allocation(
        self, available: Sequence[str], must_include: Sequence[str], size: int
    ) -> list[str]:
        """Every must-include CPU, then free siblings of their cores, then free CPUs of their
        NUMA nodes, then the rest, each step by the policy's topology-aware choice."""
        free = parse_cpu_ids("available_deviceIDs", available)
        chosen = parse_cpu_ids("must_include_deviceIDs", must_include)
        near = [self.claims.core_siblings(chosen), self.claims.numa_siblings(chosen), free]
        try:
            for pool in near:
                candidates = (pool & free) - chosen
                chosen |= self.claims.prefer(candidates, min(size - len(chosen), len(candidates)))
        except CPUManagerError as e:
            raise InsufficientDevicesError(
                "allocation_size", str(e), requested=size, available=len(free)
            ) from e
        return [cpu_id(c) for c in chosen]

    def allocate(self, device_ids: Sequence[str]) -> ContainerAllocation:
        return self.allocate_all([device_ids])[0]

    def allocate_all(self, requests: Sequence[Sequence[str]]) -> list[ContainerAllocation]:
        """Every container of one ``Allocate`` request, all or nothing."""
        sets = [parse_cpu_ids("devices_ids", ids) for ids in requests]
        try:
            self.claims.claim(sets)
        except InsufficientCPUsError as e:
            wanted = CPUSet().union(*sets)
            doubled = [c for c in wanted if sum(c in s for s in sets) > 1]
            detail = (
                f'cpus "{CPUSet.of(*doubled)}" are asked for by more than one container of the request'
                if doubled
                else f'cpus "{wanted - e.available}" are not free for exclusive use '
                f'(free now: "{e.available}")'
            )
            raise InsufficientDevicesError(
                "devices_ids",
                detail + "; nothing was claimed",
                requested=len(wanted),
                available=len(e.available),
            ) from e
        except CPUManagerError as e:
            raise InvalidRequestError("devices_ids", str(e)) from e
        return [
            ContainerAllocation(
                envs={"TOPOLET_CPUS": str(cpus)}, annotations={"topolet.io/exclusive-cpus": str(cpus)}
            )
            for cpus in sets
        ]

    def pre_start(self, device_ids: Sequence[str]) -> None:
        parse_cpu_ids("devices_ids", device_ids)

    # --------------------------------------------------------------- re-keying
    def reassign(self, pods: Iterable[PodResources], uid_of: Callable[[str, str], str | None]) -> int:
        """Re-key placeholder claims to the containers that hold their CPUs, as podresources
        ``List`` reports them (``uid_of(namespace, name)`` gives a pod's UID, from the pod
        watch; podresources has none). Returns how many were re-keyed."""
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
                if self.claims.rekey(
                    cpus, uid, container.name, f"{pod.namespace}/{pod.name}/{container.name}"
                ):
                    moved += 1
        return moved

    def release_gone(
        self,
        pods: Iterable[PodResources],
        uid_of: Callable[[str, str], str | None],
        now: float | None = None,
        *,
        only_placeholders: bool = False,
    ) -> CPUSet:
        """Release this resource's claims whose container podresources no longer lists, and
        placeholders older than the grace period (with *only_placeholders*, when there is no
        listing, just those). Returns the CPUs freed."""
        listed = set()
        for pod in pods:
            uid = uid_of(pod.namespace, pod.name)
            for container in pod.containers:
                if uid and any(d.resource_name == self._name for d in container.devices):
                    listed.add((uid, container.name))

        def keep(key: tuple[str, str], owner: Owner) -> bool:
            if key[0].startswith(PLACEHOLDER_PREFIX):
                return not DeviceClaims.expired(owner, self.grace_s, now)
            return only_placeholders or key in listed

        return self.claims.release(keep)
