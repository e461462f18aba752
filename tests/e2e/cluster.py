"""The end-to-end cluster: a real control plane on 127.0.0.1 running topolet's scheduler stack.

* etcd + kube-apiserver (:class:`bench.controlplane.ControlPlane`), certificates made on the fly;
* topolet's ``deploy/namespace.yaml``, the NRT CRD and ``deploy/scheduler/rbac.yaml`` applied;
* Node objects (no kubelet) named after real hwloc topologies, each with the NRT object
  written by topolet's publisher (:mod:`topolet.testbed`);
* ``topolet extender`` with the shipped Deployment's arguments (``--listen`` on loopback),
  as the ``topolet-extender`` service account (a client certificate, so the shipped RBAC
  is what authorises it);
* the real kube-scheduler with the shipped configuration (addresses and paths changed), as
  the ``topolet-scheduler`` service account; and a second, plain kube-scheduler serving
  ``default-scheduler``.

For humans: ``tests/e2e/cluster.sh up|down`` (``python -m tests.e2e.cluster``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.controlplane import ADMIN, ControlPlane, Proc, find_bin_dir, free_port, http_get
from bench.kube_stack import (
    DEFAULT_DEPLOY,
    apply_manifest,
    default_scheduler_config,
    extender_post,
    extender_prefix,
    filter_probe,
    shipped_extender_args,
    shipped_scheduler_config,
    wait_crd,
    wait_extender_synced,
)
from topolet.testbed import add_nodes
from topology.model import Topology
from topology.sysfs import discover

__all__ = ["NODES", "E2ECluster", "sa_user"]

#: Node name -> hwloc snapshot: 2 NUMA x 16 CPUs, 4 NUMA x 10 CPUs, 8 NUMA x 2 CPUs.
NODES = {
    "wide": "32intel64-2p8co2t+8ve",
    "mid": "40intel64-4n10c+pci-conflicts",
    "narrow": "16amd64-8n2c",
}
NAMESPACE = "topolet-system"
CRD = "noderesourcetopologies.topology.node.k8s.io"


def sa_user(name: str) -> tuple[str, tuple[str, ...]]:
    """The user name and groups the API server gives service account *name*."""
    return (
        f"system:serviceaccount:{NAMESPACE}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"),
    )


class E2ECluster:
    """Start with :meth:`up`, stop with :meth:`down` (see the module docstring)."""

    def __init__(self, directory: Path, roots: dict[str, Path], *, bin_dir: Path | None = None) -> None:
        self.dir = directory
        self.roots = roots
        self.cp = ControlPlane(find_bin_dir(bin_dir), directory)
        self.topologies: dict[str, Topology] = {}
        self.extender: Proc | None = None
        self.extender_port = 0
        self.scheduler_port = 0
        self.api: Any = None

    # ------------------------------------------------------------ lifecycle
    def up(self) -> E2ECluster:
        from kubernetes import client, config

        self.cp.start()
        self.api = config.new_client_from_config(config_file=str(self.cp.admin_kubeconfig()))
        for manifest in ("namespace.yaml", "crd/noderesourcetopologies.yaml", "scheduler/rbac.yaml"):
            apply_manifest(self.api, DEFAULT_DEPLOY / manifest)
        wait_crd(self.api, CRD)
        self.topologies = {name: discover(root) for name, root in self.roots.items()}
        add_nodes(self.api, self.topologies.items())
        self.extender_port = free_port()
        self.start_extender()
        sched_cfg = shipped_scheduler_config(
            DEFAULT_DEPLOY,
            f"127.0.0.1:{self.extender_port}",
            self.cp.kubeconfig(*sa_user("topolet-scheduler")),
        )
        _, self.scheduler_port = self.cp.start_scheduler("topolet-scheduler", sched_cfg)
        self.cp.start_scheduler("default-scheduler", default_scheduler_config(self.cp.admin_kubeconfig()))
        self.core = client.CoreV1Api(self.api)
        self._write_state()
        return self

    def down(self) -> None:
        if self.extender is not None:
            self.extender.stop()
        self.cp.stop()

    # ------------------------------------------------------------ extender
    @property
    def extender_url(self) -> str:
        cfg = shipped_scheduler_config(DEFAULT_DEPLOY, "x", Path("x"))
        return f"http://127.0.0.1:{self.extender_port}{extender_prefix(cfg)}"

    def start_extender(self) -> Proc:
        kubeconfig = self.cp.kubeconfig(*sa_user("topolet-extender"))
        args = shipped_extender_args(DEFAULT_DEPLOY, f"127.0.0.1:{self.extender_port}")
        self.extender = Proc(
            "topolet-extender",
            [sys.executable, "-m", "topolet", *args, f"--kubeconfig={kubeconfig}"],
            self.dir / "topolet-extender.log",
        ).start()
        self.extender.wait_ready(f"http://127.0.0.1:{self.extender_port}/healthz", None, 60.0)
        self.wait_extender_synced()
        return self.extender

    def stop_extender(self) -> None:
        if self.extender is not None:
            self.extender.stop()
            self.extender = None

    def wait_extender_synced(self) -> None:
        """Until the extender has every node's NRT object (it refuses an impossible pod everywhere)."""
        big = max(len(t.online_cpus) for t in self.topologies.values()) + 1
        wait_extender_synced(f"{self.extender_url}/filter", sorted(self.topologies), big, 60.0)

    def wait_released(self, timeout_s: float = 30.0) -> None:
        """Wait until every node has a whole NUMA node free again in the extender's eyes
        (deleted pods release their reservations through its pod watch)."""
        for name, topo in self.topologies.items():
            size = max(len(topo.cpus_in_numa_nodes(n) & topo.online_cpus) for n in topo.numa_node_ids())
            body = filter_probe(size, [name])
            deadline = time.monotonic() + timeout_s
            while (reply := self.extender_call("filter", body)) is None or not reply.get("NodeNames"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: reservations not released within {timeout_s:.0f} s: {reply}")
                time.sleep(0.3)

    def extender_call(self, verb: str, body: dict[str, Any]) -> Any:
        return extender_post(f"{self.extender_url}/{verb}", body)

    def extender_metric(self, name: str, labels: dict[str, str]) -> float:
        """The value of one sample of the extender's /metrics (0 when absent)."""
        status, body = http_get(f"http://127.0.0.1:{self.extender_port}/metrics")
        if status != 200:
            raise RuntimeError(f"extender /metrics answered {status}")
        return _sample(body.decode(), name, labels)

    # ------------------------------------------------------------ state for humans
    def _write_state(self) -> None:
        state = {
            **self.cp.state(),
            "extender": self.extender_url,
            "pids": [p.popen.pid for p in [*self.cp.procs, self.extender] if p and p.popen],
        }
        (self.dir / "cluster.json").write_text(json.dumps(state, indent=2))


def _sample(text: str, name: str, labels: dict[str, str]) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


# ------------------------------------------------------------------ CLI (cluster.sh)
def _up(directory: Path) -> int:
    from tests.snapshots import extract_snapshot

    directory.mkdir(parents=True, exist_ok=True)
    roots = {n: extract_snapshot(s, directory / "hwloc" / n) for n, s in NODES.items()}
    cluster = E2ECluster(directory, roots)
    try:
        cluster.up()
    except Exception:
        cluster.down()
        raise
    print(f"cluster up; state in {directory / 'cluster.json'}")
    print(f"  export KUBECONFIG={cluster.cp.admin_kubeconfig()}")
    print(f"  kubectl get nodes,noderesourcetopologies   # user {ADMIN[0]}")
    return 0


def _down(directory: Path) -> int:
    state_file = directory / "cluster.json"
    if not state_file.exists():
        print(f"{state_file}: no cluster state here", file=sys.stderr)
        return 1
    pids = [int(p) for p in json.loads(state_file.read_text())["pids"]]
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _running(p)]
            time.sleep(0.2)
    state_file.unlink()
    print("cluster down")
    return 0


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cluster.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("up", "down"))
    p.add_argument("--dir", type=Path, default=Path("/tmp/topolet-e2e"), help="state directory")
    args = p.parse_args(argv)
    return _up(args.dir) if args.action == "up" else _down(args.dir)


if __name__ == "__main__":
    sys.exit(main())
