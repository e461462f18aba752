"""Writing container cpusets into cgroupfs (v1 ``cpuset`` hierarchy or unified v2).

Paths follow kubelet's layouts:

* cgroupfs driver: ``kubepods[/<qos>]/pod<UID>/<container-id>`` (Guaranteed pods sit
  directly under ``kubepods``);
* systemd driver: ``kubepods.slice[/kubepods-<qos>.slice]/kubepods[-<qos>]-pod<uid_>.slice/
  <runtime>-<container-id>.scope`` (dashes of the UID become underscores).

Pod UIDs and container ids are validated before they touch a path, and the final path is
checked to lie under the configured root: nothing outside it is ever written, whatever the
input. A cgroup that vanished because its container exited is not an error (``write``
returns False).
"""

from __future__ import annotations

import errno
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cpumanager.cgroup_errors import CgroupError, InvalidIdentifierError
from topology.cpuset import CPUSet

__all__ = [
    "CgroupV1Cpuset",
    "CgroupV2Cpuset",
    "ContainerCgroup",
    "CpusetWriter",
    "validate_container_id",
    "validate_pod_uid",
]

log = logging.getLogger(__name__)

QoS = Literal["guaranteed", "burstable", "besteffort"]
Driver = Literal["cgroupfs", "systemd"]

_POD_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_RUNTIME = re.compile(r"[a-z][a-z0-9-]{0,31}")
_VANISHED = {errno.ENOENT, errno.ENODEV, errno.ESRCH}


def validate_pod_uid(uid: str) -> str:
    """A pod UID safe to put in a path: letters, digits, '-' and '_' (a UUID or a
    static pod's hash), at most 128 characters."""
    if not isinstance(uid, str) or not _POD_UID.fullmatch(uid):
        raise InvalidIdentifierError("pod UID", uid, "letters, digits, '-' or '_' (a UUID), 1-128 chars")
    return uid


def validate_container_id(cid: str) -> str:
    """A container id safe to put in a path. A ``<runtime>://<id>`` prefix as found in
    pod status is stripped first."""
    if isinstance(cid, str) and "://" in cid:
        cid = cid.split("://", 1)[1]
    if not isinstance(cid, str) or not _CONTAINER_ID.fullmatch(cid):
        raise InvalidIdentifierError("container id", cid, "letters, digits, '-' or '_', 1-128 chars")
    return cid


@dataclass(frozen=True, slots=True)
class ContainerCgroup:
    """Where a container's cgroup is, in kubelet's terms."""

    pod_uid: str
    container_id: str
    qos: QoS = "guaranteed"
    runtime: str = "cri-containerd"

    def __post_init__(self) -> None:
        validate_pod_uid(self.pod_uid)
        object.__setattr__(self, "container_id", validate_container_id(self.container_id))
        if self.qos not in ("guaranteed", "burstable", "besteffort"):
            raise InvalidIdentifierError("qos", self.qos, "one of guaranteed, burstable, besteffort")
        if not _RUNTIME.fullmatch(self.runtime):
            raise InvalidIdentifierError("runtime", self.runtime, "lower-case letters, digits and '-'")

    def relative_path(self, driver: Driver) -> Path:
        if driver == "cgroupfs":
            parts = ["kubepods"]
            if self.qos != "guaranteed":
                parts.append(self.qos)
            parts += [f"pod{self.pod_uid}", self.container_id]
            return Path(*parts)
        if driver == "systemd":
            uid = self.pod_uid.replace("-", "_")
            parts = ["kubepods.slice"]
            if self.qos == "guaranteed":
                parts.append(f"kubepods-pod{uid}.slice")
            else:
                parts += [f"kubepods-{self.qos}.slice", f"kubepods-{self.qos}-pod{uid}.slice"]
            parts.append(f"{self.runtime}-{self.container_id}.scope")
            return Path(*parts)
        raise InvalidIdentifierError("cgroup driver", str(driver), "cgroupfs or systemd")


class CpusetWriter:
    """Common part of the v1 and v2 writers: path resolution and safe writes."""

    cpus_file = "cpuset.cpus"
    mems_file = "cpuset.mems"

    def __init__(self, root: Path | str, driver: Driver = "cgroupfs") -> None:
        self.root = Path(root)
        self.driver: Driver = driver
        if driver not in ("cgroupfs", "systemd"):
            raise InvalidIdentifierError("cgroup driver", driver, "cgroupfs or systemd")

    def path_for(self, ref: ContainerCgroup) -> Path:
        path = self.root / ref.relative_path(self.driver)
        self._check_inside(path)
        return path

    def _check_inside(self, path: Path) -> None:
        root = os.path.realpath(self.root)
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            raise InvalidIdentifierError("cgroup path", str(path), f"a path under {self.root}")

    def write(self, ref: ContainerCgroup, cpus: CPUSet, mems: CPUSet | None = None) -> bool:
        """Pin a container. Returns False when its cgroup is gone (the container exited)."""
        return self.write_path(self.path_for(ref), cpus, mems)

    def write_path(self, path: Path, cpus: CPUSet, mems: CPUSet | None = None) -> bool:
        self._check_inside(path)
        if not cpus:
            raise CgroupError(path / self.cpus_file, "refusing to write an empty cpuset")
        try:
            if mems is not None:
                self._write(path / self.mems_file, str(mems))
            self._write(path / self.cpus_file, str(cpus))
        except OSError as e:
            if e.errno in _VANISHED:
                log.info("cgroup %s vanished (container exited); nothing to pin", path)
                return False
            raise CgroupError(path / self.cpus_file, f"cannot write cpus {cpus} mems {mems}: {e}") from e
        log.debug("pinned %s to cpus %s mems %s", path, cpus, mems)
        return True

    def read(self, ref: ContainerCgroup) -> CPUSet | None:
        return self.read_path(self.path_for(ref))

    def read_path(self, path: Path) -> CPUSet | None:
        try:
            return CPUSet.parse((path / self.cpus_file).read_text())
        except FileNotFoundError:
            return None

    def ensure(self, ref: ContainerCgroup, cpus: CPUSet, mems: CPUSet) -> Path:
        """Create the container's cgroup (and its parents) with *cpus*/*mems*, as the
        runtime would. Used by the standalone pod source and by tests."""
        path = self.path_for(ref)
        rel = path.relative_to(self.root)
        cur = self.root
        for part in rel.parts:
            cur = cur / part
            if not cur.exists():
                cur.mkdir()
                self._init_new(cur)
        self.write_path(path, cpus, mems)
        return path

    def ensure_root(self) -> None:
        """Create the root cgroup directory itself when missing (a private sub-tree such
        as ``/sys/fs/cgroup/cpuset/topolet``), initialised from its parent."""
        if not self.root.exists():
            self.root.mkdir()
            self._init_new(self.root)

    def _init_new(self, path: Path) -> None:
        """Hook for a freshly made cgroup directory."""

    def add_process(self, path: Path, pid: int) -> None:
        self._check_inside(path)
        self._write(path / "cgroup.procs", str(pid))

    def remove(self, ref: ContainerCgroup) -> None:
        """Remove a container cgroup made by :meth:`ensure` (must hold no process)."""
        path = self.path_for(ref)
        try:
            path.rmdir()
        except FileNotFoundError:
            return
        except OSError as e:
            raise CgroupError(path, f"cannot remove cgroup: {e}") from e

    @staticmethod
    def _write(path: Path, value: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)


class CgroupV1Cpuset(CpusetWriter):
    """cgroup v1 ``cpuset`` controller (default root ``/sys/fs/cgroup/cpuset``).

    A new v1 cpuset cgroup starts with empty ``cpuset.cpus``/``cpuset.mems``; :meth:`ensure`
    copies the parent's so processes can join. A child's CPUs must be a subset of its
    parent's, which kubelet's pod and QoS cgroups satisfy (they hold every CPU).
    """

    def __init__(self, root: Path | str = "/sys/fs/cgroup/cpuset", driver: Driver = "cgroupfs") -> None:
        super().__init__(root, driver)

    def _init_new(self, path: Path) -> None:
        for name in (self.mems_file, self.cpus_file):
            parent_val = (path.parent / name).read_text().strip()
            if parent_val:
                self._write(path / name, parent_val)


class CgroupV2Cpuset(CpusetWriter):
    """cgroup v2 unified hierarchy (default root ``/sys/fs/cgroup``): ``cpuset.cpus`` and
    ``cpuset.mems`` in each cgroup, the controller enabled through the parents'
    ``cgroup.subtree_control``."""

    def __init__(self, root: Path | str = "/sys/fs/cgroup", driver: Driver = "cgroupfs") -> None:
        super().__init__(root, driver)

    def _init_new(self, path: Path) -> None:
        control = path.parent / "cgroup.subtree_control"
        current = control.read_text().split() if control.exists() else []
        if "cpuset" not in current:
            try:
                self._write(control, "+cpuset")
            except OSError as e:
                raise CgroupError(control, f"cannot enable the cpuset controller: {e}") from e
