"""The DRA plugin's core: prepare and unprepare claims (no gRPC here; see ``server.py``).

:class:`DRAPlugin` answers kubelet's two calls for driver ``gpu.topolet.io``:

* **prepare** a claim: read it (``get_claim(namespace, name)``), take the results of our
  driver (:func:`~deviceplugin.dra.claims.allocated_devices`: refused with the reason when
  the UID differs, it is not allocated, or it names a pool or device this node does not
  have), write its CDI spec (:mod:`deviceplugin.dra.cdi`), checkpoint the claim, and answer
  each device with its CDI id. A claim already prepared is answered from the checkpoint
  without reading the API server (its spec file is rewritten if it went missing), so
  repeated calls and calls after an agent restart give the same answer;
* **unprepare** a claim: remove exactly the spec file prepare wrote (its name comes from
  the UID, so a crash between writing the file and the checkpoint leaves nothing behind)
  and forget the claim. An unknown claim is not an error: kubelet must be able to finish
  tearing down a pod whatever happened before.

One lock serialises both; the checkpoint is saved before an answer is given.

:meth:`DRAPlugin.claim_numa_nodes` tells the node's CPU manager where the GPUs of a
prepared claim are, so a container using the claim gets its exclusive CPUs there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deviceplugin.dra import cdi, checkpoint
from deviceplugin.dra.claims import AllocatedDevice, ClaimError, ClaimRef, allocated_devices, check_uid
from deviceplugin.gpu import NVIDIA_CONTROL_NODES, GPUDevice
from topology.resourceslice import DRIVER, device_name, gpu_numa_node

__all__ = ["ClaimGetter", "DRAPlugin", "PrepareResult", "PreparedDevice"]

log = logging.getLogger(__name__)

#: ``get_claim(namespace, name)`` → the ResourceClaim object (raises when it cannot).
ClaimGetter = Callable[[str, str], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class PreparedDevice:
    requests: tuple[str, ...]
    pool: str
    device: str
    cdi_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PrepareResult:
    devices: tuple[PreparedDevice, ...] = ()
    error: str = ""


class DRAPlugin:
    """See the module docstring. *gpus* are this node's GPUs (:func:`deviceplugin.gpu.discover_gpus`)."""

    def __init__(
        self,
        gpus: Sequence[GPUDevice],
        *,
        node_name: str,
        get_claim: ClaimGetter,
        cdi_dir: Path,
        checkpoint_path: Path,
        root: Path | str = "/",
        driver: str = DRIVER,
    ) -> None:
        self.driver, self.node_name, self.get_claim = driver, node_name, get_claim
        self.cdi_dir, self.checkpoint_path = Path(cdi_dir), Path(checkpoint_path)
        self.gpus = {device_name(g.id): g for g in gpus}
        nvidia = any(g.vendor == "nvidia" for g in gpus)
        root = Path(root)
        self.control_nodes = (
            tuple(n for n in NVIDIA_CONTROL_NODES if (root / n.lstrip("/")).exists()) if nvidia else ()
        )
        self._claims: dict[str, Any] = checkpoint.load(self.checkpoint_path)
        self._lock = threading.Lock()

    @property
    def prepared(self) -> dict[str, Any]:
        """A copy of the checkpointed claims, by UID."""
        with self._lock:
            return dict(self._claims)

    def claim_numa_nodes(self, namespace: str, name: str) -> frozenset[int] | None:
        """The NUMA nodes of the GPUs of prepared claim *namespace*/*name* (each GPU's
        ``numaNode``, as the ResourceSlice publishes it), or None when no such claim is
        prepared here or none of its GPUs has a known NUMA node. A claim deleted and
        created again under its name while the old one is still prepared counts both."""
        nodes: set[int] = set()
        with self._lock:
            for record in self._claims.values():
                if record.get("namespace") != namespace or record.get("name") != name:
                    continue
                for d in record.get("devices") or ():
                    device = d.get("device") if isinstance(d, Mapping) else None
                    gpu = self.gpus.get(device) if isinstance(device, str) else None
                    numa = gpu_numa_node(gpu.pci) if gpu is not None else None
                    if numa is not None:
                        nodes.add(numa)
        return frozenset(nodes) or None

    # ---------------------------------------------------------------- prepare
    def prepare(self, refs: Sequence[ClaimRef]) -> dict[str, PrepareResult]:
        """Prepare every claim of *refs*; a failure is that claim's ``error``."""
        out: dict[str, PrepareResult] = {}
        with self._lock:
            for ref in refs:
                try:
                    out[ref.uid] = self._prepare(ref)
                except ClaimError as e:
                    log.warning("NodePrepareResources %s/%s: %s", ref.namespace, ref.name, e)
                    out[ref.uid] = PrepareResult(error=str(e))
                except OSError as e:
                    msg = f"writing the CDI spec or checkpoint of claim {ref.namespace}/{ref.name}: {e}"
                    log.error("%s", msg)
                    out[ref.uid] = PrepareResult(error=msg)
        return out

    def _prepare(self, ref: ClaimRef) -> PrepareResult:
        uid = check_uid(ref.uid)
        path = cdi.spec_path(self.cdi_dir, self.driver, uid)
        record = self._claims.get(uid)
        if record is not None:
            if not path.exists():
                cdi.write_spec(path, record["spec"])
            return _result(record)
        try:
            claim = self.get_claim(ref.namespace, ref.name)
        except Exception as e:  # the API adapter's errors: the reason goes back to kubelet
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ClaimError(f"reading ResourceClaim {ref.namespace}/{ref.name}: {first}") from e
        allocated = allocated_devices(
            claim, ref, driver=self.driver, pool=self.node_name, devices=tuple(self.gpus)
        )
        spec = cdi.claim_spec(uid, [self._cdi_device(a) for a in allocated], self.control_nodes)
        record = {
            "namespace": ref.namespace,
            "name": ref.name,
            "spec": spec,
            "devices": [
                {"requests": list(a.requests), "pool": a.pool, "device": a.device,
                 "cdi_ids": [cdi.cdi_id(uid, a.device)]}
                for a in allocated
            ],
        }  # fmt: skip
        if allocated:
            cdi.write_spec(path, spec)
        self._claims[uid] = record
        checkpoint.save(self.checkpoint_path, self._claims)
        log.info(
            "prepared claim %s/%s (%s): %s",
            ref.namespace,
            ref.name,
            uid,
            ", ".join(a.device for a in allocated) or "no devices of ours",
        )
        return _result(record)

    def _cdi_device(self, a: AllocatedDevice) -> cdi.CDIDevice:
        g = self.gpus[a.device]
        env = "NVIDIA_VISIBLE_DEVICES" if g.vendor == "nvidia" else "TOPOLET_VISIBLE_DEVICES"
        return cdi.CDIDevice(a.device, a.requests, g.nodes, g.pci.uuid or g.id, env)

    # -------------------------------------------------------------- unprepare
    def unprepare(self, refs: Sequence[ClaimRef]) -> dict[str, str]:
        """Unprepare every claim of *refs*: UID → error ("" when done)."""
        out: dict[str, str] = {}
        with self._lock:
            for ref in refs:
                try:
                    uid = check_uid(ref.uid)
                    removed = cdi.remove_spec(cdi.spec_path(self.cdi_dir, self.driver, uid))
                    known = self._claims.pop(uid, None) is not None
                    if known:
                        checkpoint.save(self.checkpoint_path, self._claims)
                    log.info("unprepared claim %s/%s (%s): known=%s spec removed=%s",
                             ref.namespace, ref.name, uid, known, removed)  # fmt: skip
                    out[ref.uid] = ""
                except (ClaimError, OSError) as e:
                    out[ref.uid] = str(e)
        return out


def _result(record: Mapping[str, Any]) -> PrepareResult:
    return PrepareResult(
        tuple(
            PreparedDevice(tuple(d["requests"]), d["pool"], d["device"], tuple(d["cdi_ids"]))
            for d in record["devices"]
        )
    )
