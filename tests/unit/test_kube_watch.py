"""The one list/watch loop (kube.watch.ListWatch) against the API-server stand-in over real
HTTP on 127.0.0.1: resume from resourceVersion, bookmarks, 410 → relist with the deletions
missed, backoff with jitter, a prompt stop."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kube.backoff import Backoff
from kube.client import ApiClient, api_client_for_url
from kube.errors import KubeError, KubeUnavailable
from kube.resources import pods
from kube.watch import MAX_EVENT_BYTES, ListWatch, WatchEvent
from tests.apiserver_standin import PODS_PATH, ApiServerStandIn
from tests.watch_recorder import Recorder


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def pod(name: str, node: str = "n1") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"nodeName": node}}


@pytest.fixture
def apiserver() -> Iterator[ApiServerStandIn]:
    server = ApiServerStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def api(apiserver: ApiServerStandIn) -> ApiClient:
    return api_client_for_url(apiserver.url)


def watches(apiserver: ApiServerStandIn) -> list[dict[str, str]]:
    return [q for p, q in apiserver.requests if p == PODS_PATH and q.get("watch") == "true"]


@pytest.fixture
def recorded(apiserver: ApiServerStandIn, api: ApiClient) -> Iterator[tuple[ListWatch, Recorder]]:
    apiserver.put_pod(pod("a"))
    rec = Recorder()
    lw = ListWatch(
        pods(api, node_name="n1"), rec, watch_timeout_s=60, backoff=Backoff(0.3, 1.0, rng=random.Random(1))
    )
    lw.start()
    assert lw.synced.wait(5)
    yield lw, rec
    lw.stop(5)


def test_a_dropped_watch_resumes_from_its_resource_version_without_relisting(
    apiserver: ApiServerStandIn, recorded: tuple[ListWatch, Recorder]
) -> None:
    lw, rec = recorded
    eventually(lambda: len(watches(apiserver)) == 1)
    apiserver.put_pod(pod("b"))
    eventually(rec.seen(("ADDED", "b")))
    seen_rv = lw.resource_version
    apiserver.drop_watches()  # the connection breaks; the loop backs off (>= 0.24 s) ...
    apiserver.put_pod(pod("c"))  # ... and this happens while nobody watches
    eventually(rec.seen(("ADDED", "c")))
    assert lw.lists == 1
    assert [w.get("resourceVersion") for w in watches(apiserver)][1] == seen_rv
    assert rec.events == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]


def test_a_watch_that_ends_is_followed_by_the_next_one_at_once(
    apiserver: ApiServerStandIn, api: ApiClient
) -> None:
    rec = Recorder()
    lw = ListWatch(pods(api), rec, watch_timeout_s=1).start()
    try:
        assert lw.synced.wait(5)
        eventually(lambda: len(watches(apiserver)) >= 2, timeout=3)  # timeoutSeconds=1 ended the first
        apiserver.put_pod(pod("late"))
        eventually(rec.seen(("ADDED", "late")))
        assert lw.lists == 1
        assert all(w["allowWatchBookmarks"] == "true" and w["resourceVersion"] for w in watches(apiserver))
    finally:
        lw.stop(5)


def test_a_bookmark_moves_the_resource_version_and_delivers_nothing(
    apiserver: ApiServerStandIn, recorded: tuple[ListWatch, Recorder]
) -> None:
    lw, rec = recorded
    eventually(lambda: len(watches(apiserver)) == 1)
    rv = apiserver.bookmark("pod")
    eventually(lambda: lw.resource_version == rv)
    assert rec.events == [("ADDED", "a")]


def test_410_gone_relists_and_delivers_what_was_missed(apiserver: ApiServerStandIn, api: ApiClient) -> None:
    for name in ("a", "b", "c"):
        apiserver.put_pod(pod(name))
    rec = Recorder()
    lw = ListWatch(pods(api, node_name="n1"), rec, watch_timeout_s=60).start()
    assert lw.synced.wait(5)
    lw.stop(5)
    old_rv = lw.resource_version
    apiserver.delete_pod("default", "a")  # missed while not watching ...
    apiserver.put_pod(pod("b", node="n2"))  # ... moved off the node: gone from this list
    apiserver.put_pod(pod("d"))
    apiserver.compact()  # ... and out of the watch history
    del rec.events[:]
    lw.start()
    try:
        eventually(lambda: lw.lists == 2)
        assert sorted(rec.events) == [("ADDED", "d"), ("DELETED", "a"), ("DELETED", "b"), ("MODIFIED", "c")]
        assert rec.events[:2] == [("DELETED", "a"), ("DELETED", "b")]  # deletions first
        assert int(lw.resource_version) > int(old_rv)
        assert sorted(o["metadata"]["name"] for o in lw.known()) == ["c", "d"]
    finally:
        lw.stop(5)


def test_a_pod_created_again_under_its_name_is_a_delete_and_an_add(
    apiserver: ApiServerStandIn, api: ApiClient
) -> None:
    apiserver.put_pod(pod("a"))
    rec = Recorder()
    lw = ListWatch(pods(api), rec)
    lw.relist()
    apiserver.delete_pod("default", "a")
    apiserver.put_pod(pod("a"))  # a new uid
    del rec.events[:]
    lw.relist()
    assert rec.events == [("DELETED", "a"), ("ADDED", "a")]


def test_a_failing_handler_does_not_stop_the_loop(apiserver: ApiServerStandIn, api: ApiClient) -> None:
    rec = Recorder()

    def handler(event: WatchEvent) -> None:
        if event.object["metadata"]["name"] == "bad":
            raise RuntimeError("boom")
        rec(event)

    lw = ListWatch(pods(api), handler).start()
    try:
        assert lw.synced.wait(5)
        eventually(lambda: len(watches(apiserver)) == 1)
        apiserver.put_pod(pod("bad"))
        apiserver.put_pod(pod("good"))
        eventually(rec.seen(("ADDED", "good")))
    finally:
        lw.stop(5)


# ---------------------------------------------------------------- backoff
def test_backoff_doubles_to_its_cap_with_jitter_below_each_step() -> None:
    b = Backoff(0.1, 1.0, jitter=0.5, rng=random.Random(7))
    delays = [b.next() for _ in range(8)]
    bases = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    assert all(base * 0.5 <= d <= base for d, base in zip(delays, bases, strict=True))
    assert len({round(d / base, 6) for d, base in zip(delays, bases, strict=True)}) > 1  # jittered
    b.reset()
    assert 0.05 <= b.next() <= 0.1


@pytest.mark.parametrize(
    ("initial", "cap", "factor", "jitter"),
    [
        pytest.param(0, 1, 2, 0.1, id="zero-initial"),
        pytest.param(2, 1, 2, 0.1, id="cap-below-initial"),
        pytest.param(1, 2, 0.5, 0.1, id="shrinking"),
        pytest.param(1, 2, 2, 1.0, id="jitter-whole-delay"),
    ],
)
def test_backoff_refuses_nonsense(initial: float, cap: float, factor: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial, cap, factor=factor, jitter=jitter)


def test_an_unreachable_server_is_retried_with_growing_jittered_delays() -> None:
    errors: list[tuple[KubeError, float]] = []
    lw = ListWatch(
        pods(api_client_for_url("http://127.0.0.1:9")),  # discard port: connection refused
        lambda e: None,
        backoff=Backoff(0.01, 0.08, rng=random.Random(3)),
        on_error=lambda err, delay: errors.append((err, delay)),
    ).start()
    try:
        eventually(lambda: len(errors) >= 6)
    finally:
        lw.stop(5)
    delays = [d for _, d in errors[:6]]
    bases = [0.01, 0.02, 0.04, 0.08, 0.08, 0.08]
    assert all(base * 0.8 <= d <= base for d, base in zip(delays, bases, strict=True))
    assert delays[3] != delays[4]  # at the cap, still jittered
    assert all(isinstance(err, KubeUnavailable) and err.status is None for err, _ in errors)
    assert not lw.synced.is_set()


# ------------------------------------------------------------------- stop
def test_stop_interrupts_a_blocked_watch_promptly(
    apiserver: ApiServerStandIn, recorded: tuple[ListWatch, Recorder]
) -> None:
    lw, _ = recorded
    eventually(lambda: len(watches(apiserver)) == 1)
    time.sleep(0.1)  # blocked reading a stream that would last 60 s
    started = time.monotonic()
    lw.stop(5)
    assert time.monotonic() - started < 1.0


def test_stop_ends_a_backoff_wait_promptly() -> None:
    lw = ListWatch(
        pods(api_client_for_url("http://127.0.0.1:9")), lambda e: None, backoff=Backoff(30, 60)
    ).start()
    time.sleep(0.2)
    started = time.monotonic()
    lw.stop(5)
    assert time.monotonic() - started < 1.0


def test_stop_before_run_in_a_callers_thread_returns_at_once(api: ApiClient) -> None:
    lw = ListWatch(pods(api), lambda e: None)
    lw.stop()
    thread = threading.Thread(target=lw.run)
    thread.start()
    thread.join(2)
    assert not thread.is_alive() and lw.lists == 0


class _EndlessLine(BaseHTTPRequestHandler):
    """An API server that lists no pods, then answers every watch with one line that never
    ends (a broken or hostile server)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if "watch=true" not in self.path:
            body = json.dumps({"kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"x" * 65536
        try:
            for _ in range((MAX_EVENT_BYTES + 2 * len(chunk)) // len(chunk)):
                self.wfile.write(chunk)
        except OSError:  # the client gave up on the line: what the test wants
            pass


def test_an_endless_watch_line_ends_the_stream_instead_of_growing_without_bound() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EndlessLine)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    errors: list[KubeError] = []
    lw = ListWatch(
        pods(api_client_for_url(f"http://127.0.0.1:{server.server_address[1]}")),
        lambda e: None,
        backoff=Backoff(5, 5),
        on_error=lambda err, delay: errors.append(err),
    ).start()
    try:
        eventually(lambda: bool(errors), timeout=30)
    finally:
        lw.stop(5)
        server.shutdown()
        server.server_close()
    assert f"longer than {MAX_EVENT_BYTES} bytes" in str(errors[0])
