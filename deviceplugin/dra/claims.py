"""Which of a ResourceClaim's allocated devices are ours, checked against this node (pure).

Kubelet's ``NodePrepareResources`` names a claim only (namespace, name, UID); the devices
are in the claim's ``status.allocation.devices.results`` (``request``, ``driver``,
``pool``, ``device``). :func:`allocated_devices` picks the results of our driver and
refuses, with the reason, a claim that is not the one kubelet meant (another UID), that
is not allocated, or whose allocation names a pool or device this node does not have.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from deviceplugin.errors import DevicePluginError

__all__ = ["AllocatedDevice", "ClaimError", "ClaimRef", "allocated_devices", "check_uid"]

_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
#: At most this many results are read from one claim (the API allows 32 requests).
MAX_RESULTS = 1024


class ClaimError(DevicePluginError):
    """A claim cannot be prepared here; the message says why."""


@dataclass(frozen=True, slots=True)
class ClaimRef:
    """A claim as kubelet names it."""

    namespace: str
    uid: str
    name: str


@dataclass(frozen=True, slots=True)
class AllocatedDevice:
    """One device of ours in a claim's allocation, with the requests it serves."""

    requests: tuple[str, ...]
    pool: str
    device: str


def check_uid(uid: str) -> str:
    """*uid* when it is safe as part of a file name (a Kubernetes UID), else ClaimError."""
    if not _UID.fullmatch(uid):
        raise ClaimError(
            f"claim uid {uid[:80]!r}: expected letters, digits and '-' (at most 64), e.g. a UUID"
        )
    return uid


def allocated_devices(
    claim: Mapping[str, Any], ref: ClaimRef, *, driver: str, pool: str, devices: Collection[str]
) -> list[AllocatedDevice]:
    """The devices of *driver* that *claim* was allocated, merged per device.

    *pool* is this node's pool and *devices* the device names it publishes; anything else
    in the allocation is refused with a :class:`ClaimError` naming it.
    """
    meta = claim.get("metadata") or {}
    where = f"ResourceClaim {ref.namespace}/{ref.name}"
    if meta.get("uid") != ref.uid:
        raise ClaimError(f"{where} has uid {meta.get('uid')!r}, kubelet asked for {ref.uid!r} (recreated?)")
    allocation = (claim.get("status") or {}).get("allocation")
    if not allocation:
        raise ClaimError(f"{where} is not allocated (status.allocation is empty)")
    results = (allocation.get("devices") or {}).get("results") or []
    if not isinstance(results, list) or len(results) > MAX_RESULTS:
        raise ClaimError(
            f"{where}: status.allocation.devices.results must be a list of at most {MAX_RESULTS}"
        )
    merged: dict[tuple[str, str], list[str]] = {}
    for r in results:
        if not isinstance(r, Mapping) or r.get("driver") != driver:
            continue
        key = (str(r.get("pool", "")), str(r.get("device", "")))
        if key[0] != pool or key[1] not in devices:
            raise ClaimError(
                f"{where}: allocation names device {key[1]!r} in pool {key[0]!r}, which this node "
                f"does not have (pool {pool!r}, devices {', '.join(sorted(devices)) or 'none'})"
            )
        requests = merged.setdefault(key, [])
        if (req := str(r.get("request", ""))) and req not in requests:
            requests.append(req)
    return [AllocatedDevice(tuple(reqs), p, d) for (p, d), reqs in merged.items()]
