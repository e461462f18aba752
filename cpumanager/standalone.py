"""The standalone pod source: "containers" started by ``topolet run``, no cluster needed.

Each standalone container is a cgroup made by the same writer kubelet layouts use
(``kubepods[/<qos>]/pod<UID>/<id>`` under the configured cgroup root) plus a small JSON
record in ``<state-dir>/standalone/<pod-uid>.json`` saying what it asked for (exclusive
CPUs, from the isolated pool or not, hugepages) and which ``topolet run`` process
supervises it (pid and its start time, so a reused pid is not mistaken for it).

A run is live from the moment its record exists until its cgroup is removed: while its
supervisor runs (the command may not have joined its cgroup yet) or while its cgroup
holds a process (the supervisor was killed, the command goes on). A record whose
supervisor is gone and whose cgroup is empty or gone is an orphan (a ``kill -9`` of
``topolet run``): :meth:`StandaloneSource.sweep` releases its CPUs, removes its cgroup and
then its record, in the order that a kill at any point leaves something the next sweep
still finds. Only ``run`` owners are ever released here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cpumanager.atomic_file import write_atomic
from cpumanager.cgroupfs import ContainerCgroup, CpusetWriter, validate_pod_uid
from cpumanager.errors import CPUManagerError
from cpumanager.manager import ContainerInfo, CPUManager
from cpumanager.owners import RUN

__all__ = ["StandaloneRecord", "StandaloneSource", "process_start_time"]

log = logging.getLogger(__name__)

_MAX_RECORD_BYTES = 64 << 10
_MAX_RECORDS = 4096


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22),
    or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(4096)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    try:
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


@dataclass(frozen=True, slots=True)
class StandaloneRecord:
    pod_uid: str
    name: str
    exclusive_cpus: int
    qos: str
    command: tuple[str, ...] = ()
    isolated: bool = False
    hugepages: Mapping[str, int] = field(default_factory=dict, hash=False)
    pid: int = 0
    """The supervising ``topolet run`` process (0: none recorded)."""
    pid_start: int = 0
    """Its start time (clock ticks since boot)."""

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
            kind=RUN,
        )

    def supervisor_alive(self) -> bool:
        return self.pid > 0 and process_start_time(self.pid) == self.pid_start


class StandaloneSource:
    """Lists the standalone containers that are live; sweeps the orphans."""

    owner_kinds = frozenset({RUN})

    def __init__(self, state_dir: Path | str, writer: CpusetWriter) -> None:
        self.dir = Path(state_dir) / "standalone"
        self.writer = writer

    def _file(self, pod_uid: str) -> Path:
        return self.dir / f"{validate_pod_uid(pod_uid)}.json"

    def add(self, record: StandaloneRecord) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(
            self._file(record.pod_uid),
            json.dumps(
                {
                    "podUID": record.pod_uid,
                    "name": record.name,
                    "exclusiveCPUs": record.exclusive_cpus,
                    "qos": record.qos,
                    "command": list(record.command),
                    "isolated": record.isolated,
                    "hugepages": dict(record.hugepages),
                    "pid": record.pid,
                    "pidStart": record.pid_start,
                }
            ).encode(),
            what="the run record",
        )

    def remove(self, pod_uid: str) -> None:
        self._file(pod_uid).unlink(missing_ok=True)

    def records(self) -> list[StandaloneRecord]:
        """Every record. A record that cannot be read is not dropped: it is logged with its
        file and the fix, and its run is then treated as gone by nobody (kept)."""
        out = []
        files = sorted(self.dir.glob("*.json"))[:_MAX_RECORDS] if self.dir.is_dir() else []
        for f in files:
            try:
                with open(f, "rb") as fh:
                    raw = fh.read(_MAX_RECORD_BYTES + 1)
                if len(raw) > _MAX_RECORD_BYTES:
                    raise ValueError(f"larger than {_MAX_RECORD_BYTES} bytes")
                d = json.loads(raw)
                rec = StandaloneRecord(
                    pod_uid=validate_pod_uid(str(d["podUID"])),
                    name=str(d["name"]),
                    exclusive_cpus=int(d["exclusiveCPUs"]),
                    qos=str(d["qos"]),
                    command=tuple(str(c) for c in d.get("command", ())),
                    isolated=bool(d.get("isolated", False)),
                    hugepages={str(k): int(v) for k, v in (d.get("hugepages") or {}).items()},
                    pid=int(d.get("pid", 0)),
                    pid_start=int(d.get("pidStart", 0)),
                )
                if f.stem != rec.pod_uid:
                    raise ValueError(f"podUID {rec.pod_uid!r} does not match the file name")
                out.append(rec)
            except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
                log.warning(
                    "standalone record %s is unreadable (%s); its run's CPUs stay held: "
                    "remove the file once no process of that run is left",
                    f,
                    e,
                )
        return out

    def _has_processes(self, rec: StandaloneRecord) -> bool:
        procs = self.writer.path_for(rec.cgroup()) / "cgroup.procs"
        try:
            with open(procs, "rb") as f:
                return bool(f.read(64).strip())
        except (FileNotFoundError, NotADirectoryError):
            return False

    def live(self, rec: StandaloneRecord) -> bool:
        return rec.supervisor_alive() or self._has_processes(rec)

    def running(self) -> list[ContainerInfo]:
        """Containers that are live (see the module docstring)."""
        return [rec.info() for rec in self.records() if self.live(rec)]

    def sweep(self, manager: CPUManager) -> dict[str, int]:
        """Reconcile the ``run`` owners in one transaction (admit, re-pin, release the
        gone), then remove the orphans' cgroups and records."""
        with manager.transaction():
            records = self.records()
            live = {rec.pod_uid for rec in records if self.live(rec)}
            counts = manager.reconcile(
                [r.info() for r in records if r.pod_uid in live], kinds=self.owner_kinds
            )
            for rec in records:
                if rec.pod_uid in live:
                    continue
                try:
                    self.remove_cgroup(rec)
                except CPUManagerError as e:  # a process joined after all: next sweep
                    log.warning("orphaned run %s not removed yet: %s", rec.name, e)
                    continue
                self.remove(rec.pod_uid)
                log.info("removed orphaned run %s (pod %s): its processes are gone", rec.name, rec.pod_uid)
                counts["orphans"] = counts.get("orphans", 0) + 1
        return counts

    def remove_cgroup(self, rec: StandaloneRecord) -> None:
        """Remove the container's cgroup and its pod (and QoS) parents when they are empty."""
        self.writer.remove(rec.cgroup())
        for parent in self.writer.path_for(rec.cgroup()).parents:
            if parent == self.writer.root:
                break
            try:
                parent.rmdir()
            except OSError:
                break
