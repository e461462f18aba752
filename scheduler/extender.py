"""The kube-scheduler HTTP extender: a lean HTTP/1.1 server over :class:`ExtenderCore`.

Routes (``PREFIX`` is the optional ``--path-prefix``, matching ``urlPrefix``):

* ``POST PREFIX/filter``, ``POST PREFIX/prioritize``, ``POST PREFIX/bind``,
  ``POST PREFIX/preempt``: the extender verbs, JSON in and out (:mod:`scheduler.wire`);
* ``GET /healthz`` and ``GET /metrics`` (also under ``PREFIX``): liveness and Prometheus
  metrics from the server's own registry (per-verb latency histograms, decisions).

Bad input never takes the server down: malformed JSON, a wrong key case, a missing pod
or a body over the size limit get ``400`` with ``{"Error": "..."}`` (only an
:class:`~scheduler.errors.InputError` or the server's own size and shape checks do). Any
other exception while answering is the extender's own bug: ``500``, and a log line with
the traceback. An oversized body
is refused from its ``Content-Length`` alone, without reading it, and the connection is
closed. Filter and prioritize read only the in-memory cache; nothing here calls the
Kubernetes API except bind, through the core's binder. Their replies are JSON bytes
joined from cached fragments (:meth:`ExtenderCore.filter_json`); the transport is
:mod:`scheduler.native_http` (uvicorn, the default) or :mod:`scheduler.http11`
(``server="builtin"``), both with the same limits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from scheduler.errors import InputError
from scheduler.http11 import (
    MAX_CONNECTIONS,
    REQUEST_TIMEOUT_S,
    HTTP11Server,
    IncomingRequest,
    Reply,
    listening_socket,
)
from scheduler.service import ExtenderCore
from scheduler.warming import IdleWarmer
from scheduler.wire import (
    FilterRequest,
    decode_extender_args,
    parse_binding_args,
    parse_extender_args,
    parse_preemption_args,
)

if TYPE_CHECKING:
    from scheduler.native_http import NativeServer

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_SERVER",
    "MAX_DEPTH",
    "SERVERS",
    "ExtenderMetrics",
    "ExtenderServer",
    "Limits",
    "normalise_prefix",
]

log = logging.getLogger(__name__)

#: The HTTP servers that can serve the routes: uvicorn (llhttp parser, uvloop; see
#: :mod:`scheduler.native_http`) or the hand-written :mod:`scheduler.http11`.
SERVERS = ("uvicorn", "builtin")
DEFAULT_SERVER = "uvicorn"
#: Requests above this many bytes are refused (5000 full Node objects fit well below).
DEFAULT_MAX_BODY = 4 * 1024 * 1024
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


#: Nesting a v1.Pod never reaches (its deepest standard paths are about 12 levels).
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on one request: node names (a cluster has at most 5,000 nodes, kube-scheduler
    sends at most that many) and containers per pod (init containers included)."""

    max_names: int = 50_000
    max_containers: int = 1_000


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, counted up to *limit* + 1 (iterative; only objects
    and arrays go on the stack, so a large flat pod costs one pass over its values)."""
    if not isinstance(value, dict | list):
        return 0
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        deeper = level + 1
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, deeper))
    return deepest


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
        self.internal_errors = Counter(
            "topolet_extender_internal_errors",
            "Requests answered with HTTP 500 (a bug in the extender; the log has the traceback).",
            ["verb"],
            registry=self.registry,
        )


def normalise_prefix(prefix: str) -> str:
    """``"numa/"`` -> ``"/numa"``; ``""`` and ``"/"`` -> ``""``."""
    stripped = prefix.strip("/")
    return f"/{stripped}" if stripped else ""


#: A verb's reply (bytes or a JSON-able value) and the summary its log line carries.
Handled = tuple[Any, str]


def _pod_name(pod: Any) -> str:
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    if not isinstance(meta, dict):
        return "?"
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class Body:
    """A request body: typed decoding for filter/prioritize, JSON (with the caps) otherwise."""

    def __init__(self, raw: bytes, routes: _Routes) -> None:
        self.raw = raw
        self._routes = routes

    def json(self) -> Any:
        return self._routes.parse_json(self.raw)

    def extender_args(self) -> FilterRequest:
        fast = decode_extender_args(self.raw)
        if fast is None:
            return parse_extender_args(self.json())
        self._routes.check_pod(fast.pod, len(fast.names))
        return fast


def _verb_handlers(core: ExtenderCore, metrics: ExtenderMetrics) -> dict[str, Callable[[Body], Handled]]:
    def do_filter(body: Body) -> Handled:
        request = body.extender_args()
        if not core.ready:
            # kube-scheduler fails this cycle (ignorable: false) and retries the pod later,
            # rather than placing it on a node whose NRT object is not read yet.
            metrics.decisions.labels("filter", "not-synced").inc()
            return {"Error": NOT_SYNCED}, f"pod {_pod_name(request.pod)} refused: {NOT_SYNCED}"
        result = core.filter_json(request)
        metrics.decisions.labels("filter", "passed").inc(result.passed)
        metrics.decisions.labels("filter", "failed").inc(result.failed)
        metrics.decisions.labels("filter", "unresolvable").inc(result.unresolvable)
        detail = (
            f"pod {_pod_name(request.pod)} names in {len(request.names)} out {result.passed} "
            f"failed {result.failed} unresolvable {result.unresolvable}"
        )
        return result.body, detail

    def do_prioritize(body: Body) -> Handled:
        request = body.extender_args()
        reply = core.prioritize_json(request)
        return reply, f"pod {_pod_name(request.pod)} names in {len(request.names)}"

    def do_bind(body: Body) -> Handled:
        request = parse_binding_args(body.json())
        result = core.bind(request)
        outcome = "refused" if result["Error"] else "bound"
        metrics.decisions.labels("bind", outcome).inc()
        detail = f"pod {request.pod_namespace}/{request.pod_name} node {request.node} {outcome}"
        return result, detail + (f": {result['Error']}" if result["Error"] else "")

    def do_preempt(body: Body) -> Handled:
        request = parse_preemption_args(body.json())
        result = core.preempt(request)
        kept = len(result["NodeNameToMetaVictims"])
        return result, f"pod {_pod_name(request.pod)} nodes in {len(request.victims)} kept {kept}"

    return {"filter": do_filter, "prioritize": do_prioritize, "bind": do_bind, "preempt": do_preempt}


#: The filter's answer before the NRT objects are listed.
NOT_SYNCED = (
    "topolet extender: NodeResourceTopology objects (and DRA claims and slices) not listed yet; retry shortly"
)


#: Verbs whose handling waits on the Kubernetes API (the Binding), not only on this process.
_WAITING_VERBS = frozenset({"bind"})


class _Routes:
    """Routes one request (an :class:`~scheduler.http11.IncomingRequest`) to a verb, ``/healthz``
    or ``/metrics``."""

    def __init__(
        self,
        core: ExtenderCore,
        prefix: str,
        max_body: int,
        metrics: ExtenderMetrics,
        limits: Limits,
        warmer: IdleWarmer | None = None,
    ) -> None:
        self.warmer = warmer
        self.limits = limits
        self.prefix = normalise_prefix(prefix)
        self.max_body = max_body
        self.metrics = metrics
        self.core = core
        self.verbs = _verb_handlers(core, metrics)

    def _route(self, target: str) -> str | None:
        path = target.split("?", 1)[0]
        if self.prefix and path.startswith(self.prefix + "/"):
            path = path[len(self.prefix) :]
        return path.lstrip("/") or None

    def __call__(self, request: IncomingRequest) -> Reply:
        if self.warmer is None:
            return self._handle(request)
        self.warmer.begin()
        try:
            return self._handle(request)
        finally:
            self.warmer.end()

    def _handle(self, request: IncomingRequest) -> Reply:
        route = self._route(request.target)
        if request.method == "GET":
            return self._get(route, request.target)
        if request.method != "POST":
            message = f"method {request.method}: use GET or POST"
            return _json(HTTPStatus.METHOD_NOT_ALLOWED, {"Error": message})
        handler = self.verbs.get(route or "")
        if handler is None:
            with contextlib.suppress(_BadRequest):  # an unread body closes the connection
                request.read_body(self._length(request))
            verbs = ", ".join(f"{self.prefix}/{v}" for v in self.verbs)
            message = f"no such verb {request.target!r}; POST one of {verbs}"
            return _json(HTTPStatus.NOT_FOUND, {"Error": message})
        return self._post(route or "", handler, request)

    def waits(self, target: str) -> bool:
        """Whether a request for *target* waits on the API server (``bind``): a server with
        an event loop runs those off the loop."""
        return self._route(target) in _WAITING_VERBS

    def _get(self, route: str | None, target: str) -> Reply:
        if route == "healthz":
            return Reply(HTTPStatus.OK, b"ok", "text/plain; charset=utf-8")
        if route == "readyz":
            if self.core.ready:
                return Reply(HTTPStatus.OK, b"ok", "text/plain; charset=utf-8")
            return Reply(
                HTTPStatus.SERVICE_UNAVAILABLE,
                b"NRT objects (and DRA claims and slices) not listed yet",
                "text/plain; charset=utf-8",
            )
        if route == "metrics":
            return Reply(HTTPStatus.OK, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
        return _json(
            HTTPStatus.NOT_FOUND, {"Error": f"no such path {target!r}; GET /healthz, /readyz or /metrics"}
        )

    def _post(self, verb: str, handler: Callable[[Body], Handled], request: IncomingRequest) -> Reply:
        started = time.perf_counter()
        try:
            reply, detail = handler(Body(self._read_body(request), self))
        except _BadRequest as err:
            return self._refuse(verb, str(err), err.status, close=err.close)
        except InputError as err:  # the request is at fault: a decode or validation error
            return self._refuse(verb, str(err), HTTPStatus.BAD_REQUEST)
        except Exception as err:  # our bug, whatever its type: never a 400, never fatal
            log.exception("extender %s failed on a well-formed request (a bug in topolet)", verb)
            self.metrics.internal_errors.labels(verb).inc()
            message = (
                f"internal error in {verb}: {type(err).__name__}: {err}; the extender log has the traceback"
            )
            return _json(HTTPStatus.INTERNAL_SERVER_ERROR, {"Error": message})
        body = reply if isinstance(reply, bytes) else json.dumps(reply, separators=(",", ":")).encode()
        elapsed = time.perf_counter() - started
        self.metrics.latency.labels(verb).observe(elapsed)
        if log.isEnabledFor(logging.INFO):
            log.info("%s %s %.2f ms", verb, detail, elapsed * 1000)
        return Reply(HTTPStatus.OK, body)

    def _length(self, request: IncomingRequest) -> int:
        if request.headers.get("transfer-encoding", "").lower() == "chunked":
            raise _BadRequest(
                "chunked bodies are not accepted; send Content-Length",
                status=HTTPStatus.LENGTH_REQUIRED,
                close=True,
            )
        raw = request.headers.get("content-length")
        if raw is None:
            raise _BadRequest(
                "Content-Length: missing; send the body's byte count",
                status=HTTPStatus.LENGTH_REQUIRED,
                close=True,
            )
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
            raise _BadRequest(f"Content-Length: expected a byte count, got {raw[:40]!r}", close=True)
        length = int(raw)
        if length > self.max_body:
            raise _BadRequest(
                f"request body of {length} bytes is over the limit of {self.max_body} bytes",
                status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                close=True,
            )
        return length

    def _read_body(self, request: IncomingRequest) -> bytes:
        body = request.read_body(self._length(request))
        if len(body) != int(request.headers["content-length"]):
            raise _BadRequest("request body shorter than its Content-Length", close=True)
        return body

    def parse_json(self, body: bytes) -> Any:
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _BadRequest(f"request body is not valid JSON: {err}") from err
        except RecursionError:
            raise _BadRequest(f"request body nests deeper than {MAX_DEPTH} levels") from None
        self._bounded(parsed)
        return parsed

    def _bounded(self, body: Any) -> None:
        """Caps a real ExtenderArgs stays far below: nesting, node names, containers."""
        if not isinstance(body, dict):
            return
        pod = body.get("Pod")
        self.check_pod(pod, 0)
        for key in ("NodeNames", "NodeNameToMetaVictims", "NodeNameToVictims"):
            value = body.get(key)
            if isinstance(value, list | dict) and len(value) > self.limits.max_names:
                raise _BadRequest(
                    f"{key}: {len(value)} nodes, over the limit of {self.limits.max_names}",
                    status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                )
        nodes = body.get("Nodes")
        items = nodes.get("items") if isinstance(nodes, dict) else None
        if isinstance(items, list) and len(items) > self.limits.max_names:
            raise _BadRequest(
                f"Nodes.items: {len(items)} nodes, over the limit of {self.limits.max_names}",
                status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )

    def check_pod(self, pod: Any, names: int) -> None:
        """The caps on one request's Pod (nesting, containers) and node-name count."""
        if names > self.limits.max_names:
            raise _BadRequest(
                f"NodeNames: {names} nodes, over the limit of {self.limits.max_names}",
                status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        if _depth(pod, MAX_DEPTH) > MAX_DEPTH:
            raise _BadRequest(f"Pod: nests deeper than {MAX_DEPTH} levels")
        spec = pod.get("spec") if isinstance(pod, dict) else None
        if isinstance(spec, dict):
            count = sum(
                len(v) for k in ("containers", "initContainers") if isinstance(v := spec.get(k), list)
            )
            if count > self.limits.max_containers:
                raise _BadRequest(
                    f"Pod.spec: {count} containers, over the limit of {self.limits.max_containers}",
                    status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                )

    def _refuse(self, verb: str, message: str, status: HTTPStatus, *, close: bool = False) -> Reply:
        self.metrics.bad_requests.labels(verb).inc()
        log.info("extender %s: %s", verb, message)
        return _json(status, {"Error": message}, close=close)


def _json(status: HTTPStatus, payload: Any, *, close: bool = False) -> Reply:
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode(), close=close)


class ExtenderServer:
    """The extender on ``host:port`` (port 0 picks a free one; see :attr:`address`), or on
    an already listening *sock* (worker processes sharing a port).

    >>> server = ExtenderServer(core, ("127.0.0.1", 0), path_prefix="/numa")  # doctest: +SKIP
    >>> server.start(); server.url                                          # doctest: +SKIP
    'http://127.0.0.1:40123/numa'
    """

    def __init__(
        self,
        core: ExtenderCore,
        address: tuple[str, int] | None = None,
        *,
        path_prefix: str = "",
        max_body: int = DEFAULT_MAX_BODY,
        sock: socket.socket | None = None,
        server_name: str = "topolet-extender",
        limits: Limits | None = None,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        server: str = DEFAULT_SERVER,
        warm_when_idle: bool = True,
    ) -> None:
        if server not in SERVERS:
            raise ValueError(f"ExtenderServer: server {server!r}: expected one of {', '.join(SERVERS)}")
        if sock is None:
            if address is None:
                raise ValueError("ExtenderServer: give an address (HOST, PORT) or a listening socket")
            sock = listening_socket(address)
        self.core = core
        self.metrics = ExtenderMetrics()
        #: Fills the shape tables between requests (None: requests fill them alone).
        self.warmer = IdleWarmer(core.warm, core.warming_pending) if warm_when_idle else None
        self._routes = _Routes(core, path_prefix, max_body, self.metrics, limits or Limits(), self.warmer)
        self.server = server
        self._server: HTTP11Server | NativeServer
        if server == "uvicorn":
            from scheduler.native_http import NativeServer

            self._server = NativeServer(
                sock,
                self._routes,
                max_body=max_body,
                server_name=server_name,
                max_connections=max_connections,
                request_timeout_s=request_timeout_s,
                waits=self._routes.waits,
            )
        else:
            self._server = HTTP11Server(
                sock,
                self._routes,
                server_name=server_name,
                max_connections=max_connections,
                request_timeout_s=request_timeout_s,
            )
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_address

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}{self._routes.prefix}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="extender-http", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        if self.warmer is not None:
            self.warmer.start()
        try:
            self._server.serve_forever()
        finally:
            if self.warmer is not None:
                self.warmer.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
