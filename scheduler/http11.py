"""A small HTTP/1.1 server for a handful of JSON routes: keep-alive, one write per reply.

kube-scheduler talks to an extender over a few keep-alive connections and sends one
POST at a time on each. ``http.server`` spends more per request on that than the
extender's own cached answers cost (an ``email`` header parser, a write per header
line, a log call), so this server does only what those requests need:

* a thread per connection (daemon), closed after :data:`IDLE_TIMEOUT_S` of silence;
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

import json
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import BinaryIO, cast

__all__ = [
    "IDLE_TIMEOUT_S",
    "MAX_HEADERS",
    "MAX_LINE",
    "HTTP11Server",
    "Reply",
    "Request",
    "listening_socket",
]

MAX_LINE = 65536
MAX_HEADERS = 100
#: Seconds a connection may stay silent (between or inside requests) before it is closed.
IDLE_TIMEOUT_S = 300.0
_REASONS = {s.value: s.phrase for s in HTTPStatus}


class _Malformed(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


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
    address: tuple[str, int], *, reuse_port: bool = False, backlog: int = 128
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
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _Malformed(HTTPStatus.BAD_REQUEST, f"malformed request line {line[:80]!r}")
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
        headers[name.strip().lower()] = value.strip()
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

    def __init__(self, sock: socket.socket, handler: Handler, *, server_name: str = "topolet") -> None:
        self.socket = sock
        self.handler = handler
        self.server_name = server_name
        self._stop = threading.Event()
        self._done = threading.Event()
        self._done.set()

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        self._done.clear()
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self.socket, selectors.EVENT_READ)
                while not self._stop.is_set():
                    if sel.select(poll_interval):
                        self._accept()
        finally:
            self._done.set()

    def _accept(self) -> None:
        try:
            conn, _ = self.socket.accept()
        except (BlockingIOError, InterruptedError):
            return  # another process sharing the socket took it
        conn.settimeout(IDLE_TIMEOUT_S)  # an idle keep-alive connection ends; a new one is cheap
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=self._connection, args=(conn,), name="http11-conn", daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        with conn, cast(BinaryIO, conn.makefile("rb", buffering=65536)) as rfile:
            try:
                while not self._stop.is_set() and self._one(conn, rfile):
                    pass
            except OSError:
                pass  # the peer went away

    def _one(self, conn: socket.socket, rfile: BinaryIO) -> bool:
        """Serve one request; False when the connection must end."""
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
        close = (
            reply.close
            or version == "HTTP/1.0"
            or headers.get("connection", "").lower() == "close"
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
