"""The real kube-scheduler's throughput with and without topolet's extender.

One loopback control plane (:mod:`bench.controlplane`); for each node count, fake nodes
with NRT objects are added (by the *add_nodes* callback: the caller writes them with
topolet's publisher), the shipped extender is started, and the same pods are scheduled
twice by a fresh kube-scheduler: once with the default profile (the shipped configuration
without its extender), once with the shipped topolet configuration. Each time the pods are
created while no scheduler serves their ``schedulerName``, then the scheduler starts and
its own ``/metrics`` are sampled until every pod is scheduled.

* pods/s: pods scheduled between the first and the last sample that saw progress, divided
  by the time between them (like scheduler_perf's SchedulingThroughput);
* the extender's share of scheduling time: the scheduler's
  ``scheduler_scheduling_algorithm_duration_seconds`` minus its own PreFilter, Filter,
  PreScore and Score time (``scheduler_framework_extension_point_duration_seconds``) is
  what the extender calls took; their share of the algorithm time is reported, with the
  extender's own server-side time (its ``/metrics``) beside it.

Both schedulers run with leader election off and the same ``clientConnection`` QPS.
"""

from __future__ import annotations

import ssl
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.controlplane import ControlPlane, Proc, free_port, http_get
from bench.kube_stack import (
    apply_manifest,
    extender_prefix,
    guaranteed_pod,
    shipped_extender_args,
    shipped_scheduler_config,
    wait_crd,
    wait_extender_synced,
)
from bench.proc_cpu import cpu_seconds

if TYPE_CHECKING:
    from kube.admin import Namespace

__all__ = ["NOOP_PROFILE", "ProfileRun", "metric_sum", "run"]

AddNodes = Callable[[Any, list[str]], None]
_IN_TREE = ("PreFilter", "Filter", "PreScore", "Score")
_NS = "bench"
#: The label of the run against :mod:`bench.noop_extender`.
NOOP_PROFILE = "noop-extender"


@dataclass(frozen=True)
class ProfileRun:
    nodes: int
    profile: str
    pods: int
    seconds: float
    pods_per_s: float
    algorithm_s: float
    in_tree_s: float
    extender_share: float
    extender_server_s: float
    #: CPU ms per scheduled pod of each process over the measured window
    #: (``/proc/<pid>/stat``): kube-scheduler, kube-apiserver, etcd, extender
    cpu_ms_per_pod: dict[str, float] = field(default_factory=dict)


def metric_sum(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples of *name* (with *labels* among theirs) in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in (labels or {}).items()):
            total += float(value)
    return total


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def _create_pods(ns: Namespace, prefix: str, count: int, cpus: int, scheduler: str) -> list[str]:
    names = [f"{prefix}-{i}" for i in range(count)]

    def one(name: str) -> None:
        ns.create_pod(guaranteed_pod(name, cpus, scheduler=scheduler))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, names))
    return names


def _delete_pods(ns: Namespace) -> None:
    ns.delete_pods()
    deadline = time.monotonic() + 120
    while ns.has_pods():
        if time.monotonic() > deadline:
            raise RuntimeError(f"pods of namespace {_NS} not deleted after 120 s")
        time.sleep(0.5)


def _measure(
    cp: ControlPlane,
    name: str,
    config: dict[str, Any],
    profile: str,
    pods: int,
    timeout_s: float,
    pids: dict[str, int],
) -> tuple[float, float, str, dict[str, float]]:
    """Start a scheduler, sample its metrics until *pods* are scheduled; returns
    ``(seconds, pods/s, last metrics text, CPU ms per pod of each process)``: the
    scheduler's and those of *pids* (label -> pid), over the same window as pods/s."""
    proc, port = cp.start_scheduler(name, config)
    assert proc.popen is not None
    watched = {"kube-scheduler": proc.popen.pid, **pids}
    url, ctx = f"https://127.0.0.1:{port}/metrics", _insecure()

    def cpu() -> dict[str, float | None]:
        return {label: cpu_seconds(pid) for label, pid in watched.items()}

    # the scheduler starts with nothing scheduled: a run so short that the first sample
    # already sees every pod is measured from the start
    samples: list[tuple[float, float, dict[str, float | None]]] = [(time.monotonic(), 0.0, cpu())]
    deadline = time.monotonic() + timeout_s
    text = ""
    try:
        while True:
            status, body = http_get(url, ctx, timeout=10.0)
            now = time.monotonic()
            if status == 200:
                text = body.decode()
                done = metric_sum(
                    text, "scheduler_schedule_attempts_total", {"result": "scheduled", "profile": profile}
                )
                samples.append((now, done, cpu()))
                if done >= pods:
                    break
            if now > deadline:
                raise RuntimeError(f"{name}: {samples[-1][1] if samples else 0:.0f}/{pods} pods scheduled")
            time.sleep(0.2)
    finally:
        cp.stop_proc(proc)
    moving = [s for s in samples if s[1] > 0]
    t0, n0, c0 = max((s for s in samples if s[1] == 0), key=lambda s: s[0])
    t1, n1, c1 = moving[-1]
    seconds = max(t1 - t0, 1e-6)
    scheduled = max(n1 - n0, 1.0)
    per_pod: dict[str, float] = {}
    for label in watched:
        start, end = c0[label], c1[label]
        if start is not None and end is not None:
            per_pod[label] = round((end - start) / scheduled * 1e3, 3)
    return seconds, (n1 - n0) / seconds, text, per_pod


def _split(text: str, profile: str) -> tuple[float, float]:
    algorithm = metric_sum(text, "scheduler_scheduling_algorithm_duration_seconds_sum")
    in_tree = sum(
        metric_sum(
            text,
            "scheduler_framework_extension_point_duration_seconds_sum",
            {"extension_point": ep, "profile": profile},
        )
        for ep in _IN_TREE
    )
    return algorithm, in_tree


def run(
    bin_dir: Path,
    work: Path,
    deploy: Path,
    *,
    node_counts: tuple[int, ...],
    pods: int,
    cpus: int,
    add_nodes: AddNodes,
    qps: int = 1000,
    timeout_s: float = 600.0,
    floor: bool = False,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> list[ProfileRun]:
    """Both profiles at each node count (see the module docstring); with *floor*, also the
    shipped configuration against a do-nothing extender (:data:`NOOP_PROFILE`)."""
    from kube.admin import Namespace
    from kube.client import api_client

    results: list[ProfileRun] = []
    with ControlPlane(bin_dir, work) as cp:
        api = api_client(str(cp.admin_kubeconfig()))
        core = Namespace(api, _NS)
        for manifest in ("namespace.yaml", "crd/noderesourcetopologies.yaml"):
            apply_manifest(api, deploy / manifest)
        wait_crd(api, "noderesourcetopologies.topology.node.k8s.io")
        core.create()
        have = 0
        for count in sorted(node_counts):
            log(f"adding nodes {have}..{count - 1} with NRT objects")
            add_nodes(api, [f"node-{i:05d}" for i in range(have, count)])
            have = count
            names = [f"node-{i:05d}" for i in range(count)]
            ext_port = free_port()
            shipped = shipped_scheduler_config(deploy, f"127.0.0.1:{ext_port}", cp.admin_kubeconfig())
            ext = Proc(
                "topolet-extender",
                [
                    sys.executable,
                    "-m",
                    "topolet",
                    *shipped_extender_args(deploy, f"127.0.0.1:{ext_port}"),
                    f"--kubeconfig={cp.admin_kubeconfig()}",
                ],
                work / f"extender-{count}.log",
            ).start()
            try:
                ext_url = f"http://127.0.0.1:{ext_port}{extender_prefix(shipped)}"
                wait_extender_synced(f"{ext_url}/filter", names, 100_000, timeout_s)
                for profile in ("default-scheduler", "topolet-scheduler"):
                    cfg = _profile_config(shipped, profile, qps)
                    results.append(
                        _profile_run(
                            cp,
                            core,
                            count,
                            profile,
                            cfg,
                            pods,
                            cpus,
                            timeout_s,
                            log,
                            ext_port,
                            _pids(cp, ext),
                        )
                    )
            finally:
                ext.stop()
            if floor:
                results.append(_floor_run(cp, core, work, deploy, count, pods, cpus, qps, timeout_s, log))
    return results


def _profile_run(
    cp: ControlPlane,
    core: Namespace,
    count: int,
    profile: str,
    cfg: dict[str, Any],
    pods: int,
    cpus: int,
    timeout_s: float,
    log: Callable[[str], None],
    ext_port: int | None,
    pids: dict[str, int],
    label: str = "",
) -> ProfileRun:
    """Schedule *pods* fresh pods of *profile* with a scheduler of configuration *cfg*;
    *pids* are the other processes whose CPU per pod is reported."""
    label = label or profile
    log(f"{count} nodes, {label}: creating {pods} pods")
    _create_pods(core, f"{label[:7]}-{count}", pods, cpus, profile)
    seconds, rate, text, cpu = _measure(cp, f"sched-{label}-{count}", cfg, profile, pods, timeout_s, pids)
    algorithm, in_tree = _split(text, profile)
    server = 0.0
    if ext_port is not None and profile != "default-scheduler":
        _, body = http_get(f"http://127.0.0.1:{ext_port}/metrics")
        server = sum(
            metric_sum(body.decode(), "topolet_extender_request_duration_seconds_sum", {"verb": v})
            for v in ("filter", "prioritize")
        )
    share = max(algorithm - in_tree, 0.0) / algorithm if algorithm else 0.0
    log(f"  {rate:.1f} pods/s; algorithm {algorithm:.2f} s, in-tree {in_tree:.2f} s")
    _delete_pods(core)
    return ProfileRun(count, label, pods, seconds, rate, algorithm, in_tree, share, server, cpu)


def _floor_run(
    cp: ControlPlane,
    core: Namespace,
    work: Path,
    deploy: Path,
    count: int,
    pods: int,
    cpus: int,
    qps: int,
    timeout_s: float,
    log: Callable[[str], None],
) -> ProfileRun:
    """The shipped configuration against :mod:`bench.noop_extender` (no ``bindVerb``)."""
    port = free_port()
    noop = Proc(
        "noop-extender",
        [sys.executable, "-m", "bench.noop_extender", f"127.0.0.1:{port}"],
        work / f"noop-extender-{count}.log",
    ).start()
    try:
        noop.wait_ready(f"http://127.0.0.1:{port}/healthz", None, 60)
        shipped = shipped_scheduler_config(deploy, f"127.0.0.1:{port}", cp.admin_kubeconfig())
        for extender in shipped.get("extenders", []):
            extender.pop("bindVerb", None)
        cfg = _profile_config(shipped, "topolet-scheduler", qps)
        pids = _pids(cp, noop)
        return _profile_run(
            cp, core, count, "topolet-scheduler", cfg, pods, cpus, timeout_s, log, None, pids, NOOP_PROFILE
        )
    finally:
        noop.stop()


def _pids(cp: ControlPlane, extender: Proc) -> dict[str, int]:
    """The control plane's processes and the extender (label -> pid), for CPU per pod."""
    procs = [p for p in cp.procs if p.name in ("etcd", "kube-apiserver")]
    pids = {p.name: p.popen.pid for p in procs if p.popen is not None}
    if extender.popen is not None:
        pids["extender"] = extender.popen.pid
    return pids


def _profile_config(shipped: dict[str, Any], profile: str, qps: int) -> dict[str, Any]:
    cfg: dict[str, Any] = {**shipped, "leaderElection": {"leaderElect": False}}
    cfg["clientConnection"] = {**shipped["clientConnection"], "qps": qps, "burst": qps}
    if profile == "default-scheduler":
        cfg.pop("extenders", None)
        cfg["profiles"] = [{"schedulerName": "default-scheduler"}]
    return cfg


def as_dicts(results: list[ProfileRun]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
