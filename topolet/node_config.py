"""Settings shared by the node-side commands (``run``, ``cpumanager``, later ``node``).

Defaults match kubelet's where kubelet has the same knob, and every default says why.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from cpumanager.cgroupfs import CgroupV1Cpuset, CgroupV2Cpuset, CpusetWriter
from cpumanager.checkpoint import CheckpointStore
from cpumanager.policy_static import StaticPolicy
from topology.cpuset import CPUSet, CPUSetParseError
from topology.model import Topology
from topology.sysfs import discover

__all__ = ["NodeSettings", "add_node_options", "detect_cgroup_writer"]

#: Where topolet keeps its checkpoint (kubelet keeps its own in /var/lib/kubelet).
DEFAULT_STATE_DIR = Path("/var/lib/topolet")
#: cgroup v1 cpuset mount, or the v2 unified root when v1 holds no cpuset controller.
V1_CPUSET = Path("/sys/fs/cgroup/cpuset")
V2_ROOT = Path("/sys/fs/cgroup")


def detect_cgroup_writer(root: Path | None, version: str, driver: str) -> CpusetWriter:
    """The cpuset writer for this machine: v1 when its cpuset hierarchy is mounted."""
    if version == "auto":
        version = "v1" if (V1_CPUSET / "cpuset.cpus").exists() else "v2"
    if version == "v1":
        return CgroupV1Cpuset(root or V1_CPUSET, driver=driver)  # type: ignore[arg-type]
    return CgroupV2Cpuset(root or V2_ROOT, driver=driver)  # type: ignore[arg-type]


def add_node_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("node settings")
    g.add_argument("--root", type=Path, default=Path("/"),
                   help="filesystem root holding sys/ and proc/ to discover the topology from (default /)")
    g.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                   help=f"where the cpu_manager_state checkpoint lives (default {DEFAULT_STATE_DIR})")
    g.add_argument("--reserved-cpus", default=None, metavar="LIST",
                   help="CPUs kept for the system, as a cpu list ('0,1'); like kubelet's --reserved-cpus")
    g.add_argument("--num-reserved-cpus", type=int, default=1, metavar="N",
                   help="whole CPUs reserved when --reserved-cpus is not given, chosen as kubelet "
                        "chooses them (default 1: the static policy needs at least one)")


@dataclass(frozen=True)
class NodeSettings:
    root: Path
    state_dir: Path
    reserved_cpus: CPUSet | None
    num_reserved_cpus: int

    @staticmethod
    def from_args(args: argparse.Namespace) -> NodeSettings:
        reserved = None
        if args.reserved_cpus is not None:
            try:
                reserved = CPUSet.parse(args.reserved_cpus)
            except CPUSetParseError as e:
                raise ValueError(f"--reserved-cpus: {e}") from e
        if args.num_reserved_cpus < 0:
            raise ValueError("--num-reserved-cpus: expected a non-negative integer")
        return NodeSettings(args.root, args.state_dir, reserved, args.num_reserved_cpus)

    def topology(self) -> Topology:
        return discover(self.root)

    def policy(self, topo: Topology) -> StaticPolicy:
        n = len(self.reserved_cpus) if self.reserved_cpus is not None else self.num_reserved_cpus
        return StaticPolicy(topo, num_reserved_cpus=n, reserved_cpus=self.reserved_cpus)

    def store(self) -> CheckpointStore:
        return CheckpointStore(self.state_dir / "cpu_manager_state", policy_name="static")
