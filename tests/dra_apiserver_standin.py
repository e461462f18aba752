"""A stand-in for kube-apiserver's ``resource.k8s.io/v1`` paths, on 127.0.0.1.

What a DRA driver's node side calls, with kube-apiserver's answers:

* ``GET /apis/resource.k8s.io/v1/resourceslices`` (``fieldSelector`` on ``spec.nodeName``,
  ``spec.driver``, ``metadata.name``; any other field is ``400``), ``GET .../{name}``;
* ``POST`` (``generateName`` gets five random characters; ``409`` when the name is taken),
  ``PUT .../{name}`` (``409 Conflict`` on a missing or stale ``resourceVersion``, ``422``
  when ``spec.driver`` changes: it is immutable), ``DELETE .../{name}`` (``404`` when absent);
* ``GET /apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims/{name}``.

Every written slice is validated as the real server would refuse it (``422 Invalid``): the
Kubernetes 1.34 OpenAPI schema in strict mode (kubernetes-validate), then the API's own
limits: at most 128 devices with unique DNS-label names, one value per attribute,
strings and versions of at most 64 characters, at most 32 attributes and capacities per
device, exactly one of ``nodeName``/``nodeSelector``/``allNodes``, a positive
``resourceSliceCount``. Writes are kept in :attr:`DRAApiServerStandIn.writes`.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate

__all__ = ["DRAApiServerStandIn", "slice_problems"]

_BASE = "/apis/resource.k8s.io/v1"
_SLICES = _BASE + "/resourceslices"
_SLICE_ONE = re.compile(re.escape(_SLICES) + r"/([^/]+)")
_CLAIM_ONE = re.compile(re.escape(_BASE) + r"/namespaces/([^/]+)/resourceclaims/([^/]+)")
_FIELDS = ("spec.nodeName", "spec.driver", "metadata.name")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
Obj = dict[str, Any]


def _status(code: int, reason: str, message: str) -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": code,
            "reason": reason, "message": message}  # fmt: skip


def slice_problems(obj: Obj) -> list[str]:
    """Why kube-apiserver would refuse this ResourceSlice ([] when it would accept it)."""
    try:
        kubernetes_validate.validate(obj, "1.34.0", strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"schema: {e.message}"]
    spec = obj.get("spec", {})
    out = []
    where = [k for k in ("nodeName", "nodeSelector", "allNodes") if spec.get(k)]
    if len(where) != 1:
        out.append(f"spec: exactly one of nodeName, nodeSelector, allNodes must be set, got {where}")
    if spec.get("pool", {}).get("resourceSliceCount", 0) <= 0:
        out.append("spec.pool.resourceSliceCount: must be greater than zero")
    devices = spec.get("devices", [])
    if len(devices) > 128:
        out.append(f"spec.devices: must have at most 128 items, got {len(devices)}")
    names = [d.get("name", "") for d in devices]
    out += [f"spec.devices[].name: duplicate {n!r}" for n in sorted({n for n in names if names.count(n) > 1})]
    for d in devices:
        if not _DNS_LABEL.fullmatch(d.get("name", "")):
            out.append(f"spec.devices[].name: {d.get('name')!r} is not a DNS label")
        attrs, caps = d.get("attributes", {}), d.get("capacity", {})
        if len(attrs) + len(caps) > 32:
            out.append(f"device {d['name']}: more than 32 attributes and capacities")
        for key, value in attrs.items():
            if len(value) != 1:
                out.append(f"device {d['name']} attribute {key}: exactly one value, got {sorted(value)}")
            for kind in ("string", "version"):
                if kind in value and len(value[kind]) > 64:
                    out.append(f"device {d['name']} attribute {key}: longer than 64 characters")
            if "version" in value and not re.fullmatch(
                r"\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?", value["version"]
            ):
                out.append(f"device {d['name']} attribute {key}: {value['version']!r} is not semver")
    return out


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rv = 1
        self.slices: dict[str, Obj] = {}
        self.claims: dict[tuple[str, str], Obj] = {}
        self.writes: list[tuple[str, str]] = []


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def state(self) -> _State:
        return self.server.state  # type: ignore[attr-defined, no-any-return]

    def _json(self, code: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Obj | None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("kind") != "ResourceSlice":
            self._json(400, _status(400, "BadRequest", "the body is not a ResourceSlice"))
            return None
        problems = slice_problems(body)
        if problems:
            self._json(422, _status(422, "Invalid", "; ".join(problems)))
            return None
        return body

    def _stamp(self, obj: Obj) -> Obj:
        self.state.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.state.rv)
        return copy.deepcopy(obj)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.state.lock:
            if path == _SLICES:
                terms = [t.split("=", 1) for t in (query.get("fieldSelector") or "").split(",") if t]
                bad = [t[0] for t in terms if t[0] not in _FIELDS or len(t) != 2]
                if bad:
                    self._json(400, _status(400, "BadRequest", f"field label not supported: {bad[0]}"))
                    return
                items = [s for s in self.state.slices.values() if all(_get(s, f) == v for f, v in terms)]
                meta = {"resourceVersion": str(self.state.rv)}
                self._json(200, {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSliceList",
                                 "metadata": meta, "items": items})  # fmt: skip
                return
            m = _SLICE_ONE.fullmatch(path)
            if m and m[1] in self.state.slices:
                self._json(200, self.state.slices[m[1]])
                return
            m = _CLAIM_ONE.fullmatch(path)
            if m and (m[1], m[2]) in self.state.claims:
                self._json(200, self.state.claims[(m[1], m[2])])
                return
        self._json(
            404, _status(404, "NotFound", f"the server could not find the requested resource ({path})")
        )

    def do_POST(self) -> None:
        if urlsplit(self.path).path.rstrip("/") != _SLICES:
            self._json(405, _status(405, "MethodNotAllowed", f"POST is not supported on {self.path}"))
            return
        if (body := self._body()) is None:
            return
        meta = body["metadata"]
        with self.state.lock:
            name = meta.get("name") or meta.get("generateName", "") + secrets.token_hex(3)[:5]
            if name in self.state.slices:
                self._json(409, _status(409, "AlreadyExists", f'resourceslices "{name}" already exists'))
                return
            meta.update(name=name, uid=str(uuid.uuid4()))
            self.state.slices[name] = self._stamp(body)
            self.state.writes.append(("create", name))
            self._json(201, self.state.slices[name])

    def do_PUT(self) -> None:
        m = _SLICE_ONE.fullmatch(urlsplit(self.path).path.rstrip("/"))
        if m is None:
            self._json(405, _status(405, "MethodNotAllowed", f"PUT is not supported on {self.path}"))
            return
        if (body := self._body()) is None:
            return
        name = m[1]
        with self.state.lock:
            old = self.state.slices.get(name)
            if old is None:
                self._json(404, _status(404, "NotFound", f'resourceslices "{name}" not found'))
                return
            if body["metadata"].get("resourceVersion") != old["metadata"]["resourceVersion"]:
                msg = (
                    f'Operation cannot be fulfilled on resourceslices "{name}": the object has been modified'
                )
                self._json(409, _status(409, "Conflict", msg))
                return
            if body["spec"]["driver"] != old["spec"]["driver"]:
                self._json(422, _status(422, "Invalid", "spec.driver: field is immutable"))
                return
            body["metadata"]["uid"] = old["metadata"]["uid"]
            self.state.slices[name] = self._stamp(body)
            self.state.writes.append(("update", name))
            self._json(200, self.state.slices[name])

    def do_DELETE(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        m = _SLICE_ONE.fullmatch(urlsplit(self.path).path.rstrip("/"))
        with self.state.lock:
            if m is None or m[1] not in self.state.slices:
                self._json(404, _status(404, "NotFound", f"resourceslices not found ({self.path})"))
                return
            gone = self.state.slices.pop(m[1])
            self.state.writes.append(("delete", m[1]))
            self._json(200, gone)


def _get(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


class DRAApiServerStandIn:
    """Start with :meth:`start`; :attr:`url` is ``http://127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self.state = _State()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.state = self.state  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> DRAApiServerStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def writes(self) -> list[tuple[str, str]]:
        with self.state.lock:
            return list(self.state.writes)

    def slices(self, node_name: str | None = None) -> list[Obj]:
        with self.state.lock:
            out = [copy.deepcopy(s) for s in self.state.slices.values()]
        return [s for s in out if node_name is None or s["spec"].get("nodeName") == node_name]

    def put_claim(self, claim: Obj) -> None:
        meta = claim["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        with self.state.lock:
            self.state.claims[(meta["namespace"], meta["name"])] = self._stamp_claim(claim)

    def _stamp_claim(self, claim: Obj) -> Obj:
        self.state.rv += 1
        claim = copy.deepcopy(claim)
        claim["metadata"]["resourceVersion"] = str(self.state.rv)
        return claim
