"""The ``preempt`` verb over real HTTP: kube-scheduler's ExtenderPreemptionArgs in, the
UID form of ExtenderPreemptionResult out, nodes kept only where the pod fits once the
victims' NUMA holdings are given back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from scheduler.cache import NRTCache
from scheduler.extender import ExtenderServer
from scheduler.service import ExtenderCore
from tests.extender_helpers import GU, MemoryBinder, args, nrt_obj, post, v1_pod
from topology.nrt import NodeResourceTopology

# Two nodes, each 4 + 4 CPUs; the victim (3 CPUs) is bound by the extender onto each.
ZONES = {0: {"cpu": "4", "memory": "8Gi"}, 1: {"cpu": "4", "memory": "8Gi"}}
VICTIM_UID = "victim-uid"


@pytest.fixture
def server() -> Iterator[ExtenderServer]:
    cache = NRTCache(clock=lambda: 0.0)
    for name in ("w1", "w2"):
        cache.upsert(NodeResourceTopology.from_dict(nrt_obj(name, ZONES)))
    srv = ExtenderServer(ExtenderCore(cache, binder=MemoryBinder()), ("127.0.0.1", 0))
    srv.start()
    for node, fill in (("w1", "4"), ("w2", "3")):
        # w1: the victim takes a whole zone and a filler the other; w2: both zones part-used.
        for name, cpu in ((f"victim-{node}", "3"), (f"filler-{node}", fill)):
            pod = v1_pod(name, ("a", GU, {"cpu": cpu, "memory": "1Gi"}), uid=f"{name}-uid")
            assert post(srv.address, "/filter", args(pod, [node]))[1]["NodeNames"] == [node]
            bind = {"PodName": name, "PodNamespace": "default", "PodUID": f"{name}-uid", "Node": node}
            assert post(srv.address, "/bind", bind) == (200, {"Error": ""})
    yield srv
    srv.stop()


PREEMPTOR = v1_pod("big", ("a", GU, {"cpu": "4", "memory": "1Gi"}), uid="big-uid")


def meta(*uids: str, pdb: int = 0) -> dict[str, Any]:
    return {"Pods": [{"UID": u} for u in uids], "NumPDBViolations": pdb}


@pytest.mark.parametrize(
    ("victims", "expect"),
    [
        pytest.param(
            {"w1": meta("victim-w1-uid"), "w2": meta("victim-w2-uid", pdb=1)},
            {"w1": meta("victim-w1-uid"), "w2": meta("victim-w2-uid", pdb=1)},
            id="known-victims/both-nodes-free-a-zone/kept",
        ),
        pytest.param(
            {"w1": meta("someone-else"), "w2": meta("victim-w2-uid")},
            {"w2": meta("victim-w2-uid")},
            id="unknown-victim/frees-no-zone/dropped",
        ),
        pytest.param(
            {"w1": meta(), "w2": meta("victim-w2-uid")},
            {"w2": meta("victim-w2-uid")},
            id="no-victims/dropped-as-kube-scheduler-requires",
        ),
        pytest.param(
            {"w3": meta("x")},
            {"w3": meta("x")},
            id="node-without-nrt/kept",
        ),
    ],
)
def test_preempt_meta_victims(
    server: ExtenderServer, victims: dict[str, Any], expect: dict[str, Any]
) -> None:
    # nodeCacheCapable: true sends only NodeNameToMetaVictims.
    body = {"Pod": PREEMPTOR, "NodeNameToVictims": None, "NodeNameToMetaVictims": victims}
    status, reply = post(server.address, "/preempt", body)
    assert status == 200
    assert reply == {"NodeNameToMetaVictims": expect}


def test_preempt_full_victims_answer_in_uid_form(server: ExtenderServer) -> None:
    victim = v1_pod("victim-w1", ("a", GU, {"cpu": "3", "memory": "1Gi"}), uid="victim-w1-uid")
    body = {
        "Pod": PREEMPTOR,
        "NodeNameToVictims": {"w1": {"Pods": [victim], "NumPDBViolations": 0}},
        "NodeNameToMetaVictims": None,
    }
    status, reply = post(server.address, "/preempt", body)
    assert (status, reply) == (200, {"NodeNameToMetaVictims": {"w1": meta("victim-w1-uid")}})


def test_without_eviction_the_preemptor_does_not_fit(server: ExtenderServer) -> None:
    status, reply = post(server.address, "/filter", args(PREEMPTOR, ["w1", "w2"]))
    assert status == 200 and reply["NodeNames"] == []


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        pytest.param({"pod": PREEMPTOR, "NodeNameToMetaVictims": {}}, "found 'pod'", id="wrong-key-case"),
        pytest.param({"Pod": PREEMPTOR}, "NodeNameToMetaVictims", id="no-victims-map"),
        pytest.param(
            {"Pod": PREEMPTOR, "NodeNameToMetaVictims": {"w1": {"Pods": [{"uid": "x"}]}}},
            "Pods[0].UID",
            id="victim-without-UID",
        ),
    ],
)
def test_bad_preempt_bodies_are_400(server: ExtenderServer, body: dict[str, Any], needle: str) -> None:
    status, reply = post(server.address, "/preempt", body)
    assert status == 400 and needle in reply["Error"]
