"""``topolet bench scheduler`` on its own loopback control plane, small: the real
kube-scheduler schedules every pod with the default profile, with the shipped topolet
configuration (the extender filters, scores and binds through the API server), and
against the do-nothing extender (``--floor``); the figures come from its metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.kube_stack import DEFAULT_DEPLOY
from bench.scheduler_throughput import NOOP_PROFILE, run
from topolet.testbed import add_nodes
from topology.sysfs import discover

NODES = 12
PODS = 30


def test_every_profile_schedules_every_pod(
    e2e_bin: Path, hwloc_snapshot: Callable[[str], Path], tmp_path: Path
) -> None:
    topo = discover(hwloc_snapshot("32intel64-2p8co2t+8ve"))

    def nodes(api: Any, names: list[str]) -> None:
        add_nodes(api, [(n, topo) for n in names])

    results = run(
        e2e_bin,
        tmp_path,
        DEFAULT_DEPLOY,
        node_counts=(NODES,),
        pods=PODS,
        cpus=2,
        add_nodes=nodes,
        floor=True,
        timeout_s=180,
        log=lambda _m: None,
    )
    by_profile = {r.profile: r for r in results}
    assert sorted(by_profile) == sorted(["default-scheduler", "topolet-scheduler", NOOP_PROFILE])
    for r in results:
        assert r.nodes == NODES and r.pods == PODS and r.pods_per_s > 0
        assert r.algorithm_s > 0
        # every watched process was read (10 ms ticks: a process may show none in so short a run)
        assert sorted(r.cpu_ms_per_pod) == sorted(["kube-scheduler", "kube-apiserver", "etcd", "extender"])
        assert all(v >= 0 for v in r.cpu_ms_per_pod.values())
    topolet = by_profile["topolet-scheduler"]
    assert sum(topolet.cpu_ms_per_pod.values()) > 0  # about 12 ms per pod: hundreds of ms in all
    assert topolet.extender_server_s > 0  # the extender's own filter + prioritize time
    assert 0 < topolet.extender_share < 1
    assert by_profile[NOOP_PROFILE].extender_server_s == 0
    log = (tmp_path / f"extender-{NODES}.log").read_text()
    assert "Traceback" not in log
    scheduler_log = (tmp_path / f"sched-topolet-scheduler-{NODES}.log").read_text()
    assert "Error scheduling pod" not in scheduler_log  # every bind through the extender held
