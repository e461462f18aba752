"""The gRPC server against bad input, its stream cap, and the kubelet stand-in's own checks.

Requests go over the real unix socket through :class:`tests.kubelet_standin.KubeletStandin`;
the resource is real GPUs of the ``nvidiagpunumanodes`` snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from deviceplugin.api.v1beta1 import api_pb2, api_pb2_grpc
from deviceplugin.gpu import GPUResource, gpu_resources
from deviceplugin.server import DevicePluginServer, RegistrationError, default_socket_name
from tests.kubelet_standin import KubeletStandin, valid_extended_resource_name
from topology.sysfs import discover

GPU = "nvidia.com/gpu"
A, B, C, D = "0004:05:00.0", "0004:06:00.0", "0007:00:00.0", "0035:04:00.0"


@pytest.fixture(scope="module")
def resource(hwloc_snapshot: Callable[[str], Path]) -> GPUResource:
    root = hwloc_snapshot("nvidiagpunumanodes")
    (res,) = gpu_resources(discover(root), root=root)
    return res


def _serve(plugin_dir: Path, resource: GPUResource) -> Iterator[KubeletStandin]:
    k = KubeletStandin(plugin_dir)
    k.start()
    server = DevicePluginServer(resource, None, plugin_dir=plugin_dir, max_streams=1, unary_workers=2)
    server.start()
    k.wait_snapshot(GPU)
    yield k
    server.stop()
    k.stop()


@pytest.fixture(scope="module")
def kubelet(tmp_path_factory: pytest.TempPathFactory, resource: GPUResource) -> Iterator[KubeletStandin]:
    """One kubelet and plugin for the module: every test also checks it still serves."""
    yield from _serve(tmp_path_factory.mktemp("dp"), resource)


@pytest.fixture
def own_kubelet(tmp_path: Path, resource: GPUResource) -> Iterator[KubeletStandin]:
    yield from _serve(tmp_path, resource)


def preferred(available: list[str], must: list[str], size: int) -> object:
    return api_pb2.PreferredAllocationRequest(
        container_requests=[
            api_pb2.ContainerPreferredAllocationRequest(
                available_deviceIDs=available, must_include_deviceIDs=must, allocation_size=size
            )
        ]
    )


def allocate(*containers: list[str]) -> object:
    return api_pb2.AllocateRequest(
        container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=ids) for ids in containers]
    )


@pytest.mark.parametrize(
    ("method", "request_", "code", "text"),
    [
        ("Allocate", allocate(), "INVALID_ARGUMENT", "container_requests: expected at least one"),
        ("Allocate", allocate([]), "INVALID_ARGUMENT", "devices_ids: expected at least one device id"),
        (
            "Allocate",
            allocate(["GPU-nope"]),
            "INVALID_ARGUMENT",
            "devices_ids: unknown device id(s) ['GPU-nope']",
        ),
        ("Allocate", allocate([A, A]), "INVALID_ARGUMENT", "listed more than once"),
        (
            "GetPreferredAllocation",
            preferred([A, B], [], 3),
            "RESOURCE_EXHAUSTED",
            "3 devices requested, only 2 available",
        ),
        ("GetPreferredAllocation", preferred([A], [], 0), "INVALID_ARGUMENT", "allocation_size: got 0"),
        (
            "GetPreferredAllocation",
            preferred([A, "x"], [], 1),
            "INVALID_ARGUMENT",
            "available_deviceIDs: unknown device id(s) ['x']",
        ),
        ("GetPreferredAllocation", preferred([A], [B], 1), "INVALID_ARGUMENT", "not in available_deviceIDs"),
        (
            "GetPreferredAllocation",
            preferred([A, B], [A, B], 1),
            "INVALID_ARGUMENT",
            "exceed allocation_size",
        ),
        (
            "GetPreferredAllocation",
            api_pb2.PreferredAllocationRequest(),
            "INVALID_ARGUMENT",
            "container_requests",
        ),
    ],
    ids=[
        "allocate/no-containers",
        "allocate/no-ids",
        "allocate/unknown-id",
        "allocate/duplicate-id",
        "preferred/oversize",
        "preferred/size0",
        "preferred/unknown-id",
        "preferred/must-not-available",
        "preferred/must-exceeds-size",
        "preferred/no-containers",
    ],
)
def test_bad_input_gets_clear_status_and_server_keeps_serving(
    kubelet: KubeletStandin, method: str, request_: object, code: str, text: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        kubelet.call(GPU, method, request_, timeout=5)
    assert info.value.code() is getattr(grpc.StatusCode, code)
    assert text in info.value.details()
    assert kubelet.preferred_allocation(GPU, [A, B, C, D], [], 2, timeout=5) == [A, B]
    assert list(kubelet.allocate(GPU, [A], timeout=5).envs) == ["NVIDIA_VISIBLE_DEVICES"]


@pytest.mark.parametrize(
    ("request_", "text"),
    [
        pytest.param(
            allocate([f"GPU-unknown-{i}" for i in range(10_000)]),
            "['GPU-unknown-0', 'GPU-unknown-1',",
            id="10k-unknown-ids",
        ),
        pytest.param(allocate(["x" * 1_000_000]), "... (1000000 chars)", id="one-1MB-id"),
        pytest.param(allocate([f"d{i}" for i in range(5000)] * 2), "listed more than once", id="dups"),
    ],
)
def test_huge_bad_requests_get_a_short_reason_not_a_metadata_error(
    kubelet: KubeletStandin, request_: object, text: str
) -> None:
    """kubelet must see why (not 'received metadata size exceeds hard limit'): at most
    about 1 KiB, the ids truncated with a count."""
    with pytest.raises(grpc.RpcError) as info:
        kubelet.call(GPU, "Allocate", request_, timeout=10)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details()
    assert text in details
    assert len(details.encode()) <= 1024
    assert "more]" in details or "chars)" in details
    assert list(kubelet.allocate(GPU, [A], timeout=5).envs) == ["NVIDIA_VISIBLE_DEVICES"]


def test_several_containers_are_answered_in_order(kubelet: KubeletStandin) -> None:
    reply = kubelet.call(GPU, "Allocate", allocate([C], [A, B]), timeout=5)
    assert [r.envs["NVIDIA_VISIBLE_DEVICES"] for r in reply.container_responses] == [C, f"{A},{B}"]
    assert [r.annotations["topolet.io/gpus"] for r in reply.container_responses] == [C, f"{A},{B}"]


def test_extra_streams_never_starve_allocate(own_kubelet: KubeletStandin, tmp_path: Path) -> None:
    kubelet = own_kubelet
    # max_streams=1, unary_workers=2: open three more streams, then Allocate must answer
    channel = grpc.insecure_channel(f"unix://{tmp_path / default_socket_name(GPU)}")
    stub = api_pb2_grpc.DevicePluginStub(channel)
    # One at a time, each after its first list: the server sees them in this order. A
    # deadline turns a stream the server failed to end into a failure instead of a hang.
    streams, firsts = [], []
    for _ in range(3):
        streams.append(stub.ListAndWatch(api_pb2.Empty(), timeout=20))
        firsts.append(next(streams[-1]))
    try:
        assert all(len(f.devices) == 6 for f in firsts)
        assert kubelet.allocate(GPU, [D], timeout=5).envs["NVIDIA_VISIBLE_DEVICES"] == D
        for s in streams[:-1]:  # older streams were ended, oldest first
            assert list(s) == []
    finally:
        channel.close()


def test_options_are_the_registered_ones(kubelet: KubeletStandin) -> None:
    reg = kubelet.wait_registered(GPU)
    assert reg.options == api_pb2.DevicePluginOptions(get_preferred_allocation_available=True)


@pytest.mark.parametrize(
    "name",
    ["/abs/path.sock", "", "kubelet.sock", "..", "a/b.sock"],
    ids=["absolute", "empty", "kubelet-socket", "dotdot", "subdir"],
)
def test_socket_name_must_be_a_plain_file_name(resource: GPUResource, tmp_path: Path, name: str) -> None:
    with pytest.raises(RegistrationError, match="socket_name"):
        DevicePluginServer(resource, None, plugin_dir=tmp_path, socket_name=name or "/")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("nvidia.com/gpu", True),
        ("topolet.io/exclusive-cpus", True),
        ("gpu", False),
        ("kubernetes.io/gpu", False),
        ("requests.x.io/gpu", False),
        ("x.io/" + "a" * 64, False),
        ("x.io/-gpu", False),
        ("X_io/gpu", False),
    ],
    ids=[
        "nvidia",
        "topolet-cpus",
        "no-domain",
        "kubernetes-namespace",
        "requests-prefix",
        "name-too-long",
        "leading-dash",
        "bad-domain",
    ],
)
def test_standin_resource_name_rules(name: str, valid: bool) -> None:
    assert valid_extended_resource_name(name) is valid


class _Renamed(GPUResource):
    def __init__(self, base: GPUResource, name: str) -> None:
        self.__dict__.update(base.__dict__)
        self._name = name


def test_standin_rejects_invalid_resource_name(resource: GPUResource, tmp_path: Path) -> None:
    kubelet = KubeletStandin(tmp_path)
    kubelet.start()
    server = DevicePluginServer(
        _Renamed(resource, "kubernetes.io/gpu"), None, plugin_dir=tmp_path, socket_name="bad.sock"
    )
    try:
        server.start()
        kubelet.wait_for(lambda: kubelet.rejections)
        assert kubelet.rejections[0] == "the ResourceName 'kubernetes.io/gpu' is invalid"
        assert not server.registered
    finally:
        server.stop()
        kubelet.stop()


def test_standin_rejects_other_versions(tmp_path: Path, resource: GPUResource) -> None:
    kubelet = KubeletStandin(tmp_path)
    kubelet.start()
    try:
        with (
            grpc.insecure_channel(f"unix://{tmp_path / 'kubelet.sock'}") as ch,
            pytest.raises(grpc.RpcError) as info,
        ):
            api_pb2_grpc.RegistrationStub(ch).Register(
                api_pb2.RegisterRequest(version="v1", endpoint="x.sock", resource_name=GPU), timeout=5
            )
        assert "requested API version 'v1' is not supported by kubelet" in info.value.details()
    finally:
        kubelet.stop()
