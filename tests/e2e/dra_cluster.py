"""The DRA side of an e2e cluster: 8-GPU two-socket fake nodes with topolet's ResourceSlices.

* :func:`gpu_machine`: the machine of :mod:`tests.dra_machine` (sysfs fixture plus the NVML
  stand-in: four 40 GiB and four 80 GiB A100s, two per PCIe root, four per NUMA node);
* :func:`publish`: topolet's own slices for each named node (``build_resource_slices``,
  owned by the Node object), through topolet's ``kube.resources.ResourceSlices``;
  ``deploy/dra/deviceclass.yaml`` and the example ResourceClaimTemplates of
  ``deploy/dra/examples/`` applied as shipped;
* :class:`ClaimController`: what kube-controller-manager's resourceclaim controller does for
  a pod that names a ResourceClaimTemplate (this harness runs no controller manager):
  create the ResourceClaim from the template, owned by the pod, and write its name into the
  pod's ``status.resourceClaimStatuses``. Everything after that (allocation, the claim's
  status, binding) is the real kube-scheduler's.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from deviceplugin.nvml_info import with_nvml_attributes
from kube.resources import ResourceSlices
from tests.dra_machine import NVMLInfoStandIn, write_machine
from topology.model import Topology
from topology.resourceslice import build_resource_slices
from topology.sysfs import discover

__all__ = ["DRA", "ClaimController", "example_pod", "examples", "gpu_machine", "publish"]

DRA = Path(__file__).resolve().parents[2] / "deploy" / "dra"
NS = "default"


def gpu_machine(root: Path) -> tuple[Path, Topology]:
    """Write the 8-GPU machine under *root*; its topology with NVML's attributes."""
    write_machine(root)
    nvml = NVMLInfoStandIn()
    nvml.nvmlInit()
    return root, with_nvml_attributes(discover(root), nvml)


def examples(name: str) -> list[dict[str, Any]]:
    """The documents of ``deploy/dra/examples/<name>.yaml``."""
    return [d for d in yaml.safe_load_all((DRA / "examples" / f"{name}.yaml").read_text()) if d]


def example_pod(example: str, name: str, **spec_changes: Any) -> dict[str, Any]:
    """The Pod of ``deploy/dra/examples/<example>.yaml`` under *name*."""
    (pod,) = [copy.deepcopy(d) for d in examples(example) if d["kind"] == "Pod"]
    pod["metadata"]["name"] = name
    pod["spec"].update(spec_changes)
    return pod


def publish(api: Any, topo: Topology, nodes: list[str]) -> list[dict[str, Any]]:
    """Create the DeviceClass, every example template and each node's slices; returns the slices."""
    resource: Any = client.ResourceV1Api(api)
    core: Any = client.CoreV1Api(api)
    for body in yaml.safe_load_all((DRA / "deviceclass.yaml").read_text()):
        _create(lambda b=body: resource.create_device_class(b))
    for path in sorted((DRA / "examples").glob("*.yaml")):
        for doc in examples(path.stem):
            if doc["kind"] == "ResourceClaimTemplate":
                _create(lambda d=doc: resource.create_namespaced_resource_claim_template(NS, d))
    created = []
    writer = ResourceSlices(api)
    for node in nodes:
        uid = core.read_node(node).metadata.uid
        for body in build_resource_slices(topo, node_name=node, node_uid=uid):
            created.append(writer.create(body))
    return created


def _create(call: Any) -> None:
    try:
        call()
    except client.exceptions.ApiException as err:
        if err.status != 409:
            raise


class ClaimController:
    """The resourceclaim controller's part for template claims (see the module docstring)."""

    def __init__(self, api: Any) -> None:
        self.core: Any = client.CoreV1Api(api)
        self.resource: Any = client.ResourceV1Api(api)

    def make_claims(self, pod: Any, *, narrow: str = "") -> list[str]:
        """Create a claim per template entry of *pod* (a V1Pod) and record it in its status.
        *narrow*: one more CEL selector for every request (a test that needs a known device)."""
        statuses, names = [], []
        for entry in pod.spec.resource_claims or []:
            if not entry.resource_claim_template_name:
                continue
            template = self.resource.read_namespaced_resource_claim_template(
                entry.resource_claim_template_name, NS
            )
            spec = client.ApiClient().sanitize_for_serialization(template.spec.spec)
            if narrow:
                for request in spec["devices"]["requests"]:
                    request["exactly"].setdefault("selectors", []).append({"cel": {"expression": narrow}})
            body = {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaim",
                "metadata": {
                    "generateName": f"{pod.metadata.name}-{entry.name}-",
                    "annotations": {"resource.kubernetes.io/pod-claim-name": entry.name},
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "name": pod.metadata.name,
                            "uid": pod.metadata.uid,
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": spec,
            }
            claim = self.resource.create_namespaced_resource_claim(NS, body)
            names.append(claim.metadata.name)
            statuses.append({"name": entry.name, "resourceClaimName": claim.metadata.name})
        if statuses:
            self.core.patch_namespaced_pod_status(
                pod.metadata.name, NS, {"status": {"resourceClaimStatuses": statuses}}
            )
        return names

    def claim_of(self, pod_name: str) -> dict[str, Any]:
        """The (one) claim of *pod_name* as the API server holds it now, as JSON."""
        pod = self.core.read_namespaced_pod(pod_name, NS)
        (status,) = pod.status.resource_claim_statuses
        claim = self.resource.read_namespaced_resource_claim(status.resource_claim_name, NS)
        out: dict[str, Any] = client.ApiClient().sanitize_for_serialization(claim)
        return out
