"""The one list/watch loop: what the API server holds of one kind, as events.

:class:`ListWatch` lists the objects, then watches from the list's ``resourceVersion``
with ``allowWatchBookmarks`` and follows the last ``resourceVersion`` seen (an object's or
a bookmark's) across watch streams, so a stream that ends (``timeoutSeconds``) or breaks
(a dropped connection) resumes where it stopped, without a relist. It keeps the identity
(kind and metadata) of the last object seen under each key
(:func:`~kube.objects.object_key`), not the whole object, and delivers
:class:`WatchEvent`\\ s to a handler:

* ``ADDED`` / ``MODIFIED`` / ``DELETED`` from the watch as the server sends them;
* on every (re)list: ``DELETED`` (with the identity last seen) for each known object the
  list no longer has — deletions that happened while nobody watched are not lost —
  then ``ADDED`` for each new object and ``MODIFIED`` for each known one (a resync, as
  client-go's informers do).

Failures (:mod:`kube.errors`): ``410 Gone`` (the watch's ``resourceVersion`` was
compacted) → relist at once; any other answer from the server → relist after a backoff;
no answer (refused, reset, cut short) → watch again from the same ``resourceVersion``
after a backoff. The backoff (:class:`~kube.backoff.Backoff`) grows exponentially with
jitter and resets after a watch stream that ended normally. :meth:`ListWatch.stop` sets a
:class:`threading.Event`, interrupts a blocked read and joins the thread.

A handler that raises is logged with its traceback; the loop goes on with the next event.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from kube.backoff import Backoff
from kube.errors import KubeError, KubeGone, api_errors, from_status
from kube.objects import Obj, object_key, resource_version

__all__ = ["EventType", "ListSource", "ListWatch", "WatchEvent"]

log = logging.getLogger(__name__)

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
_TYPES: frozenset[str] = frozenset({"ADDED", "MODIFIED", "DELETED"})


@dataclass(frozen=True)
class WatchEvent:
    """One change: ``type`` and the object (for a ``DELETED`` found by a relist: its kind
    and metadata as last seen)."""

    type: EventType
    object: Obj

    @property
    def key(self) -> str:
        return object_key(self.object)

    @property
    def deleted(self) -> bool:
        return self.type == "DELETED"


class ListSource(Protocol):
    """One kind of object to list and watch (see :mod:`kube.resources`)."""

    #: for messages: ``pods on node-a``, ``noderesourcetopologies``
    what: str

    def list(self) -> Obj:
        """The list reply: ``items`` and ``metadata.resourceVersion``."""
        ...

    def watch(self, resource_version: str, timeout_s: int) -> Any:
        """An open watch stream (a urllib3 response, not preloaded) from *resource_version*."""
        ...


Handler = Callable[[WatchEvent], None]
ErrorHook = Callable[[KubeError, float], None]


def _identity(obj: Obj) -> Obj:
    """What a deletion found by a relist needs to say: kind and metadata (no managedFields)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": meta}


#: Largest watch event line accepted. etcd refuses objects over 1.5 MiB, so a real event is
#: well under this; a longer line (a broken or hostile server) ends the stream instead of
#: growing the buffer without bound.
MAX_EVENT_BYTES = 16 * 1024 * 1024


def _lines(resp: Any, what: str = "watch") -> Iterator[bytes]:
    """The stream's newline-delimited JSON lines, as they arrive (each at most
    :data:`MAX_EVENT_BYTES`, else :class:`KubeError`)."""
    buffer = bytearray()
    for chunk in resp.stream(amt=None, decode_content=False):
        data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
        buffer += data
        if b"\n" in data:  # split only when a line ended: a long line is not copied per chunk
            *lines, rest = bytes(buffer).split(b"\n")
            buffer = bytearray(rest)
            yield from lines
        if len(buffer) > MAX_EVENT_BYTES:
            raise KubeError(what, None, "", f"a watch event longer than {MAX_EVENT_BYTES} bytes")
    if buffer:
        yield bytes(buffer)


class ListWatch:
    """List then watch *source*, calling *handler* with each :class:`WatchEvent`.

    >>> lw = ListWatch(pods_on_node(api, "node-a"), print).start()   # doctest: +SKIP
    >>> lw.stop()                                                     # doctest: +SKIP

    ``on_synced()`` runs after each list; ``on_error(error, delay_s)`` before each backoff.
    """

    def __init__(
        self,
        source: ListSource,
        handler: Handler,
        *,
        watch_timeout_s: int = 300,
        backoff: Backoff | None = None,
        on_synced: Callable[[], None] | None = None,
        on_error: ErrorHook | None = None,
        thread_name: str = "",
    ) -> None:
        self.source, self.handler = source, handler
        self.watch_timeout_s = watch_timeout_s
        self.backoff = backoff or Backoff()
        self.on_synced, self.on_error = on_synced, on_error
        self.thread_name = thread_name or f"watch {source.what}"
        #: where the next watch starts; empty: list first
        self.resource_version = ""
        #: set once the first list is in
        self.synced = threading.Event()
        #: how many lists were made (a resumed watch makes none)
        self.lists = 0
        self._known: dict[str, Obj] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._resp: Any = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ view
    def known(self) -> list[Obj]:
        """The identity (kind, metadata) last seen under each key (the loop's thread changes it)."""
        return list(self._known.values())

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------- lifecycle
    def start(self) -> ListWatch:
        """Run :meth:`run` in a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop: interrupt a blocked watch read, end a backoff wait, join the thread."""
        self._stop.set()
        with self._lock:
            resp = self._resp
        if resp is not None:
            try:
                # shutdown() (urllib3 >= 2.3) interrupts a blocked read; close() alone does not
                getattr(resp, "shutdown", resp.close)()
            except Exception as err:  # already closed or broken: stopping anyway
                log.debug("closing the watch of %s: %s", self.source.what, err)
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s if timeout_s is not None else self.watch_timeout_s + 1)

    def run(self) -> None:
        """List and watch until :meth:`stop` (in the caller's thread)."""
        while not self._stop.is_set():
            try:
                if not self.resource_version:
                    self.relist()
                self.watch_once()
                self.backoff.reset()
            except KubeGone as err:
                log.info("%s; relisting", err)
                self.resource_version = ""
            except KubeError as err:
                if self._stop.is_set():
                    break
                if err.status is not None:  # the server answered: start again from a list
                    self.resource_version = ""
                delay = self.backoff.next()
                log.error("%s; retrying in %.2fs", err, delay)
                if self.on_error is not None:
                    self.on_error(err, delay)
                self._stop.wait(delay)
            except Exception:  # a bug of ours: keep the view, keep going
                if self._stop.is_set():
                    break
                delay = self.backoff.next()
                log.exception("%s: unexpected failure; retrying in %.2fs", self.source.what, delay)
                self._stop.wait(delay)

    # ---------------------------------------------------------- list, watch
    def relist(self) -> str:
        """List, deliver the difference from what is known (see the module notes), and
        return the list's resourceVersion (where the next watch starts)."""
        with api_errors(f"list {self.source.what}"):
            reply = self.source.list()
        items = [o for o in reply.get("items") or [] if isinstance(o, dict)]
        fresh = {object_key(o): o for o in items}
        for key in [k for k in self._known if k not in fresh]:
            self._deliver(WatchEvent("DELETED", self._known.pop(key)))
        for key, obj in fresh.items():
            kind: EventType = "MODIFIED" if key in self._known else "ADDED"
            self._known[key] = _identity(obj)
            self._deliver(WatchEvent(kind, obj))
        self.resource_version = str((reply.get("metadata") or {}).get("resourceVersion") or "")
        self.lists += 1
        self.synced.set()
        if self.on_synced is not None:
            self.on_synced()
        return self.resource_version

    def watch_once(self) -> None:
        """Follow one watch stream from :attr:`resource_version` until it ends; raises
        :class:`~kube.errors.KubeError` (:class:`~kube.errors.KubeGone` on 410)."""
        what = f"watch {self.source.what}"
        with api_errors(what):
            resp = self.source.watch(self.resource_version, self.watch_timeout_s)
        with self._lock:
            self._resp = resp
        try:
            if self._stop.is_set():  # stop() came before the stream opened: it could not close it
                return
            with api_errors(what):
                for line in _lines(resp, what):
                    if self._stop.is_set():
                        break
                    if line.strip():
                        self._event(what, line)
        finally:
            with self._lock:
                self._resp = None
            resp.close()
            resp.release_conn()

    def _event(self, what: str, line: bytes) -> None:
        try:
            event = json.loads(line)
            obj = event.get("object")
            type_ = event.get("type")
        except (ValueError, AttributeError) as err:
            log.error("%s: ignoring a line that is not a watch event (%s): %.200r", what, err, line)
            return
        if not isinstance(obj, dict):
            return
        if type_ == "ERROR":
            raise from_status(what, obj)
        if type_ in _TYPES:
            key = object_key(obj)
            if type_ == "DELETED":
                self._known.pop(key, None)
            else:
                self._known[key] = _identity(obj)
            self._deliver(WatchEvent(type_, obj))
        rv = resource_version(obj)
        if rv:  # objects and bookmarks alike
            self.resource_version = rv

    def _deliver(self, event: WatchEvent) -> None:
        try:
            self.handler(event)
        except Exception:
            log.exception("%s: handling %s %s failed", self.source.what, event.type, event.key)
