"""The kubelet DRA plugin over real gRPC on unix sockets, as kubelet drives it.

The node is the 8-GPU two-socket machine of :mod:`tests.dra_machine` (sysfs fixture plus
the NVML stand-in: no GPU is present here). Claims live in the resource.k8s.io stand-in
and are read through the official client, as on a node. Kubelet's side is played by
plain gRPC stubs: it asks the registration socket for the plugin's info, dials the
endpoint it names, and calls NodePrepareResources / NodeUnprepareResources in v1 and
v1beta1.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from kubernetes.client import ApiClient, Configuration

from deviceplugin.api.dra.v1 import api_pb2 as v1
from deviceplugin.api.dra.v1 import api_pb2_grpc as v1_grpc
from deviceplugin.api.dra.v1beta1 import api_pb2 as v1beta1
from deviceplugin.api.dra.v1beta1 import api_pb2_grpc as v1beta1_grpc
from deviceplugin.api.pluginregistration.v1 import api_pb2 as reg
from deviceplugin.api.pluginregistration.v1 import api_pb2_grpc as reg_grpc
from deviceplugin.dra.checkpoint import MAX_BYTES, ClaimCheckpointError, save
from deviceplugin.dra.plugin import DRAPlugin
from deviceplugin.dra.server import DRAPluginServer
from deviceplugin.gpu import GPUDevice, discover_gpus
from deviceplugin.nvml_info import with_nvml_attributes
from tests.dra_apiserver_standin import DRAApiServerStandIn
from tests.dra_go import cdi_resolve, require
from tests.dra_machine import GPUS, NVMLInfoStandIn, write_machine
from topolet.dra_node import kube_claim_getter
from topology.sysfs import discover

NODE = "worker-1"
DRIVER = "gpu.topolet.io"
CONTROL = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
VERSIONS = [pytest.param((v1, v1_grpc), id="v1"), pytest.param((v1beta1, v1beta1_grpc), id="v1beta1")]


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[GPUDevice]]:
    root = write_machine(tmp_path_factory.mktemp("dra") / "root")
    nvml = NVMLInfoStandIn()
    nvml.nvmlInit()
    return root, discover_gpus(with_nvml_attributes(discover(root), nvml), root=root)


@pytest.fixture
def api() -> Iterator[DRAApiServerStandIn]:
    standin = DRAApiServerStandIn().start()
    yield standin
    standin.stop()


class Node:
    """The plugin's folders on this node (short paths: unix socket names are limited)."""

    def __init__(self, base: Path) -> None:
        self.registry, self.plugin_dir, self.cdi = base / "reg", base / "plug", base / "cdi"
        self.checkpoint = self.plugin_dir / "checkpoint.json"


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def make_server(
    node: Node, machine: tuple[Path, list[GPUDevice]], api: DRAApiServerStandIn, *, get_claim: Any = None
) -> DRAPluginServer:
    root, gpus = machine
    if get_claim is None:
        conf = Configuration()
        conf.host = api.url
        get_claim = kube_claim_getter(ApiClient(conf))
    plugin = DRAPlugin(
        gpus,
        node_name=NODE,
        get_claim=get_claim,
        cdi_dir=node.cdi,
        checkpoint_path=node.checkpoint,
        root=root,
    )
    server = DRAPluginServer(plugin, registry_dir=node.registry, plugin_dir=node.plugin_dir)
    server.start()
    return server


@pytest.fixture
def server(
    node: Node, machine: tuple[Path, list[GPUDevice]], api: DRAApiServerStandIn
) -> Iterator[DRAPluginServer]:
    s = make_server(node, machine, api)
    yield s
    s.stop()


def allocated_claim(
    api: DRAApiServerStandIn, name: str, results: list[tuple[str, str, str]], uid: str | None = None
) -> Any:
    """A claim as kube-scheduler leaves it: allocation results (request, pool, device)."""
    uid = uid or str(uuid.uuid4())
    api.put_claim(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"namespace": "default", "name": name, "uid": uid},
            "spec": {"devices": {"requests": [{"name": "gpus", "exactly": {"deviceClassName": DRIVER}}]}},
            "status": {
                "allocation": {
                    "devices": {
                        "results": [
                            {"request": r, "driver": DRIVER, "pool": p, "device": d} for r, p, d in results
                        ]
                    }
                }
            },
        }
    )
    return {"namespace": "default", "uid": uid, "name": name}


def kubelet_dial(node: Node) -> tuple[Any, str]:
    """Ask the registration socket for the plugin's info, as kubelet's plugin watcher does."""
    with grpc.insecure_channel(f"unix://{node.registry / (DRIVER + '-reg.sock')}") as ch:
        info = reg_grpc.RegistrationStub(ch).GetInfo(reg.InfoRequest(), timeout=5)
    return info, info.endpoint


def prepare(endpoint: str, version: Any, *claims: Any) -> Any:
    pb, pb_grpc = version
    with grpc.insecure_channel(f"unix://{endpoint}") as ch:
        req = pb.NodePrepareResourcesRequest(claims=[pb.Claim(**c) for c in claims])
        return pb_grpc.DRAPluginStub(ch).NodePrepareResources(req, timeout=45)


def unprepare(endpoint: str, version: Any, *claims: Any) -> Any:
    pb, pb_grpc = version
    with grpc.insecure_channel(f"unix://{endpoint}") as ch:
        req = pb.NodeUnprepareResourcesRequest(claims=[pb.Claim(**c) for c in claims])
        return pb_grpc.DRAPluginStub(ch).NodeUnprepareResources(req, timeout=45)


def test_registration_info_and_status(server: DRAPluginServer, node: Node) -> None:
    info, endpoint = kubelet_dial(node)
    assert (info.type, info.name) == ("DRAPlugin", DRIVER)
    assert list(info.supported_versions) == ["v1.DRAPlugin", "v1beta1.DRAPlugin"]
    assert endpoint == str(node.plugin_dir / "dra.sock") and Path(endpoint).is_socket()
    with grpc.insecure_channel(f"unix://{node.registry / (DRIVER + '-reg.sock')}") as ch:
        stub = reg_grpc.RegistrationStub(ch)
        stub.NotifyRegistrationStatus(
            reg.RegistrationStatus(plugin_registered=False, error="no such version")
        )
        assert not server.registered.is_set() and server.registration_error == "no such version"
        stub.NotifyRegistrationStatus(reg.RegistrationStatus(plugin_registered=True))
    assert server.registered.is_set()


def identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_ctime_ns


def test_a_refused_registration_is_offered_again(
    node: Node, machine: tuple[Path, list[GPUDevice]], api: DRAApiServerStandIn
) -> None:
    server = make_server(node, machine, api)
    server.retry_s = server.min_retry_s = 0.05
    sock = node.registry / (DRIVER + "-reg.sock")
    try:
        first = identity(sock)
        with grpc.insecure_channel(f"unix://{sock}") as ch:
            stub = reg_grpc.RegistrationStub(ch)
            stub.NotifyRegistrationStatus(reg.RegistrationStatus(plugin_registered=False, error="timeout"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not sock.exists() or identity(sock) == first):
            time.sleep(0.02)
        assert identity(sock) != first, "a new registration socket for kubelet's watcher"
        info, _ = kubelet_dial(node)
        assert info.name == DRIVER
        assert server.retry_s == 0.1, "the next retry waits twice as long"
    finally:
        server.stop()
    assert not sock.exists()


def test_the_wire_names_are_kubelets() -> None:
    assert v1.DESCRIPTOR.services_by_name["DRAPlugin"].full_name == "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"
    assert v1beta1.DESCRIPTOR.package == "k8s.io.kubelet.pkg.apis.dra.v1beta1"
    assert reg.DESCRIPTOR.services_by_name["Registration"].full_name == "pluginregistration.Registration"
    fields = {f.name: f.number for f in v1.Device.DESCRIPTOR.fields}
    assert fields == {"request_names": 1, "pool_name": 2, "device_name": 3, "cdi_device_ids": 4}
    assert {f.name: f.number for f in v1.Claim.DESCRIPTOR.fields} == {"namespace": 1, "uid": 2, "name": 3}
    assert {f.name: f.number for f in reg.PluginInfo.DESCRIPTOR.fields} == {
        "type": 1, "name": 2, "endpoint": 3, "supported_versions": 4,
    }  # fmt: skip
    assert {f.name: f.number for f in v1.NodePrepareResourceResponse.DESCRIPTOR.fields} == {
        "devices": 1,
        "error": 2,
    }


def spec_files(node: Node) -> list[str]:
    return sorted(os.listdir(node.cdi)) if node.cdi.exists() else []


@pytest.mark.parametrize("version", VERSIONS)
def test_prepare_writes_cdi_and_unprepare_removes_exactly_it(
    server: DRAPluginServer, node: Node, api: DRAApiServerStandIn, version: Any
) -> None:
    _, endpoint = kubelet_dial(node)
    pair = allocated_claim(
        api, "pair", [("gpus", NODE, "gpu-0000-3a-00-0"), ("gpus", NODE, "gpu-0000-3a-01-0")]
    )
    other = allocated_claim(api, "other", [("gpus", NODE, "gpu-0000-86-00-0")])
    resp = prepare(endpoint, version, pair, other)
    got = resp.claims[pair["uid"]]
    assert got.error == ""
    assert [(list(d.request_names), d.pool_name, d.device_name) for d in got.devices] == [
        (["gpus"], NODE, "gpu-0000-3a-00-0"),
        (["gpus"], NODE, "gpu-0000-3a-01-0"),
    ]
    uid = pair["uid"]
    assert [list(d.cdi_device_ids) for d in got.devices] == [
        [f"k8s.gpu.topolet.io/claim={uid}-gpu-0000-3a-00-0"],
        [f"k8s.gpu.topolet.io/claim={uid}-gpu-0000-3a-01-0"],
    ]
    spec = json.loads((node.cdi / f"{DRIVER}-{uid}.json").read_text())
    assert spec["cdiVersion"] == ("0.5.0" if uid[0].isdigit() else "0.3.0")
    assert spec["kind"] == "k8s.gpu.topolet.io/claim"
    g2, g3 = GPUS[2], GPUS[3]
    visible = f"NVIDIA_VISIBLE_DEVICES={g2.uuid},{g3.uuid}"

    def edits(gpu_node: str) -> dict[str, Any]:
        return {"env": [visible], "deviceNodes": [{"path": p} for p in [gpu_node, *CONTROL]]}

    assert spec["devices"] == [
        {"name": f"{uid}-gpu-0000-3a-00-0", "containerEdits": edits("/dev/nvidia2")},
        {"name": f"{uid}-gpu-0000-3a-01-0", "containerEdits": edits("/dev/nvidia3")},
    ]
    assert spec_files(node) == sorted([f"{DRIVER}-{uid}.json", f"{DRIVER}-{other['uid']}.json"])

    again = prepare(endpoint, version, pair)
    assert again.claims[pair["uid"]] == got, "prepare is idempotent"

    assert unprepare(endpoint, version, pair).claims[pair["uid"]].error == ""
    assert spec_files(node) == [f"{DRIVER}-{other['uid']}.json"], "only the pair's spec is gone"
    assert pair["uid"] not in server.plugin.prepared and other["uid"] in server.plugin.prepared
    assert unprepare(endpoint, version, other).claims[other["uid"]].error == ""
    assert spec_files(node) == []
    assert json.loads(node.checkpoint.read_text())["claims"] == {}


def test_prepared_claims_survive_a_restart(
    node: Node, machine: tuple[Path, list[GPUDevice]], api: DRAApiServerStandIn
) -> None:
    first = make_server(node, machine, api)
    _, endpoint = kubelet_dial(node)
    claim = allocated_claim(api, "c", [("gpus", NODE, "gpu-0000-b1-01-0")])
    before = prepare(endpoint, (v1, v1_grpc), claim).claims[claim["uid"]]
    first.stop()
    assert not Path(endpoint).exists(), "stop removes the sockets it bound"

    def api_down(namespace: str, name: str) -> Any:
        raise ConnectionError("the API server is unreachable")

    second = make_server(node, machine, api, get_claim=api_down)
    try:
        (node.cdi / f"{DRIVER}-{claim['uid']}.json").unlink()  # lost with a tmpfs /var/run
        after = prepare(endpoint, (v1beta1, v1beta1_grpc), claim).claims[claim["uid"]]
        assert list(after.devices[0].cdi_device_ids) == list(before.devices[0].cdi_device_ids)
        assert (node.cdi / f"{DRIVER}-{claim['uid']}.json").exists(), (
            "the spec is rewritten from the checkpoint"
        )
        assert unprepare(endpoint, (v1, v1_grpc), claim).claims[claim["uid"]].error == ""
        assert spec_files(node) == []
        fresh = allocated_claim(api, "d", [("gpus", NODE, "gpu-0000-17-00-0")])
        err = prepare(endpoint, (v1, v1_grpc), fresh).claims[fresh["uid"]].error
        assert "reading ResourceClaim default/d: the API server is unreachable" in err
    finally:
        second.stop()


@pytest.mark.parametrize(
    ("results", "reason"),
    [
        pytest.param([("gpus", NODE, "gpu-0000-99-00-0")], "device 'gpu-0000-99-00-0' in pool 'worker-1'",
                     id="unknown-device"),
        pytest.param([("gpus", "worker-2", "gpu-0000-17-00-0")], "in pool 'worker-2', which this node",
                     id="other-nodes-pool"),
    ],
)  # fmt: skip
def test_refuses_devices_this_node_lacks(
    server: DRAPluginServer, node: Node, api: DRAApiServerStandIn, results: Any, reason: str
) -> None:
    _, endpoint = kubelet_dial(node)
    claim = allocated_claim(api, "bad", results)
    got = prepare(endpoint, (v1, v1_grpc), claim).claims[claim["uid"]]
    assert reason in got.error and "does not have" in got.error
    assert list(got.devices) == [] and spec_files(node) == []
    assert claim["uid"] not in server.plugin.prepared


def test_refuses_a_recreated_claim_and_a_bad_uid(
    server: DRAPluginServer, node: Node, api: DRAApiServerStandIn
) -> None:
    _, endpoint = kubelet_dial(node)
    claim = allocated_claim(api, "re", [("gpus", NODE, "gpu-0000-17-00-0")])
    stale = {**claim, "uid": str(uuid.uuid4())}
    assert "kubelet asked for" in prepare(endpoint, (v1, v1_grpc), stale).claims[stale["uid"]].error
    evil = {**claim, "uid": "../../etc/passwd"}
    resp = prepare(endpoint, (v1, v1_grpc), evil)
    assert "expected letters, digits and '-'" in resp.claims[evil["uid"]].error
    assert unprepare(endpoint, (v1, v1_grpc), evil).claims[evil["uid"]].error != ""
    assert spec_files(node) == []


def test_unprepare_of_an_unknown_claim_succeeds(server: DRAPluginServer, node: Node) -> None:
    _, endpoint = kubelet_dial(node)
    ghost = {"namespace": "default", "uid": str(uuid.uuid4()), "name": "ghost"}
    assert unprepare(endpoint, (v1beta1, v1beta1_grpc), ghost).claims[ghost["uid"]].error == ""


def test_a_corrupt_checkpoint_refuses_to_start(
    node: Node, machine: tuple[Path, list[GPUDevice]], api: DRAApiServerStandIn
) -> None:
    node.plugin_dir.mkdir(parents=True)
    node.checkpoint.write_text('{"version": 1, "checksum": 1, "claims": {"x": {}}}')
    with pytest.raises(ClaimCheckpointError, match=r"checksum mismatch.*delete the file"):
        make_server(node, machine, api)


@pytest.fixture(scope="module")
def cdi_check() -> Path:
    return require("cdi_check")


@pytest.mark.parametrize(
    "uid",
    [
        pytest.param("0a3e6f52-64c1-4b53-9a8e-1f2d3c4b5a69", id="uid-starts-with-a-digit"),
        pytest.param("fa3e6f52-64c1-4b53-9a8e-1f2d3c4b5a69", id="uid-starts-with-a-letter"),
    ],
)
def test_the_runtimes_cdi_library_accepts_the_spec_and_resolves_the_ids(
    server: DRAPluginServer, node: Node, api: DRAApiServerStandIn, cdi_check: Path, uid: str
) -> None:
    _, endpoint = kubelet_dial(node)
    pair = allocated_claim(
        api, "pair", [("gpus", NODE, "gpu-0000-86-00-0"), ("gpus", NODE, "gpu-0000-86-01-0")], uid
    )
    got = prepare(endpoint, (v1, v1_grpc), pair).claims[pair["uid"]]
    ids = [i for d in got.devices for i in d.cdi_device_ids]
    out = cdi_resolve(cdi_check, node.cdi, [*ids, "k8s.gpu.topolet.io/claim=no-such-device"])
    assert out["errors"] == []
    visible = f"NVIDIA_VISIBLE_DEVICES={GPUS[4].uuid},{GPUS[5].uuid}"
    for cdi_id, minor in zip(ids, (4, 5), strict=True):
        edits = out["devices"][cdi_id]
        assert edits["env"] == [visible]
        assert [n["path"] for n in edits["deviceNodes"]] == [f"/dev/nvidia{minor}", *CONTROL]
    assert out["devices"]["k8s.gpu.topolet.io/claim=no-such-device"] is None
    # A spec the library refuses is reported, so the check can fail.
    (node.cdi / "broken.json").write_text('{"cdiVersion": "9.9.9", "kind": "x/y", "devices": []}')
    assert cdi_resolve(cdi_check, node.cdi, ids)["errors"] != []


def test_a_crash_between_spec_and_checkpoint_leaves_nothing_after_unprepare(
    node: Node, machine: tuple[Path, list[GPUDevice]], api: DRAApiServerStandIn
) -> None:
    first = make_server(node, machine, api)
    _, endpoint = kubelet_dial(node)
    claim = allocated_claim(api, "c", [("gpus", NODE, "gpu-0000-3a-01-0")])
    prepare(endpoint, (v1, v1_grpc), claim)
    first.stop()
    save(node.checkpoint, {})  # as if the agent died after writing the spec, before the checkpoint
    assert spec_files(node) == [f"{DRIVER}-{claim['uid']}.json"]
    second = make_server(node, machine, api)
    try:
        assert unprepare(endpoint, (v1, v1_grpc), claim).claims[claim["uid"]].error == ""
        assert spec_files(node) == []
    finally:
        second.stop()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(b"{", "not JSON", id="truncated"),
        pytest.param(b'{"version": 2, "checksum": 0, "claims": {}}', "expected", id="other-version"),
        pytest.param(b" " * (MAX_BYTES + 1), f"larger than {MAX_BYTES} bytes", id="too-large"),
    ],
)
def test_unusable_checkpoints_are_refused(
    node: Node, machine: tuple[Path, list[GPUDevice]], api: DRAApiServerStandIn, content: bytes, reason: str
) -> None:
    node.plugin_dir.mkdir(parents=True)
    node.checkpoint.write_bytes(content)
    with pytest.raises(ClaimCheckpointError, match=f"{node.checkpoint}: {reason}"):
        make_server(node, machine, api)
