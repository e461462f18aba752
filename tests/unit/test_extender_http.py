"""The extender over real HTTP on 127.0.0.1, with requests built from kubernetes models."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from scheduler.cache import NRTCache
from scheduler.extender import ExtenderServer
from scheduler.service import ExtenderCore
from tests.extender_helpers import BU, GU, MemoryBinder, args, get, nrt_obj, post, v1_node_list, v1_pod
from topology.nrt import NodeResourceTopology

PREFIX = "/topolet"
FOUR_FOUR = {0: {"cpu": "4", "memory": "8Gi"}, 1: {"cpu": "4", "memory": "8Gi"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def serve(mode: str, nrts: list[dict[str, Any]], clock: Clock) -> tuple[ExtenderServer, NRTCache]:
    cache = NRTCache(clock=clock, reservation_timeout_s=60)
    for obj in nrts:
        cache.upsert(NodeResourceTopology.from_dict(obj))
    server = ExtenderServer(
        ExtenderCore(cache, fit_mode=mode, binder=MemoryBinder()), ("127.0.0.1", 0), path_prefix=PREFIX
    )
    server.start()
    return server, cache


@pytest.fixture(params=["kubelet", "nrt-match"])
def extender(request: pytest.FixtureRequest, clock: Clock) -> Iterator[tuple[ExtenderServer, NRTCache]]:
    server, cache = serve(request.param, [], clock)
    yield server, cache
    server.stop()


# ---------------------------------------------------------------- fit table
# (id, NRT zones, policy, scope, pod containers, expected pass under kubelet, under nrt-match)
FIT_CASES = [
    (
        "snn-container/cpu4-on-4+4/fits",
        FOUR_FOUR,
        "single-numa-node",
        "container",
        [("a", GU, {"cpu": "4", "memory": "1Gi"})],
        True,
        True,
    ),
    (
        "snn-container/cpu6-on-4+4/rejected",
        FOUR_FOUR,
        "single-numa-node",
        "container",
        [("a", GU, {"cpu": "6", "memory": "1Gi"})],
        False,
        False,
    ),
    (
        "snn-container/3+3-two-containers/one-zone-each",
        FOUR_FOUR,
        "single-numa-node",
        "container",
        [("a", GU, {"cpu": "3", "memory": "1Gi"}), ("b", GU, {"cpu": "3", "memory": "1Gi"})],
        True,
        True,
    ),
    (
        "snn-pod/3+3-two-containers/pod-needs-one-zone",
        FOUR_FOUR,
        "single-numa-node",
        "pod",
        [("a", GU, {"cpu": "3", "memory": "1Gi"}), ("b", GU, {"cpu": "3", "memory": "1Gi"})],
        False,
        False,
    ),
    (
        "snn-container/cpu+gpu-on-different-zones/rejected",
        {
            0: {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "0"},
            1: {"cpu": "1", "memory": "8Gi", "nvidia.com/gpu": "2"},
        },
        "single-numa-node",
        "container",
        [("a", GU, {"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "1"})],
        False,
        False,
    ),
    (
        "snn-container/cpu+gpu-on-one-zone/fits",
        {
            0: {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "0"},
            1: {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"},
        },
        "single-numa-node",
        "container",
        [("a", GU, {"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "1"})],
        True,
        True,
    ),
    (
        "snn-pod/hugepages-2Gi-on-one-zone/fits",
        {
            0: {"cpu": "4", "memory": "8Gi", "hugepages-2Mi": "512Mi"},
            1: {"cpu": "4", "memory": "8Gi", "hugepages-2Mi": "2Gi"},
        },
        "single-numa-node",
        "pod",
        [("a", GU, {"cpu": "1", "memory": "1Gi", "hugepages-2Mi": "1Gi"})],
        True,
        True,
    ),
    (
        "snn-pod/hugepages-1Gi-nowhere/rejected",
        {
            0: {"cpu": "4", "memory": "8Gi", "hugepages-2Mi": "512Mi"},
            1: {"cpu": "4", "memory": "8Gi", "hugepages-2Mi": "512Mi"},
        },
        "single-numa-node",
        "pod",
        [("a", GU, {"cpu": "1", "memory": "1Gi", "hugepages-2Mi": "1Gi"})],
        False,
        False,
    ),
    (
        "restricted/gpu-needs-two-zones/kubelet-rejects",
        {0: {"cpu": "4", "nvidia.com/gpu": "1"}, 1: {"cpu": "4", "nvidia.com/gpu": "1"}},
        "restricted",
        "container",
        [("a", GU, {"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "2"})],
        False,
        True,
    ),
    (
        "restricted/cpu2-on-one-zone/fits",
        FOUR_FOUR,
        "restricted",
        "container",
        [("a", GU, {"cpu": "2", "memory": "1Gi"})],
        True,
        True,
    ),
    (
        "best-effort/cpu6-spans-zones/admitted",
        FOUR_FOUR,
        "best-effort",
        "container",
        [("a", GU, {"cpu": "6", "memory": "1Gi"})],
        True,
        True,
    ),
    (
        "none/cpu6/admitted",
        FOUR_FOUR,
        "none",
        "container",
        [("a", GU, {"cpu": "6", "memory": "1Gi"})],
        True,
        True,
    ),
    (
        "snn/besteffort-pod/no-alignment-needed",
        {0: {"cpu": "0"}, 1: {"cpu": "0"}},
        "single-numa-node",
        "container",
        [("a", BU, {})],
        True,
        True,
    ),
    (
        "snn/burstable-cpu-only/not-pinned",
        {0: {"cpu": "0"}, 1: {"cpu": "0"}},
        "single-numa-node",
        "container",
        [("a", BU, {"cpu": "2"})],
        True,
        True,
    ),
    (
        "snn/guaranteed-1500m/shared-pool-under-kubelet",
        {0: {"cpu": "1", "memory": "8Gi"}, 1: {"cpu": "1", "memory": "8Gi"}},
        "single-numa-node",
        "container",
        [("a", GU, {"cpu": "1500m", "memory": "1Gi"})],
        True,
        False,
    ),
]


@pytest.mark.parametrize(("mode"), ["kubelet", "nrt-match"])
@pytest.mark.parametrize(
    ("zones", "policy", "scope", "containers", "kubelet", "match"),
    [pytest.param(*c[1:], id=c[0]) for c in FIT_CASES],
)
def test_fit_through_http(
    mode: str,
    zones: dict[int, dict[str, str]],
    policy: str,
    scope: str,
    containers: list[Any],
    kubelet: bool,
    match: bool,
    clock: Clock,
) -> None:
    server, _ = serve(mode, [nrt_obj("w1", zones, policy, scope)], clock)
    try:
        status, reply = post(
            server.address, f"{PREFIX}/filter", args(v1_pod("p", *containers), ["w1", "no-nrt"])
        )
    finally:
        server.stop()
    assert status == 200
    expected = kubelet if mode == "kubelet" else match
    assert reply["NodeNames"] == (["w1", "no-nrt"] if expected else ["no-nrt"])
    assert reply["Nodes"] is None and reply["Error"] == ""
    rejected = {**reply["FailedNodes"], **reply["FailedAndUnresolvableNodes"]}
    assert set(rejected) == (set() if expected else {"w1"})
    if not expected:
        message = rejected["w1"]
        assert "NUMA" in message or "TopologyAffinityError" in message


# -------------------------------------------------------- both node modes
def test_node_cache_capable_false_echoes_node_objects(extender: tuple[ExtenderServer, NRTCache]) -> None:
    server, cache = extender
    cache.upsert(NodeResourceTopology.from_dict(nrt_obj("w1", {0: {"cpu": "2", "memory": "8Gi"}})))
    cache.upsert(NodeResourceTopology.from_dict(nrt_obj("w2", {0: {"cpu": "8", "memory": "8Gi"}})))
    body = args(
        v1_pod("p", ("a", GU, {"cpu": "4", "memory": "1Gi"})), ["w1", "w2", "w3"], cache_capable=False
    )
    status, reply = post(server.address, f"{PREFIX}/filter", body)
    assert status == 200
    assert reply["NodeNames"] is None
    sent = {n["metadata"]["name"]: n for n in v1_node_list("w1", "w2", "w3")["items"]}
    assert reply["Nodes"]["items"] == [sent["w2"], sent["w3"]]
    assert list(reply["FailedNodes"]) == ["w1"]
    assert "cpu 4" in reply["FailedNodes"]["w1"] and "node-0: 2" in reply["FailedNodes"]["w1"]


def test_prioritize_is_a_bare_array_of_int_scores(extender: tuple[ExtenderServer, NRTCache]) -> None:
    server, cache = extender
    cache.upsert(NodeResourceTopology.from_dict(nrt_obj("one-zone", FOUR_FOUR)))
    cache.upsert(
        NodeResourceTopology.from_dict(
            nrt_obj(
                "two-zones",
                {0: {"cpu": "2", "memory": "8Gi"}, 1: {"cpu": "2", "memory": "8Gi"}},
                "best-effort",
            )
        )
    )
    gu = v1_pod("p", ("a", GU, {"cpu": "4", "memory": "1Gi"}))
    status, reply = post(
        server.address, f"{PREFIX}/prioritize", args(gu, ["one-zone", "two-zones", "no-nrt"])
    )
    assert status == 200 and isinstance(reply, list)
    scores = {e["Host"]: e["Score"] for e in reply}
    assert [e["Host"] for e in reply] == ["one-zone", "two-zones", "no-nrt"]
    assert all(isinstance(s, int) and 0 <= s <= 10 for s in scores.values())
    assert scores["one-zone"] > scores["two-zones"] > scores["no-nrt"] == 0
    _, burstable = post(
        server.address,
        f"{PREFIX}/prioritize",
        args(v1_pod("b", ("a", BU, {"cpu": "1"})), ["one-zone", "no-nrt"]),
    )
    assert burstable == [{"Host": "one-zone", "Score": 10}, {"Host": "no-nrt", "Score": 10}]


# -------------------------------------------------------------- stale data
def test_two_pods_filtered_before_the_first_binds_are_not_double_booked(clock: Clock) -> None:
    server, cache = serve(
        "kubelet",
        [nrt_obj("w1", {0: {"cpu": "4", "memory": "8Gi"}, 1: {"cpu": "2", "memory": "8Gi"}})],
        clock,
    )
    try:
        first = v1_pod("first", ("a", GU, {"cpu": "4", "memory": "1Gi"}))
        second = v1_pod("second", ("a", GU, {"cpu": "4", "memory": "1Gi"}))
        for pod in (first, second):  # both see the same stale zone-0 with 4 CPUs
            _, reply = post(server.address, f"{PREFIX}/filter", args(pod, ["w1"]))
            assert reply["NodeNames"] == ["w1"]

        def bind(pod: dict[str, Any]) -> tuple[int, Any]:
            meta = pod["metadata"]
            return post(
                server.address,
                f"{PREFIX}/bind",
                {
                    "PodName": meta["name"],
                    "PodNamespace": meta["namespace"],
                    "PodUID": meta["uid"],
                    "Node": "w1",
                },
            )

        assert bind(first) == (200, {"Error": ""})
        assert [dict(r.amounts) for r in cache.reservations("w1")] == [
            {0: {"cpu": 4000, "memory": 1073741824}}
        ]
        status, refused = bind(second)
        assert status == 200 and "no longer fits" in refused["Error"] and "node-0: 0" in refused["Error"]
        _, again = post(server.address, f"{PREFIX}/filter", args(second, ["w1"]))
        assert again["NodeNames"] == [] and "w1" in again["FailedNodes"]
        # The publisher catches up: zone 0 now shows the first pod; the reservation is dropped.
        cache.upsert(
            NodeResourceTopology.from_dict(
                nrt_obj("w1", {0: {"cpu": "0", "memory": "7Gi"}, 1: {"cpu": "2", "memory": "8Gi"}})
            )
        )
        assert cache.reservations("w1") == []
        _, still = post(server.address, f"{PREFIX}/filter", args(second, ["w1"]))
        assert still["NodeNames"] == []
    finally:
        server.stop()


def test_reservation_expires_after_the_timeout(clock: Clock) -> None:
    server, _cache = serve("kubelet", [nrt_obj("w1", {0: {"cpu": "4", "memory": "8Gi"}})], clock)
    try:
        pod = v1_pod("p", ("a", GU, {"cpu": "4", "memory": "1Gi"}))
        post(server.address, f"{PREFIX}/filter", args(pod, ["w1"]))
        meta = pod["metadata"]
        post(
            server.address,
            f"{PREFIX}/bind",
            {"PodName": "p", "PodNamespace": "default", "PodUID": meta["uid"], "Node": "w1"},
        )
        other = v1_pod("q", ("a", GU, {"cpu": "4", "memory": "1Gi"}))
        assert post(server.address, f"{PREFIX}/filter", args(other, ["w1"]))[1]["NodeNames"] == []
        clock.now += 61
        assert post(server.address, f"{PREFIX}/filter", args(other, ["w1"]))[1]["NodeNames"] == ["w1"]
    finally:
        server.stop()


# -------------------------------------------------------------- bad input
GOOD_POD = v1_pod("p", ("a", GU, {"cpu": "1", "memory": "1Gi"}))
BAD_BODIES = [
    ("wrong-key-case", {"pod": GOOD_POD, "nodes": None, "nodenames": ["w1"]}, "filter", "'Pod'"),
    ("missing-pod", {"Nodes": None, "NodeNames": ["w1"]}, "filter", "ExtenderArgs.Pod"),
    ("null-pod", {"Pod": None, "Nodes": None, "NodeNames": ["w1"]}, "prioritize", "ExtenderArgs.Pod"),
    ("no-nodes-at-all", {"Pod": GOOD_POD, "Nodes": None, "NodeNames": None}, "filter", "NodeNames"),
    ("names-not-strings", {"Pod": GOOD_POD, "Nodes": None, "NodeNames": [1]}, "filter", "NodeNames[0]"),
    (
        "bad-quantity",
        {"Pod": v1_pod("p", ("a", GU, {"cpu": "lots"})), "Nodes": None, "NodeNames": ["w1"]},
        "filter",
        "cpu",
    ),
    ("bind-missing-node", {"PodName": "p", "PodNamespace": "default", "PodUID": "u"}, "bind", "Node"),
    (
        "bind-wrong-case",
        {"podName": "p", "PodNamespace": "d", "PodUID": "u", "Node": "w1"},
        "bind",
        "'PodName'",
    ),
    ("body-is-a-list", [], "filter", "ExtenderArgs"),
]


@pytest.mark.parametrize(("body", "verb", "names"), [pytest.param(*c[1:], id=c[0]) for c in BAD_BODIES])
def test_bad_bodies_get_400_with_a_json_error(
    extender: tuple[ExtenderServer, NRTCache], body: Any, verb: str, names: str
) -> None:
    server, _ = extender
    status, reply = post(server.address, f"{PREFIX}/{verb}", body)
    assert status == 400 and names in reply["Error"]
    assert get(server.address, "/healthz") == (200, "ok")


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b""], ids=["truncated", "not-utf8", "empty"])
def test_invalid_json_gets_400(extender: tuple[ExtenderServer, NRTCache], raw: bytes) -> None:
    server, _ = extender
    status, reply = post(server.address, f"{PREFIX}/filter", None, raw=raw)
    assert status == 400 and "not valid JSON" in reply["Error"]


def test_ten_megabyte_body_is_refused_without_reading_it(extender: tuple[ExtenderServer, NRTCache]) -> None:
    server, _ = extender
    with socket.create_connection(server.address, timeout=5) as sock:
        head = (
            f"POST {PREFIX}/filter HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
        ).encode()
        sock.sendall(head + b"{" + b" " * 65536)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"over the limit" in reply and b"connection: close" in reply.lower()
    assert get(server.address, "/healthz") == (200, "ok")


def test_unknown_verb_is_404_and_metrics_are_served(extender: tuple[ExtenderServer, NRTCache]) -> None:
    server, _ = extender
    status, reply = post(server.address, f"{PREFIX}/evict", {"Pod": GOOD_POD})
    assert status == 404 and "/topolet/filter" in reply["Error"]
    post(server.address, f"{PREFIX}/filter", args(GOOD_POD, ["w1"]))
    status, text = get(server.address, f"{PREFIX}/metrics")
    assert status == 200
    assert 'topolet_extender_request_duration_seconds_count{verb="filter"} 1.0' in text
    assert 'topolet_extender_decisions_total{outcome="passed",verb="filter"} 1.0' in text
