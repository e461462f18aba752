"""The extender's HTTP servers (uvicorn, the default, and the hand-written builtin one)
against hostile or broken clients, over raw sockets on 127.0.0.1: smuggling shapes, wrong
versions, over-deep JSON, oversized requests, too many connections and slow clients.
Each case gets its one answer and the server keeps serving."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.cache import NRTCache
from scheduler.extender import SERVERS, ExtenderServer, Limits, _depth
from scheduler.service import ExtenderCore
from tests.extender_helpers import GU, args, get, nrt_obj, post, v1_pod
from topology.nrt import NodeResourceTopology

POD = v1_pod("p", ("a", GU, {"cpu": "1", "memory": "1Gi"}))


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[ExtenderServer]:
    cache = NRTCache()
    cache.upsert(NodeResourceTopology.from_dict(nrt_obj("w1", {0: {"cpu": "4", "memory": "8Gi"}})))
    srv = ExtenderServer(
        ExtenderCore(cache),
        ("127.0.0.1", 0),
        limits=Limits(max_names=100, max_containers=10),
        max_connections=8,
        request_timeout_s=0.5,
        server=request.param,
    )
    srv.start()
    yield srv
    srv.stop()


def _exchange(address: tuple[str, int], raw: bytes) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(raw)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def _post_raw(body: bytes, extra: str = "", length: str | None = None) -> bytes:
    n = str(len(body)) if length is None else length
    return f"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n{extra}\r\n".encode() + body


@pytest.mark.parametrize(
    ("raw", "status", "text"),
    [
        pytest.param(
            _post_raw(b"{}", "Content-Length: 2\r\n"),
            (b"400",),
            b"duplicate content-length",
            id="duplicate-length",
        ),
        pytest.param(
            _post_raw(b"{}", length="\u0662".encode().decode("latin-1")),
            (b"400",),
            b"content-length",
            id="non-ascii-length",
        ),
        pytest.param(_post_raw(b"{}", length="-2"), (b"400",), b"content-length", id="negative-length"),
        pytest.param(_post_raw(b"{}", length="2x"), (b"400",), b"content-length", id="non-numeric-length"),
        pytest.param(
            b"POST /filter HTTP/1.9\r\nContent-Length: 2\r\n\r\n{}",
            (b"505", b"400"),
            b"http",
            id="http-1.9",
        ),
        pytest.param(_post_raw(b"[" * 1000 + b"]" * 1000), (b"400",), b"", id="deep-array-body"),
        pytest.param(
            _post_raw(json.dumps({"Pod": {"metadata": {"x": json.loads("[" * 200 + "]" * 200)}}}).encode()),
            (b"400",),
            b"nests deeper than 64",
            id="deep-pod",
        ),
        pytest.param(
            _post_raw(json.dumps(args(POD, [f"n{i}" for i in range(101)])).encode()),
            (b"413",),
            b"nodenames: 101 nodes, over the limit of 100",
            id="too-many-names",
        ),
        pytest.param(
            _post_raw(
                json.dumps(
                    args(
                        v1_pod("big", *[(f"c{i}", GU, {"cpu": "1", "memory": "1"}) for i in range(11)]),
                        ["w1"],
                    )
                ).encode()
            ),
            (b"413",),
            b"11 containers, over the limit of 10",
            id="too-many-containers",
        ),
    ],
)
def test_bad_requests_get_one_answer_and_the_server_keeps_serving(
    server: ExtenderServer, raw: bytes, status: tuple[bytes, ...], text: bytes
) -> None:
    reply = _exchange(server.address, raw + b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head[9:12] in status, reply[:300]
    assert text in body.lower()
    assert b"\n" not in body.split(b"HTTP/1.1 ")[0].strip()  # one line
    assert b"Traceback" not in reply
    assert get(server.address, "/healthz") == (200, "ok")


def test_keep_alive_close_token_list_closes(server: ExtenderServer) -> None:
    raw = b"GET /healthz HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n"
    reply = _exchange(
        server.address, raw + b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
    )  # second never answered
    assert reply.count(b"HTTP/1.1 200") == 1 and b"connection: close" in reply.lower()


def _all_slots_given_back(server: ExtenderServer) -> None:
    deadline = time.monotonic() + 5
    while server._server.connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server._server.connections == 0
    assert post(server.address, "/filter", args(POD, ["w1"]))[1]["NodeNames"] == ["w1"]


def test_busy_connections_over_the_cap_get_503_and_the_others_keep_working(server: ExtenderServer) -> None:
    held = [socket.create_connection(server.address, timeout=5) for _ in range(8)]
    try:
        for sock in held:  # each inside a request (head not finished): none may be dropped
            sock.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.1)
        extra = _exchange(server.address, b"")  # answered at accept, before any request
        assert extra.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in extra.lower()
        assert b"\n" not in extra.partition(b"\r\n\r\n")[2]
    finally:
        for sock in held:
            sock.close()
    _all_slots_given_back(server)


def test_silent_connections_over_the_cap(server: ExtenderServer) -> None:
    """Over the cap, uvicorn drops the oldest connection that never sent a byte and serves
    the newcomer (a flood of silent connections cannot lock out a liveness probe), but
    never a connection that has sent a request; builtin answers the newcomer 503."""
    used = socket.create_connection(server.address, timeout=5)
    used.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert used.recv(4096).startswith(b"HTTP/1.1 200")
    held = [socket.create_connection(server.address, timeout=5) for _ in range(7)]
    try:
        time.sleep(0.1)
        with socket.create_connection(server.address, timeout=5) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
            reply = extra.recv(4096)
        if server.server == "builtin":
            assert reply.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in reply.lower()
        else:
            assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok")
            assert held[0].recv(4096) == b""  # the oldest silent one made room
        used.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")  # the kept-alive client keeps its slot
        assert used.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        used.close()
        for sock in held:
            sock.close()
    _all_slots_given_back(server)


@pytest.mark.parametrize(
    "trickle", [b"POST /filter HTTP/1.1\r\nHost: x\r\n", b""], ids=["slow-head", "silent"]
)
def test_a_slow_client_is_cut_at_the_request_deadline(server: ExtenderServer, trickle: bytes) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(trickle[:5])
        for i in range(5, len(trickle)):  # one byte every 0.1 s: each read alone is quick
            try:
                sock.sendall(trickle[i : i + 1])
            except OSError:
                break
            time.sleep(0.1)
        sock.settimeout(3)
        try:
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 2.5  # cut at 0.5 s (+ the 0.25 s reaper tick)
    assert get(server.address, "/healthz") == (200, "ok")


def _reference_depth(value: object) -> int:
    """Nesting depth by its definition (recursive; the test values are shallow)."""
    if isinstance(value, dict):
        return 1 + max((_reference_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_reference_depth(v) for v in value), default=0)
    return 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None)
@given(_JSON, st.integers(min_value=0, max_value=12))
def test_the_depth_check_counts_as_the_definition_up_to_its_limit(value: object, limit: int) -> None:
    depth = _reference_depth(value)
    got = _depth(value, limit)
    if depth <= limit:
        assert got == depth
    else:
        assert limit < got <= depth  # stops early once past the limit
