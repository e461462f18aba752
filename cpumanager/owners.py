"""Who holds each exclusive CPU and why: owner records (pure, no I/O).

Every checkpoint entry (pod UID → container name → CPUs) has one :class:`Owner`:

* ``kind``: ``pod`` (a Kubernetes pod container), ``device-plugin`` (a claim made through
  the ``topolet.io/exclusive-cpus`` device plugin), ``run`` (a ``topolet run`` standalone
  container), ``isolated-pool`` (the free isolated CPUs) or ``reserved`` (the system's
  reserved CPUs; never a checkpoint entry, shown by the status views only);
* ``identity``: namespace/pod/container, the run's name, or the claim's CPU list;
* ``source``: who made and may release it (``kubernetes``, ``topolet-run``,
  ``device-plugin``, ``topolet``);
* ``since``: when (seconds since the epoch); ``why``: the policy step, options and
  alignment that chose these CPUs.

Only the source that made an owner releases it (:data:`RELEASED_BY`). The records are kept
beside the kubelet-format checkpoint by :mod:`cpumanager.owner_store`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from cpumanager.errors import CPUManagerError

__all__ = [
    "KINDS",
    "RELEASED_BY",
    "SOURCES",
    "Owner",
    "OwnerRecordError",
    "infer_owner",
]

POD: Final = "pod"
DEVICE_PLUGIN: Final = "device-plugin"
RUN: Final = "run"
ISOLATED_POOL: Final = "isolated-pool"
RESERVED: Final = "reserved"

#: Pod UIDs of device-plugin claims not yet re-keyed to their container.
PLACEHOLDER_PREFIX: Final = "devplugin-"

KINDS: Final = (POD, DEVICE_PLUGIN, RUN, ISOLATED_POOL, RESERVED)
SOURCES: Final = ("kubernetes", "device-plugin", "topolet-run", "topolet")
#: The one source allowed to release an owner of each kind.
RELEASED_BY: Final[Mapping[str, str]] = {
    POD: "kubernetes",
    DEVICE_PLUGIN: "device-plugin",
    RUN: "topolet-run",
    ISOLATED_POOL: "topolet",
    RESERVED: "topolet",
}
_MAX_TEXT = 1024


class OwnerRecordError(CPUManagerError, ValueError):
    """An owner record that cannot be read; the message names the field and the form."""


@dataclass(frozen=True, slots=True)
class Owner:
    """One owner of one checkpoint entry.

    >>> o = Owner("run", "bench-1", "topolet-run", 1700000000.0, "static policy: 2 whole cores")
    >>> Owner.from_json(o.to_json()) == o
    True
    """

    kind: str
    identity: str
    source: str
    since: float
    why: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise OwnerRecordError(f"kind: {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.source not in SOURCES:
            raise OwnerRecordError(f"source: {self.source!r} is not one of {', '.join(SOURCES)}")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "identity": self.identity,
            "source": self.source,
            "since": self.since,
            "why": self.why,
        }

    @staticmethod
    def from_json(doc: object) -> Owner:
        if not isinstance(doc, Mapping):
            raise OwnerRecordError("expected an object with kind, identity, source, since, why")
        out: dict[str, Any] = {}
        for key in ("kind", "identity", "source", "why"):
            value = doc.get(key, "")
            if not isinstance(value, str) or len(value) > _MAX_TEXT:
                raise OwnerRecordError(f"{key}: expected a string of at most {_MAX_TEXT} characters")
            out[key] = value
        since = doc.get("since")
        if not isinstance(since, (int, float)) or isinstance(since, bool) or since < 0:
            raise OwnerRecordError(f"since: expected seconds since the epoch, got {since!r}")
        return Owner(out["kind"], out["identity"], out["source"], float(since), out["why"])

    def with_why(self, why: str) -> Owner:
        return replace(self, why=why)

    @property
    def releaser(self) -> str:
        return RELEASED_BY[self.kind]


def infer_owner(
    pod_uid: str,
    container: str,
    *,
    pool_uid: str,
    runs: frozenset[str] = frozenset(),
    placeholder_prefix: str = PLACEHOLDER_PREFIX,
) -> Owner:
    """The owner of a checkpoint entry that has no record (a checkpoint written by kubelet
    or by an older topolet): recovered from the entry's key, marked in ``why``."""
    now = time.time()
    why = "recovered: the checkpoint entry had no owner record"
    if pod_uid == pool_uid:
        return Owner(ISOLATED_POOL, "isolated pool", "topolet", now, "isolcpus= CPUs no container holds")
    if pod_uid.startswith(placeholder_prefix):
        return Owner(DEVICE_PLUGIN, f"claim {pod_uid}", "device-plugin", now, why)
    if pod_uid in runs:
        return Owner(RUN, container, "topolet-run", now, why)
    return Owner(POD, f"pod {pod_uid} container {container}", "kubernetes", now, why)
