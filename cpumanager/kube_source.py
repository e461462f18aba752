"""The Kubernetes API pod source: the pods bound to this node, as the CPU manager sees them.

:class:`KubePodSource` lists and watches pods with ``fieldSelector=spec.nodeName=<node>``
through :class:`kube.watch.ListWatch` (resourceVersion kept across watch restarts,
bookmarks, relist on ``410 Gone`` delivering the deletions missed, backoff with jitter).
Each pod event is turned into :class:`~cpumanager.manager.ContainerInfo`\\ s
(:func:`pod_containers`) and compared with the pod's previous view: a container whose id
appeared in ``status.containerStatuses`` with state ``running`` is added to the manager
at once (pinned within one event round trip); a container that terminated, or a pod that
was deleted or finished, is removed. :meth:`KubePodSource.running` is the current view
for the periodic reconcile.

How a pod maps to what the manager needs: the pod is read by :func:`kube.pod.parse_pod`,
the one pod model the scheduler and the simulator use too, so kubelet's rules live there:

* QoS (kubelet's ``ComputePodQOS``, requests defaulting to limits) is the cgroup parent
  (``kubepods``, ``kubepods/burstable``, ``kubepods/besteffort``).
* exclusive CPUs: a container of a Guaranteed pod with an integer cpu request gets that
  many (:func:`kube.pod.exclusive_cpus`); the container's kind (app, init, sidecar)
  travels with it, so the static policy reuses finished init containers' CPUs exactly
  as it does in the simulator.
* container id: ``containerd://<id>`` → ``<id>``; the runtime prefix names the systemd
  scope (``containerd`` → ``cri-containerd-<id>.scope``, ``cri-o`` → ``crio-<id>.scope``).
* isolated CPUs: annotation ``topolet.io/isolated-cpus: "true"``.
* hugepages: the container's ``hugepages-<size>`` requests (or limits), in bytes, each a
  whole number of pages.
* NUMA affinity of a container with exclusive CPUs or hugepages: the union of the NUMA
  nodes of the devices kubelet gave it through device plugins (``device_affinity``, from
  podresources) and of the GPUs of the DRA claims it uses (``claim_affinity``, given the
  ResourceClaim names of its ``resources.claims``, read by :func:`kube.pod_claims.pod_claims`
  once per event). A pod whose claim fields are malformed is logged once per event and
  runs as if it held no claims.

A pod or container with an id that is not safe in a path, or a malformed quantity, is
logged and left out: it never reaches a cgroup path.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from cpumanager.cgroupfs import ContainerCgroup, QoS
from cpumanager.errors import CPUManagerError
from cpumanager.hugepages import check_hugepages
from cpumanager.isolated import ISOLATED_ANNOTATION
from cpumanager.manager import ContainerInfo, CPUManager
from cpumanager.owners import POD
from kube.backoff import Backoff
from kube.client import ApiClient
from kube.pod import parse_pod
from kube.pod_claims import PodClaims, pod_claims
from kube.resources import pods
from kube.watch import ListWatch, WatchEvent
from topology.errors import TopologyError

__all__ = ["ClaimAffinity", "KubePodSource", "pod_containers", "pod_qos"]

log = logging.getLogger(__name__)

#: container-id prefix in pod status -> systemd scope prefix kubelet's runtimes use
RUNTIME_SCOPES = {"containerd": "cri-containerd", "cri-o": "crio", "docker": "docker"}

#: ``claim_affinity(namespace, claim names)`` → the NUMA nodes of the claims' devices on
#: this node, or None when none is known (a claim not prepared here, a GPU without one).
ClaimAffinity = Callable[[str, frozenset[str]], frozenset[int] | None]


def pod_qos(pod: Mapping[str, Any]) -> QoS:
    """The pod's QoS class as kubelet computes it (``ComputePodQOS``), in cgroup spelling."""
    return parse_pod(pod).qos.cgroup


def _split_id(raw: str) -> tuple[str, str]:
    """``containerd://abc`` → (``cri-containerd``, ``abc``)."""
    runtime, _, cid = raw.rpartition("://")
    return RUNTIME_SCOPES.get(runtime, runtime or "cri-containerd"), cid


def _running_ids(pod: Mapping[str, Any]) -> dict[str, str]:
    """Container name → raw container id, for containers whose state is ``running``."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return {}
    out = {}
    for st in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        if (st.get("state") or {}).get("running") is not None and st.get("containerID"):
            out[st["name"]] = st["containerID"]
    return out


def pod_containers(pod: Mapping[str, Any]) -> list[ContainerInfo]:
    """The pod's running containers as the manager sees them (see the module notes)."""
    meta = pod.get("metadata") or {}
    ids = _running_ids(pod)
    if not ids:
        return []
    model = parse_pod(pod)
    uid, name, ns = model.uid, model.name, model.namespace
    qos = model.qos.cgroup
    isolated = (meta.get("annotations") or {}).get(ISOLATED_ANNOTATION) == "true"
    out = []
    for c in model.all_containers():
        if c.name not in ids:
            continue
        exclusive = model.exclusive_cpus(c)
        runtime, cid = _split_id(ids[c.name])
        out.append(
            ContainerInfo(
                pod_uid=uid,
                container_name=c.name,
                cgroup=ContainerCgroup(pod_uid=uid, container_id=cid, qos=qos, runtime=runtime),
                exclusive_cpus=exclusive,
                pod_name=name,
                namespace=ns,
                isolated=isolated and exclusive > 0,
                hugepages=check_hugepages(c.hugepages),
                container_kind=c.kind,
            )
        )
    return out


class KubePodSource:
    """Pods on *node_name*, listed and watched, fed to *manager* as they change.

    >>> src = KubePodSource(api_client, "node-a", manager).start()   # doctest: +SKIP
    >>> src.running()                                                # doctest: +SKIP
    >>> src.stop()                                                   # doctest: +SKIP
    """

    def __init__(
        self,
        api_client: ApiClient,
        node_name: str,
        manager: CPUManager,
        *,
        watch_timeout_s: int = 300,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        device_affinity: Callable[[ContainerInfo], frozenset[int] | None] | None = None,
        claim_affinity: ClaimAffinity | None = None,
    ) -> None:
        if not node_name:
            raise ValueError("node_name: expected this node's name (spec.nodeName of its pods)")
        self.node_name = node_name
        self.manager = manager
        self.device_affinity = device_affinity
        self.claim_affinity = claim_affinity
        self._lock = threading.Lock()
        self._pods: dict[str, list[ContainerInfo]] = {}
        self._watch = ListWatch(
            pods(api_client, node_name=node_name),
            self._on_event,
            watch_timeout_s=watch_timeout_s,
            backoff=Backoff(backoff_s, max(backoff_s, max_backoff_s)),
            thread_name=f"pods-{node_name}",
        )
        #: set once the first list is in
        self.synced = self._watch.synced

    @property
    def field_selector(self) -> str:
        return f"spec.nodeName={self.node_name}"

    @property
    def resource_version(self) -> str:
        """Where the next watch starts (empty: list first)."""
        return self._watch.resource_version

    # ----------------------------------------------------------------- view
    @property
    def owner_kinds(self) -> frozenset[str]:
        """``pod`` once the first list is in (kubelet's removeStaleState waits for its
        sources to be ready), nothing before: an unsynced source releases no one."""
        return frozenset({POD}) if self.synced.is_set() else frozenset()

    def running(self) -> list[ContainerInfo]:
        """Every running container of this node's pods, as last seen."""
        with self._lock:
            return [info for infos in self._pods.values() for info in infos]

    # ------------------------------------------------------------- lifecycle
    def start(self) -> KubePodSource:
        self._watch.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop watching and join the thread."""
        self._watch.stop(timeout_s)

    # ---------------------------------------------------------- list, watch
    def relist(self) -> str:
        """List this node's pods, apply every one, forget pods that are gone; returns the
        list's resourceVersion (where the next watch starts)."""
        return self._watch.relist()

    def watch_once(self) -> None:
        """Follow one watch stream from :attr:`resource_version` until it ends."""
        self._watch.watch_once()

    def _on_event(self, event: WatchEvent) -> None:
        self.apply({"type": event.type, "object": event.object})

    def apply(self, event: Mapping[str, Any]) -> None:
        """One pod event (``ADDED``/``MODIFIED``/``DELETED``): add new running containers
        to the manager, remove those that stopped."""
        pod = event.get("object") or {}
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        if event.get("type") == "DELETED" or (pod.get("spec") or {}).get("nodeName") != self.node_name:
            self._apply_pod(uid, [])
            return
        try:
            infos = pod_containers(pod)
        except (CPUManagerError, TopologyError, ValueError) as err:
            log.error("ignoring pod %s/%s: %s", meta.get("namespace"), meta.get("name"), err)
            return
        self._apply_pod(uid, infos, self._claims(pod) if infos else None)

    def _claims(self, pod: Mapping[str, Any]) -> PodClaims | None:
        """The pod's claims when claims place CPUs here; a malformed claim field is
        logged and read as no claims (the pod still runs on its other hints)."""
        if self.claim_affinity is None:
            return None
        try:
            return pod_claims(pod)
        except ValueError as err:
            meta = pod.get("metadata") or {}
            log.error(
                "pod %s/%s: its resource claims are ignored: %s", meta.get("namespace"), meta.get("name"), err
            )
            return None

    def with_devices(self, info: ContainerInfo, claims: PodClaims | None = None) -> ContainerInfo:
        """The container with the NUMA nodes of its devices: those kubelet gave it
        (podresources, through ``device_affinity``) and the GPUs of the DRA claims it uses
        (through ``claim_affinity``), merged, so its exclusive CPUs and hugepages are
        taken there."""
        if info.numa_affinity is not None:
            return info
        nodes: set[int] = set()
        if self.device_affinity is not None:
            nodes |= self.device_affinity(info) or frozenset()
        names = claims.claims_of(info.container_name) if claims is not None else frozenset()
        if names and self.claim_affinity is not None:
            nodes |= self.claim_affinity(info.namespace, names) or frozenset()
        return info if not nodes else dataclasses.replace(info, numa_affinity=frozenset(nodes))

    def _apply_pod(self, uid: str, infos: list[ContainerInfo], claims: PodClaims | None = None) -> None:
        infos = [self.with_devices(i, claims) if i.exclusive_cpus or i.hugepages else i for i in infos]
        with self._lock:
            before = {i.container_name: i for i in self._pods.get(uid, [])}
            if infos:
                self._pods[uid] = infos
            else:
                self._pods.pop(uid, None)
        now = {i.container_name: i for i in infos}
        for name in [n for n in before if n not in now]:
            self.manager.remove_container(uid, name, kind=POD)
        for name, info in now.items():
            if before.get(name) == info:
                continue
            try:
                pin = self.manager.add_container(info)
            except CPUManagerError as err:
                log.error("pod %s/%s container %s not admitted: %s", info.namespace, info.pod_name, name, err)
                continue
            log.info(
                "pod %s/%s container %s: %s cpus %s",
                info.namespace,
                info.pod_name,
                name,
                "exclusive" if pin.exclusive else "shared",
                pin.cpus,
            )
