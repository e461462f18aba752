"""Owner records, the one transaction, per-source release, the device port and the options,
on real files (checkpoint, owners file, standalone records) and a fake 2-socket sysfs."""

from __future__ import annotations

import inspect
import io
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import grpc
import pytest

from cpumanager.checkpoint import CheckpointStore, StateCorruptedError
from cpumanager.checkpoint_format import CPUManagerCheckpoint
from cpumanager.cpu_topology import CPUTopology
from cpumanager.device_claims import DeviceClaims, placeholder_owner
from cpumanager.manager import TRANSACTIONAL, ContainerInfo, CPUManager
from cpumanager.policy_static import StaticPolicy
from cpumanager.standalone import StandaloneRecord, StandaloneSource, process_start_time
from deviceplugin.api.v1beta1 import api_pb2
from deviceplugin.cpus import ExclusiveCPUResource
from deviceplugin.server import DevicePluginServer
from tests.fakesysfs import dual_socket_no_ht, write_fake_sysfs
from tests.kubelet_standin import KubeletStandin
from topolet import cli
from topolet.node_config import NodeConfig, NodeConfigError
from topology.cpuset import CPUSet
from topology.model import Topology
from topology.sysfs import discover

#: The public methods of CPUManager that change nothing (everything else is a transaction).
READ_ONLY = {
    "shared_pool",
    "exclusive_cpus",
    "assignable_cpus",
    "snapshot",
    "assignable_and_assignments",
    "status",
    "subscribe",
    "transaction",
    "close",
}


@pytest.fixture(scope="module")
def sysfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_sysfs(tmp_path_factory.mktemp("sys"), dual_socket_no_ht)


@pytest.fixture(scope="module")
def topo(sysfs: Path) -> Topology:
    return discover(sysfs)


def manager(topo: Topology, state: Path) -> CPUManager:
    store = CheckpointStore(state / "cpu_manager_state", policy_name="static")
    mgr = CPUManager(topo, StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1), store=store)
    mgr.start()
    return mgr


@pytest.fixture
def mgr(topo: Topology, tmp_path: Path) -> Iterator[CPUManager]:
    m = manager(topo, tmp_path)
    yield m
    m.close()


def test_every_public_method_is_a_transaction_or_read_only() -> None:
    public = {n for n, _ in inspect.getmembers(CPUManager, inspect.isfunction) if not n.startswith("_")}
    assert public - TRANSACTIONAL - READ_ONLY == set(), "classify new methods: transaction or read-only"
    assert {"allocate", "assign_exact", "assign_many", "reassign", "add_container", "remove_container"} <= (
        TRANSACTIONAL
    )


def test_saving_outside_a_transaction_is_refused(mgr: CPUManager) -> None:
    with pytest.raises(AssertionError, match="outside a transaction"):
        mgr._save()


def test_owner_records_are_saved_with_the_checkpoint_and_restored(topo: Topology, tmp_path: Path) -> None:
    a = manager(topo, tmp_path)
    info = ContainerInfo("uid-1", "app", None, exclusive_cpus=2, pod_name="web", namespace="prod")
    a.add_container(info)
    a.allocate("run-1", "bench", 1, kind="run", identity="bench")
    b = manager(topo, tmp_path)  # another process, same files
    assert b.owners[("uid-1", "app")].kind == "pod"
    assert b.owners[("uid-1", "app")].identity == "prod/web/app"
    assert b.owners[("uid-1", "app")].source == "kubernetes"
    assert "static policy: 2 exclusive CPUs" in b.owners[("uid-1", "app")].why
    assert b.owners[("run-1", "bench")].kind == "run"
    doc = json.loads((tmp_path / "cpu_manager_state.owners").read_text())
    assert {(r["podUID"], r["kind"]) for r in doc["owners"]} == {("uid-1", "pod"), ("run-1", "run")}
    # The kubelet file is untouched by the owners: it still decodes as kubelet's format.
    cp = CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static").load()
    assert isinstance(cp, CPUManagerCheckpoint) and set(cp.entries) == {"uid-1", "run-1"}


def test_a_change_by_another_process_is_seen_by_the_next_transaction(topo: Topology, tmp_path: Path) -> None:
    a, b = manager(topo, tmp_path), manager(topo, tmp_path)
    got_a = a.allocate("p1", "c", 2)
    got_b = b.allocate("p2", "c", 2)  # b reloads first: never the same CPUs
    assert got_a.isdisjoint(got_b)
    assert a.snapshot()[1]["p2"]["c"] == got_b


def test_kill_between_the_two_renames_is_rolled_forward(topo: Topology, tmp_path: Path) -> None:
    manager(topo, tmp_path).close()
    pid = os.fork()
    if pid == 0:  # child: dies right after the owners file (the commit point) is in place
        try:
            m = manager(topo, tmp_path)
            real = m.store._write  # type: ignore[union-attr]

            def write(path: Path, data: bytes) -> None:
                if path.name == "cpu_manager_state":
                    os.kill(os.getpid(), signal.SIGKILL)
                real(path, data)

            m.store._write = write  # type: ignore[method-assign, union-attr]
            m.allocate("p1", "c", 2)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    stale = CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static").load()
    assert isinstance(stale, CPUManagerCheckpoint) and not stale.entries  # the old file
    m = manager(topo, tmp_path)
    held = m.state.get_cpuset("p1", "c")
    assert held is not None and len(held) == 2
    assert m.owners[("p1", "c")].kind == "pod"
    cp = CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static").load()
    assert isinstance(cp, CPUManagerCheckpoint) and cp.entries["p1"]["c"] == held  # rewritten


def test_corrupt_owners_file_is_refused_naming_the_file_and_the_fix(topo: Topology, tmp_path: Path) -> None:
    manager(topo, tmp_path).allocate("p1", "c", 1)
    (tmp_path / "cpu_manager_state.owners").write_text('{"version": 1, "owners": [')
    with pytest.raises(
        StateCorruptedError, match=r"cpu_manager_state\.owners .*delete .*owners are then recovered"
    ):
        manager(topo, tmp_path)


def test_kubelet_written_entries_get_recovered_owners(topo: Topology, tmp_path: Path) -> None:
    CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static").save(
        CPUManagerCheckpoint(
            "static",
            topo.online_cpus - CPUSet.of(5, 6),
            {"podA": {"c": CPUSet.of(5)}, "devplugin-0123456789abcdef": {"exclusive-cpus": CPUSet.of(6)}},
        )
    )
    m = manager(topo, tmp_path)
    assert m.owners[("podA", "c")].kind == "pod"
    assert m.owners[("devplugin-0123456789abcdef", "exclusive-cpus")].kind == "device-plugin"
    assert all("recovered" in o.why for o in m.owners.values())


def test_overlapping_entries_of_two_pods_are_refused(topo: Topology, tmp_path: Path) -> None:
    CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static").save(
        CPUManagerCheckpoint(
            "static", CPUSet.of(0), {"podA": {"c": CPUSet.of(1)}, "podB": {"c": CPUSet.of(1)}}
        )
    )
    with pytest.raises(
        StateCorruptedError, match=r"CPU 1 is exclusive to both pod podA .* remove its entry from"
    ):
        manager(topo, tmp_path)


def test_each_source_releases_only_its_own_kind(mgr: CPUManager) -> None:
    mgr.add_container(ContainerInfo("pod-1", "app", None, exclusive_cpus=1))
    mgr.allocate("run-1", "r", 1, kind="run", identity="r")
    DeviceClaims(mgr).claim([CPUSet.of(7)])
    assert mgr.reconcile([], kinds={"run"})["released"] == 1  # topolet run: only the run
    assert set(mgr.state.assignments()) == {"pod-1", placeholder_owner(CPUSet.of(7))[0]}
    mgr.reconcile([], kinds=set())  # an unsynced pod source releases no one
    assert "pod-1" in mgr.state.assignments()
    mgr.reconcile([], kinds={"pod"})
    assert set(mgr.state.assignments()) == {placeholder_owner(CPUSet.of(7))[0]}
    # A pod going away never takes a device-plugin claim with it.
    assert mgr.remove_container(*placeholder_owner(CPUSet.of(7)), kind="pod") == CPUSet()
    assert DeviceClaims(mgr).release(lambda _k, _o: False) == CPUSet.of(7)


def test_a_standalone_run_is_live_from_its_record_until_its_processes_are_gone(
    mgr: CPUManager, tmp_path: Path
) -> None:
    class NoCgroups:
        root = tmp_path / "cg"

        def path_for(self, ref: object) -> Path:
            return self.root / "none"

        def remove(self, ref: object) -> None:
            pass

    source = StandaloneSource(tmp_path, NoCgroups())  # type: ignore[arg-type]
    me = StandaloneRecord(
        "0f6c7d2e-1111-4a5b-9c8d-000000000001", "live", 1, "guaranteed",
        pid=os.getpid(), pid_start=process_start_time(os.getpid()) or 0,
    )  # fmt: skip
    dead_pid = os.fork()
    if dead_pid == 0:
        os._exit(0)
    os.waitpid(dead_pid, 0)
    gone = StandaloneRecord(
        "0f6c7d2e-1111-4a5b-9c8d-000000000002", "gone", 1, "guaranteed", pid=dead_pid, pid_start=1
    )
    for rec in (me, gone):
        source.add(rec)
        mgr.add_container(rec.info())
    (tmp_path / "standalone" / "0f6c7d2e-1111-4a5b-9c8d-000000000003.json").write_text("{half")
    counts = source.sweep(mgr)
    assert counts["released"] == 1 and counts["orphans"] == 1
    assert set(mgr.state.assignments()) == {me.pod_uid}
    assert not (tmp_path / "standalone" / f"{gone.pod_uid}.json").exists()
    # The unreadable record is kept (never silently dropped) for the operator.
    assert (tmp_path / "standalone" / "0f6c7d2e-1111-4a5b-9c8d-000000000003.json").exists()


def test_partial_allocate_over_grpc_leaves_nothing_claimed(mgr: CPUManager, tmp_path: Path) -> None:
    kubelet = KubeletStandin(tmp_path / "dp")
    kubelet.start()
    server = DevicePluginServer(ExclusiveCPUResource(mgr), plugin_dir=tmp_path / "dp")
    server.start()
    try:
        kubelet.wait_registered("topolet.io/exclusive-cpus")
        before = mgr.snapshot()
        request = api_pb2.AllocateRequest(
            container_requests=[
                api_pb2.ContainerAllocateRequest(devices_ids=["cpu1", "cpu2"]),
                api_pb2.ContainerAllocateRequest(devices_ids=["cpu2", "cpu3"]),
            ]
        )
        with pytest.raises(grpc.RpcError) as err:
            kubelet.call("topolet.io/exclusive-cpus", "Allocate", request, timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert 'cpus "2" are asked for by more than one container' in str(err.value.details())
        assert mgr.snapshot() == before and not mgr.state.assignments()
        ok = api_pb2.AllocateRequest(
            container_requests=[
                api_pb2.ContainerAllocateRequest(devices_ids=["cpu1", "cpu2"]),
                api_pb2.ContainerAllocateRequest(devices_ids=["cpu3"]),
            ]
        )
        answer = kubelet.call("topolet.io/exclusive-cpus", "Allocate", ok, timeout=10)
        assert [r.envs["TOPOLET_CPUS"] for r in answer.container_responses] == ["1-2", "3"]
        assert mgr.exclusive_cpus() == CPUSet.of(1, 2, 3)
        assert {o.kind for o in mgr.owners.values()} == {"device-plugin"}
    finally:
        server.stop()
        kubelet.stop()


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (
            {"cpuManagerPolicyOptions": {"full-pcpus-onyl": "true"}},
            "cpuManagerPolicyOptions.*full-pcpus-onyl",
        ),
        ({"cpuManagerPolicyOptions": {"full-pcpus-only": "yes"}}, 'cpuManagerPolicyOptions.*"yes"'),
        ({"cpuManagerPolicyOptions": "full-pcpus-only"}, "cpuManagerPolicyOptions.*name=value"),
        (
            {"topologyManagerPolicyOptions": {"max-allowable-numa-nodes": "4"}},
            "topologyManagerPolicyOptions.*8",
        ),
        ({"topologyManagerPolicyOptions": {"closest": "true"}}, "topologyManagerPolicyOptions.*closest"),
    ],
    ids=["unknown-option", "bad-bool", "no-value", "too-small", "unknown-tm-option"],
)
def test_bad_policy_options_are_refused_naming_the_key(data: dict[str, object], text: str) -> None:
    with pytest.raises(NodeConfigError, match=text):
        NodeConfig.from_mapping(data)


def test_policy_options_reach_the_policy(topo: Topology) -> None:
    cfg = NodeConfig.from_mapping(
        {
            "cpuManagerPolicyOptions": {"full-pcpus-only": True, "fragmentation-aware": "true"},
            "topologyManagerPolicy": "single-numa-node",
            "topologyManagerPolicyOptions": "prefer-closest-numa-nodes=true",
        }
    )
    policy = cfg.settings().policy(topo)
    assert policy.options.enabled() == ["full-pcpus-only", "fragmentation-aware"]
    assert cfg.settings().topology_manager_policy == "single-numa-node"
    assert cfg.topology_manager_policy_options == {"prefer-closest-numa-nodes": "true"}


def test_run_flag_with_an_unknown_option_exits_1_naming_the_flag(
    sysfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli.main(
        ["run", "--root", str(sysfs), "--state-dir", str(tmp_path), "--cpus", "1",
         "--cpu-manager-policy-options", "bogus=true", "--", "true"]
    )  # fmt: skip
    assert rc == 1
    err = capsys.readouterr().err
    assert "--cpu-manager-policy-options" in err and '"bogus"' in err and "Traceback" not in err


def test_who_owns_cpu_n_is_one_answer_for_describe_and_status(
    sysfs: Path, topo: Topology, tmp_path: Path
) -> None:
    m = manager(topo, tmp_path)
    info = ContainerInfo("uid-7", "app", None, exclusive_cpus=2, pod_name="web", namespace="prod",
                         numa_affinity=frozenset({1}))  # fmt: skip
    cpus = m.add_container(info).cpus
    cpu = cpus.first()
    common = ["--root", str(sysfs), "--state-dir", str(tmp_path), "--format", "json"]
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["describe", "--cpu", str(cpu), *common]) == 0
    row = json.loads(out.getvalue())
    assert row["cpu"] == cpu and row["numaNode"] == 1 and row["pool"] == "exclusive"
    owner = row["owner"]
    assert (owner["kind"], owner["identity"], owner["podUID"], owner["container"]) == (
        "pod", "prod/web/app", "uid-7", "app"
    )  # fmt: skip
    assert "devices on NUMA node(s) 1" in owner["why"]
    since = time.mktime(time.strptime(owner["since"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(since - time.time()) < 120
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["cpumanager", "status", *common]) == 0
    status = json.loads(out.getvalue())
    assert next(r for r in status["cpus"] if r["cpu"] == cpu) == row
    assert m.status()["cpus"] == status["cpus"]
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["describe", "--cpu", "0", *common]) == 0
    assert json.loads(out.getvalue())["owner"]["kind"] == "reserved"


def test_single_numa_node_refuses_a_container_that_does_not_fit_on_its_devices_node(
    topo: Topology, tmp_path: Path
) -> None:
    store = CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static")
    m = CPUManager(
        topo,
        StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1),
        store=store,
        topology_manager_policy="single-numa-node",
    )
    m.start()
    node1 = topo.cpus_in_numa_nodes(1)
    gpu_on_1 = frozenset({1})
    m.add_container(ContainerInfo("a", "c", None, exclusive_cpus=3, numa_affinity=gpu_on_1))
    with pytest.raises(Exception, match=r"requested=2, available=1.*NUMA nodes \[1\]"):
        m.add_container(ContainerInfo("b", "c", None, exclusive_cpus=2, numa_affinity=gpu_on_1))
    held = m.state.get_cpuset("a", "c")
    assert held is not None and held <= node1
    assert m.state.get_cpuset("b", "c") is None
