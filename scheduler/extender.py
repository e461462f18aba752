"""The kube-scheduler HTTP extender: a threading HTTP/1.1 server over :class:`ExtenderCore`.

Routes (``PREFIX`` is the optional ``--path-prefix``, matching ``urlPrefix``):

* ``POST PREFIX/filter``, ``POST PREFIX/prioritize``, ``POST PREFIX/bind``,
  ``POST PREFIX/preempt``: the extender verbs, JSON in and out (:mod:`scheduler.wire`);
* ``GET /healthz`` and ``GET /metrics`` (also under ``PREFIX``): liveness and Prometheus
  metrics from the server's own registry (per-verb latency histograms, decisions).

Bad input never takes the server down: malformed JSON, a wrong key case, a missing pod
or a body over the size limit get ``400`` with ``{"Error": "..."}``. An oversized body
is refused from its ``Content-Length`` alone, without reading it, and the connection is
closed. Filter and prioritize read only the in-memory cache; nothing here calls the
Kubernetes API except bind, through the core's binder.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from scheduler.errors import SchedulerError
from scheduler.service import ExtenderCore
from scheduler.wire import parse_binding_args, parse_extender_args, parse_preemption_args

__all__ = ["DEFAULT_MAX_BODY", "ExtenderMetrics", "ExtenderServer", "normalise_prefix"]

log = logging.getLogger(__name__)

#: Requests above this many bytes are refused (5000 full Node objects fit well below).
DEFAULT_MAX_BODY = 4 * 1024 * 1024
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _BadRequest(Exception):
    def __init__(
        self, message: str, *, status: HTTPStatus = HTTPStatus.BAD_REQUEST, close: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.close = close


class ExtenderMetrics:
    """Prometheus metrics in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "topolet_extender_request_duration_seconds",
            "Time to answer one extender request.",
            ["verb"],
            registry=self.registry,
            buckets=_BUCKETS,
        )
        self.decisions = Counter(
            "topolet_extender_decisions",
            "Nodes passed or rejected by filter; binds done or refused.",
            ["verb", "outcome"],
            registry=self.registry,
        )
        self.bad_requests = Counter(
            "topolet_extender_bad_requests",
            "Requests refused with HTTP 400.",
            ["verb"],
            registry=self.registry,
        )


def normalise_prefix(prefix: str) -> str:
    """``"numa/"`` -> ``"/numa"``; ``""`` and ``"/"`` -> ``""``."""
    stripped = prefix.strip("/")
    return f"/{stripped}" if stripped else ""


def _verb_handlers(core: ExtenderCore, metrics: ExtenderMetrics) -> dict[str, Callable[[Any], Any]]:
    def do_filter(body: Any) -> Any:
        result = core.filter(parse_extender_args(body))
        passed = result.get("NodeNames") or (result.get("Nodes") or {}).get("items") or []
        metrics.decisions.labels("filter", "passed").inc(len(passed))
        metrics.decisions.labels("filter", "failed").inc(len(result.get("FailedNodes", {})))
        metrics.decisions.labels("filter", "unresolvable").inc(
            len(result.get("FailedAndUnresolvableNodes", {}))
        )
        return result

    def do_prioritize(body: Any) -> Any:
        return core.prioritize(parse_extender_args(body))

    def do_bind(body: Any) -> Any:
        result = core.bind(parse_binding_args(body))
        metrics.decisions.labels("bind", "refused" if result["Error"] else "bound").inc()
        return result

    def do_preempt(body: Any) -> Any:
        return core.preempt(parse_preemption_args(body))

    return {"filter": do_filter, "prioritize": do_prioritize, "bind": do_bind, "preempt": do_preempt}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK stall every reply by tens of milliseconds.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    # -------------------------------------------------------------- routing
    def _route(self) -> str | None:
        path = self.path.split("?", 1)[0]
        prefix = self.server.prefix
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix) :]
        return path.lstrip("/") or None

    def do_GET(self) -> None:
        route = self._route()
        if route == "healthz":
            self._send(HTTPStatus.OK, b"ok", "text/plain; charset=utf-8")
        elif route == "metrics":
            self._send(HTTPStatus.OK, generate_latest(self.server.metrics.registry), CONTENT_TYPE_LATEST)
        else:
            self._json(
                HTTPStatus.NOT_FOUND, {"Error": f"no such path {self.path!r}; GET /healthz or /metrics"}
            )

    def do_POST(self) -> None:
        route = self._route()
        handler = self.server.verbs.get(route or "")
        if handler is None:
            self._discard_body()
            verbs = ", ".join(f"{self.server.prefix}/{v}" for v in self.server.verbs)
            self._json(HTTPStatus.NOT_FOUND, {"Error": f"no such verb {self.path!r}; POST one of {verbs}"})
            return
        verb = route or ""
        started = time.perf_counter()
        try:
            reply = handler(self._read_json())
        except _BadRequest as err:
            self._refuse(verb, str(err), err.status, close=err.close)
            return
        except (SchedulerError, ValueError) as err:
            self._refuse(verb, str(err), HTTPStatus.BAD_REQUEST)
            return
        except Exception as err:  # a bug must not kill the server; report it as a 500
            log.exception("extender %s failed", verb)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"Error": f"internal error in {verb}: {err}"})
            return
        body = json.dumps(reply, separators=(",", ":")).encode()
        self.server.metrics.latency.labels(verb).observe(time.perf_counter() - started)
        self._send(HTTPStatus.OK, body, "application/json")

    # ----------------------------------------------------------------- body
    def _length(self) -> int:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise _BadRequest(
                "chunked bodies are not accepted; send Content-Length",
                status=HTTPStatus.LENGTH_REQUIRED,
                close=True,
            )
        raw = self.headers.get("Content-Length")
        if raw is None or not raw.isdigit():
            raise _BadRequest(
                f"Content-Length: expected a byte count, got {raw!r}",
                status=HTTPStatus.LENGTH_REQUIRED,
                close=True,
            )
        length = int(raw)
        if length > self.server.max_body:
            raise _BadRequest(
                f"request body of {length} bytes is over the limit of {self.server.max_body} bytes",
                close=True,
            )
        return length

    def _read_json(self) -> Any:
        body = self.rfile.read(self._length())
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _BadRequest(f"request body is not valid JSON: {err}") from err

    def _discard_body(self) -> None:
        try:
            length = self._length()
        except _BadRequest:
            self.close_connection = True
            return
        self.rfile.read(length)

    # ---------------------------------------------------------------- reply
    def _refuse(self, verb: str, message: str, status: HTTPStatus, *, close: bool = False) -> None:
        self.server.metrics.bad_requests.labels(verb).inc()
        log.info("extender %s: %s", verb, message)
        if close:
            self.close_connection = True
        self._json(status, {"Error": message})

    def _json(self, status: HTTPStatus, payload: Any) -> None:
        self._send(status, json.dumps(payload, separators=(",", ":")).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        core: ExtenderCore,
        prefix: str,
        max_body: int,
        metrics: ExtenderMetrics,
    ) -> None:
        self.prefix = normalise_prefix(prefix)
        self.max_body = max_body
        self.metrics = metrics
        self.verbs = _verb_handlers(core, metrics)
        super().__init__(address, _Handler)


class ExtenderServer:
    """The extender on ``host:port`` (port 0 picks a free one; see :attr:`address`).

    >>> server = ExtenderServer(core, ("127.0.0.1", 0), path_prefix="/numa")  # doctest: +SKIP
    >>> server.start(); server.url                                          # doctest: +SKIP
    'http://127.0.0.1:40123/numa'
    """

    def __init__(
        self,
        core: ExtenderCore,
        address: tuple[str, int],
        *,
        path_prefix: str = "",
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.core = core
        self.metrics = ExtenderMetrics()
        self._server = _Server(address, core, path_prefix, max_body, self.metrics)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}{self._server.prefix}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="extender-http", daemon=True
        )
        self._thread.start()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
