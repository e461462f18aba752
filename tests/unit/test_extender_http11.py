"""The extender's HTTP/1.1 transports (uvicorn, the default, and the builtin server) over
raw sockets on 127.0.0.1: keep-alive, closing rules, ``Expect: 100-continue`` and
malformed requests."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from scheduler.cache import NRTCache
from scheduler.extender import SERVERS, ExtenderServer
from scheduler.http11 import MAX_HEADERS
from scheduler.service import ExtenderCore
from tests.extender_helpers import GU, nrt_obj, v1_pod
from topology.nrt import NodeResourceTopology


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[ExtenderServer]:
    cache = NRTCache()
    cache.upsert(NodeResourceTopology.from_dict(nrt_obj("w1", {0: {"cpu": "4", "memory": "8Gi"}})))
    srv = ExtenderServer(ExtenderCore(cache), ("127.0.0.1", 0), server=request.param)
    srv.start()
    yield srv
    srv.stop()


def _read_reply(sock: socket.socket, buf: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """(head, body, what is left in the buffer) of one reply."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return head, rest[:length], rest[length:]


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    return sock.recv(1) == b""


def _filter_request(version: str = "HTTP/1.1", extra: str = "") -> bytes:
    pod = v1_pod("p", ("a", GU, {"cpu": "2", "memory": "1Gi"}))
    body = json.dumps({"Pod": pod, "Nodes": None, "NodeNames": ["w1", "w2"]}).encode()
    head = f"POST /filter {version}\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def test_keep_alive_serves_pipelined_requests_on_one_connection(server: ExtenderServer) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(_filter_request() * 3)
        rest = b""
        for _ in range(3):
            head, body, rest = _read_reply(sock, rest)
            assert head.startswith(b"HTTP/1.1 200 OK") and b"connection: close" not in head.lower()
            assert json.loads(body)["NodeNames"] == ["w1", "w2"]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(_filter_request("HTTP/1.0"), b"200", id="http-1.0"),
        pytest.param(_filter_request(extra="Connection: close\r\n"), b"200", id="connection-close"),
        pytest.param(b"NONSENSE\r\n\r\n", b"400", id="malformed-request-line"),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * (MAX_HEADERS + 1) + b"\r\n",
            b"431",
            id="too-many-headers",
        ),
        pytest.param(b"POST /filter HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"411", id="chunked"),
    ],
)
def test_replies_that_end_the_connection(server: ExtenderServer, request_bytes: bytes, status: bytes) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(request_bytes)
        head, _, _ = _read_reply(sock)
        assert head.split(b" ")[1] == status and b"connection: close" in head.lower()
        assert _closed(sock)


def test_expect_100_continue_is_answered_before_the_body(server: ExtenderServer) -> None:
    full = _filter_request(extra="Expect: 100-continue\r\n")
    head, _, body = full.partition(b"\r\n\r\n")
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(head + b"\r\n\r\n")
        interim = sock.recv(64)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        reply_head, reply_body, _ = _read_reply(sock)
        assert reply_head.startswith(b"HTTP/1.1 200") and json.loads(reply_body)["Error"] == ""


def test_other_methods_get_405_and_the_connection_stays(server: ExtenderServer) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"DELETE /filter HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, rest = _read_reply(sock)
        assert head.startswith(b"HTTP/1.1 405")
        head, body, _ = _read_reply(sock, rest)
        assert head.startswith(b"HTTP/1.1 200") and body == b"ok"


def test_an_endless_header_line_is_cut_with_431(server: ExtenderServer) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Long: ")
        try:
            for _ in range(8 * 16):  # 8 MiB of one header value, never ended
                sock.sendall(b"a" * 65536)
        except OSError:
            pass  # the server answered and closed before the end
        head, body, _ = _read_reply(sock)
        assert head.split(b" ")[1] in (b"431", b"414") and b"connection: close" in head.lower()
        assert b"too" in body
