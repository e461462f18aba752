"""Where the isolation benchmark's processes run: through the CPU manager, onto real CPUs.

The decision is always the real one: a :class:`~cpumanager.manager.CPUManager` with a
:class:`~cpumanager.policy_static.StaticPolicy` (one reserved CPU, as kubelet's minimum)
admits every "container" of a scenario, Guaranteed ones with exclusive CPUs first. With
the policy off ("none") every container gets every CPU. The decision reaches the kernel
in one of two ways, named in the report:

* ``cgroup`` (root and a writable cpuset hierarchy): each container gets a cgroup laid out
  as kubelet's, under a private root such as ``/sys/fs/cgroup/cpuset/topolet-bench-<pid>``
  that is removed afterwards; the manager writes ``cpuset.cpus``/``cpuset.mems`` and the
  process joins its cgroup before it executes;
* ``affinity`` (no root): the same CPU sets through ``sched_setaffinity``.

With ``cgroup`` placement and a cgroup v1 ``cpuacct`` hierarchy, every container also gets a
``cpuacct`` group under a private root, so its CPU time per CPU (``cpuacct.usage_percpu``)
can be read: how much of the time others ran on a victim's CPUs was the benchmark's own
containers (what the policy controls) and how much the rest of the machine.

Kubelet's reserved CPUs stay in the shared pool: on a 2-CPU machine the static policy
reserves CPU 0, so a Guaranteed 1-CPU victim gets CPU 1 and everything else (the aggressor,
Burstable victims) shares CPU 0.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.errors import BenchError
from cpumanager.cgroupfs import CgroupV1Cpuset, CgroupV2Cpuset, ContainerCgroup, CpusetWriter
from cpumanager.checkpoint import CheckpointStore
from cpumanager.cpu_topology import CPUTopology
from cpumanager.manager import ContainerInfo, CPUManager
from cpumanager.policy_static import StaticPolicy
from topology.cpuset import CPUSet
from topology.model import Topology

__all__ = [
    "MODES",
    "V1_CPUACCT",
    "Placer",
    "PlacementError",
    "Request",
    "Seat",
    "resolve_mode",
    "usage_reader",
]

Mode = Literal["cgroup", "affinity"]
MODES = ("auto", "cgroup", "affinity")
QoS = Literal["guaranteed", "burstable", "besteffort"]
V1_CPUSET = Path("/sys/fs/cgroup/cpuset")
V2_ROOT = Path("/sys/fs/cgroup")
V1_CPUACCT = Path("/sys/fs/cgroup/cpuacct")
_MAX_READ = 64 * 1024


class PlacementError(BenchError, RuntimeError):
    """The benchmark's processes cannot be placed as asked."""


@dataclass(frozen=True, slots=True)
class Request:
    """One container of a scenario: a name, its QoS class and its exclusive CPU count."""

    name: str
    qos: QoS = "guaranteed"
    exclusive_cpus: int = 0


@dataclass(frozen=True)
class Seat:
    """Where a container landed: its CPUs, and how a child process gets there."""

    name: str
    cpus: CPUSet
    exclusive: bool
    join: Callable[[], None]
    """Runs in the child before it executes (joins the cgroup or sets the affinity)."""
    usage: Callable[[], dict[int, float]] | None = None
    """CPU seconds this container's processes used, per CPU (None without ``cpuacct``)."""


def _v2_has_cpuset() -> bool:
    try:
        return "cpuset" in (V2_ROOT / "cgroup.controllers").read_text().split()
    except OSError:
        return False


def cgroup_writable() -> bool:
    return os.geteuid() == 0 and ((V1_CPUSET / "cpuset.cpus").exists() or _v2_has_cpuset())


def resolve_mode(mode: str) -> Mode:
    """``auto`` → ``cgroup`` as root with a cpuset hierarchy, else ``affinity``."""
    if mode == "auto":
        return "cgroup" if cgroup_writable() else "affinity"
    if mode == "cgroup":
        if not cgroup_writable():
            raise PlacementError(
                "placement 'cgroup' needs root and a cpuset cgroup hierarchy "
                f"({V1_CPUSET} or cpuset in {V2_ROOT}/cgroup.controllers); "
                "use --placement affinity"
            )
        return "cgroup"
    if mode == "affinity":
        return "affinity"
    raise PlacementError(f"placement: unknown mode {mode!r}, expected one of {', '.join(MODES)}")


def _join_cgroup(path: Path) -> Callable[[], None]:
    procs = path / "cgroup.procs"

    def join() -> None:
        fd = os.open(procs, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    return join


def _join_all(*joins: Callable[[], None]) -> Callable[[], None]:
    def join() -> None:
        for j in joins:
            j()

    return join


def usage_reader(path: Path) -> Callable[[], dict[int, float]]:
    """Seconds per CPU from ``cpuacct.usage_percpu`` (one nanosecond count per possible CPU)."""

    def usage() -> dict[int, float]:
        try:
            with (path / "cpuacct.usage_percpu").open("rb") as f:
                text = f.read(_MAX_READ).decode("ascii", "replace")
        except OSError:
            return {}
        return {i: int(v) / 1e9 for i, v in enumerate(text.split()) if v.isdigit()}

    return usage


def _set_affinity(cpus: CPUSet) -> Callable[[], None]:
    ids = set(cpus)

    def join() -> None:
        os.sched_setaffinity(0, ids)

    return join


class Placer:
    """Lays out the containers of one scenario run, and tears them down afterwards.

    >>> with Placer(topo, "affinity") as placer:                                 # doctest: +SKIP
    ...     with placer.layout([Request("victim", exclusive_cpus=1)], static=True) as seats:
    ...         subprocess.Popen(cmd, preexec_fn=seats["victim"].join)
    """

    def __init__(
        self, topo: Topology, mode: Mode, *, num_reserved_cpus: int = 1, cgroup_root: Path | None = None
    ) -> None:
        self.topo = topo
        self.mode: Mode = mode
        self.num_reserved_cpus = num_reserved_cpus
        self.cpus = topo.online_cpus
        self.writer: CpusetWriter | None = None
        self.acct_root: Path | None = None
        if mode == "cgroup":
            v1 = (V1_CPUSET / "cpuset.cpus").exists()
            base = V1_CPUSET if v1 else V2_ROOT
            root = cgroup_root or base / f"topolet-bench-{os.getpid()}"
            self.writer = CgroupV1Cpuset(root) if v1 else CgroupV2Cpuset(root)
            if v1 and cgroup_root is None and (V1_CPUACCT / "cpuacct.usage_percpu").exists():
                self.acct_root = V1_CPUACCT / root.name
        elif not set(self.cpus) <= os.sched_getaffinity(0):
            raise PlacementError(
                f"this process may run only on cpus {CPUSet(os.sched_getaffinity(0))}, "
                f"not on every online cpu {self.cpus}; affinity placement needs them all"
            )

    @property
    def root(self) -> Path | None:
        return self.writer.root if self.writer is not None else None

    def __enter__(self) -> Placer:
        if self.writer is not None:
            self.writer.ensure_root()
        if self.acct_root is not None:
            self.acct_root.mkdir(exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the private cgroup roots (their processes must have exited)."""
        if self.acct_root is not None and self.acct_root.exists():
            for d in sorted((p for p in self.acct_root.iterdir() if p.is_dir()), reverse=True):
                d.rmdir()
            self.acct_root.rmdir()
        if self.writer is None or not self.writer.root.exists():
            return
        root = self.writer.root
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            d.rmdir()
        root.rmdir()

    @contextmanager
    def layout(self, requests: Sequence[Request], *, static: bool) -> Iterator[dict[str, Seat]]:
        """Admit *requests* (static policy on or off) and yield a seat per name."""
        names = [r.name for r in requests]
        if len(set(names)) != len(names):
            raise PlacementError(f"container names must be unique, got {names}")
        refs = {
            r.name: ContainerCgroup(pod_uid=str(uuid.uuid4()), container_id=uuid.uuid4().hex, qos=r.qos)
            for r in requests
        }
        state_dir = Path(tempfile.mkdtemp(prefix="topolet-bench-state-"))
        mgr: CPUManager | None = None
        try:
            if static:
                mgr = self._manager(state_dir)
            yield self._admit(requests, refs, mgr)
        finally:
            if mgr is not None:
                for r in requests:
                    mgr.remove_container(refs[r.name].pod_uid, r.name)
                mgr.close()
            self._remove_cgroups(refs.values())
            shutil.rmtree(state_dir, ignore_errors=True)

    def _manager(self, state_dir: Path) -> CPUManager:
        policy = StaticPolicy(CPUTopology.from_topology(self.topo), num_reserved_cpus=self.num_reserved_cpus)
        store = CheckpointStore(state_dir / "cpu_manager_state", policy_name=policy.name)
        mgr = CPUManager(self.topo, policy, store=store, writer=self.writer)
        mgr.start()
        return mgr

    def _admit(
        self, requests: Sequence[Request], refs: dict[str, ContainerCgroup], mgr: CPUManager | None
    ) -> dict[str, Seat]:
        mems = self.topo.numa_nodes_of(self.cpus)
        ordered = sorted(requests, key=lambda r: -r.exclusive_cpus)  # Guaranteed first
        for r in ordered:
            if self.writer is not None:
                self.writer.ensure(refs[r.name], mgr.shared_pool() if mgr else self.cpus, mems)
            if mgr is not None:
                excl = r.exclusive_cpus if r.qos == "guaranteed" else 0
                mgr.add_container(
                    ContainerInfo(
                        pod_uid=refs[r.name].pod_uid,
                        container_name=r.name,
                        cgroup=refs[r.name] if self.writer else None,
                        exclusive_cpus=excl,
                        pod_name=r.name,
                        namespace="bench",
                    )
                )
        seats = {}
        for r in requests:
            held = mgr.state.get_cpuset(refs[r.name].pod_uid, r.name) if mgr else None
            cpus = held or (mgr.shared_pool() if mgr else self.cpus)
            join = (
                _join_cgroup(self.writer.path_for(refs[r.name]))
                if self.writer is not None
                else _set_affinity(cpus)
            )
            usage = None
            if self.acct_root is not None:
                acct = self.acct_root / refs[r.name].container_id
                acct.mkdir()
                join, usage = _join_all(join, _join_cgroup(acct)), usage_reader(acct)
            seats[r.name] = Seat(r.name, cpus, held is not None, join, usage)
        return seats

    def _remove_cgroups(self, containers: Iterable[ContainerCgroup]) -> None:
        refs = list(containers)
        if self.acct_root is not None:
            for ref in refs:
                acct = self.acct_root / ref.container_id
                if acct.exists():
                    acct.rmdir()
        if self.writer is None:
            return
        for ref in refs:
            path = self.writer.path_for(ref)
            self.writer.remove(ref)
            for parent in path.parents:
                if parent == self.writer.root:
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break
