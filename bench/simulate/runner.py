"""One simulation end to end: build the cluster and trace, run both schedulers, bound, report.

:func:`run` takes a :class:`SimConfig` and returns a JSON-ready report (and writes
``simulate.json`` and the plots into ``out_dir`` when given). Both schedulers see the
same trace on identically built fresh clusters; every random choice comes from
``seed``, so a seed gives the same figures on every run (wall times aside).

With the built-in generator, the arrival rate is set from the cluster: pods arrive so
that the mean CPUs asked for at any time are ``load`` x the cluster's allocatable CPUs
(mean lifetime ``mean_duration_s``), so ``load`` > 1 keeps the cluster under pressure.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.simulate.engine import RunResult, simulate
from bench.simulate.kubelet import KubeletNode
from bench.simulate.lpbound import lp_bound
from bench.simulate.nodes import DEFAULT_MIX, NODE_TYPES, build_topology, hwloc_topologies, node_plan
from bench.simulate.placement import TopologyAware, TopologyBlind
from bench.simulate.trace import SimPod, generate, load_trace, mean_cpus
from scheduler.score import DEFAULT_STRATEGY
from topology.model import Topology

__all__ = ["QUICK", "SimConfig", "build_cluster", "run"]


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate. Defaults: 16 nodes of the default mix, 1000 generated pods."""

    nodes: int = 16
    """Nodes of the built-in types (hwloc snapshots come on top)."""
    mix: tuple[tuple[str, int], ...] = DEFAULT_MIX
    """``(node type, weight)`` pairs splitting ``nodes``."""
    pods: int = 1000
    seed: int = 1
    trace: Path | None = None
    """A YAML trace instead of the generator (format: :mod:`bench.simulate.trace`)."""
    hwloc: Path | None = None
    """An hwloc conformance set: one extra node per usable snapshot."""
    load: float = 1.2
    """Offered CPU load relative to the cluster's allocatable CPUs (generator only)."""
    mean_duration_s: float = 600.0
    retries: int = 0
    retry_delay_s: float = 30.0
    strategy: str = DEFAULT_STRATEGY
    """The extender's scoring strategy."""
    bound: bool = True
    """Solve the LP bound."""
    plots: bool = True
    out_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.pods < 1:
            raise ValueError(f"nodes and pods must be at least 1, got nodes={self.nodes} pods={self.pods}")
        if self.load <= 0 or self.mean_duration_s <= 0:
            raise ValueError("load and mean_duration_s must be > 0")
        if self.retries < 0 or self.retry_delay_s <= 0:
            raise ValueError("retries must be >= 0 and retry_delay_s > 0")


#: The small run ``--quick`` and the demo use: 8 nodes, 300 pods.
QUICK = SimConfig(nodes=8, pods=300)


@dataclass(frozen=True, slots=True)
class Cluster:
    """Node names with their type and topology; ``skipped`` snapshots with the reason."""

    members: tuple[tuple[str, str, Topology], ...]
    skipped: dict[str, str] = field(default_factory=dict)

    def fresh(self) -> list[KubeletNode]:
        """New kubelet models of every node, nothing running."""
        return [KubeletNode(name, topo, node_type=kind) for name, kind, topo in self.members]

    def allocatable_cpus(self) -> int:
        return sum(n.allocatable["cpu"] for n in self.fresh()) // 1000

    def describe(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, kind, _ in self.members:
            out[kind] = out.get(kind, 0) + 1
        return out


def build_cluster(config: SimConfig) -> Cluster:
    """The built-in nodes of *config* (``w-000``...) and its hwloc snapshot nodes."""
    topos = {name: build_topology(spec) for name, spec in NODE_TYPES.items()}
    members = [
        (f"w-{i:03d}", kind, topos[kind]) for i, kind in enumerate(node_plan(config.nodes, config.mix))
    ]
    skipped: dict[str, str] = {}
    if config.hwloc is not None:
        kept, skipped = hwloc_topologies(config.hwloc)
        members += [(f"hwloc-{name}", f"hwloc:{name}", topo) for name, topo in sorted(kept.items())]
    return Cluster(tuple(members), skipped)


def _trace(config: SimConfig, cluster: Cluster) -> list[SimPod]:
    if config.trace is not None:
        return load_trace(config.trace)
    concurrent = config.load * cluster.allocatable_cpus() / mean_cpus()
    gap = config.mean_duration_s / concurrent
    return generate(config.pods, config.seed, mean_gap_s=gap, mean_duration_s=config.mean_duration_s)


def _by_shape(pods: Sequence[SimPod], results: Sequence[RunResult]) -> dict[str, dict[str, Any]]:
    shapes: dict[str, dict[str, Any]] = {}
    for pod in pods:
        shapes.setdefault(pod.shape, {"pods": 0})["pods"] += 1
    for r in results:
        for o in r.outcomes:
            row = shapes[o.shape].setdefault(r.scheduler, {})
            row[o.outcome] = row.get(o.outcome, 0) + 1
    return shapes


def run(config: SimConfig = SimConfig()) -> dict[str, Any]:
    """Simulate, bound and (with ``out_dir``) write the report; returns it as a dict."""
    started = time.perf_counter()
    cluster = build_cluster(config)
    pods = _trace(config, cluster)
    runs = [
        simulate(
            cluster.fresh,
            pods,
            TopologyAware(config.seed, strategy=config.strategy),
            retries=config.retries,
            retry_delay_s=config.retry_delay_s,
        ),
        simulate(
            cluster.fresh,
            pods,
            TopologyBlind(config.seed),
            retries=config.retries,
            retry_delay_s=config.retry_delay_s,
        ),
    ]
    bound = lp_bound(pods, cluster.fresh()) if config.bound else None
    schedulers = {r.scheduler: r.summary() for r in runs}
    if bound is not None:
        for summary in schedulers.values():
            summary["packing_vs_lp_bound"] = round(summary["admitted"] / bound.pods, 4) if bound.pods else 1.0
    report: dict[str, Any] = {
        "config": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items() if k != "out_dir"
        },
        "cluster": {
            "nodes": len(cluster.members),
            "types": cluster.describe(),
            "skipped_snapshots": cluster.skipped,
        },
        "trace": {
            "pods": len(pods),
            "source": str(config.trace) if config.trace else "generator",
            "span_s": round(max(p.arrival_s for p in pods), 1),
        },
        "schedulers": schedulers,
        "lp_bound": asdict(bound) if bound is not None else None,
        "by_shape": _by_shape(pods, runs),
    }
    if config.out_dir is not None:
        from bench.simulate.report import write_report

        report["files"] = write_report(report, runs, config.out_dir, plots=config.plots)
    report["wall_s"] = round(time.perf_counter() - started, 3)
    return report
