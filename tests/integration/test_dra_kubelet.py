"""End to end on one node with Kubernetes' own code on both sides of topolet's DRA driver:

1. kube-scheduler's DRA allocator (tests/dra_allocator) allocates the example claim "two
   GPUs on one PCIe root" from topolet's ResourceSlice of the 8-GPU machine; the result is
   written into the claim's status in the resource.k8s.io stand-in, as PreBind does;
2. kubelet's plugin manager (tests/dra_kubelet: pkg/kubelet/pluginmanager) finds topolet's
   registration socket, registers the driver with kubelet's DRA plugin manager (which
   chooses the gRPC service), and kubelet's DRA client calls NodePrepareResources over a
   real unix socket; topolet reads the claim through the official client and writes the
   CDI spec, whose content is checked;
3. NodeUnprepareResources leaves nothing behind.

No GPU is present: the machine is the sysfs fixture plus the NVML stand-in.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, Configuration

from deviceplugin.dra.plugin import DRAPlugin
from deviceplugin.dra.server import DRAPluginServer
from deviceplugin.gpu import discover_gpus
from deviceplugin.nvml_info import with_nvml_attributes
from tests.dra_apiserver_standin import DRAApiServerStandIn
from tests.dra_go import KubeletHarness, allocate, require
from tests.dra_machine import GPUS, NVMLInfoStandIn, write_machine
from topolet.dra_node import kube_claim_getter
from topology.resourceslice import DRIVER, build_resource_slices
from topology.sysfs import discover

DRA = Path(__file__).resolve().parents[2] / "deploy" / "dra"
NODE = "worker-1"


@pytest.fixture(scope="module")
def binaries() -> tuple[Path, Path]:
    return require("dra_allocator"), require("dra_kubelet")


@pytest.fixture
def api() -> Iterator[DRAApiServerStandIn]:
    standin = DRAApiServerStandIn().start()
    yield standin
    standin.stop()


def scheduled_claim(allocator: Path, slices: list[dict[str, Any]]) -> dict[str, Any]:
    """The example claim, allocated by kube-scheduler's allocator, as PreBind stores it."""
    docs = [d for d in yaml.safe_load_all((DRA / "examples/two-gpus-same-pcie-root.yaml").read_text()) if d]
    (template,) = [d for d in docs if d["kind"] == "ResourceClaimTemplate"]
    classes = [d for d in yaml.safe_load_all((DRA / "deviceclass.yaml").read_text()) if d]
    meta = {"name": "pod-gpus-x7k2p", "namespace": "default", "uid": str(uuid.uuid4())}
    claim = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": meta,
             "spec": copy.deepcopy(template["spec"]["spec"])}  # fmt: skip
    out = allocate(allocator, node=NODE, slices=slices, classes=classes, claims=[claim])
    assert out["error"] == "" and out["results"] is not None
    (allocation,) = out["results"]
    claim["status"] = {"allocation": allocation}
    return claim


@pytest.mark.parametrize(
    "versions",
    [
        pytest.param(("v1.DRAPlugin", "v1beta1.DRAPlugin"), id="v1-chosen"),
        pytest.param(("v1beta1.DRAPlugin",), id="v1beta1-only"),
    ],
)
def test_scheduler_allocation_prepared_by_kubelet_and_unprepared(
    binaries: tuple[Path, Path], api: DRAApiServerStandIn, tmp_path: Path, versions: tuple[str, ...]
) -> None:
    allocator, kubelet_binary = binaries
    root = write_machine(tmp_path / "root")
    nvml = NVMLInfoStandIn()
    nvml.nvmlInit()
    topo = with_nvml_attributes(discover(root), nvml)
    claim = scheduled_claim(allocator, build_resource_slices(topo, node_name=NODE))
    api.put_claim(claim)
    chosen = [r["device"] for r in claim["status"]["allocation"]["devices"]["results"]]

    conf = Configuration()
    conf.host = api.url
    plugin = DRAPlugin(
        discover_gpus(topo, root=root),
        node_name=NODE,
        get_claim=kube_claim_getter(ApiClient(conf)),
        cdi_dir=tmp_path / "cdi",
        checkpoint_path=tmp_path / "plug" / "checkpoint.json",
        root=root,
    )
    server = DRAPluginServer(
        plugin, registry_dir=tmp_path / "reg", plugin_dir=tmp_path / "plug", supported_versions=versions
    )
    kubelet = KubeletHarness(kubelet_binary, tmp_path / "reg")
    server.start()
    try:
        assert kubelet.call("wait", driver=DRIVER, timeout_s=30)["error"] == ""
        assert server.registered.wait(10), "kubelet notified the registration"
        ref = {"namespace": "default", "uid": claim["metadata"]["uid"], "name": claim["metadata"]["name"]}

        out = kubelet.call("prepare", driver=DRIVER, claims=[ref])
        assert out["error"] == ""
        got = out["response"]["claims"][ref["uid"]]
        assert got.get("error", "") == ""
        assert [d["device_name"] for d in got["devices"]] == chosen
        assert {d["pool_name"] for d in got["devices"]} == {NODE}
        ids = [i for d in got["devices"] for i in d["cdi_device_ids"]]
        assert ids == [f"k8s.gpu.topolet.io/claim={ref['uid']}-{name}" for name in chosen]

        spec = json.loads((tmp_path / "cdi" / f"{DRIVER}-{ref['uid']}.json").read_text())
        by_name = {g.address.replace(":", "-").replace(".", "-"): g for g in GPUS}
        gpus = [by_name[name.removeprefix("gpu-")] for name in chosen]
        assert gpus[0].root == gpus[1].root, "the scheduler honoured matchAttribute pcieRoot"
        visible = "NVIDIA_VISIBLE_DEVICES=" + ",".join(g.uuid for g in gpus)
        for entry, gpu in zip(spec["devices"], gpus, strict=True):
            assert entry["containerEdits"]["env"] == [visible]
            paths = [n["path"] for n in entry["containerEdits"]["deviceNodes"]]
            assert paths[0] == f"/dev/nvidia{gpu.minor}" and "/dev/nvidiactl" in paths

        out = kubelet.call("unprepare", driver=DRIVER, claims=[ref])
        assert out["error"] == "" and out["response"]["claims"][ref["uid"]].get("error", "") == ""
        assert list((tmp_path / "cdi").iterdir()) == []
        assert plugin.prepared == {}
    finally:
        kubelet.close()
        server.stop()
