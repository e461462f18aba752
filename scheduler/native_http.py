"""The extender's routes served by uvicorn with its httptools (llhttp) parser and uvloop.

llhttp parses every request (a native core); this module only adds, through uvicorn's
documented ``http=`` protocol-class setting and a small ASGI adapter, the limits the
extender promises that uvicorn does not enforce itself:

* **connections**: at most ``max_connections`` at once. When one more connects, the
  oldest connection that has not sent a byte yet is closed to make room, so a flood
  of silent connections cannot lock out kube-scheduler or a liveness probe (such a
  connection would be cut at its request deadline anyway); a connection that has
  sent a request is never dropped for a newcomer. When there is no silent connection
  to drop, the newcomer is answered ``503`` with ``Retry-After: 1`` and closed;
* **request deadline**: a connection that has not delivered a whole request (head and
  body) ``request_timeout_s`` after connecting or after its request's first byte is
  closed, however slowly it trickles bytes (slowloris); idle keep-alive connections
  end after ``idle_timeout_s`` (uvicorn's ``timeout_keep_alive``);
* **head size**: at most :data:`~scheduler.http11.MAX_HEADERS` header lines and
  :data:`~scheduler.http11.MAX_LINE` bytes of target or of one header line, and about
  6.6 MB in all (a header line still arriving is counted as it comes), else ``431`` /
  ``414`` and close;
* **parser errors** (a repeated or non-numeric ``Content-Length``, both
  ``Content-Length`` and ``Transfer-Encoding``, a malformed line, an unknown version)
  are answered ``400`` with llhttp's reason as one JSON line, and closed; a version
  llhttp accepts but this server does not speak (``HTTP/1.9``) gets ``505``;
* a repeated ``Host`` / ``Expect`` / ``Transfer-Encoding`` header gets ``400``;
  ``Connection`` is a token list (``keep-alive, close`` closes: llhttp and uvicorn
  both read it so).

The body is read only when its ``Content-Length`` is a byte count within the route's
``max_body`` (else the route answers ``411``/``400``/``413`` without reading it and the
connection is closed); everything else, routes, caps on names, containers and
nesting, ``/healthz`` and ``/metrics``, is :class:`scheduler.extender._Routes`, shared
with the hand-written :mod:`scheduler.http11` server.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import socket
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from scheduler.http11 import (
    IDLE_TIMEOUT_S,
    MAX_CONNECTIONS,
    MAX_HEADERS,
    MAX_LINE,
    REQUEST_TIMEOUT_S,
    IncomingRequest,
    Reply,
    wants_close,
)

__all__ = ["NativeServer", "BufferedRequest", "uvloop_available"]

log = logging.getLogger(__name__)

_REASONS = {s.value: s.phrase for s in HTTPStatus}
#: Bytes a request head may take (the builtin server's worst case: every line at its cap).
_MAX_HEAD = (MAX_HEADERS + 1) * MAX_LINE
#: Headers that may appear once (Content-Length is llhttp's to refuse).
_SINGLE = frozenset({"transfer-encoding", "host", "expect"})
#: Threads for the requests that wait on something outside this process (binds).
_WAITING_THREADS = 4

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def _raw_reply(status: HTTPStatus, message: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    body = json.dumps({"Error": message}).encode()
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *(f"{k}: {v}" for k, v in extra),
        "connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _HeadTooLarge(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class _Guard:
    max_connections: int
    request_timeout_s: float
    #: Connections that have not sent a byte yet, oldest first.
    silent: OrderedDict[HttpToolsProtocol, None] = field(default_factory=OrderedDict)


def _protocol_class(guard: _Guard) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the connection cap, request deadline and head caps."""

    class Guarded(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _head_lines = 0
        _url_bytes = 0
        _in_head = False
        _head_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > guard.max_connections:
                if not guard.silent:
                    message = f"over {guard.max_connections} connections; retry"
                    extra = (("retry-after", "1"),)
                    transport.write(_raw_reply(HTTPStatus.SERVICE_UNAVAILABLE, message, extra))
                    transport.close()
                    return
                oldest, _ = guard.silent.popitem(last=False)
                oldest.transport.close()  # makes room: it never sent a request
            guard.silent[self] = None
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(guard.request_timeout_s, self._late)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _late(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()  # a pending receive() sees http.disconnect

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            guard.silent.pop(self, None)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():
                return
            self._unset_keepalive_if_required()
            if self._in_head:  # httptools buffers a header line whole: bound the head here
                self._head_bytes += len(data)
                if self._head_bytes > _MAX_HEAD:
                    self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
                    return
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                self._refuse(HTTPStatus.BAD_REQUEST, "protocol upgrades are not supported")
            except httptools.HttpParserError as err:
                cause = err.__cause__ or err.__context__
                if isinstance(cause, _HeadTooLarge):
                    self._refuse(cause.status, str(cause))
                else:
                    self._refuse(HTTPStatus.BAD_REQUEST, f"malformed request: {err}")

        def _refuse(self, status: HTTPStatus, message: str) -> None:
            log.info("extender connection refused: %s", message)
            self.transport.write(_raw_reply(status, message))
            self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            guard.silent.pop(self, None)
            self._head_lines = 0
            self._url_bytes = 0
            self._in_head = True
            self._head_bytes = 0
            self._arm()

        def on_url(self, url: bytes) -> None:
            self._url_bytes += len(url)
            if self._url_bytes > MAX_LINE:
                raise _HeadTooLarge(HTTPStatus.REQUEST_URI_TOO_LONG, "request target too long")
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._head_lines += 1
            if self._head_lines > MAX_HEADERS or len(name) + len(value) > MAX_LINE:
                raise _HeadTooLarge(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many or too long header lines"
                )
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()  # the whole request is in; the handler's time is not the client's
            super().on_message_complete()

    return Guarded


class BufferedRequest:
    """A request whose body (if any) was read before routing: what :class:`_Routes` needs."""

    __slots__ = ("_body", "_read", "headers", "method", "target", "version")

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self._body = body
        self._read = False

    def read_body(self, length: int) -> bytes:
        self._read = True
        return self._body[:length]

    @property
    def body_read(self) -> bool:
        return self._read


Handler = Callable[[IncomingRequest], Reply]


def _wanted_length(headers: dict[str, str], max_body: int) -> int | None:
    """The body length to read before routing, or None when the route refuses it unread."""
    raw = headers.get("content-length")
    if raw is None or "transfer-encoding" in headers:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or int(raw) > max_body:
        return None
    return int(raw)


class ExtenderASGI:
    """ASGI adapter: one request in, one :class:`Reply` of *handler* out.

    *handler* runs on the event loop, except for requests whose target *waits* says wait
    on something outside this process (``/bind`` creates a Binding through the API
    server): those run in a small thread pool, so that a bind's round trip never holds up
    the next pod's filter on another connection."""

    def __init__(
        self,
        handler: Handler,
        max_body: int,
        server_name: str,
        waits: Callable[[str], bool] | None = None,
    ) -> None:
        self.handler = handler
        self.max_body = max_body
        self.server_name = server_name.encode("latin-1")
        self.waits = waits
        self._pool: ThreadPoolExecutor | None = None

    def _offload(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=_WAITING_THREADS, thread_name_prefix="extender-wait")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        version = scope["http_version"]
        headers: dict[str, str] = {}
        duplicate = ""
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1")
            if name in headers and name in _SINGLE:
                duplicate = name
            headers[name] = raw_value.decode("latin-1")
        if version not in ("1.0", "1.1"):
            reply = _error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"HTTP/{version[:8]}: use HTTP/1.1")
        elif duplicate:
            reply = _error(HTTPStatus.BAD_REQUEST, f"duplicate {duplicate} header")
        else:
            length = _wanted_length(headers, self.max_body)
            body = b""
            if length:
                chunks: list[bytes] = []
                more = True
                while more:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client left, or its request deadline passed
                    chunks.append(message.get("body", b""))
                    more = message.get("more_body", False)
                body = b"".join(chunks)
            target = scope["raw_path"].decode("latin-1")
            if scope["query_string"]:
                target += "?" + scope["query_string"].decode("latin-1")
            request = BufferedRequest(scope["method"], target, f"HTTP/{version}", headers, body)
            if self.waits is not None and self.waits(target):
                loop = asyncio.get_running_loop()
                reply = await loop.run_in_executor(self._offload(), self.handler, request)
            else:
                reply = self.handler(request)
            announced = "content-length" in headers or "transfer-encoding" in headers
            if wants_close(headers) or (length is None and (announced or scope["method"] == "POST")):
                reply = Reply(reply.status, reply.body, reply.content_type, True, reply.headers)
        out = [
            (b"server", self.server_name),
            (b"content-type", reply.content_type.encode("latin-1")),
            (b"content-length", str(len(reply.body)).encode()),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers),
        ]
        if reply.close:
            out.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": reply.body})


def _error(status: HTTPStatus, message: str) -> Reply:
    return Reply(status, json.dumps({"Error": message}).encode(), close=True)


class NativeServer:
    """Serves *handler* on *sock* (a listening socket) with uvicorn until :meth:`shutdown`;
    the same interface as :class:`scheduler.http11.HTTP11Server`."""

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        *,
        max_body: int,
        server_name: str = "topolet",
        max_connections: int = MAX_CONNECTIONS,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        waits: Callable[[str], bool] | None = None,
    ) -> None:
        self.socket = sock
        self.max_connections = max_connections
        app = ExtenderASGI(handler, max_body, server_name, waits)
        self._app = app
        config = uvicorn.Config(
            app,
            http=_protocol_class(_Guard(max_connections, request_timeout_s)),
            loop="uvloop" if uvloop_available() else "asyncio",
            interface="asgi3",
            lifespan="off",
            ws="none",
            proxy_headers=False,
            server_header=False,
            date_header=False,
            access_log=False,
            log_config=None,
            timeout_keep_alive=max(1, round(idle_timeout_s)),
            timeout_graceful_shutdown=2,
            backlog=4096,
        )
        self._server = uvicorn.Server(config)
        self._done = threading.Event()
        self._done.set()

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def connections(self) -> int:
        return len(self._server.server_state.connections)

    def serve_forever(self) -> None:
        self._done.clear()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._app.close()
            self._done.set()

    def shutdown(self) -> None:
        self._server.should_exit = True
        self._done.wait(timeout=5)

    def server_close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.close()
