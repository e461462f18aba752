"""Topology hints beyond kubelet's own cases: memory/hugepage hints, CPU hints with
reusable CPUs and sparse NUMA ids, the policy and scope registries, option parsing, and
properties of the merge checked on random hint lists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from types import MappingProxyType
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology import hints as hints_module
from topology import numa_bitmask as nb
from topology.cpuset import CPUSet
from topology.errors import TopologyError
from topology.hint_errors import (
    HintRequestError,
    NUMALimitError,
    NUMAMaskError,
    PolicyOptionError,
    UnknownPolicyError,
    UnknownScopeError,
)
from topology.hints import (
    POLICIES,
    TOPOLOGY_AFFINITY_ERROR,
    HintMerger,
    NUMAInfo,
    PolicyOptions,
    ProviderHints,
    TopologyHint,
    cpu_topology_hints,
    filter_providers_hints,
    hugepage_topology_hints,
    max_of_min_affinity_counts,
    memory_topology_hints,
    merge_hints,
    new_policy,
    new_scope,
    pod_effective_request,
)
from topology.model import Core, HugePages, NumaNode, Package, Topology

P = CPUSet.parse
G = 1 << 30


def H(nodes: Sequence[int] | None, preferred: bool = True) -> TopologyHint:
    return TopologyHint.on(nodes, preferred=preferred)


def hints_str(hints: Sequence[TopologyHint]) -> list[str]:
    return [str(h) for h in hints]


def sparse_topology() -> Topology:
    """Sockets 0 and 3, NUMA nodes 0 and 8; node 0 = CPUs 2-5,10-13, node 8 = 6-9,14-17;
    core k = {k, k+8}. Node 0 has 8 free of 16 2Mi pages, node 8 has no 2Mi pool."""
    s0, s3 = P("2-5,10-13"), P("6-9,14-17")
    cores = [Core(c, c, 0 if c < 6 else 3, CPUSet.of(c, c + 8)) for c in range(2, 10)]
    return Topology.build(
        packages=[Package(0, s0, 0), Package(3, s3, 3)],
        numa_nodes=[
            NumaNode(0, s0, 64 * G, MappingProxyType({2048: HugePages(2048, 16, 8)}), {0: 10, 8: 21}),
            NumaNode(8, s3, 64 * G, MappingProxyType({1048576: HugePages(1048576, 4, 4)}), {0: 21, 8: 10}),
        ],
        cores=cores,
    )


# --------------------------------------------------------------------------- memory hints


@pytest.mark.parametrize(
    ("requests", "free", "allocatable", "groups", "expected"),
    [
        pytest.param(
            {"memory": 2 * G},
            {0: {"memory": 4 * G}, 1: {"memory": 4 * G}},
            None,
            None,
            ["{0}:T", "{1}:T", "{0,1}:F"],
            id="fits-one-node/both-single-nodes-preferred",
        ),
        pytest.param(
            {"memory": 6 * G},
            {0: {"memory": 4 * G}, 1: {"memory": 4 * G}},
            None,
            None,
            ["{0,1}:T"],
            id="needs-two-nodes/only-the-pair",
        ),
        pytest.param(
            # allocatable 4G per node: one node could hold 2G, so size 1 is preferred;
            # node 0 has only 1G free, so {0} is no hint and {0,1} is not preferred.
            {"memory": 2 * G},
            {0: {"memory": 1 * G}, 1: {"memory": 4 * G}},
            {0: {"memory": 4 * G}, 1: {"memory": 4 * G}},
            None,
            ["{1}:T", "{0,1}:F"],
            id="preference-from-allocatable/hints-from-free",
        ),
        pytest.param(
            # 1G free on each node: only the pair has 2G free, but one node's allocatable
            # could hold it, so the pair is not preferred (restricted would reject).
            {"memory": 2 * G},
            {0: {"memory": 1 * G}, 1: {"memory": 1 * G}},
            {0: {"memory": 4 * G}, 1: {"memory": 4 * G}},
            None,
            ["{0,1}:F"],
            id="fragmented/only-non-preferred-pair",
        ),
        pytest.param(
            {"memory": 9 * G},
            {0: {"memory": 4 * G}, 1: {"memory": 4 * G}},
            None,
            None,
            [],
            id="too-big/empty-list",
        ),
        pytest.param(
            {"memory": 1 * G},
            {0: {"memory": 4 * G}, 1: {"memory": 4 * G}},
            None,
            {0: frozenset({0, 1}), 1: frozenset({0, 1})},
            ["{0,1}:F"],
            id="nodes-grouped/only-the-group",
        ),
        pytest.param(
            {"memory": 1 * G},
            {0: {"memory": 4 * G}, 1: {"memory": 4 * G}, 2: {"memory": 4 * G}},
            None,
            {0: frozenset({0})},
            ["{0}:T", "{1}:T", "{2}:T", "{1,2}:F"],
            id="single-node-allocation/never-joins-a-group",
        ),
        pytest.param(
            {"memory": 1 * G, "hugepages-2Mi": 4 << 21},
            {0: {"memory": 8 * G}, 8: {"memory": 8 * G, "hugepages-2Mi": 8 << 21}},
            None,
            None,
            ["{8}:T", "{0,8}:F"],
            id="memory-and-hugepages/sparse-ids/both-must-fit",
        ),
    ],
)
def test_memory_topology_hints(
    requests: dict[str, int],
    free: dict[int, dict[str, int]],
    allocatable: dict[int, dict[str, int]] | None,
    groups: dict[int, frozenset[int]] | None,
    expected: list[str],
) -> None:
    got = memory_topology_hints(requests, free, allocatable=allocatable, groups=groups)
    assert set(got) == set(requests)
    for hints in got.values():
        assert hints_str(hints) == expected


def test_memory_hints_without_requests_have_no_preference() -> None:
    assert memory_topology_hints({}, {0: {"memory": G}}) == {}


@pytest.mark.parametrize(
    ("size_kb", "pages", "expected"),
    [
        pytest.param(2048, 8, ["{0}:T", "{0,8}:F"], id="2Mi/all-free-pages-of-node-0"),
        pytest.param(2048, 9, [], id="2Mi/more-than-free"),
        pytest.param(1048576, 2, ["{8}:T", "{0,8}:F"], id="1Gi/only-node-8-has-the-pool"),
    ],
)
def test_hugepage_topology_hints(size_kb: int, pages: int, expected: list[str]) -> None:
    assert hints_str(hugepage_topology_hints(sparse_topology(), size_kb=size_kb, pages=pages)) == expected


def test_hugepage_hints_need_free_counts() -> None:
    topo = Topology.build(
        packages=[Package(0, P("0-1"), 0)],
        numa_nodes=[NumaNode(0, P("0-1"), None, MappingProxyType({2048: HugePages(2048, 4, None)}))],
        cores=[Core(0, 0, 0, P("0-1"))],
    )
    with pytest.raises(HintRequestError, match="free hugepages-2Mi"):
        hugepage_topology_hints(topo, size_kb=2048, pages=1)


# --------------------------------------------------------------------------- CPU hints


@pytest.mark.parametrize(
    ("available", "reusable", "wanted", "expected"),
    [
        pytest.param("2-17", "", 4, ["{0}:T", "{8}:T", "{0,8}:F"], id="sparse-ids/empty-machine"),
        pytest.param("2-3,6-17", "", 8, ["{8}:T", "{0,8}:F"], id="sparse-ids/node-0-partly-used"),
        pytest.param("2-3,6-7", "", 4, ["{0,8}:F"], id="sparse-ids/fragmented/only-non-preferred"),
        pytest.param("6-9", "2", 4, ["{0,8}:F"], id="reusable-on-node-0/forces-node-0-in"),
        pytest.param("2-4,6-9", "5", 4, ["{0}:T", "{0,8}:F"], id="reusable-counts-towards-request"),
        pytest.param("2-17", "", 17, [], id="more-than-the-machine/empty-list"),
        pytest.param("2-17", "", 9, ["{0,8}:T"], id="needs-both-nodes/preferred-pair"),
    ],
)
def test_cpu_topology_hints(available: str, reusable: str, wanted: int, expected: list[str]) -> None:
    got = cpu_topology_hints(sparse_topology(), P(available), P(reusable), wanted)
    assert hints_str(got) == expected


@pytest.mark.parametrize(
    ("available", "wanted", "match"),
    [
        pytest.param("0-3", 1, "'0-1' are not CPUs of this topology", id="unknown-cpus"),
        pytest.param("2-3", -1, "non-negative integer", id="negative-request"),
    ],
)
def test_cpu_topology_hints_reject_bad_input(available: str, wanted: int, match: str) -> None:
    with pytest.raises(HintRequestError, match=match):
        cpu_topology_hints(sparse_topology(), P(available), CPUSet(), wanted)


@pytest.mark.parametrize(
    ("init", "app", "expected"),
    [
        pytest.param([], [2, 3], 5, id="apps-only/sum"),
        pytest.param([(8, False)], [2, 3], 8, id="big-init/peak-wins"),
        pytest.param([(4, False), (6, False)], [1], 6, id="inits-run-one-at-a-time/max"),
        pytest.param([(2, True), (4, False)], [1], 6, id="sidecar-runs-beside-later-init"),
        pytest.param([(4, False), (2, True)], [3], 5, id="sidecar-after-init/adds-to-apps"),
    ],
)
def test_pod_effective_request(init: list[tuple[int, bool]], app: list[int], expected: int) -> None:
    assert pod_effective_request(init=init, app=app) == expected


# --------------------------------------------------------------------------- masks


def test_iterate_masks_by_size_then_lexicographic_over_sparse_ids() -> None:
    got = [sorted(nb.ids_of(m)) for m in nb.iterate_masks([8, 0, 3])]
    assert got == [[0], [3], [8], [0, 3], [0, 8], [3, 8], [0, 3, 8]]


@pytest.mark.parametrize(
    ("a", "b", "narrower"),
    [
        pytest.param([0], [0, 1], True, id="fewer-nodes"),
        pytest.param([1, 2], [0, 3], True, id="same-count/smaller-value"),
        pytest.param([0, 3], [1, 2], False, id="same-count/larger-value"),
        pytest.param([63, 64], [0, 1, 2], True, id="ids-beyond-63"),
    ],
)
def test_is_narrower(a: list[int], b: list[int], narrower: bool) -> None:
    assert nb.is_narrower(nb.mask_of(a), nb.mask_of(b)) is narrower


@pytest.mark.parametrize("bad", [-1, True, "1"], ids=["negative", "bool", "string"])
def test_bad_numa_ids_are_rejected(bad: object) -> None:
    with pytest.raises(NUMAMaskError, match="non-negative integers"):
        nb.mask_of([bad])  # type: ignore[list-item]


# --------------------------------------------------------------------------- merge


@pytest.mark.parametrize(
    ("policy", "providers", "expected", "admit"),
    [
        pytest.param(
            "single-numa-node",
            [{"cpu": [H([8]), H([0, 8], False)]}, {"gpu": [H([8])]}],
            "{8}:T",
            True,
            id="single-numa-node/sparse-ids/aligned-on-node-8",
        ),
        pytest.param(
            "single-numa-node",
            [{"cpu": [H([0, 8])]}],
            "{nil}:F",
            False,
            id="single-numa-node/only-multi-node-hints/rejected",
        ),
        pytest.param(
            "restricted",
            [{"cpu": [H([0]), H([0, 8], False)]}, {"gpu": [H([8])]}],
            "{8}:F",
            False,
            id="restricted/cpu-on-0-gpu-on-8/rejected",
        ),
        pytest.param(
            "best-effort",
            [{"cpu": [H([0]), H([0, 8], False)]}, {"gpu": [H([8])]}],
            "{8}:F",
            True,
            id="best-effort/cpu-on-0-gpu-on-8/admitted-unaligned",
        ),
        pytest.param("none", [{"cpu": []}], "{nil}:F", True, id="none/always-admits-without-hint"),
    ],
)
def test_merge_on_sparse_nodes(
    policy: str, providers: list[ProviderHints], expected: str, admit: bool
) -> None:
    hint, ok = merge_hints(providers, NUMAInfo((0, 8)), policy)
    assert (str(hint), ok) == (expected, admit)


@pytest.mark.parametrize(
    ("closest", "expected"),
    [
        # narrowest: {1,2}=6 beats {2,3}=12 by integer value.
        pytest.param(False, "{1,2}:F", id="narrowest/lowest-value"),
        # closest: avg({1,2}) = (10+12+12+10)/4 = 11; avg({2,3}) = (10+11+11+10)/4 = 10.5.
        pytest.param(True, "{2,3}:F", id="closest/lowest-average-distance"),
    ],
)
def test_prefer_closest_numa_nodes(closest: bool, expected: str) -> None:
    rows = {
        0: [10, 11, 12, 12],
        1: [11, 10, 12, 12],
        2: [12, 12, 10, 11],
        3: [12, 12, 11, 10],
    }
    info = NUMAInfo.from_distance_rows([0, 1, 2, 3], rows)
    providers: list[ProviderHints] = [
        {"a": [H([0, 1, 2, 3], False), H([0, 1], False)]},
        {"b": [H([1, 2], False), H([2, 3], False)]},
    ]
    hint, _ = merge_hints(providers, info, "best-effort", PolicyOptions(prefer_closest_numa_nodes=closest))
    assert str(hint) == expected


# --------------------------------------------------------------------------- registries and options


def test_unknown_policy_lists_the_valid_names() -> None:
    with pytest.raises(UnknownPolicyError) as err:
        new_policy("numa-first", NUMAInfo((0,)))
    assert all(name in str(err.value) for name in POLICIES)
    assert isinstance(err.value, TopologyError)


def test_unknown_scope_lists_the_valid_names() -> None:
    with pytest.raises(UnknownScopeError, match="container, pod"):
        new_scope("node")


@pytest.mark.parametrize(
    ("policy", "nodes", "options", "error"),
    [
        pytest.param("restricted", 9, PolicyOptions(), NUMALimitError, id="nine-nodes/default-limit"),
        pytest.param("none", 9, PolicyOptions(), None, id="nine-nodes/none-policy-is-fine"),
        pytest.param(
            "best-effort", 9, PolicyOptions(max_allowable_numa_nodes=16), None, id="nine-nodes/raised"
        ),
        pytest.param(
            "best-effort",
            2,
            PolicyOptions(prefer_closest_numa_nodes=True),
            PolicyOptionError,
            id="prefer-closest/without-distances",
        ),
    ],
)
def test_new_policy_checks_the_machine(
    policy: str, nodes: int, options: PolicyOptions, error: type[Exception] | None
) -> None:
    info = NUMAInfo(tuple(range(0, 2 * nodes, 2)))
    if error is None:
        assert new_policy(policy, info, options).name == policy
    else:
        with pytest.raises(error):
            new_policy(policy, info, options)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param({}, PolicyOptions(), id="defaults"),
        pytest.param({"prefer-closest-numa-nodes": "True"}, PolicyOptions(True), id="closest-go-bool"),
        pytest.param({"max-allowable-numa-nodes": "+16"}, PolicyOptions(False, 16), id="limit-signed-int"),
    ],
)
def test_policy_options_parse(raw: dict[str, str], expected: PolicyOptions) -> None:
    assert PolicyOptions.parse(raw) == expected


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        pytest.param({"prefer-closest-numa-nodes": "yes"}, "bad value for option", id="bad-bool"),
        pytest.param({"max-allowable-numa-nodes": "8.0"}, "unable to convert", id="not-an-int"),
        pytest.param({"max-allowable-numa-nodes": "4"}, "should not be less than 8", id="below-8"),
        pytest.param({"numa-first": "true"}, "unknown Topology Manager Policy option", id="unknown"),
    ],
)
def test_policy_options_errors(raw: dict[str, str], match: str) -> None:
    with pytest.raises(PolicyOptionError, match=match):
        PolicyOptions.parse(raw)


# --------------------------------------------------------------------------- scopes


@dataclass
class TableSource:
    """Hints per container and for the pod, from a table."""

    per_container: dict[str, list[ProviderHints]]
    pod: list[ProviderHints] = field(default_factory=list)

    def container_hints(self, container: str) -> Sequence[ProviderHints]:
        return self.per_container[container]

    def pod_hints(self) -> Sequence[ProviderHints]:
        return self.pod


def test_container_scope_stops_at_the_first_rejected_container() -> None:
    source = TableSource({"init": [{"cpu": [H([0])]}], "app": [{"cpu": [H([0, 8])]}], "side": [None]})
    allocated: list[tuple[str, str]] = []
    policy = new_policy("single-numa-node", NUMAInfo((0, 8)))
    result = new_scope("container").admit(
        policy, ["init", "app", "side"], source, lambda c, h: allocated.append((c, str(h)))
    )
    assert not result.admit
    assert result.rejected_container == "app"
    assert result.reason == TOPOLOGY_AFFINITY_ERROR
    assert {c: str(h) for c, h in result.hints.items()} == {"init": "{0}:T"}
    assert allocated == [("init", "{0}:T")]


def test_pod_scope_merges_once_and_shares_the_hint() -> None:
    source = TableSource({}, pod=[{"cpu": [H([8]), H([0, 8], False)]}, {"gpu": [H([8])]}])
    allocated: list[str] = []
    policy = new_policy("restricted", NUMAInfo((0, 8)))
    result = new_scope("pod").admit(policy, ["init", "app"], source, lambda c, h: allocated.append(c))
    assert result.admit and result.reason is None
    assert {c: str(h) for c, h in result.hints.items()} == {"init": "{8}:T", "app": "{8}:T"}
    assert allocated == ["init", "app"]


def test_pod_scope_rejection_names_no_container() -> None:
    source = TableSource({}, pod=[{"cpu": []}])
    result = new_scope("pod").admit(new_policy("restricted", NUMAInfo((0, 8))), ["app"], source)
    assert (result.admit, result.rejected_container, dict(result.hints)) == (False, None, {})


# --------------------------------------------------------------------------- properties

NODES = (0, 2, 5)
masks = st.sets(st.sampled_from(NODES), min_size=1).map(frozenset)
hints = st.builds(TopologyHint, st.one_of(st.none(), masks), st.booleans())
provider_lists = st.lists(
    st.one_of(
        st.none(),
        st.dictionaries(st.sampled_from(["cpu", "gpu", "mem"]), st.lists(hints, max_size=3), max_size=2),
    ),
    max_size=3,
)


@settings(max_examples=150, deadline=None)
@given(providers=provider_lists, policy=st.sampled_from(["best-effort", "restricted", "single-numa-node"]))
def test_merged_hint_is_one_of_the_permutations(providers: list[ProviderHints], policy: str) -> None:
    """The result is the AND of one hint per resource (or the all-nodes fallback), lies
    within the machine's nodes, and is preferred only if every resource agrees on it."""
    info = NUMAInfo(NODES)
    hint, admit = merge_hints(providers, info, policy)
    lists = filter_providers_hints(providers)
    if policy == "single-numa-node":
        lists = [
            [h for h in hs if h.preferred and (h.numa_affinity is None or len(h.numa_affinity) == 1)]
            for hs in lists
        ]
    affinity = info.default_affinity if hint.numa_affinity is None else hint.numa_affinity
    assert affinity <= info.default_affinity
    ands = set()
    for perm in product(*lists):
        merged = info.default_affinity
        for h in perm:
            merged = merged if h.numa_affinity is None else merged & h.numa_affinity
        ands.add(merged)
    assert affinity in ands or (affinity == info.default_affinity and not hint.preferred)
    if hint.preferred:
        for hs in lists:
            assert any(h.preferred and h.numa_affinity in (None, affinity) for h in hs)
    assert admit is (True if policy == "best-effort" else hint.preferred)


def brute_force_merge(lists: list[list[TopologyHint]], merger: HintMerger) -> TopologyHint:
    """kubelet's literal scan: every permutation, in order, through ``compare``."""
    default = merger.numa_info.default_affinity
    best: TopologyHint | None = None
    for perm in product(*lists):
        masks = [h.numa_affinity for h in perm if h.numa_affinity is not None]
        preferred = all(h.preferred for h in perm) and all(m == masks[0] for m in masks)
        merged = default.intersection(*masks)
        best = merger.compare(best, TopologyHint(merged, preferred))
    return best if best is not None else TopologyHint(default, False)


DISTANCES = {0: {0: 10, 2: 12, 5: 30}, 2: {0: 12, 2: 10, 5: 21}, 5: {0: 30, 2: 21, 5: 10}}
# Node 7 is not on the machine: hints naming only it merge to an empty affinity.
any_hints = st.builds(
    TopologyHint, st.one_of(st.none(), st.sets(st.sampled_from((*NODES, 7))).map(frozenset)), st.booleans()
)


@settings(max_examples=150, deadline=None)
@given(
    lists=st.lists(st.lists(any_hints, max_size=4), max_size=4), closest=st.booleans(), table=st.booleans()
)
def test_merge_equals_the_permutation_scan(
    lists: list[list[TopologyHint]], closest: bool, table: bool
) -> None:
    """Folding distinct states picks the same hint as scanning every permutation, whether
    the disagreeing states are ANDed with sets or with the mask table."""
    info = NUMAInfo(NODES, DISTANCES)
    merger = HintMerger(info, max_of_min_affinity_counts(lists), closest)
    with patch.object(hints_module, "_TABLE_MIN_PAIRS", 0 if table else 1 << 30):
        assert merger.merge(lists) == brute_force_merge(lists, merger)


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 12),
    states=st.sets(st.integers(0, 4095), max_size=40),
    masks=st.sets(st.integers(0, 4095), max_size=40),
)
def test_the_mask_table_ands_every_pair(width: int, states: set[int], masks: set[int]) -> None:
    """The table path of the fold gives every non-empty pairwise AND, as the set path does."""
    limit = (1 << width) - 1
    states, masks = {s & limit for s in states}, {m & limit for m in masks}
    expected = {s & m for s in states for m in masks} - {0}
    with patch.object(hints_module, "_TABLE_MIN_PAIRS", 0):
        assert hints_module._and_pairs(states, masks, width) == expected
