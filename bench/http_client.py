"""A lean keep-alive HTTP/1.1 client for the benchmarks: the load a Go client puts on a server.

kube-scheduler calls the extender from Go: one keep-alive connection, the body encoded
before it is sent, a reply read by its ``Content-Length``. Python's ``http.client`` spends
about 110 µs of client CPU per request on this machine (header objects, email-style
parsing, buffered reads), which a Go client does not; a benchmark that times the
extender through it measures the client as much as the server, and its client
processes take CPU the server would otherwise have.

:class:`KeepAliveClient` sends a pre-built request with one ``sendall`` and parses the
reply with httptools (llhttp, the parser the extender's server itself uses), so a
round trip costs what the socket and the server cost. A reply is bounded
(:data:`MAX_REPLY`); a closed connection or a malformed reply raises
:class:`~bench.errors.BenchError`.
"""

from __future__ import annotations

import socket

import httptools

from bench.errors import BenchError

__all__ = ["MAX_REPLY", "KeepAliveClient"]

#: The largest reply body accepted (a prioritize reply for 5,000 names is about 150 KiB).
MAX_REPLY = 16 * 1024 * 1024
_CHUNK = 256 * 1024


class _Reply:
    """httptools callbacks: the body and whether the message is complete."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.complete = False

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= MAX_REPLY:
            self.parts.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class KeepAliveClient:
    """One keep-alive connection to ``host:port``; :meth:`post` returns (status, body)."""

    def __init__(self, address: tuple[str, int], timeout_s: float = 30.0) -> None:
        self._address = address
        self._host = f"{address[0]}:{address[1]}".encode()
        self._sock = socket.create_connection(address, timeout=timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request_bytes(self, path: str, body: bytes) -> bytes:
        """The whole POST request for *body* (build it ahead of a timed section)."""
        head = (
            b"POST " + path.encode() + b" HTTP/1.1\r\nHost: " + self._host + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        return head + body

    def send(self, request: bytes) -> tuple[int, bytes]:
        """Send a request built by :meth:`request_bytes`; the reply's status and body."""
        self._sock.sendall(request)
        reply = _Reply()
        parser = httptools.HttpResponseParser(reply)
        while not reply.complete:
            data = self._sock.recv(_CHUNK)
            if not data:
                raise BenchError(f"{self._address[0]}:{self._address[1]}: connection closed mid-reply")
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as e:
                raise BenchError(f"{self._address[0]}:{self._address[1]}: malformed reply: {e}") from None
            if reply.size > MAX_REPLY:
                raise BenchError(f"{self._address[0]}:{self._address[1]}: reply body over {MAX_REPLY} bytes")
        return int(parser.get_status_code()), b"".join(reply.parts)

    def post(self, path: str, body: bytes) -> bytes:
        """POST *body* to *path*; the reply body, or :class:`BenchError` unless HTTP 200."""
        status, data = self.send(self.request_bytes(path, body))
        if status != 200:
            raise BenchError(f"{path}: HTTP {status}: {data[:200]!r}")
        return data

    def close(self) -> None:
        self._sock.close()
