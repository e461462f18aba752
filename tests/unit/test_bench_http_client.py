"""The benchmarks' lean HTTP client: replies read by length, every failure one BenchError."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bench import http_client
from bench.errors import BenchError
from bench.http_client import KeepAliveClient


@contextmanager
def _server(replies: list[bytes]) -> Iterator[tuple[str, int]]:
    """A loopback server answering each request (read up to its blank line and body) with
    the next of *replies*, then closing."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for reply in replies:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += conn.recv(65536)
                seen.append(body)
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        listener.close()
        thread.join(timeout=5)


def test_two_requests_on_one_connection() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    with _server([ok, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"]) as address:
        client = KeepAliveClient(address)
        assert client.post("/filter", b'{"a":1}') == b"hello"
        assert client.send(client.request_bytes("/prioritize", b"{}")) == (200, b"[]")
        client.close()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/1.1 500 Internal\r\nContent-Length: 4\r\n\r\noops", "/x: HTTP 500"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "connection closed mid-reply"),
        (b"NOT HTTP AT ALL\r\n\r\n", "malformed reply"),
    ],
    ids=["status", "closed", "garbage"],
)
def test_failures_are_one_bench_error(reply: bytes, message: str) -> None:
    with _server([reply]) as address, pytest.raises(BenchError, match=message):
        KeepAliveClient(address).post("/x", b"{}")


def test_a_reply_over_the_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_client, "MAX_REPLY", 8)
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n123456789"
    with _server([big]) as address, pytest.raises(BenchError, match="over 8 bytes"):
        KeepAliveClient(address).post("/x", b"{}")
