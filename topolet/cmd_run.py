"""``topolet run``: start a command as a standalone "container" pinned by the CPU manager.

The command gets a cgroup laid out as kubelet would make it and is admitted by the same
CPU manager a node runs: with ``--guaranteed`` and a whole ``--cpus`` count it gets
exclusive CPUs (and every other container leaves them); otherwise it runs on the shared
pool. With ``--isolated`` the exclusive CPUs come from the kernel's isolated CPUs
(``isolcpus=``). ``--hugepages-2Mi``/``--hugepages-1Gi`` request hugepages: they are
counted against the NUMA nodes the container's memory is pinned to (its CPUs' nodes when
it has exclusive CPUs), and the run is refused with the numbers when they do not fit.
The child joins its cgroup before it executes, so it never runs unpinned. On exit its
CPUs and hugepages return to their pools.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import uuid
from pathlib import Path

from cpumanager.cgroupfs import CgroupV1Cpuset, CpusetWriter
from cpumanager.errors import CPUManagerError
from cpumanager.hugepages import parse_hugepages_requests
from cpumanager.manager import CPUManager
from cpumanager.standalone import StandaloneRecord, StandaloneSource, process_start_time
from kube.pod import Container, QOSClass, exclusive_cpus
from topolet.cli import CommandError, common_options
from topolet.help_text import plain
from topolet.node_config import NodeSettings, add_node_options, check_cgroup_root, detect_cgroup_writer
from topology.model import Topology
from topology.quantity import CPU, QuantityError, parse_amount

log = logging.getLogger("topolet.run")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run",
        parents=[common_options()],
        help="run a command as a standalone container pinned by the CPU manager",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--cpus",
        required=True,
        metavar="QUANTITY",
        help="CPU request: whole CPUs ('2') or a fraction ('500m', '1.5')",
    )
    p.add_argument(
        "--guaranteed",
        action="store_true",
        help="Guaranteed QoS: with a whole --cpus count, take exclusive CPUs",
    )
    p.add_argument(
        "--isolated",
        action="store_true",
        help="take the exclusive CPUs from the isolated pool (isolcpus=); "
        "needs --guaranteed and a whole --cpus count",
    )
    p.add_argument(
        "--hugepages-2Mi",
        dest="hugepages_2mi",
        default=None,
        metavar="SIZE",
        help="hugepages of 2 MiB to account for the container, e.g. '512Mi'",
    )
    p.add_argument(
        "--hugepages-1Gi",
        dest="hugepages_1gi",
        default=None,
        metavar="SIZE",
        help="hugepages of 1 GiB to account for the container, e.g. '2Gi'",
    )
    p.add_argument("--name", default="run", help="container name shown in status (default 'run')")
    p.add_argument(
        "--cgroup-root",
        default=None,
        metavar="DIR",
        help="cpuset cgroup sub-tree for standalone containers (default <cpuset mount>/topolet)",
    )
    p.add_argument("--cgroup-version", choices=["auto", "v1", "v2"], default="auto")
    add_node_options(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    p.set_defaults(func=run)


def _whole_cpus(quantity: str, guaranteed: bool) -> int:
    try:
        millis = parse_amount(CPU, quantity.strip(), field="--cpus")
    except QuantityError as e:
        raise CommandError(str(e)) from None
    if millis <= 0:
        raise CommandError(f"--cpus: expected a positive quantity, got {quantity!r}")
    # the pod model's rule (kubelet's guaranteedCPUs), for a one-container pod of this QoS
    qos = QOSClass.GUARANTEED if guaranteed else QOSClass.BURSTABLE
    return exclusive_cpus(qos, Container("run", {CPU: millis}))


def _hugepages(args: argparse.Namespace) -> dict[str, int]:
    raw = {
        name: text
        for name, text in (("hugepages-2Mi", args.hugepages_2mi), ("hugepages-1Gi", args.hugepages_1gi))
        if text is not None
    }
    try:
        return parse_hugepages_requests(raw)
    except CPUManagerError as e:
        raise CommandError(f"--{e}") from e


def _check_isolated(args: argparse.Namespace, exclusive: int, topo: Topology) -> None:
    if not args.isolated:
        return
    if exclusive == 0:
        raise CommandError("--isolated: needs --guaranteed and a whole --cpus count (e.g. --cpus 2)")
    if not topo.isolated_cpus:
        raise CommandError(
            "no isolated CPUs: this machine's kernel command line has no isolcpus=... "
            "(add isolcpus=<cpu-list> to the kernel command line and reboot, or drop --isolated)"
        )


def _writer(args: argparse.Namespace) -> CpusetWriter:
    base = detect_cgroup_writer(None, args.cgroup_version, "cgroupfs")
    root = Path(args.cgroup_root) if args.cgroup_root else base.root / "topolet"
    check_cgroup_root(root, v1=isinstance(base, CgroupV1Cpuset))
    writer = type(base)(root)
    writer.ensure_root()
    return writer


def run(args: argparse.Namespace) -> int:
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        raise CommandError("no command given: use topolet run --cpus N [--guaranteed] -- COMMAND")
    if os.geteuid() != 0:
        raise CommandError("topolet run writes cgroups and needs root (try sudo)")
    try:
        settings = NodeSettings.from_args(args)
    except ValueError as e:
        raise CommandError(str(e)) from e
    exclusive = _whole_cpus(args.cpus, args.guaranteed)
    hugepages = _hugepages(args)
    topo = settings.topology()
    _check_isolated(args, exclusive, topo)
    settings.check(topo)  # before anything is created
    writer = _writer(args)
    source = StandaloneSource(settings.state_dir, writer)
    uid = str(uuid.uuid4())
    rec = StandaloneRecord(
        pod_uid=uid,
        name=args.name,
        exclusive_cpus=exclusive,
        qos="guaranteed" if args.guaranteed else "burstable",
        command=tuple(cmd),
        isolated=args.isolated,
        hugepages=hugepages,
        pid=os.getpid(),
        pid_start=process_start_time(os.getpid()) or 0,
    )
    path = writer.path_for(rec.cgroup())
    try:
        policy = settings.policy(topo)
    except ValueError as e:
        raise CommandError(str(e)) from e
    mgr = CPUManager(
        topo,
        policy,
        store=settings.store(),
        writer=writer,
        topology_manager_policy=settings.topology_manager_policy,
    )
    with mgr.transaction():
        try:
            mgr.start()
            source.sweep(mgr)  # only runs: others' owners are never touched
        except CPUManagerError as e:
            raise CommandError(str(e)) from e
        source.add(rec)  # live from here on (this process supervises it)
        try:
            writer.ensure(rec.cgroup(), mgr.shared_pool(), topo.numa_nodes_of(topo.online_cpus))
            pin = mgr.add_container(rec.info())
        except CPUManagerError as e:
            source.remove_cgroup(rec)
            source.remove(rec.pod_uid)
            raise CommandError(f"container {args.name} not admitted: {e}") from e
    log.info(
        "container %s (pod %s): %s cpus %s mems %s",
        args.name,
        uid,
        "exclusive" if pin.exclusive else "shared",
        pin.cpus,
        pin.mems or "all",
    )
    procs = str(path / "cgroup.procs")

    def join_cgroup() -> None:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

    try:
        child = subprocess.Popen(cmd, preexec_fn=join_cgroup)  # joins the cgroup before exec
    except OSError as e:
        _cleanup(mgr, source, rec)
        raise CommandError(f"cannot start {cmd[0]!r}: {e}") from e
    forward = {
        s: signal.signal(s, lambda n, _f: child.send_signal(n)) for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        rc = child.wait()
    finally:
        for s, h in forward.items():
            signal.signal(s, h)
        _cleanup(mgr, source, rec)
    return rc if rc >= 0 else 128 - rc


def _cleanup(mgr: CPUManager, source: StandaloneSource, rec: StandaloneRecord) -> None:
    """Release the run's CPUs, then remove its cgroup, then its record, in one transaction
    (a kill at any point leaves an orphan the next sweep removes)."""
    with mgr.transaction():
        freed = mgr.remove_container(rec.pod_uid, rec.name)
        source.remove_cgroup(rec)
        source.remove(rec.pod_uid)
    log.info("container %s exited; cpus %s back to the shared pool", rec.name, freed)
