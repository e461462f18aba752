"""Where the extender's NRT data comes from, and how it binds: thin I/O adapters.

* :class:`DirectorySource`: NRT objects from YAML/JSON files in a directory (one or many
  documents per file, or a ``NodeResourceTopologyList``), reloaded when any file's
  mtime or size changes (polled).
* :class:`KubernetesSource`: list + watch of the cluster-scoped
  ``topology.node.k8s.io/v1alpha2`` ``noderesourcetopologies`` through the official
  ``kubernetes`` client, relisting on ``410 Gone``; and a pod watch whose deletions
  release the deleted pods' reservations.
* :class:`KubernetesBinder`: ``POST .../pods/{name}/binding`` through
  ``create_namespaced_pod_binding``. The reply is not deserialised
  (``_preload_content=False``): the API server answers with a ``Status``, which the
  client would otherwise fail to read as a ``V1Binding`` (kubernetes-client/python #547).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from scheduler.cache import TopologyCache
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

NRT_GROUP = "topology.node.k8s.io"
NRT_VERSION = "v1alpha2"
NRT_PLURAL = "noderesourcetopologies"
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
#: (pod object, deleted?) for every pod watch event.
PodEvent = Callable[..., None]


class KubernetesSource:
    """List and watch NRT objects into *cache*; report pod deletions to *on_pod_deleted*."""

    def __init__(
        self,
        api: client.ApiClient,
        cache: TopologyCache,
        on_pod_deleted: PodDeleted | None = None,
        *,
        on_pod: PodEvent | None = None,
        watch_timeout_s: int = _WATCH_TIMEOUT_S,
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.cache = cache
        self.on_pod_deleted = on_pod_deleted
        #: Called as ``on_pod(pod, deleted=...)`` for every pod event (reservation accounting).
        self.on_pod = on_pod
        self.watch_timeout_s = watch_timeout_s
        self._stop = threading.Event()
        self._watches: list[watch.Watch] = []
        self.synced = threading.Event()

    def relist(self) -> str:
        """List every NRT object into the cache; returns the list's resourceVersion."""
        reply: dict[str, Any] = self.custom.list_cluster_custom_object(  # a plain dict for custom objects
            NRT_GROUP, NRT_VERSION, NRT_PLURAL
        )  # type: ignore[assignment]
        nrts = []
        for item in reply.get("items", []):
            try:
                nrts.append(NodeResourceTopology.from_dict(item))
            except TopologyError as err:
                log.error("ignoring NRT %s: %s", item.get("metadata", {}).get("name"), err)
        known = set(self.cache.nodes())
        for gone in known - {n.name for n in nrts}:
            self.cache.delete(gone)
        for nrt in nrts:
            self.cache.upsert(nrt)
        self.synced.set()
        return str(reply.get("metadata", {}).get("resourceVersion", ""))

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

    def watch_nrts_once(self, resource_version: str) -> str | None:
        """Follow one watch stream; the last resourceVersion seen, or None on 410 Gone."""
        w = watch.Watch()  # type: ignore[no-untyped-call]
        self._watches.append(w)
        rv: str | None = resource_version
        stream = w.stream(  # type: ignore[no-untyped-call]
            self.custom.list_cluster_custom_object,
            NRT_GROUP,
            NRT_VERSION,
            NRT_PLURAL,
            resource_version=resource_version,
            timeout_seconds=self.watch_timeout_s,
        )
        try:
            for event in stream:
                if event.get("type") == "ERROR":
                    return None
                self.apply(event)
                rv = event["object"].get("metadata", {}).get("resourceVersion", rv)
                if self._stop.is_set():
                    break
        except ApiException as err:
            if err.status == 410:  # history compacted: the caller relists
                return None
            raise
        return rv

    def run_nrts(self) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self.relist()
                rv = self.watch_nrts_once(rv)
            except ApiException as err:
                if err.status == 410:
                    rv = None
                    continue
                log.error("NRT watch: %s; relisting in 1s", err)
                rv = None
                self._stop.wait(1.0)
            except Exception as err:  # network errors: keep the cache, retry
                log.error("NRT watch: %s; retrying in 1s", err)
                self._stop.wait(1.0)

    def run_pods(self) -> None:
        while not self._stop.is_set():
            try:
                w = watch.Watch()  # type: ignore[no-untyped-call]
                self._watches.append(w)
                for event in w.stream(  # type: ignore[no-untyped-call]
                    self.core.list_pod_for_all_namespaces, timeout_seconds=self.watch_timeout_s
                ):
                    self._pod_event(event)
                    if self._stop.is_set():
                        return
            except Exception as err:
                log.error("pod watch: %s; retrying in 1s", err)
                self._stop.wait(1.0)

    def _pod_event(self, event: dict[str, Any]) -> None:
        obj = event.get("raw_object") or event.get("object") or {}
        if not isinstance(obj, dict):
            return
        deleted = event.get("type") == "DELETED"
        if self.on_pod is not None and event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
            self.on_pod(obj, deleted=deleted)
        if deleted and self.on_pod_deleted is not None:
            meta = obj.get("metadata", {})
            self.on_pod_deleted(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""))

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run_nrts, name="nrt-watch", daemon=True)]
        if self.on_pod_deleted is not None or self.on_pod is not None:
            threads.append(threading.Thread(target=self.run_pods, name="pod-watch", daemon=True))
        for t in threads:
            t.start()
        return threads

    def stop(self) -> None:
        self._stop.set()
        for w in self._watches:
            w.stop()  # type: ignore[no-untyped-call]


class KubernetesBinder:
    """Creates Bindings with the official client (``pods/binding``, RBAC ``create``)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        body = client.V1Binding(
            api_version="v1",
            kind="Binding",
            metadata=client.V1ObjectMeta(name=name, namespace=namespace, uid=uid or None),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=node),
        )
        try:
            self.core.create_namespaced_pod_binding(name, namespace, body, _preload_content=False)
        except ApiException as err:
            raise BindError(f"API server answered {err.status} {err.reason}: {_message(err)}") from err
        except Exception as err:  # urllib3 connection errors
            raise BindError(f"API server unreachable: {err}") from err


def _message(err: ApiException) -> str:
    try:
        return str(json.loads(err.body or "{}").get("message") or err.body)
    except (TypeError, ValueError):
        return str(err.body)
