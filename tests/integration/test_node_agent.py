"""`topolet node` as a subprocess, against the kubelet stand-in, the API-server stand-in and the
real cgroup v1 cpuset hierarchy.

The topology root is a fake sysfs shaped like this machine's CPUs (so the cpusets written
are valid here: CPUs 0-1 on NUMA node 0) plus one NVIDIA GPU and 2 MiB hugepages; the pod
source is standalone (`topolet run` with the same state dir, cgroup root and topology).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from cpumanager.cgroupfs import ContainerCgroup
from cpumanager.metrics import CPUManagerMetrics
from cpumanager.standalone import StandaloneRecord, StandaloneSource
from deviceplugin.api.podresources.v1 import api_pb2 as pr_pb2
from deviceplugin.cpus import placeholder_owner
from tests.fakesysfs import FakePCI, FakeSpec, write_fake_sysfs
from tests.kubeconfig_file import write_kubeconfig
from tests.kubelet_standin import KubeletStandin, PodResourcesStandin
from tests.nrt_standin import NRTApiServerStandIn
from topolet import cli
from topolet.node_agent import AgentError, NodeAgent
from topolet.node_config import NodeConfig
from topolet.node_http import METRIC_NAMES
from topology.cpuset import CPUSet

V1 = Path("/sys/fs/cgroup/cpuset")
ONLINE = CPUSet.parse(Path("/sys/devices/system/cpu/online").read_text())
needs_cgroup = pytest.mark.skipif(
    not (os.geteuid() == 0 and (V1 / "cpuset.cpus").exists() and CPUSet.parse("0-1") == ONLINE)
    and not os.environ.get("CI"),
    reason="needs root, the cgroup v1 cpuset hierarchy and CPUs 0-1 online (as this test machine)",
)
GPU, CPUS = "nvidia.com/gpu", "topolet.io/exclusive-cpus"
GPU_ADDR = "0000:3b:00.0"
MACHINE = FakeSpec(
    sockets=(0,),
    cores_per_socket=2,
    threads_per_core=1,
    hugepages_2m=8,
    pci=(FakePCI(GPU_ADDR, 0x10DE, 0x1DB4, 0x030200, numa_node=0, driver="nvidia"),),
)
#: Registers cmd_node when cli does not list it yet, so the agent can be started either way.
LAUNCH = (
    "import sys; from topolet import cli; "
    "cli.COMMAND_MODULES += tuple(m for m in ('topolet.cmd_node',) if m not in cli.COMMAND_MODULES); "
    "sys.exit(cli.main(sys.argv[1:]))"
)


def wait_for(check: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def allowed(pid: int) -> CPUSet:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return CPUSet.parse(line.split(":", 1)[1])
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    proc: subprocess.Popen[bytes]
    url: str
    kubelet: KubeletStandin
    api: NRTApiServerStandIn
    plugin_dir: Path
    state_dir: Path
    cgroup_root: Path
    sysfs: Path
    log: Path
    runs: list[subprocess.Popen[bytes]]

    def run(self, *args: str) -> subprocess.Popen[bytes]:
        self.runs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "topolet",
                    "run",
                    "--state-dir",
                    str(self.state_dir),
                    "--cgroup-root",
                    str(self.cgroup_root),
                    "--root",
                    str(self.sysfs),
                    *args,
                ]
            )
        )
        return self.runs[-1]

    def wait_devices(self, resource: str, want: dict[str, tuple[str, tuple[int, ...]]]) -> None:
        """Wait until kubelet's latest snapshot of *resource* is *want* (which may be empty)."""

        def latest_is_wanted() -> bool:
            reg = self.kubelet.endpoint(resource)
            return reg is not None and bool(reg.snapshots) and reg.snapshots[-1] == want

        self.kubelet.wait_for(latest_is_wanted, timeout=5)


def remove_tree(root: Path) -> None:
    if root.exists():
        for d in sorted((q for q in root.rglob("*") if q.is_dir()), key=lambda q: -len(q.parts)):
            d.rmdir()
        root.rmdir()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    sysfs = write_fake_sysfs(tmp_path / "sysfs", MACHINE)
    plugin_dir, state_dir = tmp_path / "dp", tmp_path / "state"
    cgroup_root = V1 / f"topolet-node-test-{os.getpid()}-{tmp_path.name[-8:]}"
    kubelet = KubeletStandin(plugin_dir)
    kubelet.start()
    api = NRTApiServerStandIn().start()
    assert isinstance(api, NRTApiServerStandIn)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)
    port = free_port()
    config = tmp_path / "node.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "nodeName": "node-a",
                "podSource": "standalone",
                "publishNRT": True,
                "kubeconfig": str(kubeconfig),
                "stateDir": str(state_dir),
                "sysfsRoot": str(sysfs),
                "cgroupRoot": str(cgroup_root),
                "cgroupVersion": "v1",
                "devicePluginDir": str(plugin_dir),
                "podResourcesSocket": str(tmp_path / "pr" / "kubelet.sock"),
                "watchUdev": False,
                "cpuManagerReconcilePeriod": "500ms",
                "metricsBindAddress": f"127.0.0.1:{port}",
                "logFormat": "json",
            }
        )
    )
    log = tmp_path / "node.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "node", "--config", str(config)], stderr=err)
    n = Node(
        proc, f"http://127.0.0.1:{port}", kubelet, api, plugin_dir, state_dir, cgroup_root, sysfs, log, []
    )
    try:
        yield n
    finally:
        for run in n.runs:
            if run.poll() is None:
                run.send_signal(signal.SIGTERM)
                run.wait(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        kubelet.stop()
        api.stop()
        remove_tree(cgroup_root)


def cpu_manager_metric_names() -> set[str]:
    registry = CollectorRegistry()
    CPUManagerMetrics(registry)
    return {m.name for m in registry.collect()}


def sockets_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if stat.S_ISSOCK(os.lstat(p).st_mode)}


def nrt_available(api: NRTApiServerStandIn, resource: str) -> str | None:
    obj = api.nrt("node-a")
    if obj is None:
        return None
    zone = obj["zones"][0]
    return next((r["available"] for r in zone["resources"] if r["name"] == resource), None)


def test_node_command_is_registered() -> None:
    assert "topolet.cmd_node" in cli.COMMAND_MODULES, (
        "add 'topolet.cmd_node' to topolet.cli.COMMAND_MODULES so that `topolet node` exists"
    )


@pytest.mark.root
@needs_cgroup
def test_node_agent_lifecycle(node: Node) -> None:
    # registers both plugins, becomes ready
    gpu = node.kubelet.wait_registered(GPU, timeout=15)
    cpus = node.kubelet.wait_registered(CPUS, timeout=15)
    endpoints = (gpu.request.endpoint, cpus.request.endpoint)
    assert endpoints == ("topolet-gpu.sock", "topolet-exclusive-cpus.sock")
    assert node.kubelet.wait_snapshot(GPU) == {GPU_ADDR: ("Healthy", (0,))}
    assert node.kubelet.wait_snapshot(CPUS) == {"cpu1": ("Healthy", (0,))}
    wait_for(lambda: get(node.url + "/readyz")[0] == 200, what="/readyz 200")
    assert get(node.url + "/healthz") == (200, "ok\n")

    # /metrics parses and has every documented family
    status, text = get(node.url + "/metrics")
    assert status == 200
    families = {f.name for f in text_string_to_metric_families(text)}
    expected = set(METRIC_NAMES) | cpu_manager_metric_names()
    assert expected <= families, sorted(expected - families)

    # NRT published: cpu 1 of 2 allocatable (CPU 0 reserved) and free
    wait_for(lambda: nrt_available(node.api, "cpu") == "1", what="NRT created with cpu 1 available")
    assert nrt_available(node.api, GPU) == "1"
    assert nrt_available(node.api, "hugepages-2Mi") == str(8 * 2 * 1024 * 1024)

    # a standalone Guaranteed container gets CPU 1; the agent sees it and stops offering it
    run = node.run("--cpus", "1", "--guaranteed", "--", "sleep", "60")
    children = Path(f"/proc/{run.pid}/task/{run.pid}/children")
    wait_for(lambda: children.exists() and children.read_text().strip(), what="topolet run's child")
    child = int(children.read_text().split()[0])
    wait_for(lambda: allowed(child) == CPUSet.of(1), what="the container pinned to CPU 1")
    node.wait_devices(CPUS, {})
    wait_for(lambda: nrt_available(node.api, "cpu") == "0", what="NRT shows cpu 1 taken")

    # drift is repaired by the agent's reconcile
    (cgroup,) = [p for p in node.cgroup_root.rglob("cgroup.procs") if str(child) in p.read_text().split()]
    (cgroup.parent / "cpuset.cpus").write_text("0-1")
    wait_for(lambda: allowed(child) == CPUSet.of(1), timeout=5, what="drifted cpuset re-pinned")

    # kubelet restart: both plugins re-register within a second
    began = time.monotonic()
    node.kubelet.restart()
    for resource in (GPU, CPUS):
        reg = node.kubelet.wait_registered(resource, count=2, timeout=2)
        assert reg.at - began <= 1.0, f"{resource} re-registered after {reg.at - began:.2f}s"
    assert node.kubelet.wait_snapshot(GPU) == {GPU_ADDR: ("Healthy", (0,))}

    run.send_signal(signal.SIGTERM)
    assert run.wait(10) in (0, 143, -15)
    node.wait_devices(CPUS, {"cpu1": ("Healthy", (0,))})

    # SIGTERM: exit 0, our sockets gone, kubelet's left alone, checkpoint valid
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(15) == 0, node.log.read_text()[-2000:]
    assert sockets_in(node.plugin_dir) == {"kubelet.sock"}
    state = json.loads((node.state_dir / "cpu_manager_state").read_text())
    assert state["defaultCpuSet"] == "0-1"
    lines = [json.loads(line) for line in node.log.read_text().splitlines() if line.startswith("{")]
    assert any(r.get("pod") and r.get("cpus") for r in lines), "pin decisions carry pod and cpus fields"


@pytest.mark.root
@needs_cgroup
def test_corrupt_checkpoint_is_refused_with_the_file_named(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "cpu_manager_state").write_text("{not json")
    sysfs = write_fake_sysfs(tmp_path / "sysfs", MACHINE)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            LAUNCH,
            "node",
            "--pod-source",
            "standalone",
            "--state-dir",
            str(state),
            "--sysfs-root",
            str(sysfs),
            "--device-plugin-dir",
            str(tmp_path / "dp"),
            "--watch-udev",
            "false",
            "--cgroup-root",
            str(V1 / f"topolet-node-test-corrupt-{os.getpid()}"),
            "--metrics-bind-address",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    remove_tree(V1 / f"topolet-node-test-corrupt-{os.getpid()}")
    assert out.returncode == 1
    assert str(state / "cpu_manager_state") in out.stderr
    assert not (tmp_path / "dp").exists() or sockets_in(tmp_path / "dp") == set()


# ------------------------------------------------------------------ in-process
# The agent object itself, over a cgroup tree in a temp dir (files as cgroupfs has them),
# the kubelet stand-in and the podresources stand-in: the re-key before the sweep.

EIGHT = FakeSpec(sockets=(0,), cores_per_socket=4, threads_per_core=2)


def fake_cgroup(root: Path, rec: StandaloneRecord, pid: int) -> Path:
    path = root / rec.cgroup().relative_path("cgroupfs")
    path.mkdir(parents=True)
    for name, text in (("cpuset.cpus", "0-7"), ("cpuset.mems", "0"), ("cgroup.procs", f"{pid}\n")):
        (path / name).write_text(text)
    return path


def pod_resources(namespace: str, name: str, container: str, cpu_ids: list[str]) -> Any:
    return pr_pb2.ListPodResourcesResponse(
        pod_resources=[
            pr_pb2.PodResources(
                name=name,
                namespace=namespace,
                containers=[
                    pr_pb2.ContainerResources(
                        name=container,
                        devices=[pr_pb2.ContainerDevices(resource_name=CPUS, device_ids=cpu_ids)],
                    )
                ],
            )
        ]
    )


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[NodeAgent, KubeletStandin, PodResourcesStandin]]:
    yield from run_agent(tmp_path, EIGHT)


Running = tuple[NodeAgent, KubeletStandin, PodResourcesStandin]


def run_agent(tmp_path: Path, spec: FakeSpec) -> Generator[Running]:
    (tmp_path / "cg").mkdir()
    config = NodeConfig(
        node_name="n1",
        pod_source="standalone",
        state_dir=tmp_path / "state",
        sysfs_root=write_fake_sysfs(tmp_path / "sysfs", spec),
        cgroup_root=tmp_path / "cg",
        cgroup_version="v2",
        device_plugin_dir=tmp_path / "dp",
        pod_resources_socket=tmp_path / "pr.sock",
        watch_udev=False,
        reconcile_period_s=3600.0,
        metrics_bind_address="127.0.0.1:0",
    )
    kubelet = KubeletStandin(tmp_path / "dp")
    kubelet.start()
    with PodResourcesStandin(tmp_path / "pr.sock") as pods:
        a = NodeAgent(config)
        a.start()
        try:
            yield a, kubelet, pods
        finally:
            a.stop()
            kubelet.stop()


def test_device_plugin_cpus_are_kept_until_rekeyed_then_owned_by_the_container(
    agent: tuple[NodeAgent, KubeletStandin, PodResourcesStandin], tmp_path: Path
) -> None:
    a, kubelet, pods = agent
    assert a.manager is not None and a.readiness() == (True, "")
    kubelet.wait_registered(CPUS)
    kubelet.allocate(CPUS, ["cpu2", "cpu6"])
    placeholder = placeholder_owner(CPUSet.of(2, 6))
    a.sweep()  # the container does not exist yet: the allocation must survive the sweep
    assert a.manager.state.get_cpuset(*placeholder) == CPUSet.of(2, 6)

    rec = StandaloneRecord(
        pod_uid="0f6c7d2e-1111-4a5b-9c8d-000000000001", name="app", exclusive_cpus=0, qos="guaranteed"
    )
    cgroup = fake_cgroup(tmp_path / "cg", rec, os.getpid())
    StandaloneSource(a.config.state_dir, a.manager.writer).add(rec)  # type: ignore[arg-type]
    pods.list_response = pod_resources("standalone", "app", "app", ["cpu2", "cpu6"])
    a.sweep()
    assert a.manager.state.get_cpuset(*placeholder) is None
    assert a.manager.state.get_cpuset(rec.pod_uid, "app") == CPUSet.of(2, 6)
    assert (cgroup / "cpuset.cpus").read_text() == "2,6"
    a.sweep()  # stays owned: nothing released on later sweeps
    assert a.manager.state.get_cpuset(rec.pod_uid, "app") == CPUSet.of(2, 6)


def test_unclaimed_placeholder_is_released_after_the_grace_period(
    agent: tuple[NodeAgent, KubeletStandin, PodResourcesStandin],
) -> None:
    a, kubelet, _ = agent
    assert a.manager is not None
    kubelet.wait_registered(CPUS)
    kubelet.allocate(CPUS, ["cpu3"])
    a.sweep()
    assert a.manager.state.get_cpuset(*placeholder_owner(CPUSet.of(3))) == CPUSet.of(3)
    a.placeholder_grace_s = 0.0
    a.sweep()
    assert a.manager.state.get_cpuset(*placeholder_owner(CPUSet.of(3))) is None
    assert 3 in a.manager.shared_pool()


def test_second_agent_on_the_same_state_dir_is_refused(
    agent: tuple[NodeAgent, KubeletStandin, PodResourcesStandin],
) -> None:
    a, _, _ = agent
    other = NodeAgent(a.config)
    with pytest.raises(AgentError, match=r"another topolet node agent holds .*topolet-node\.lock"):
        other.start()
    other.stop()


def gpu(address: str, numa: int = 0) -> FakePCI:
    return FakePCI(address, 0x10DE, 0x1DB4, 0x030200, numa_node=numa, driver="nvidia")


def test_rediscovery_updates_the_gpu_plugin(tmp_path: Path) -> None:
    one = FakeSpec(sockets=(0,), cores_per_socket=2, threads_per_core=1, pci=(gpu("0000:3b:00.0"),))
    runner = run_agent(tmp_path, one)
    a, kubelet, _ = next(runner)
    try:
        assert kubelet.wait_snapshot(GPU) == {"0000:3b:00.0": ("Healthy", (0,))}
        for spec, want in [
            (
                replace(one, pci=(gpu("0000:3b:00.0"), gpu("0000:86:00.0"))),
                {"0000:3b:00.0": ("Healthy", (0,)), "0000:86:00.0": ("Healthy", (0,))},
            ),
            (replace(one, pci=()), {}),
        ]:
            for tree in ("sys", "proc"):
                shutil.rmtree(tmp_path / "sysfs" / tree)
            write_fake_sysfs(tmp_path / "sysfs", spec)
            a.rediscover_gpus()
            kubelet.wait_for(
                lambda w=want: (
                    (r := kubelet.endpoint(GPU)) is not None  # type: ignore[misc]
                    and bool(r.snapshots)
                    and r.snapshots[-1] == w
                )
            )
    finally:
        runner.close()


def test_kubernetes_pod_source_pins_pods_and_publishes_availability(tmp_path: Path) -> None:
    api = NRTApiServerStandIn().start()
    assert isinstance(api, NRTApiServerStandIn)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)
    (tmp_path / "cg").mkdir()
    config = NodeConfig(
        node_name="n1",
        pod_source="kubernetes",
        kubeconfig=str(kubeconfig),
        state_dir=tmp_path / "state",
        sysfs_root=write_fake_sysfs(tmp_path / "sysfs", EIGHT),
        cgroup_root=tmp_path / "cg",
        cgroup_version="v2",
        device_plugin_dir=tmp_path / "dp",
        pod_resources_socket=tmp_path / "pr.sock",
        watch_udev=False,
        metrics_bind_address="127.0.0.1:0",
        exclusive_cpu_resource_name="",
    )
    a = NodeAgent(config)
    a.start()
    try:
        assert a.manager is not None and a.manager.writer is not None
        wait_for(lambda: nrt_cpu(api, "n1") == "7", what="NRT created")
        uid, cid = "6a1b2c3d-0000-4000-8000-00000000beef", "ab" * 32
        ref = ContainerCgroup(pod_uid=uid, container_id=cid, qos="guaranteed", runtime="cri-containerd")
        cgroup = a.manager.writer.path_for(ref)
        cgroup.mkdir(parents=True)
        for name, text in (("cpuset.cpus", "0-7"), ("cpuset.mems", "0")):
            (cgroup / name).write_text(text)
        limits = {"cpu": "2", "memory": "1Gi"}
        api.put_pod(
            {
                "metadata": {"name": "app", "namespace": "default", "uid": uid},
                "spec": {
                    "nodeName": "n1",
                    "containers": [{"name": "app", "resources": {"requests": limits, "limits": limits}}],
                },
                "status": {
                    "phase": "Running",
                    "containerStatuses": [
                        {"name": "app", "containerID": f"containerd://{cid}", "state": {"running": {}}}
                    ],
                },
            }
        )
        wait_for(lambda: len(CPUSet.parse((cgroup / "cpuset.cpus").read_text())) == 2, what="pod pinned")
        pinned = CPUSet.parse((cgroup / "cpuset.cpus").read_text())
        assert 0 not in pinned and a.manager.state.get_cpuset(uid, "app") == pinned
        wait_for(lambda: nrt_cpu(api, "n1") == "5", what="NRT shows 2 CPUs taken")
        api.delete_pod("default", "app")
        wait_for(lambda: nrt_cpu(api, "n1") == "7", what="NRT shows the CPUs back")
        assert a.manager.state.get_cpuset(uid, "app") is None
    finally:
        a.stop()
        api.stop()


def nrt_cpu(api: NRTApiServerStandIn, name: str) -> str | None:
    obj = api.nrt(name)
    if obj is None:
        return None
    return next(str(r["available"]) for r in obj["zones"][0]["resources"] if r["name"] == "cpu")


def test_nvml_link_scores_and_xid_health_reach_kubelet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four NVIDIA GPUs on one NUMA node, NVLinked in pairs (0-2, 1-3) per the NVML stand-in:
    GetPreferredAllocation of 2 picks a linked pair, and a critical XID turns one Unhealthy."""
    import deviceplugin.nvml
    from tests.nvml_standin import NVMLStandIn

    addresses = ["0000:3b:00.0", "0000:5e:00.0", "0000:86:00.0", "0000:af:00.0"]
    nvml = NVMLStandIn(addresses)
    for i, a in enumerate(addresses):
        for b in addresses[i + 1 :]:
            nvml.link(a, b, "NODE", 0)
    nvml.link(addresses[0], addresses[2], None, 2)
    nvml.link(addresses[1], addresses[3], None, 2)
    nvml.nvmlInit()
    monkeypatch.setattr(deviceplugin.nvml, "load_nvml", lambda: nvml)
    spec = FakeSpec(
        sockets=(0,), cores_per_socket=2, threads_per_core=1, pci=tuple(gpu(a) for a in addresses)
    )
    runner = run_agent(tmp_path, spec)
    _, kubelet, _ = next(runner)
    try:
        kubelet.wait_snapshot(GPU, lambda s: len(s) == 4)
        # Without link scores every pair scores the same (NODE) and the first candidate wins.
        assert sorted(kubelet.preferred_allocation(GPU, addresses, [addresses[1]], 2)) == [
            addresses[1],
            addresses[3],
        ]
        assert sorted(kubelet.preferred_allocation(GPU, addresses, [], 2)) == [addresses[0], addresses[2]]
        nvml.inject_xid(addresses[2], 79)
        snapshot = kubelet.wait_snapshot(GPU, lambda s: s.get(addresses[2], ("",))[0] == "Unhealthy")
        assert {k for k, (health, _) in snapshot.items() if health == "Unhealthy"} == {addresses[2]}
    finally:
        runner.close()
