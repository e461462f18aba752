"""A small HTTP/1.1 server for a handful of JSON routes: keep-alive, one write per reply.

kube-scheduler talks to an extender over a few keep-alive connections and sends one
POST at a time on each. ``http.server`` spends more per request on that than the
extender's own cached answers cost (an ``email`` header parser, a write per header
line, a log call), so this server does only what those requests need:

* a thread per connection (daemon), at most :data:`MAX_CONNECTIONS` at once (one more
  is answered ``503`` with ``Retry-After`` and closed), closed after
  :data:`IDLE_TIMEOUT_S` of silence between requests; a connection that has not sent a
  whole request (head and body) :data:`REQUEST_TIMEOUT_S` after its first byte (or
  after connecting) is cut by one deadline thread, however slowly it trickles bytes;
* a request line other than ``HTTP/1.0`` / ``HTTP/1.1`` gets ``505``; a repeated
  ``Content-Length`` (or ``Transfer-Encoding``, ``Host``, ``Expect``) gets ``400``;
  ``Connection`` is read as a token list (``keep-alive, close`` closes);
  the listening socket polled by a selector so :meth:`HTTP11Server.shutdown` returns
  promptly;
* the request line and headers read with ``readline`` and split by hand (at most
  :data:`MAX_HEADERS` lines of :data:`MAX_LINE` bytes, else 431 and close);
* the body read only after the handler accepted its ``Content-Length``
  (:class:`Request` ``.read_body``), so an oversized body is refused unread;
  ``Expect: 100-continue`` is answered before reading;
* the reply (status line, headers, body) written with one ``sendall``; HTTP/1.0
  clients and ``Connection: close`` get the connection closed after it.

The listening socket may be passed in (already bound and listening), which is how
several worker processes serve one port (``SO_REUSEPORT``, :mod:`scheduler.workers`).
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, BinaryIO, Protocol, cast

__all__ = [
    "IDLE_TIMEOUT_S",
    "MAX_HEADERS",
    "MAX_CONNECTIONS",
    "MAX_LINE",
    "REQUEST_TIMEOUT_S",
    "HTTP11Server",
    "IncomingRequest",
    "Reply",
    "Request",
    "listening_socket",
    "wants_close",
]

MAX_LINE = 65536
MAX_HEADERS = 100
#: Seconds a connection may stay silent (between or inside requests) before it is closed.
IDLE_TIMEOUT_S = 90.0
_REASONS = {s.value: s.phrase for s in HTTPStatus}
#: Headers that may appear once.
_SINGLE = frozenset({"content-length", "transfer-encoding", "host", "expect"})
#: Connections served at once; one more is answered 503 and closed.
MAX_CONNECTIONS = 1024
#: Seconds from a request's first byte until its head and body must have arrived.
REQUEST_TIMEOUT_S = 10.0


def wants_close(headers: dict[str, str]) -> bool:
    """Whether ``Connection`` lists the ``close`` token (``keep-alive, close`` does)."""
    return "close" in (t.strip().lower() for t in headers.get("connection", "").split(","))


class _Malformed(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class IncomingRequest(Protocol):
    """What a route reads of a request, whichever server parsed it."""

    method: str
    target: str
    version: str
    headers: dict[str, str]

    def read_body(self, length: int) -> bytes: ...


@dataclass(slots=True)
class Request:
    """One request: method, target, lower-cased headers; the body is read on demand."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    rfile: BinaryIO
    wfile: socket.socket
    _read: bool = field(default=False)

    def read_body(self, length: int) -> bytes:
        """Read *length* body bytes (after answering ``Expect: 100-continue``)."""
        if self.headers.get("expect", "").lower() == "100-continue":
            self.wfile.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._read = True
        return self.rfile.read(length) if length else b""

    @property
    def body_read(self) -> bool:
        return self._read


@dataclass(frozen=True, slots=True)
class Reply:
    """A response; ``close`` ends the connection after it is sent."""

    status: int
    body: bytes
    content_type: str = "application/json"
    close: bool = False
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Reply]


def listening_socket(
    address: tuple[str, int], *, reuse_port: bool = False, backlog: int = 4096
) -> socket.socket:
    """A TCP socket bound to *address* and listening (IPv6 when the host has a colon)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _head(rfile: BinaryIO) -> tuple[str, str, str, dict[str, str]] | None:
    """(method, target, version, headers), or None when the peer closed the connection."""
    line = rfile.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):  # tolerate blank lines between requests
        line = rfile.readline(MAX_LINE + 1)
    if not line:
        return None
    if len(line) > MAX_LINE:
        raise _Malformed(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _Malformed(HTTPStatus.BAD_REQUEST, f"malformed request line {line[:80]!r}")
    if parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise _Malformed(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"{parts[2][:16]}: use HTTP/1.1")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        raw = rfile.readline(MAX_LINE + 1)
        if raw in (b"\r\n", b"\n", b""):
            return parts[0], parts[1], parts[2], headers
        if len(raw) > MAX_LINE:
            break
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise _Malformed(HTTPStatus.BAD_REQUEST, f"malformed header line {raw[:80]!r}")
        key = name.strip().lower()
        if key in headers and key in _SINGLE:
            # Two lengths are a request-smuggling shape: refuse, never pick one.
            raise _Malformed(HTTPStatus.BAD_REQUEST, f"duplicate {name.strip()} header")
        headers[key] = value.strip()
    raise _Malformed(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many or too long header lines")


def _encode(reply: Reply, server_name: str) -> bytes:
    lines = [
        f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, '')}",
        f"Server: {server_name}",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {len(reply.body)}",
    ]
    lines += [f"{k}: {v}" for k, v in reply.headers]
    if reply.close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body


class HTTP11Server:
    """Serves *handler* on *sock* (a listening socket) until :meth:`shutdown`."""

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        *,
        server_name: str = "topolet",
        max_connections: int = MAX_CONNECTIONS,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.socket = sock
        self.handler = handler
        self.server_name = server_name
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self._stop = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._lock = threading.Lock()
        #: Open connections -> the monotonic time their current request must be read by
        #: (inf while idle between requests or while the handler runs).
        self._deadlines: dict[socket.socket, float] = {}

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._deadlines)

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        self._done.clear()
        reaper = threading.Thread(target=self._reap, name="http11-deadlines", daemon=True)
        reaper.start()
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self.socket, selectors.EVENT_READ)
                while not self._stop.is_set():
                    if sel.select(poll_interval):
                        self._accept()
        finally:
            self._done.set()

    def _reap(self) -> None:
        """Cut connections whose request did not arrive in time (slow or stalled clients)."""
        while not self._stop.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [c for c, t in self._deadlines.items() if t <= now]
                for conn in late:
                    self._deadlines[conn] = float("inf")
            for conn in late:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)  # the reading thread sees EOF and ends

    def _accept(self) -> None:
        try:
            conn, _ = self.socket.accept()
        except (BlockingIOError, InterruptedError):
            return  # another process sharing the socket took it
        with self._lock:
            full = len(self._deadlines) >= self.max_connections
            if not full:
                self._deadlines[conn] = time.monotonic() + self.request_timeout_s
        if full:
            body = json.dumps({"Error": f"over {self.max_connections} connections; retry"}).encode()
            reply = Reply(HTTPStatus.SERVICE_UNAVAILABLE, body, close=True, headers=(("Retry-After", "1"),))
            with contextlib.suppress(OSError):
                conn.settimeout(1.0)
                conn.sendall(_encode(reply, self.server_name))
            conn.close()
            return
        conn.settimeout(self.idle_timeout_s)  # an idle keep-alive connection ends
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=self._connection, args=(conn,), name="http11-conn", daemon=True).start()

    def _set_deadline(self, conn: socket.socket, when: float) -> None:
        with self._lock:
            if conn in self._deadlines:
                self._deadlines[conn] = when

    def _connection(self, conn: socket.socket) -> None:
        try:
            with conn, cast(BinaryIO, conn.makefile("rb", buffering=65536)) as rfile:
                try:
                    while not self._stop.is_set() and self._one(conn, rfile):
                        pass
                except OSError:
                    pass  # the peer went away, or its deadline passed
        finally:
            with self._lock:
                self._deadlines.pop(conn, None)

    def _one(self, conn: socket.socket, rfile: BinaryIO) -> bool:
        """Serve one request; False when the connection must end."""
        if not cast(Any, rfile).peek(1):  # idle until the next request's first byte
            return False
        self._set_deadline(conn, time.monotonic() + self.request_timeout_s)
        try:
            head = _head(rfile)
        except _Malformed as err:
            body = json.dumps({"Error": str(err)}).encode()
            conn.sendall(_encode(Reply(err.status, body, close=True), self.server_name))
            return False
        if head is None:
            return False
        method, target, version, headers = head
        request = Request(method, target, version, headers, rfile, conn)
        reply = self.handler(request)
        self._set_deadline(conn, float("inf"))
        close = (
            reply.close
            or version == "HTTP/1.0"
            or wants_close(headers)
            or (not request.body_read and method == "POST" and headers.get("content-length", "0") != "0")
        )
        if close and not reply.close:
            reply = Reply(reply.status, reply.body, reply.content_type, True, reply.headers)
        conn.sendall(_encode(reply, self.server_name))
        return not close

    def shutdown(self) -> None:
        self._stop.set()
        self._done.wait(timeout=5)

    def server_close(self) -> None:
        self.socket.close()
