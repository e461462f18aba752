"""The fragmentation churn benchmark: traces, replays and the ``bench fragmentation`` parser."""

from __future__ import annotations

import argparse
import json

import pytest
from rich.console import Console

from bench import fragmentation
from topolet.bench_fragmentation import register_fragmentation


def test_machine_is_the_seed_node() -> None:
    topo = fragmentation.dual_socket_48()
    assert (topo.num_cpus, topo.num_sockets, topo.num_numa_nodes, topo.threads_per_core()) == (48, 2, 2, 2)
    assert str(topo.cpus_in_sockets(0)) == "0-11,24-35"


def test_trace_is_seeded_and_releases_only_live_containers() -> None:
    trace = fragmentation.make_trace(3, 400)
    assert trace == fragmentation.make_trace(3, 400)
    assert trace != fragmentation.make_trace(4, 400)
    live: set[str] = set()
    for event in trace:
        if event.kind == "alloc":
            assert event.size in fragmentation.SIZES and event.container not in live
            live.add(event.container)
        else:
            live.remove(event.container)


def test_an_empty_machine_always_has_a_whole_socket() -> None:
    topo = fragmentation.dual_socket_48()
    trace = [fragmentation.Event("alloc", "a", 4), fragmentation.Event("release", "a", 0)]
    for choice in fragmentation.CHOICES:
        result = fragmentation.replay(topo, trace, choice)
        assert (result.samples, result.whole_socket_points, result.failed_allocations) == (2, 2, 0)


def test_overload_counts_failed_allocations() -> None:
    topo = fragmentation.dual_socket_48()
    trace = [fragmentation.Event("alloc", f"c{i}", 8) for i in range(7)]
    result = fragmentation.replay(topo, trace, "kubelet")
    assert result.failed_allocations == 1
    assert result.whole_socket_points == 3  # after 1, 2 and 3 containers one socket is free


def test_run_replays_each_seed_with_both_choices() -> None:
    report = fragmentation.run(seeds=2, steps=300)
    assert [(r.seed, r.choice) for r in report.runs] == [
        (0, "kubelet"),
        (0, "fragmentation-aware"),
        (1, "kubelet"),
        (1, "fragmentation-aware"),
    ]
    assert [s.samples for s in report.summary] == [2 * 270, 2 * 270]
    by_choice = {s.choice: s for s in report.summary}
    # Same trace, same CPU counts: failures agree; only kubelet splits fitting requests.
    assert by_choice["kubelet"].failed_allocations == by_choice["fragmentation-aware"].failed_allocations
    assert by_choice["fragmentation-aware"].split_allocations < by_choice["kubelet"].split_allocations
    doc = json.loads(json.dumps(fragmentation.as_dicts(report)))
    assert {s["choice"] for s in doc["summary"]} == set(fragmentation.CHOICES)
    console = Console(record=True, width=160)
    console.print(fragmentation.render_table(report))
    assert "fragmentation-aware" in console.export_text()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench")
    register_fragmentation(parser.add_subparsers())
    return parser


def test_parser_options() -> None:
    args = _parser().parse_args(["fragmentation", "--seeds", "2", "--steps", "50", "--json"])
    assert (args.seeds, args.steps, args.json, args.load) == (2, 50, True, 0.5)


@pytest.mark.parametrize(
    "argv",
    [["--seeds", "0"], ["--steps", "x"], ["--load", "1.5"]],
    ids=["zero-seeds", "steps-not-a-number", "load-above-one"],
)
def test_parser_rejects_bad_values(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["fragmentation", *argv])


def test_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["fragmentation", "--seeds", "1", "--steps", "60", "--json"])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["steps"] == 60 and len(doc["runs"]) == 2
