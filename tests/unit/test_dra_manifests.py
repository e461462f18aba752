"""deploy/dra/: the DeviceClass, the node agent's DRA permissions and the four example claims
validate against the Kubernetes 1.34 OpenAPI schema in strict mode, say what the issue asks
(memory ≥ 40Gi, a product, two GPUs on one PCIe root, a GPU with exclusive CPUs), and name
only attributes topolet publishes; a misspelled field is rejected, so the check can fail."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from topology.resourceslice import DRIVER, PCIE_ROOT

DRA = Path(__file__).resolve().parents[2] / "deploy" / "dra"
Doc = dict[str, Any]
PUBLISHED = {
    "vendor",
    "productName",
    "uuid",
    "pciAddress",
    "numaNode",
    "driverVersion",
    "cudaComputeCapability",
}


def docs(pattern: str) -> list[Doc]:
    return [d for p in sorted(DRA.glob(pattern)) for d in yaml.safe_load_all(p.read_text()) if d]


ALL = docs("*.yaml") + docs("examples/*.yaml")


def templates() -> dict[str, Doc]:
    return {d["metadata"]["name"]: d["spec"]["spec"] for d in ALL if d["kind"] == "ResourceClaimTemplate"}


@pytest.mark.parametrize("doc", ALL, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_validates_against_1_34(doc: Doc) -> None:
    kubernetes_validate.validate(doc, "1.34.0", strict=True)


@pytest.mark.parametrize(
    ("name", "path", "typo"),
    [
        ("two-gpus-same-pcie-root", ("spec", "spec", "devices", "constraints", 0), "matchAttributes"),
        ("gpu-40gi", ("spec", "spec", "devices", "requests", 0), "exactlyy"),
    ],
)
def test_a_misspelled_field_is_rejected(name: str, path: tuple[Any, ...], typo: str) -> None:
    (doc,) = [copy.deepcopy(d) for d in ALL if d["metadata"]["name"] == name and d["kind"] != "Pod"]
    node = doc
    for key in path:
        node = node[key]
    node[typo] = node.pop(typo[:-1])  # the typo is the real name plus one letter
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.34.0", strict=True)


def test_device_class_selects_the_driver() -> None:
    (dc,) = [d for d in ALL if d["kind"] == "DeviceClass"]
    assert dc["metadata"]["name"] == DRIVER
    assert dc["spec"]["selectors"] == [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]


def test_the_four_example_claims() -> None:
    t = templates()
    memory = t["gpu-40gi"]["devices"]["requests"][0]["exactly"]["selectors"][0]["cel"]["expression"]
    assert 'quantity("40Gi")' in memory and '"memory" in device.capacity' in memory
    product = t["gpu-a100-80gb"]["devices"]["requests"][0]["exactly"]["selectors"][0]["cel"]["expression"]
    assert ".productName ==" in product
    pair = t["two-gpus-same-pcie-root"]["devices"]
    assert pair["requests"][0]["exactly"]["count"] == 2
    assert pair["constraints"] == [{"requests": ["gpus"], "matchAttribute": PCIE_ROOT}]
    (pod,) = [d for d in ALL if d["kind"] == "Pod" and d["metadata"]["name"] == "gpu-with-exclusive-cpus"]
    res = pod["spec"]["containers"][0]["resources"]
    assert res["requests"] == res["limits"] and res["requests"]["cpu"].isdigit(), "Guaranteed, integer CPUs"
    assert res["claims"] == [{"name": "gpu"}]


def test_every_class_and_claim_uses_the_driver_class_and_published_names() -> None:
    for spec in templates().values():
        for request in spec["devices"]["requests"]:
            assert request["exactly"]["deviceClassName"] == DRIVER
            for sel in request["exactly"].get("selectors", []):
                expr = sel["cel"]["expression"]
                names = set(re.findall(r'device\.attributes\["gpu\.topolet\.io"\]\.(\w+)', expr))
                names |= set(re.findall(r'"(\w+)" in device\.attributes', expr))
                assert names <= PUBLISHED, expr
                assert set(re.findall(r'device\.capacity\["gpu\.topolet\.io"\]\.(\w+)', expr)) <= {"memory"}
