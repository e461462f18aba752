"""The one list/watch loop (kube.watch.ListWatch) against the real kube-apiserver: a
restarted watch resumes from its resourceVersion and gets the deletion it missed; a
resourceVersion the server no longer has gives 410 Gone, a relist, and the difference."""

from __future__ import annotations

import time
from collections.abc import Callable

from kube.backoff import Backoff
from kube.resources import node_resource_topologies
from kube.watch import ListWatch
from tests.e2e.cluster import E2ECluster
from tests.watch_recorder import Recorder
from topolet.testbed import publish_nrt

NAME = "e2e-watch-probe"


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_watch_resumes_then_relists_after_gone_on_the_real_api_server(cluster: E2ECluster) -> None:
    nrts = node_resource_topologies(cluster.api)
    topo = next(iter(cluster.topologies.values()))
    rec = Recorder()
    lw = ListWatch(nrts.list_source(), rec, watch_timeout_s=30, backoff=Backoff(0.05, 0.5)).start()
    try:
        assert lw.synced.wait(20)
        assert {n for _, n in rec.events} >= set(cluster.topologies)
        publish_nrt(cluster.api, NAME, topo)
        eventually(lambda: ("ADDED", NAME) in rec.events)
        lw.stop(10)
        nrts.delete(NAME)  # while nobody watches
        lw.start()
        eventually(lambda: ("DELETED", NAME) in rec.events)
        assert lw.lists == 1  # from the watch history, not a relist

        lw.stop(10)
        publish_nrt(cluster.api, NAME, topo)
        lw.resource_version = "1"  # long compacted: the server answers 410 Gone
        del rec.events[:]
        lw.start()
        eventually(lambda: lw.lists == 2)
        assert ("ADDED", NAME) in rec.events
        assert {n for t, n in rec.events if t == "MODIFIED"} >= set(cluster.topologies)
    finally:
        lw.stop(10)
        nrts.delete(NAME)
