"""The standalone pod source: "containers" started by ``topolet run``, no cluster needed.

Each standalone container is a cgroup made by the same writer kubelet layouts use
(``kubepods[/<qos>]/pod<UID>/<id>`` under the configured cgroup root) plus a small JSON
record in ``<state-dir>/standalone/<pod-uid>.json`` saying what it asked for (exclusive
CPUs, from the isolated pool or not, hugepages): the manager's hugepage accounts are
derived from these records at every reconcile. A record
whose cgroup is gone or holds no process is a container that exited.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cpumanager.cgroupfs import ContainerCgroup, CpusetWriter, validate_pod_uid
from cpumanager.manager import ContainerInfo

__all__ = ["StandaloneRecord", "StandaloneSource"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StandaloneRecord:
    pod_uid: str
    name: str
    exclusive_cpus: int
    qos: str
    command: tuple[str, ...] = ()
    isolated: bool = False
    hugepages: Mapping[str, int] = field(default_factory=dict, hash=False)

    def cgroup(self) -> ContainerCgroup:
        return ContainerCgroup(pod_uid=self.pod_uid, container_id=self.pod_uid.replace("-", ""), qos=self.qos)  # type: ignore[arg-type]

    def info(self) -> ContainerInfo:
        return ContainerInfo(
            pod_uid=self.pod_uid,
            container_name=self.name,
            cgroup=self.cgroup(),
            exclusive_cpus=self.exclusive_cpus,
            pod_name=self.name,
            namespace="standalone",
            isolated=self.isolated,
            hugepages=dict(self.hugepages),
        )


class StandaloneSource:
    """Lists the standalone containers that still run."""

    def __init__(self, state_dir: Path | str, writer: CpusetWriter) -> None:
        self.dir = Path(state_dir) / "standalone"
        self.writer = writer

    def _file(self, pod_uid: str) -> Path:
        return self.dir / f"{validate_pod_uid(pod_uid)}.json"

    def add(self, record: StandaloneRecord) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self._file(record.pod_uid).with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "podUID": record.pod_uid,
                    "name": record.name,
                    "exclusiveCPUs": record.exclusive_cpus,
                    "qos": record.qos,
                    "command": list(record.command),
                    "isolated": record.isolated,
                    "hugepages": dict(record.hugepages),
                }
            )
        )
        os.replace(tmp, self._file(record.pod_uid))

    def remove(self, pod_uid: str) -> None:
        self._file(pod_uid).unlink(missing_ok=True)

    def records(self) -> list[StandaloneRecord]:
        out = []
        for f in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                d = json.loads(f.read_text())
                out.append(
                    StandaloneRecord(
                        pod_uid=d["podUID"],
                        name=d["name"],
                        exclusive_cpus=int(d["exclusiveCPUs"]),
                        qos=d["qos"],
                        command=tuple(d.get("command", ())),
                        isolated=bool(d.get("isolated", False)),
                        hugepages={str(k): int(v) for k, v in (d.get("hugepages") or {}).items()},
                    )
                )
            except (OSError, ValueError, KeyError, AttributeError) as e:
                log.warning("ignoring unreadable standalone record %s: %s", f, e)
        return out

    def running(self) -> list[ContainerInfo]:
        """Containers whose cgroup still holds a process."""
        alive = []
        for rec in self.records():
            procs = self.writer.path_for(rec.cgroup()) / "cgroup.procs"
            try:
                if procs.read_text().strip():
                    alive.append(rec.info())
            except FileNotFoundError:
                continue
        return alive
