"""A stand-in for kube-apiserver on 127.0.0.1, for the paths the extender uses.

It serves the same paths and JSON shapes as kube-apiserver:

* ``GET /apis/topology.node.k8s.io/v1alpha2/noderesourcetopologies`` (list, cluster
  scoped) and ``.../noderesourcetopologies/{name}``;
* ``GET /api/v1/pods`` (list across namespaces) and ``/api/v1/namespaces/{ns}/pods/{name}``;
* ``GET /apis/resource.k8s.io/v1/resourceclaims`` and ``.../resourceslices`` (lists across
  namespaces; ``503`` while :meth:`ApiServerStandIn.set_dra_available` is off);
* ``?watch=1`` (or ``true``) on any list: a chunked stream of one JSON object per
  line, ``{"type": "ADDED"|"MODIFIED"|"DELETED", "object": {...}}``, starting after the
  given ``resourceVersion`` and ending after ``timeoutSeconds``; a ``resourceVersion``
  older than the compaction mark gets ``{"type": "ERROR", "object": <Status 410>}``;
* ``fieldSelector`` on any list and watch (``a=b``, ``a==b``, ``a!=b``, comma-joined;
  pods: ``metadata.name``, ``metadata.namespace``, ``spec.nodeName``, ``spec.schedulerName``,
  ``status.phase``; NRTs: ``metadata.name``; claims: ``metadata.name``,
  ``metadata.namespace``; slices: ``metadata.name``, ``spec.driver``, ``spec.nodeName``;
  any other field is ``400 BadRequest`` ``field label not supported``). A filtered watch
  reports an object that starts matching as ``ADDED`` and one that stops matching as
  ``DELETED``, as the real watch cache does;
* ``POST /api/v1/namespaces/{ns}/pods/{name}/binding``: ``201`` with a ``Status`` of
  ``Success`` (as the real binding REST storage answers), ``409`` when the pod already
  has a node, ``404`` when there is no such pod, ``400`` for a malformed Binding;
  :attr:`ApiServerStandIn.posts` records every POST's path and headers, and
  :attr:`ApiServerStandIn.connections` counts the connections accepted.

Every object carries ``metadata.resourceVersion`` from one cluster-wide counter, and a
list carries the counter in ``metadata.resourceVersion``. Test code changes the state
with :meth:`ApiServerStandIn.put_nrt`, :meth:`delete_nrt`, :meth:`put_pod` and so on;
:meth:`ApiServerStandIn.bookmark` sends a ``BOOKMARK`` to watches that asked for them
(``allowWatchBookmarks=true``), :meth:`ApiServerStandIn.drop_watches` cuts every open
watch stream short (no final chunk, as a broken connection looks), and
:attr:`ApiServerStandIn.requests` records every GET as ``(path, query)``.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["ApiServerStandIn"]

NRT_PATH = "/apis/topology.node.k8s.io/v1alpha2/noderesourcetopologies"
PODS_PATH = "/api/v1/pods"
CLAIMS_PATH = "/apis/resource.k8s.io/v1/resourceclaims"
SLICES_PATH = "/apis/resource.k8s.io/v1/resourceslices"
#: Collection path -> kind, and kind -> (apiVersion, list kind).
_KINDS = {NRT_PATH: "nrt", PODS_PATH: "pod", CLAIMS_PATH: "claim", SLICES_PATH: "slice"}
_LISTS = {
    "nrt": ("topology.node.k8s.io/v1alpha2", "NodeResourceTopologyList"),
    "pod": ("v1", "PodList"),
    "claim": ("resource.k8s.io/v1", "ResourceClaimList"),
    "slice": ("resource.k8s.io/v1", "ResourceSliceList"),
}
_NRT_ONE = re.compile(re.escape(NRT_PATH) + r"/([^/]+)")
_POD_ONE = re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)")
_BINDING = re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/binding")


_FIELDS: dict[str, tuple[str, ...]] = {
    "pod": ("metadata.name", "metadata.namespace", "spec.nodeName", "spec.schedulerName", "status.phase"),
    "nrt": ("metadata.name",),
    "claim": ("metadata.name", "metadata.namespace"),
    "slice": ("metadata.name", "spec.driver", "spec.nodeName"),
}


@dataclass(frozen=True)
class _Event:
    rv: int
    kind: str  # "nrt", "pod", "claim" or "slice"
    type: str
    obj: dict[str, Any]
    prev: dict[str, Any] | None = None  # the object before a MODIFIED


class _BadSelector(ValueError):
    pass


class _Dropped(Exception):
    """drop_watches() was called: end this stream without its final chunk."""


def _parse_selector(kind: str, text: str | None) -> list[tuple[str, bool, str]]:
    """``spec.nodeName=a,status.phase!=Failed`` → [(field, equal?, value), ...]."""
    out: list[tuple[str, bool, str]] = []
    for term in (text or "").split(","):
        if not term:
            continue
        m = re.fullmatch(r"([A-Za-z.]+)(==|=|!=)(.*)", term)
        if m is None:
            raise _BadSelector(f"invalid selector: '{text}'; can't understand '{term}'")
        if m.group(1) not in _FIELDS[kind]:
            raise _BadSelector(f"field label not supported: {m.group(1)}")
        out.append((m.group(1), m.group(2) != "!=", m.group(3)))
    return out


def _field(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def _matches(obj: dict[str, Any] | None, selector: list[tuple[str, bool, str]]) -> bool:
    return obj is not None and all((_field(obj, f) == v) == eq for f, eq, v in selector)


def _filtered(event: _Event, selector: list[tuple[str, bool, str]]) -> str | None:
    """The event type a watch with *selector* reports, or None when it sees nothing."""
    if not selector:
        return event.type
    now = _matches(event.obj, selector)
    if event.type != "MODIFIED":
        return event.type if now else None
    before = _matches(event.prev, selector)
    if now:
        return "MODIFIED" if before else "ADDED"
    return "DELETED" if before else None


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "code": code,
    }
    if code >= 400:
        out.update(message=message, reason=reason)
    if details:
        out["details"] = details
    return out


class _State:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rv = 1
        self.compacted = 0
        self.nrts: dict[str, dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}
        self.slices: dict[str, dict[str, Any]] = {}
        #: False: the resource.k8s.io paths answer 503 (an API server still starting them)
        self.dra_available = True
        self.events: list[_Event] = []
        self.bindings: list[dict[str, Any]] = []
        self.closing = False
        self.dropped = 0  # bumped by drop_watches()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.posts: list[tuple[str, dict[str, str]]] = []  # (path, headers by lowercased name)
        self.connections = 0

    def record(
        self, kind: str, type_: str, obj: dict[str, Any], prev: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        with self.cond:
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
            self.events.append(_Event(self.rv, kind, type_, obj, prev))
            self.cond.notify_all()
            return obj


class ApiServerStandIn:
    """Start with :meth:`start`; :attr:`url` is ``http://127.0.0.1:<port>`` (``https://``
    with *tls*, a server-side SSL context)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.state = _State()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._scheme = "http"
        if tls is not None:  # the handshake happens as each connection is accepted
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._server.daemon_threads = True
        self._server.state = self.state  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def start(self) -> ApiServerStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.state.cond:
            self.state.closing = True
            self.state.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------ state
    def put_nrt(self, obj: dict[str, Any]) -> None:
        """Create (ADDED) or replace (MODIFIED) an NRT object named by ``metadata.name``."""
        name = obj["metadata"]["name"]
        type_ = "MODIFIED" if name in self.state.nrts else "ADDED"
        full = {"apiVersion": "topology.node.k8s.io/v1alpha2", "kind": "NodeResourceTopology", **obj}
        self.state.nrts[name] = self.state.record("nrt", type_, full)

    def delete_nrt(self, name: str) -> None:
        obj = self.state.nrts.pop(name)
        self.state.record("nrt", "DELETED", obj)

    def put_pod(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta.setdefault("uid", str(uuid.uuid4()))
        key = (meta["namespace"], meta["name"])
        old = self.state.pods.get(key)
        # as the real server: set once at creation, in whole seconds (UTC)
        created = old["metadata"].get("creationTimestamp") if old else None
        meta.setdefault("creationTimestamp", created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        type_ = "MODIFIED" if key in self.state.pods else "ADDED"
        full = {"apiVersion": "v1", "kind": "Pod", **obj}
        self.state.pods[key] = self.state.record("pod", type_, full, self.state.pods.get(key))
        return self.state.pods[key]

    def put_slice(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Add or replace a ResourceSlice (``resource.k8s.io/v1``)."""
        name = obj["metadata"]["name"]
        type_ = "MODIFIED" if name in self.state.slices else "ADDED"
        full = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", **obj}
        self.state.slices[name] = self.state.record("slice", type_, full, self.state.slices.get(name))
        return self.state.slices[name]

    def set_dra_available(self, available: bool) -> None:
        """Whether the ``resource.k8s.io`` paths answer (else ``503``)."""
        self.state.dra_available = available

    def delete_pod(self, namespace: str, name: str) -> None:
        obj = self.state.pods.pop((namespace, name))
        self.state.record("pod", "DELETED", obj)

    def bookmark(self, kind: str = "pod") -> str:
        """A BOOKMARK at the current resourceVersion for watches of *kind* (``pod``/``nrt``)."""
        with self.state.cond:
            self.state.rv += 1
            rv = self.state.rv
            obj: dict[str, Any] = {
                "kind": "Pod" if kind == "pod" else "NodeResourceTopology",
                "metadata": {"resourceVersion": str(rv)},
            }
            self.state.events.append(_Event(rv, kind, "BOOKMARK", obj))
            self.state.cond.notify_all()
        return str(rv)

    def drop_watches(self) -> None:
        """Cut every open watch stream short, as a broken connection does."""
        with self.state.cond:
            self.state.dropped += 1
            self.state.cond.notify_all()

    @property
    def posts(self) -> list[tuple[str, dict[str, str]]]:
        """Every POST so far: ``(path, headers)``, header names lowercased."""
        return list(self.state.posts)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        return self.state.connections

    @property
    def requests(self) -> list[tuple[str, dict[str, str]]]:
        """Every GET so far: ``(path, query)``."""
        return list(self.state.requests)

    def compact(self) -> None:
        """Forget history: watches from older resource versions get 410 Gone."""
        with self.state.cond:
            self.state.compacted = self.state.rv

    @property
    def bindings(self) -> list[dict[str, Any]]:
        return list(self.state.bindings)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.state.cond:
            self.state.connections += 1

    @property
    def state(self) -> _State:
        return self.server.state  # type: ignore[attr-defined, no-any-return]

    # ----------------------------------------------------------- replies
    def _json(self, code: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # ------------------------------------------------------------- GET
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path.rstrip("/")
        with self.state.cond:
            self.state.requests.append((path, query))
        if path in _KINDS:
            kind = _KINDS[path]
            if kind in ("claim", "slice") and not self.state.dra_available:
                self._json(
                    503,
                    _status(
                        503, "ServiceUnavailable", "the server is currently unable to handle the request"
                    ),
                )
                return
            try:
                selector = _parse_selector(kind, query.get("fieldSelector"))
            except _BadSelector as e:
                self._json(400, _status(400, "BadRequest", str(e)))
                return
            if query.get("watch") in ("1", "true", "True"):
                self._watch(kind, query, selector)
            else:
                self._list(kind, selector)
            return
        m = _NRT_ONE.fullmatch(path)
        if m and m.group(1) in self.state.nrts:
            self._json(200, self.state.nrts[m.group(1)])
            return
        m = _POD_ONE.fullmatch(path)
        if m and (m.group(1), m.group(2)) in self.state.pods:
            self._json(200, self.state.pods[(m.group(1), m.group(2))])
            return
        self._json(
            404, _status(404, "NotFound", f"the server could not find the requested resource ({path})")
        )

    def _list(self, kind: str, selector: list[tuple[str, bool, str]]) -> None:
        with self.state.cond:
            rv = str(self.state.rv)
            stores: dict[str, Iterable[dict[str, Any]]] = {
                "nrt": self.state.nrts.values(),
                "pod": self.state.pods.values(),
                "claim": self.state.claims.values(),
                "slice": self.state.slices.values(),
            }
            items = [o for o in stores[kind] if _matches(o, selector)]
            api_version, list_kind = _LISTS[kind]
            head = {"apiVersion": api_version, "kind": list_kind}
        self._json(200, {**head, "metadata": {"resourceVersion": rv}, "items": items})

    def _events(
        self, kind: str, since: int, timeout: float, selector: list[tuple[str, bool, str]], bookmarks: bool
    ) -> Iterator[tuple[str, _Event]]:
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        position = 0
        dropped = self.state.dropped
        try:
            while not deadline.is_set():
                with self.state.cond:
                    if self.state.dropped != dropped:
                        raise _Dropped
                    fresh = [e for e in self.state.events[position:]]
                    position = len(self.state.events)
                    if not fresh:
                        if self.state.closing:
                            return
                        self.state.cond.wait(0.05)
                        continue
                for event in fresh:
                    if event.kind != kind or event.rv <= since:
                        continue
                    if event.type == "BOOKMARK":
                        if bookmarks:
                            yield "BOOKMARK", event
                        continue
                    type_ = _filtered(event, selector)
                    if type_ is not None:
                        yield type_, event
        finally:
            timer.cancel()

    def _watch(self, kind: str, query: dict[str, str], selector: list[tuple[str, bool, str]]) -> None:
        since = int(query.get("resourceVersion") or self.state.rv)
        timeout = float(query.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if since < self.state.compacted:
                gone = _status(410, "Expired", f"too old resource version: {since} ({self.state.compacted})")
                self._chunk(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            else:
                bookmarks = query.get("allowWatchBookmarks") in ("1", "true", "True")
                for type_, event in self._events(kind, since, timeout, selector, bookmarks):
                    self._chunk(json.dumps({"type": type_, "object": event.obj}).encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except _Dropped:  # no final chunk: the client sees the stream end prematurely
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ------------------------------------------------------------ POST
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        with self.state.cond:
            self.state.posts.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        m = _BINDING.fullmatch(urlsplit(self.path).path)
        if m is None:
            self._json(405, _status(405, "MethodNotAllowed", f"POST is not supported on {self.path}"))
            return
        namespace, name = m.groups()
        try:
            body = json.loads(raw)
            target = body["target"]
            node = target["name"]
            if body.get("kind", "Binding") != "Binding" or target.get("kind", "Node") != "Node" or not node:
                raise ValueError("kind")
        except (ValueError, KeyError, TypeError):
            self._json(
                400, _status(400, "BadRequest", "the body is not a valid Binding with target.kind Node")
            )
            return
        self._bind(namespace, name, node, body)

    def _bind(self, namespace: str, name: str, node: str, body: dict[str, Any]) -> None:
        details = {"name": name, "kind": "pods/binding"}
        with self.state.cond:
            pod = self.state.pods.get((namespace, name))
            if pod is None:
                self._json(404, _status(404, "NotFound", f'pods "{name}" not found', details))
                return
            bound = pod.get("spec", {}).get("nodeName")
            if bound:
                msg = (
                    f'Operation cannot be fulfilled on pods/binding "{name}": '
                    f'pod {name} is already assigned to node "{bound}"'
                )
                self._json(409, _status(409, "Conflict", msg, details))
                return
            updated = copy.deepcopy(pod)
            updated.setdefault("spec", {})["nodeName"] = node
            self.state.pods[(namespace, name)] = self.state.record("pod", "MODIFIED", updated, pod)
            self.state.bindings.append(body)
        self._json(201, _status(201, "", ""))
