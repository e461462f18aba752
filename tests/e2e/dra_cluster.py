"""The DRA side of an e2e cluster: 8-GPU two-socket fake nodes with topolet's ResourceSlices.

* :func:`gpu_machine`: the machine of :mod:`tests.dra_machine` (sysfs fixture plus the NVML
  stand-in: four 40 GiB and four 80 GiB A100s, two per PCIe root, four per NUMA node);
* :func:`publish`: topolet's own slices for each named node (``build_resource_slices``,
  owned by the Node object), through topolet's ``kube.resources.ResourceSlices``;
  ``deploy/dra/deviceclass.yaml`` and the example ResourceClaimTemplates of
  ``deploy/dra/examples/`` applied as shipped;
* :class:`Claims`: reads a pod's claim. A pod that names a ResourceClaimTemplate gets its
  claim from the real kube-controller-manager's resourceclaim controller (which also
  deletes it, and lets kube-scheduler's delete protection go, when the pod is gone);
  allocation, the claim's status and binding are the real kube-scheduler's.
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

__all__ = ["CONTROLLERS", "DRA", "Claims", "example_pod", "examples", "gpu_machine", "publish"]

DRA = Path(__file__).resolve().parents[2] / "deploy" / "dra"
NS = "default"
#: kube-controller-manager's controllers this cluster runs: claims from templates, and the
#: garbage collector that deletes what a deleted pod owned.
CONTROLLERS = ("resourceclaim-controller", "garbage-collector-controller")


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


class Claims:
    """The test's view of ResourceClaims. Claims of a template are kube-controller-manager's
    (its resourceclaim controller creates them for the pod and names them in the pod's
    ``status.resourceClaimStatuses``); :meth:`narrowed` makes a named claim from a
    template with one more selector, for a test that needs a known device."""

    def __init__(self, api: Any) -> None:
        self.core: Any = client.CoreV1Api(api)
        self.resource: Any = client.ResourceV1Api(api)

    def narrowed(self, pod: dict[str, Any], narrow: str) -> list[str]:
        """Replace every template entry of *pod* (a Pod body, changed in place) by a claim
        made here from that template plus the CEL selector *narrow*; the claims' names."""
        names = []
        for entry in pod["spec"].get("resourceClaims") or []:
            template_name = entry.pop("resourceClaimTemplateName", None)
            if not template_name:
                continue
            template = self.resource.read_namespaced_resource_claim_template(template_name, NS)
            spec = client.ApiClient().sanitize_for_serialization(template.spec.spec)
            for request in spec["devices"]["requests"]:
                request["exactly"].setdefault("selectors", []).append({"cel": {"expression": narrow}})
            name = f"{pod['metadata']['name']}-{entry['name']}"
            self.resource.create_namespaced_resource_claim(
                NS, {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                     "metadata": {"name": name}, "spec": spec}
            )  # fmt: skip
            entry["resourceClaimName"] = name
            names.append(name)
        return names

    def claim_name(self, pod_name: str) -> str | None:
        """The name of the (one) claim of *pod_name*: named in its spec, or generated by
        the controller (None until the controller has written it)."""
        pod = self.core.read_namespaced_pod(pod_name, NS)
        (entry,) = pod.spec.resource_claims
        if entry.resource_claim_name:
            return str(entry.resource_claim_name)
        for status in pod.status.resource_claim_statuses or []:
            if status.name == entry.name and status.resource_claim_name:
                return str(status.resource_claim_name)
        return None

    def claim_of(self, pod_name: str) -> dict[str, Any]:
        """The (one) claim of *pod_name* as the API server holds it now, as JSON."""
        name = self.claim_name(pod_name)
        if name is None:
            raise LookupError(f"pod {pod_name}: no claim generated yet")
        claim = self.resource.read_namespaced_resource_claim(name, NS)
        out: dict[str, Any] = client.ApiClient().sanitize_for_serialization(claim)
        return out
