"""``topolet simulate``: the kubelet model, the two schedulers, the LP bound, traces, the CLI."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.simulate import QUICK, SimConfig, run
from bench.simulate.kubelet import KubeletNode
from bench.simulate.lpbound import instants, lp_bound
from bench.simulate.nodes import NODE_TYPES, build_topology, node_plan
from bench.simulate.trace import TraceError, load_trace
from scheduler.pod import PodRequest, parse_pod
from topolet import cmd_simulate
from topolet.cli import CommandError

SMALL = replace(QUICK, nodes=6, pods=200, plots=False)


def _pod(*containers: dict[str, str], guaranteed: bool = True) -> PodRequest:
    """A pod of these containers; Guaranteed ones get 1Gi of memory unless they say otherwise."""
    specs = []
    for i, asked in enumerate(containers):
        res = {"memory": "1Gi", **asked} if guaranteed else asked
        body = {"requests": res, "limits": res} if guaranteed else {"requests": res}
        specs.append({"name": f"c{i}", "resources": body})
    return parse_pod({"spec": {"containers": specs}})


def _node(kind: str) -> KubeletNode:
    return KubeletNode("w", build_topology(NODE_TYPES[kind]), node_type=kind)


# ----------------------------------------------------------------- kubelet model
ADMISSION = [
    pytest.param(
        "xeon-e5-2680v3",
        [{"cpu": "16"}, {"cpu": "16"}],
        {"cpu": "12"},
        "TopologyAffinityError",
        id="xeon/6+8-free/asks-12/expect-TopologyAffinityError",
    ),
    pytest.param(
        "xeon-e5-2680v3",
        [{"cpu": "16"}, {"cpu": "16"}],
        {"cpu": "8"},
        None,
        id="xeon/6+8-free/asks-8/expect-admitted",
    ),
    pytest.param(
        "xeon-e5-2680v3",
        [{"cpu": "2", "memory": "60Gi"}, {"cpu": "2", "memory": "60Gi"}],
        {"cpu": "2", "memory": "8Gi"},
        "TopologyAffinityError",
        id="xeon/4Gi-free-per-numa/asks-8Gi/expect-TopologyAffinityError",
    ),
    pytest.param(
        "gpu8-2s64c",
        [{"cpu": "4", "nvidia.com/gpu": "3"}, {"cpu": "4", "nvidia.com/gpu": "3"}],
        {"cpu": "4", "nvidia.com/gpu": "2"},
        "TopologyAffinityError",
        id="gpu8/1+1-gpus-free/asks-2/expect-TopologyAffinityError",
    ),
    pytest.param(
        "gpu8-2s64c",
        [{"cpu": "4", "nvidia.com/gpu": "3"}],
        {"cpu": "4", "nvidia.com/gpu": "4"},
        None,
        id="gpu8/1+4-gpus-free/asks-4/expect-admitted",
    ),
    pytest.param(
        "xeon-e5-2680v3",
        [{"cpu": "20"}, {"cpu": "20"}],
        {"cpu": "8"},
        "OutOfcpu",
        id="xeon/6-free-in-total/asks-8/expect-OutOfcpu",
    ),
]


@pytest.mark.parametrize(("kind", "before", "ask", "reason"), ADMISSION)
def test_kubelet_admits_only_what_fits_one_numa_node(
    kind: str, before: list[dict[str, str]], ask: dict[str, str], reason: str | None
) -> None:
    node = _node(kind)
    for i, res in enumerate(before):
        assert node.admit(_pod(res), f"before-{i}").admitted
    free_before = node.available()
    verdict = node.admit(_pod(ask), "asked")
    assert verdict.reason == reason
    assert verdict.admitted is (reason is None)
    if reason is None:
        assert len(verdict.numa_nodes) == 1
    else:
        assert node.available() == free_before, "a rejected pod must give back what it took"


def test_total_is_enough_but_no_numa_node_is() -> None:
    node = _node("xeon-e5-2680v3")
    node.admit(_pod({"cpu": "16"}), "a")
    node.admit(_pod({"cpu": "16"}), "b")
    free = sum(row["cpu"] for row in node.available().values()) // 1000
    assert free >= 12 and node.misfit(_pod({"cpu": "12"})) is None
    assert node.admit(_pod({"cpu": "12"}), "c").reason == "TopologyAffinityError"


def test_release_returns_everything() -> None:
    node = _node("gpu8-2s64c")
    fresh = node.available()
    pod = _pod({"cpu": "8", "memory": "32Gi", "hugepages-1Gi": "4Gi", "nvidia.com/gpu": "2"}, {"cpu": "1"})
    assert node.admit(pod, "p").admitted
    assert node.available() != fresh
    node.release("p")
    assert node.available() == fresh
    assert node.requested == dict.fromkeys(node.requested, 0)


def test_burstable_pods_take_node_requests_but_no_exclusive_cpus() -> None:
    node = _node("xeon-e5-2680v3")
    fresh = node.available()
    assert node.admit(_pod({"cpu": "500m", "memory": "1Gi"}, guaranteed=False), "b").admitted
    assert node.available() == fresh
    assert node.requested["cpu"] == 500
    node.release("b")
    assert node.requested["cpu"] == 0


# ------------------------------------------------------------- whole runs
@pytest.fixture(scope="module")
def small_report() -> dict[str, Any]:
    """One small seeded run (both schedulers and the LP bound), shared by the run tests."""
    return run(SMALL)


def test_topolet_has_no_topology_affinity_errors_where_the_baseline_has(small_report: dict[str, Any]) -> None:
    topolet, blind = small_report["schedulers"]["topolet"], small_report["schedulers"]["topology-blind"]
    assert blind["topology_affinity_errors"] > 0
    assert topolet["topology_affinity_errors"] == 0


def test_lp_bound_is_at_least_what_either_scheduler_admitted(small_report: dict[str, Any]) -> None:
    bound = small_report["lp_bound"]["pods"]
    for summary in small_report["schedulers"].values():
        assert summary["admitted"] <= bound
        assert 0 < summary["packing_vs_lp_bound"] <= 1


def test_a_seed_gives_the_same_figures(small_report: dict[str, Any]) -> None:
    def figures(report: dict[str, Any]) -> dict[str, Any]:
        return {
            name: {k: v for k, v in s.items() if k != "wall_s"} for name, s in report["schedulers"].items()
        }

    again = run(SMALL)
    assert figures(again) == figures(small_report)
    assert again["lp_bound"]["pods"] == small_report["lp_bound"]["pods"]
    other = run(replace(SMALL, seed=2, bound=False))
    assert figures(other) != figures(small_report)


# ------------------------------------------------------------------ LP bound
def _trace(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "trace.yaml"
    path.write_text(body, encoding="utf-8")
    return path


THREE_BIG = """
pods:
  - {name: a, arrival_s: 0, duration_s: 100, containers: [{name: app, cpu: "20"}]}
  - {name: b, arrival_s: 1, duration_s: 100, containers: [{name: app, cpu: "20"}]}
  - {name: c, arrival_s: 2, duration_s: 100, containers: [{name: app, cpu: "20"}]}
  - {name: d, arrival_s: 200, duration_s: 10, containers: [{name: app, cpu: "20"}]}
"""


def test_lp_bound_counts_what_one_node_can_hold_at_once(tmp_path: Path) -> None:
    pods = load_trace(_trace(tmp_path, THREE_BIG))
    node = [_node("xeon-e5-2680v3")]
    assert instants(pods) == [2.0, 200.0]
    bound = lp_bound(pods, node)
    assert bound.pods == 3  # two of a, b, c (46 allocatable CPUs hold 2.3 of them), then d


# --------------------------------------------------------------------- traces
BAD_TRACES = [
    pytest.param("pods: []", "pods", id="empty-pods"),
    pytest.param("pods: [{arrival_s: 0, duration_s: 1}]", "pods[0].containers", id="no-containers"),
    pytest.param(
        "pods: [{arrival_s: -1, duration_s: 1, containers: [{name: a}]}]",
        "pods[0].arrival_s",
        id="negative-arrival",
    ),
    pytest.param(
        "pods: [{arrival_s: 0, duration_s: 0, containers: [{name: a}]}]",
        "pods[0].duration_s",
        id="zero-duration",
    ),
    pytest.param(
        "pods: [{arrival_s: 0, duration_s: 1, containers: [{name: a, cpu: two}]}]",
        "pods[0].containers[0].cpu",
        id="bad-cpu-quantity",
    ),
    pytest.param(
        "pods: [{arrival_s: 0, duration_s: 1, containers: [{name: a, gpu: 1}]}]",
        "pods[0].containers[0].gpu",
        id="unknown-resource",
    ),
    pytest.param(
        "pods: [{arrival_s: 0, duration_s: 1, qos: BestEffort, containers: [{name: a}]}]",
        "pods[0].qos",
        id="bad-qos",
    ),
    pytest.param(
        "pods: [{arrival_s: 0, duration_s: 1, containers: [{cpu: '1'}]}]",
        "pods[0].containers[0].name",
        id="container-without-name",
    ),
]


@pytest.mark.parametrize(("body", "field"), BAD_TRACES)
def test_trace_errors_name_the_field(tmp_path: Path, body: str, field: str) -> None:
    with pytest.raises(
        TraceError, match=rf"^{__import__('re').escape(field)}\b|: {__import__('re').escape(field)}\b"
    ):
        load_trace(_trace(tmp_path, body))


def test_trace_pods_come_sorted_by_arrival_with_their_qos(tmp_path: Path) -> None:
    pods = load_trace(
        _trace(
            tmp_path,
            """
pods:
  - {name: late, arrival_s: 5, duration_s: 1, qos: Burstable, containers: [{name: a, cpu: 500m}]}
  - name: early
    arrival_s: 1
    duration_s: 1
    containers: [{name: a, cpu: 2, memory: 1Gi, nvidia.com/gpu: 1}]
""",
        )
    )
    assert [p.name for p in pods] == ["early", "late"]
    assert [p.request.qos.value for p in pods] == ["Guaranteed", "Burstable"]


# ------------------------------------------------------------------ nodes, CLI
def test_node_plan_splits_by_weight() -> None:
    plan = node_plan(16)
    assert {k: plan.count(k) for k in set(plan)} == {
        "xeon-e5-2680v3": 8,
        "gpu8-2s64c": 4,
        "epyc-7763-nps4": 4,
    }


def _cli(argv: list[str]) -> Callable[[], int]:
    parser = argparse.ArgumentParser()
    cmd_simulate.register(parser.add_subparsers())
    args = parser.parse_args(["simulate", *argv])
    return lambda: int(args.func(args))


def test_cli_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert _cli(["--quick", "--nodes", "4", "--pods", "60", "--json", "--out", str(out)])() == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["schedulers"]) == {"topolet", "topology-blind"}
    assert (out / "simulate.json").is_file()
    assert (out / "simulate-timeline.png").stat().st_size > 0
    assert (out / "simulate-outcomes.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--node-type", "pentium"], "unknown node type 'pentium'", id="unknown-node-type"),
        pytest.param(["--node-type", "xeon-e5-2680v3:0"], "positive integer", id="zero-weight"),
        pytest.param(["--strategy", "fastest"], "scoring strategy 'fastest'", id="unknown-strategy"),
    ],
)
def test_cli_user_errors(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        _cli([*argv, "--quick", "--pods", "5", "--no-plots", "--out", str(tmp_path)])()


def test_sim_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="nodes and pods"):
        SimConfig(nodes=0)
