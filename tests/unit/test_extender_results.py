"""The per-row result caches never serve a stale verdict or score.

One long-lived :class:`ExtenderCore` (its caches kept across calls) answers a stream
of filter and prioritize calls while the cluster changes between them: NRT updates,
reservations, deletions, new nodes (which reuse the rows of deleted ones). After every
change its answers must equal those of a core with no columns and no caches (the
per-node reference path) over the same NRT cache, under both refresh modes: every
stale row vectorised (``small_refresh=0``) and the default mix of per-node refreshes
and whole-cluster passes. The pre-encoded replies must decode to the dict replies.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.cache import NRTCache
from scheduler.pod import PodRequest, parse_pod
from scheduler.results import ResultCache, RowTable
from scheduler.service import ExtenderCore
from scheduler.wire import PriorityEncoder, parse_extender_args
from tests.unit.test_extender_fastpath_batch import PerNodeCache, nodes, pods
from topology.nrt import NodeResourceTopology

NAMES = tuple(f"w{i}" for i in range(8))


@st.composite
def changes(draw: st.DrawFn) -> tuple[str, str, Any]:
    kind = draw(st.sampled_from(["upsert", "upsert", "reserve", "delete", "release"]))
    name = draw(st.sampled_from(NAMES))
    if kind == "upsert":
        return kind, name, draw(nodes(name))
    if kind == "reserve":
        return kind, name, {draw(st.integers(0, 7)): {"cpu": 1000 * draw(st.integers(1, 3))}}
    return kind, name, None


def _apply(cache: NRTCache, change: tuple[str, str, Any]) -> None:
    kind, name, value = change
    if kind == "upsert":
        cache.upsert(value)
    elif kind == "reserve":
        cache.reserve(name, f"pod-{name}", value)
    elif kind == "delete":
        cache.delete(name)
    else:
        cache.release_pod(f"pod-{name}")


@pytest.mark.parametrize("small_refresh", [0, 16], ids=["all-vectorised", "default-refresh"])
@settings(max_examples=40, deadline=None)
@given(
    start=st.lists(st.sampled_from(NAMES), unique=True, min_size=1).flatmap(
        lambda names: st.tuples(*[nodes(n) for n in names])
    ),
    shapes=st.lists(pods(), min_size=1, max_size=3),
    steps=st.lists(st.tuples(changes(), st.integers(0, 2)), min_size=1, max_size=8),
)
def test_cached_answers_follow_every_change(
    small_refresh: int,
    start: tuple[NodeResourceTopology, ...],
    shapes: list[PodRequest],
    steps: list[tuple[tuple[str, str, Any], int]],
) -> None:
    cache = NRTCache(clock=lambda: 0.0)
    for nrt in start:
        cache.upsert(nrt)
    cached = ExtenderCore(cache, small_refresh=small_refresh)
    reference = ExtenderCore(PerNodeCache(cache))  # type: ignore[arg-type]
    names = (*NAMES, "no-nrt")
    for pod in shapes:  # warm the tables
        cached.run_filter(pod, names)
        cached.scores(pod, names)
    for change, which in steps:
        _apply(cache, change)
        pod = shapes[which % len(shapes)]
        assert cached.run_filter(pod, names) == reference.run_filter(pod, names)
        assert cached.scores(pod, names) == reference.scores(pod, names)


def _node(name: str, cpus: int, *, policy: str = "single-numa-node") -> NodeResourceTopology:
    return NodeResourceTopology.from_dict(
        {
            "metadata": {"name": name},
            "attributes": [{"name": "topologyManagerPolicy", "value": policy}],
            "zones": [
                {
                    "name": f"node-{n}",
                    "type": "Node",
                    "costs": [{"name": f"node-{o}", "value": 10 if o == n else 21} for o in (0, 1)],
                    "resources": [
                        {"name": "cpu", "capacity": 8, "allocatable": 8, "available": cpus},
                        {"name": "memory", "capacity": 1 << 34, "allocatable": 1 << 34, "available": 1 << 34},
                    ],
                }
                for n in (0, 1)
            ],
        }
    )


POD = parse_pod(
    {
        "metadata": {"name": "p", "uid": "u"},
        "spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "4", "memory": "1Gi"}}}]},
    }
)


@pytest.mark.parametrize("small_refresh", [0, 16], ids=["all-vectorised", "default-refresh"])
def test_a_stale_verdict_is_never_served_after_an_update(small_refresh: int) -> None:
    cache = NRTCache(clock=lambda: 0.0)
    many = [f"n{i:03d}" for i in range(40)]  # more rows than a per-node refresh takes
    for name in many:
        cache.upsert(_node(name, 8))
    core = ExtenderCore(cache, small_refresh=small_refresh)
    names = tuple(many)
    assert core.run_filter(POD, names).passed == list(names)
    one_zone = core.scores(POD, names)[7]
    cache.upsert(_node("n007", 3))  # a newer NRT object: no zone holds 4 CPUs any more
    outcome = core.run_filter(POD, names)
    assert "n007" in outcome.failed and "n007" not in outcome.passed
    assert outcome.failed["n007"].endswith("no single NUMA node has cpu 4 (node-0: 3, node-1: 3)")
    assert core.scores(POD, names)[7] < one_zone
    cache.upsert(_node("n007", 8))
    assert core.run_filter(POD, names).passed == list(names)
    cache.reserve("n010", "other", {0: {"cpu": 6000}, 1: {"cpu": 6000}})
    assert list(core.run_filter(POD, names).failed) == ["n010"]
    cache.delete("n010")  # no NRT object: the node passes
    cache.upsert(_node("fresh", 1))  # reuses n010's row
    outcome = core.run_filter(POD, (*names, "fresh"))
    assert "n010" in outcome.passed and list(outcome.failed) == ["fresh"]


def test_the_cache_keeps_shapes_apart_and_forgets_past_its_limit() -> None:
    cache = ResultCache(max_shapes=2)
    a, b = cache.table("filter", ("a",)), cache.table("prioritize", ("a",))
    assert a is not b and a is cache.table("filter", ("a",))
    cache.table("filter", ("c",))
    assert len(cache) == 1 and cache.table("filter", ("a",)) is not a


def test_row_table_serves_only_matching_generations() -> None:
    import numpy as np

    table = RowTable()
    rows = np.array([3, 1], dtype=np.int64)
    table.store(rows, np.array([7, 9]), np.array([5, 6]), {})
    values, stale, _ = table.lookup(np.array([1, 3, 2]), np.array([9, 8, 0]))
    assert values[0] == 6 and stale.tolist() == [1, 2]


def _body(pod: dict[str, Any], names: list[str]) -> Any:
    return parse_extender_args({"Pod": pod, "Nodes": None, "NodeNames": names})


def test_encoded_replies_decode_to_the_dict_replies() -> None:
    cache = NRTCache(clock=lambda: 0.0)
    for i, cpus in enumerate((8, 3, 4, 0)):
        cache.upsert(_node(f"w{i}", cpus))
    cache.upsert(_node("r", 1, policy="restricted"))
    core = ExtenderCore(cache)
    raw = {
        "metadata": {"name": "p", "namespace": "d", "uid": "u"},
        "spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "4", "memory": "1Gi"}}}]},
    }
    request = _body(raw, ["w0", "w1", "w2", "w3", "r", "no-nrt", 'q"uote'])
    encoded = core.filter_json(request)
    assert json.loads(encoded.body) == core.filter(request)
    assert (encoded.passed, encoded.failed, encoded.unresolvable) == (4, 3, 0)
    assert json.loads(core.prioritize_json(request)) == core.prioritize(request)


@pytest.mark.parametrize(
    ("names", "scores"),
    [
        pytest.param(["a", "b"], [0, 10], id="bounds"),
        pytest.param(["ü", 'x"y'], [3, 7], id="escaped-names"),
        pytest.param([], [], id="empty"),
        pytest.param(["a"], [12], id="clamped-high"),
    ],
)
def test_priority_encoder_matches_json_dumps(names: list[str], scores: list[int]) -> None:
    want = [{"Host": n, "Score": min(max(s, 0), 10)} for n, s in zip(names, scores, strict=True)]
    got = PriorityEncoder().encode(names, scores)
    assert got == json.dumps(want, separators=(",", ":")).encode()


def test_a_wide_restricted_fit_left_to_the_per_node_path_is_one_plain_rejection() -> None:
    """GPUs 3 on allocatable 1 + 2: the narrowest set is two zones, which the columns
    leave to the per-node path; its rejection must not also be reported as unresolvable."""

    def res(name: str, alloc: int) -> dict[str, Any]:
        return {"name": name, "capacity": alloc, "allocatable": alloc, "available": 0}

    node = NodeResourceTopology.from_dict(
        {
            "metadata": {"name": "w0"},
            "attributes": [{"name": "topologyManagerPolicy", "value": "restricted"}],
            "zones": [
                {"name": f"node-{n}", "type": "Node", "resources": [res("cpu", 0), res("nvidia.com/gpu", g)]}
                for n, g in ((0, 1), (1, 2))
            ],
        }
    )
    cache = NRTCache(clock=lambda: 0.0)
    cache.upsert(node)
    pod = parse_pod(
        {"spec": {"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "3"}}}]}}
    )
    outcome = ExtenderCore(cache, small_refresh=0).run_filter(pod, ("w0",))
    assert outcome == ExtenderCore(PerNodeCache(cache)).run_filter(pod, ("w0",))  # type: ignore[arg-type]
    assert list(outcome.failed) == ["w0"] and outcome.unresolvable == {}


def test_prioritize_after_filter_reuses_survivor_rows_only_while_they_hold() -> None:
    cache = NRTCache(clock=lambda: 0.0)
    for i in range(30):
        cache.upsert(_node(f"w{i:02d}", 8 if i % 3 else 5))
    core = ExtenderCore(cache)
    raw = {
        "metadata": {"name": "p", "namespace": "d", "uid": "u"},
        "spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "6", "memory": "1Gi"}}}]},
    }
    names = [f"w{i:02d}" for i in range(30)]
    survivors = json.loads(core.filter_json(_body(raw, names)).body)["NodeNames"]
    assert len(survivors) == 20
    request = _body(raw, survivors)
    assert json.loads(core.prioritize_json(request)) == core.prioritize(request)
    cache.delete("w01")  # its row goes to another node: the kept rows no longer hold
    cache.upsert(_node("x", 8))
    reply = json.loads(core.prioritize_json(request))
    assert reply == core.prioritize(request)
    assert {"Host": "w01", "Score": 0} in reply  # no NRT object any more: the no-data score


def test_a_new_shape_fills_its_table_over_a_few_requests_with_bounded_work_each() -> None:
    """More stale candidates than ``small`` go to one vectorised pass with at most
    ``EXTRA_REFRESH`` other rows of the cluster: the first pod of a shape never pays for
    the whole cluster, its answers equal the per-node ones, and the table is (nearly)
    full after a few requests."""
    import random

    import numpy as np

    from bench.extender import build_cluster, pod_shapes
    from scheduler.decide import EXTRA_REFRESH, cached_filter, warm_filter
    from scheduler.engine import fast_verdict
    from scheduler.views import compile_pod

    nrts = build_cluster(2000, seed=3)
    cache = NRTCache()
    for nrt in nrts:
        cache.upsert(nrt)
    columns = cache.fresh_columns()
    all_rows, _ = columns.live()
    pod = parse_pod(
        {
            "metadata": {"name": "p", "namespace": "d", "uid": "u"},
            "spec": {"containers": pod_shapes()[2]},
        }
    )
    compiled = compile_pod(pod, "kubelet")
    table = RowTable(rejects=True)

    def per_node(name: str) -> tuple[bool, str, bool]:
        v = fast_verdict(compiled, cache.view(name))
        return v.fits, v.message, v.unresolvable

    def filled() -> int:
        _, stale, _ = table.lookup(all_rows, columns.generations(all_rows))
        return len(all_rows) - len(stale)

    rng = random.Random(7)
    names = rng.sample([n.name for n in nrts], 100)
    answer = cached_filter(compiled, names, columns, table, per_node)
    assert 100 <= filled() <= 100 + EXTRA_REFRESH
    expected = [per_node(n)[0] for n in names]
    assert (answer.verdict == 1).tolist() == expected
    for _ in range(4):
        before = filled()
        answer = cached_filter(compiled, rng.sample([n.name for n in nrts], 100), columns, table, per_node)
        assert filled() - before <= 100 + EXTRA_REFRESH
    assert answer.incomplete  # still meeting many stale rows: idle time should fill the rest
    assert filled() < len(all_rows)
    # Idle time: bounded steps fill the rest.
    left = len(all_rows) - filled()
    while left:
        before = filled()
        now_left = warm_filter(compiled, columns, table, per_node, budget=300)
        assert filled() - before == min(300, left) and now_left == left - min(300, left)
        left = now_left
    assert filled() == len(all_rows)
    again = cached_filter(compiled, rng.sample([n.name for n in nrts], 100), columns, table, per_node)
    assert not again.incomplete
    full = cached_filter(compiled, [n.name for n in nrts], columns, table, per_node)
    assert np.array_equal(full.verdict == 1, np.array([per_node(n.name)[0] for n in nrts]))
