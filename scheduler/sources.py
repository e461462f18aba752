"""Where the extender's NRT data comes from, and how it binds: thin I/O adapters.

* :class:`DirectorySource`: NRT objects from YAML/JSON files in a directory (one or many
  documents per file, or a ``NodeResourceTopologyList``), reloaded when any file's
  mtime or size changes (polled).
* :class:`KubernetesSource`: list + watch of the cluster-scoped
  ``topology.node.k8s.io/v1alpha2`` ``noderesourcetopologies``, and a list + watch of
  every pod whose deletions release the deleted pods' reservations; both through
  :class:`kube.watch.ListWatch` (resourceVersion kept across watch restarts, relist on
  ``410 Gone`` with the deletions missed meanwhile, backoff with jitter).
  With a :class:`~scheduler.claim_index.ClaimIndex`, also a list + watch of every
  ResourceClaim and of the ResourceSlices of its driver (the DRA claim hints), and the
  claim reads of bind time (:meth:`~scheduler.claim_index.ClaimIndex.refresh`).
* :class:`KubernetesBinder`: ``POST .../pods/{name}/binding`` through
  :meth:`kube.resources.Pods.bind`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from kube.client import ApiClient
from kube.errors import KubeError, KubeGone
from kube.resources import (
    NRT_GROUP,
    NRT_PLURAL,
    NRT_VERSION,
    Pods,
    ResourceClaims,
    node_resource_topologies,
    pods,
    resource_claims,
    resource_slices,
)
from kube.watch import ListWatch, WatchEvent
from scheduler.cache import TopologyCache
from scheduler.claim_index import ClaimIndex
from scheduler.errors import SchedulerError
from scheduler.service import BindError
from topology.errors import TopologyError
from topology.nrt import NodeResourceTopology

__all__ = [
    "NRT_GROUP",
    "NRT_PLURAL",
    "NRT_VERSION",
    "DirectorySource",
    "KubernetesBinder",
    "KubernetesSource",
    "SourceError",
    "load_directory",
]

log = logging.getLogger(__name__)

_SUFFIXES = (".yaml", ".yml", ".json")
_WATCH_TIMEOUT_S = 300


class SourceError(SchedulerError):
    """NRT data could not be read; names the file or API path."""


# ------------------------------------------------------------------ files
def _documents(path: Path) -> Iterable[Any]:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as err:
        raise SourceError(f"{path}: not valid YAML/JSON: {err}") from err


def load_directory(directory: Path) -> list[NodeResourceTopology]:
    """Every NRT object in *directory*'s ``*.yaml``/``*.yml``/``*.json`` files."""
    out: list[NodeResourceTopology] = []
    for path in sorted(p for p in directory.iterdir() if p.suffix in _SUFFIXES and p.is_file()):
        for doc in _documents(path):
            items = (
                doc.get("items") if isinstance(doc, dict) and doc.get("kind", "").endswith("List") else [doc]
            )
            for i, item in enumerate(items or []):
                try:
                    out.append(NodeResourceTopology.from_dict(item))
                except TopologyError as err:
                    raise SourceError(f"{path}: object {i}: {err}") from err
    return out


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    stats = []
    for p in sorted(directory.iterdir()):
        if p.suffix in _SUFFIXES and p.is_file():
            st = p.stat()
            stats.append((p.name, st.st_mtime_ns, st.st_size))
    return tuple(stats)


class DirectorySource:
    """Mirror a directory of NRT files into *cache*; :meth:`poll` once or :meth:`start`."""

    def __init__(self, directory: Path | str, cache: TopologyCache, *, interval_s: float = 1.0) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise SourceError(f"--nrt-dir {self.directory}: not a directory")
        self.cache = cache
        self.interval_s = interval_s
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._known: set[str] = set()
        self._stop = threading.Event()

    def poll(self) -> bool:
        """Reload if anything changed; True when it did. A bad file keeps the old data."""
        stamp = _fingerprint(self.directory)
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            nrts = load_directory(self.directory)
        except (SourceError, OSError) as err:
            log.error("keeping the previous NRT data: %s", err)
            return False
        fresh = {n.name for n in nrts}
        for gone in self._known - fresh:
            self.cache.delete(gone)
        for nrt in nrts:
            self.cache.upsert(nrt)
        self._known = fresh
        log.info("loaded %d NRT objects from %s", len(nrts), self.directory)
        return True

    def start(self) -> threading.Thread:
        self.poll()
        thread = threading.Thread(target=self._run, name="nrt-dir", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()


# ------------------------------------------------------------- Kubernetes
PodDeleted = Callable[[str, str, str], None]
#: ``(pod object, deleted=..., listed=...)`` for every pod watch event; *listed*: the event
#: comes from the watch's first list.
PodEvent = Callable[..., None]


class KubernetesSource:
    """List and watch NRT objects into *cache*; report pod deletions to *on_pod_deleted*."""

    def __init__(
        self,
        api: ApiClient,
        cache: TopologyCache,
        on_pod_deleted: PodDeleted | None = None,
        *,
        on_pod: PodEvent | None = None,
        claims: ClaimIndex | None = None,
        watch_timeout_s: int = _WATCH_TIMEOUT_S,
    ) -> None:
        self.cache = cache
        self.on_pod_deleted = on_pod_deleted
        #: Called as ``on_pod(pod, deleted=..., listed=...)`` for every pod event (reservation
        #: accounting); *listed* marks the pods of the watch's first list.
        self.on_pod = on_pod
        self.watch_timeout_s = watch_timeout_s
        #: set once the first NRT list is in, and the first claim and slice lists when
        #: claims are watched: until then a filter could pass a node it knows nothing of
        #: or miss a claim's devices, so the extender answers not-ready
        self.synced = threading.Event()
        self._nrts = ListWatch(
            node_resource_topologies(api).list_source(),
            self._nrt_event,
            watch_timeout_s=watch_timeout_s,
            thread_name="nrt-watch",
            on_synced=self._listed,
        )
        self._pods = ListWatch(
            pods(api), self._pod_event, watch_timeout_s=watch_timeout_s, thread_name="pod-watch"
        )
        self._dra: list[ListWatch] = []
        if claims is not None:
            finder = ResourceClaims(api)

            def fetch(namespace: str, name: str) -> dict[str, Any] | None:
                try:
                    return finder.find(namespace, name)
                except KubeError as err:
                    log.warning("reading claim %s/%s at bind: %s", namespace, name, err)
                    return None

            claims.fetch = fetch
            self._dra = [
                ListWatch(
                    resource_claims(api),
                    lambda e: claims.apply_claim(e.object, deleted=e.deleted),
                    watch_timeout_s=watch_timeout_s,
                    thread_name="claim-watch",
                    on_synced=self._listed,
                ),
                ListWatch(
                    resource_slices(api, driver=claims.driver),
                    lambda e: claims.apply_slice(e.object, deleted=e.deleted),
                    watch_timeout_s=watch_timeout_s,
                    thread_name="slice-watch",
                    on_synced=self._listed,
                ),
            ]

    def _listed(self) -> None:
        """A watch's list is in: ready once every watch that readiness waits for has listed."""
        if self._nrts.synced.is_set() and all(w.synced.is_set() for w in self._dra):
            if not self.synced.is_set():
                log.info("NRT objects%s listed: ready", " and DRA claims and slices" if self._dra else "")
            self.synced.set()

    def relist(self) -> str:
        """List every NRT object into the cache (forgetting those gone); returns the
        list's resourceVersion."""
        return self._nrts.relist()

    def apply(self, event: dict[str, Any]) -> None:
        """Apply one NRT watch event (``ADDED``/``MODIFIED``/``DELETED``)."""
        obj = event.get("object") or {}
        name = obj.get("metadata", {}).get("name", "")
        if event.get("type") == "DELETED":
            self.cache.delete(name)
            return
        try:
            self.cache.upsert(NodeResourceTopology.from_dict(obj))
        except TopologyError as err:
            log.error("ignoring NRT %s: %s", name, err)

    def _nrt_event(self, event: WatchEvent) -> None:
        self.apply({"type": event.type, "object": event.object})

    def watch_nrts_once(self, resource_version: str) -> str | None:
        """Follow one watch stream; the last resourceVersion seen, or None on 410 Gone."""
        self._nrts.resource_version = resource_version
        try:
            self._nrts.watch_once()
        except KubeGone:  # history compacted: the caller relists
            return None
        return self._nrts.resource_version

    def run_nrts(self) -> None:
        """Watch NRT objects until :meth:`stop` (in the caller's thread)."""
        self._nrts.run()

    def run_pods(self) -> None:
        """Watch every pod until :meth:`stop` (in the caller's thread)."""
        self._pods.run()

    def _pod_event(self, event: WatchEvent) -> None:
        obj = event.object
        if self.on_pod is not None:
            # the first list's pods were there before this extender watched
            self.on_pod(obj, deleted=event.deleted, listed=self._pods.lists == 0)
        if event.deleted and self.on_pod_deleted is not None:
            meta = obj.get("metadata", {})
            self.on_pod_deleted(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""))

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run_nrts, name="nrt-watch", daemon=True)]
        if self.on_pod_deleted is not None or self.on_pod is not None:
            threads.append(threading.Thread(target=self.run_pods, name="pod-watch", daemon=True))
        threads += [threading.Thread(target=w.run, name=w.thread_name, daemon=True) for w in self._dra]
        for t in threads:
            t.start()
        return threads

    def stop(self) -> None:
        self._nrts.stop()
        self._pods.stop()
        for w in self._dra:
            w.stop()


class KubernetesBinder:
    """Creates Bindings (``pods/binding``, RBAC ``create``)."""

    def __init__(self, api: ApiClient) -> None:
        self.pods = Pods(api)

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        try:
            self.pods.bind(namespace, name, uid, node)
        except KubeError as err:
            raise BindError(str(err)) from err
