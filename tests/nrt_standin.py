"""The API-server stand-in with the NRT writes a node agent makes, as kube-apiserver answers them.

:class:`NRTApiServerStandIn` is :class:`tests.apiserver_standin.ApiServerStandIn` plus:

* ``POST /apis/topology.node.k8s.io/v1alpha2/noderesourcetopologies``: create, ``201``
  with the stored object (``metadata.resourceVersion``, ``uid``, ``creationTimestamp``
  added); ``409 AlreadyExists`` when the name is taken; ``400`` for a body that is not an
  NRT object;
* ``PUT .../noderesourcetopologies/{name}``: replace, ``200``; ``404`` when absent;
  ``409 Conflict`` when ``metadata.resourceVersion`` is missing or stale (the CRD's update
  strategy requires it, as for every custom resource); ``400`` when the body's name
  differs from the path's.

Every write is kept in :attr:`NRTApiServerStandIn.writes` as ``(verb, name)``;
:meth:`NRTApiServerStandIn.fail_next` makes the next writes answer ``500``.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from tests.apiserver_standin import NRT_PATH, ApiServerStandIn, _Handler, _status

__all__ = ["NRTApiServerStandIn"]

_NRT_ONE = re.compile(re.escape(NRT_PATH) + r"/([^/]+)")
_API_VERSION = "topology.node.k8s.io/v1alpha2"


class _NRTHandler(_Handler):
    def _body(self) -> dict[str, Any] | None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        ok = (
            isinstance(body, dict)
            and body.get("kind") == "NodeResourceTopology"
            and body.get("apiVersion") == _API_VERSION
            and isinstance(body.get("metadata"), dict)
            and isinstance(body["metadata"].get("name"), str)
        )
        if not ok:
            self._json(400, _status(400, "BadRequest", "the body is not a NodeResourceTopology object"))
            return None
        assert isinstance(body, dict)
        return body

    def _failing(self) -> bool:
        standin: NRTApiServerStandIn = self.server.standin  # type: ignore[attr-defined]
        if standin.failures <= 0:
            return False
        standin.failures -= 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._json(500, _status(500, "InternalError", "injected failure"))
        return True

    def do_POST(self) -> None:
        if urlsplit(self.path).path.rstrip("/") != NRT_PATH:
            super().do_POST()
            return
        if self._failing() or (body := self._body()) is None:
            return
        name = body["metadata"]["name"]
        with self.state.cond:
            if name in self.state.nrts:
                msg = f'noderesourcetopologies.topology.node.k8s.io "{name}" already exists'
                self._json(409, _status(409, "AlreadyExists", msg))
                return
            meta = body["metadata"]
            meta.update(
                uid=str(uuid.uuid4()), creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            )
            self.state.nrts[name] = self.state.record("nrt", "ADDED", body)
            self.server.standin.writes.append(("create", name))  # type: ignore[attr-defined]
            stored = copy.deepcopy(self.state.nrts[name])
        self._json(201, stored)

    def do_PUT(self) -> None:
        m = _NRT_ONE.fullmatch(urlsplit(self.path).path.rstrip("/"))
        if m is None:
            self._json(405, _status(405, "MethodNotAllowed", f"PUT is not supported on {self.path}"))
            return
        if self._failing() or (body := self._body()) is None:
            return
        name = m.group(1)
        if body["metadata"]["name"] != name:
            self._json(400, _status(400, "BadRequest", "the name of the object does not match the URL"))
            return
        with self.state.cond:
            old = self.state.nrts.get(name)
            if old is None:
                self._json(404, _status(404, "NotFound", f'noderesourcetopologies "{name}" not found'))
                return
            if body["metadata"].get("resourceVersion") != old["metadata"]["resourceVersion"]:
                msg = (
                    f"Operation cannot be fulfilled on noderesourcetopologies.topology.node.k8s.io "
                    f'"{name}": the object has been modified; please apply your changes to the '
                    f"latest version and try again"
                )
                self._json(409, _status(409, "Conflict", msg))
                return
            for key in ("uid", "creationTimestamp"):
                if key in old["metadata"]:
                    body["metadata"][key] = old["metadata"][key]
            self.state.nrts[name] = self.state.record("nrt", "MODIFIED", body)
            self.server.standin.writes.append(("replace", name))  # type: ignore[attr-defined]
            stored = copy.deepcopy(self.state.nrts[name])
        self._json(200, stored)


class NRTApiServerStandIn(ApiServerStandIn):
    """See the module docstring. ``start()`` and :attr:`url` as the base class."""

    def __init__(self) -> None:
        super().__init__()
        self._server.RequestHandlerClass = _NRTHandler
        self._server.standin = self  # type: ignore[attr-defined]
        self.writes: list[tuple[str, str]] = []
        self.failures = 0

    def fail_next(self, count: int) -> None:
        """Answer the next *count* NRT writes with ``500 InternalError``."""
        self.failures = count

    def nrt(self, name: str) -> dict[str, Any] | None:
        obj = self.state.nrts.get(name)
        return copy.deepcopy(obj) if obj is not None else None
