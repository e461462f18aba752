"""The node's ResourceSlices (driver ``gpu.topolet.io``): published when they change.

:class:`ResourceSlicePublisher` keeps the API server's slices of this node's pool equal to
what *build* returns (:func:`topology.resourceslice.build_resource_slices`):

* it lists the slices with ``fieldSelector=spec.nodeName=<node>`` (the only list a node's
  credentials may make) and keeps those of its driver;
* when their content (everything but ``pool.generation``) equals the wanted content it
  writes nothing; otherwise it picks a generation above every one seen, deletes surplus
  slices first, then updates the existing ones in place (with their ``resourceVersion``)
  and creates the missing ones, all with the new generation, so the scheduler never
  mixes two generations of the pool;
* :meth:`ResourceSlicePublisher.withdraw` deletes every slice of the pool (uninstall;
  kubelet also wipes a driver's slices 30 s after its plugin went away for good).

A background thread publishes on :meth:`~ResourceSlicePublisher.trigger` (a GPU turned
unhealthy or healthy again, rediscovery) and every resync period; API errors are logged
and retried with exponential backoff. Writes go through
:class:`kube.resources.ResourceSlices` (:data:`KubeSliceAPI`).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from topology.resourceslice import DRIVER

__all__ = ["KubeSliceAPI", "ResourceSlicePublisher", "SliceAPI"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class SliceAPI(Protocol):
    """The ResourceSlice calls the publisher makes."""

    def list(self, node_name: str) -> list[Obj]: ...

    def create(self, body: Obj) -> Obj: ...

    def replace(self, name: str, body: Obj) -> Obj: ...

    def delete(self, name: str) -> None: ...


def KubeSliceAPI(api_client: Any) -> SliceAPI:  # the name callers know; it was a class
    """:class:`SliceAPI` over the API server (:class:`kube.resources.ResourceSlices`: plain
    dicts both ways; deleting a slice that is gone already is no error)."""
    from kube.resources import ResourceSlices  # the client library loads only when used

    return ResourceSlices(api_client)


def _content(spec: Obj) -> str:
    """The slice's spec without the pool generation, as comparable text."""
    s = copy.deepcopy(spec)
    s.get("pool", {}).pop("generation", None)
    return json.dumps(s, sort_keys=True)


class ResourceSlicePublisher:
    """Publish the slices *build* returns, when they changed (see the module docstring).

    ``on_write(verb)`` (``create``, ``update``, ``delete``) and ``on_error()`` are called
    after each write and each failure (metrics).
    """

    def __init__(
        self,
        api: SliceAPI,
        build: Callable[[], list[Obj]],
        *,
        node_name: str,
        driver: str = DRIVER,
        resync_s: float = 60.0,
        coalesce_s: float = 0.1,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        on_write: Callable[[str], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.api, self.build = api, build
        self.node_name, self.driver = node_name, driver
        self.resync_s, self.coalesce_s = resync_s, coalesce_s
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        self._on_write, self._on_error = on_write, on_error
        self._last: list[str] | None = None
        self.generation = 0
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = threading.Event()

    def _ours(self) -> list[Obj]:
        slices = [s for s in self.api.list(self.node_name) if s.get("spec", {}).get("driver") == self.driver]
        return sorted(slices, key=lambda s: s["metadata"]["name"])

    def _wrote(self, verb: str, name: str) -> None:
        log.info("ResourceSlice %s: %s (pool %s generation %d)", name, verb, self.node_name, self.generation)
        if self._on_write is not None:
            self._on_write(verb)

    def publish(self, *, force: bool = False) -> str:
        """Make the server's slices equal *build*'s. Returns ``unchanged`` or the last write
        made (``create``/``update``/``delete``); API errors raise."""
        with self._lock:
            wanted = self.build()
            content = sorted(_content(s["spec"]) for s in wanted)
            if not force and content == self._last:
                return "unchanged"
            current = self._ours()
            generations = {int(s["spec"]["pool"].get("generation", 0)) for s in current}
            if sorted(_content(s["spec"]) for s in current) == content and len(generations) == 1:
                self._last, self.generation = content, generations.pop()
                self.published.set()
                return "unchanged"
            self.generation = max([self.generation, *generations]) + 1
            verb = self._write(current, wanted)
            self._last = content
            self.published.set()
            return verb

    def _write(self, current: list[Obj], wanted: list[Obj]) -> str:
        verb = "unchanged"
        for obsolete in current[len(wanted) :]:
            self.api.delete(obsolete["metadata"]["name"])
            verb = "delete"
            self._wrote(verb, obsolete["metadata"]["name"])
        for i, body in enumerate(wanted):
            body = copy.deepcopy(body)
            body["spec"]["pool"]["generation"] = self.generation
            if i < len(current):
                meta = {**current[i]["metadata"], **body["metadata"]}  # name, resourceVersion kept
                meta.pop("generateName", None)
                body["metadata"] = meta
                stored = self.api.replace(meta["name"], body)
                verb = "update"
            else:
                stored = self.api.create(body)
                verb = "create"
            self._wrote(verb, stored["metadata"]["name"])
        return verb

    def withdraw(self) -> int:
        """Delete every slice of this node's pool (uninstall). Returns how many."""
        with self._lock:
            current = self._ours()
            for s in current:
                self.api.delete(s["metadata"]["name"])
                self._wrote("delete", s["metadata"]["name"])
            self._last = None
            return len(current)

    # ------------------------------------------------------------- background
    def trigger(self) -> None:
        """The devices or their health may have changed: publish soon."""
        self._dirty.set()

    def start(self) -> None:
        self._stopping.clear()
        self._dirty.set()
        self._thread = threading.Thread(target=self._run, name="topolet-resourceslices", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        backoff, force = self.min_backoff_s, True
        while not self._stopping.is_set():
            if not self._dirty.wait(self.resync_s):
                force = True
            if self._stopping.wait(self.coalesce_s):
                return
            self._dirty.clear()
            try:
                self.publish(force=force)
            except Exception as e:
                first = str(e).splitlines()[0] if str(e) else ""
                log.warning(
                    "publishing ResourceSlices failed (%s: %s); retrying in %.1fs",
                    type(e).__name__,
                    first,
                    backoff,
                )
                if self._on_error is not None:
                    self._on_error()
                self._dirty.set()
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            backoff, force = self.min_backoff_s, False
