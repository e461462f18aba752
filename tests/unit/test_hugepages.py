"""Hugepages per NUMA node: parsing, hints, placement and admission through the manager."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpumanager.cgroupfs import CgroupV1Cpuset, ContainerCgroup
from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import HugePagesRequestError, InsufficientHugePagesError
from cpumanager.hugepages import HugePageAccounts, format_bytes, parse_hugepages_requests
from cpumanager.manager import ContainerInfo, CPUManager
from cpumanager.policy_static import StaticPolicy
from topology.cpuset import CPUSet
from topology.model import Core, HugePages, NumaNode, Package, Topology

MI, GI = 2**20, 2**30


def two_numa(pages_2m: tuple[int, int] = (512, 256), pages_1g: tuple[int, int] = (1, 0)) -> Topology:
    """1 socket, 2 NUMA nodes: node 0 = CPUs 0-3, node 1 = CPUs 4-7, cores of 2 threads
    (n, n+1); hugepage pools per node as given (2 MiB and 1 GiB page counts)."""
    nodes = [
        NumaNode(
            n,
            CPUSet.range(4 * n, 4 * n + 3),
            hugepages={
                2048: HugePages(2048, pages_2m[n], pages_2m[n]),
                1048576: HugePages(1048576, pages_1g[n], pages_1g[n]),
            },
        )
        for n in (0, 1)
    ]
    cores = [Core(id=c, core_id=c, package=0, cpus=CPUSet.of(c, c + 1)) for c in range(0, 8, 2)]
    return Topology.build(packages=[Package(0, CPUSet.range(0, 7), 0)], numa_nodes=nodes, cores=cores)


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        pytest.param({"hugepages-2Mi": "1Gi"}, {"hugepages-2Mi": GI}, id="2Mi/1Gi"),
        pytest.param(
            {"hugepages-1Gi": "2Gi", "hugepages-2Mi": "4Mi"},
            {"hugepages-1Gi": 2 * GI, "hugepages-2Mi": 4 * MI},
            id="both",
        ),
        pytest.param({"hugepages-2Mi": "0"}, {}, id="zero-dropped"),
    ],
)
def test_parse_requests(raw: dict[str, str], expect: dict[str, int]) -> None:
    assert parse_hugepages_requests(raw) == expect


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        pytest.param({"hugepages-2Mi": "3Mi"}, "whole number of 2Mi pages", id="not-whole-pages"),
        pytest.param({"hugepages-2Mi": "-2Mi"}, "whole number", id="negative"),
        pytest.param({"memory": "1Gi"}, "not a hugepages resource", id="not-hugepages"),
        pytest.param({"hugepages-2MB": "2Mi"}, "page size", id="bad-size"),
        pytest.param({"hugepages-2Mi": "lots"}, "hugepages-2Mi", id="bad-amount"),
    ],
)
def test_parse_rejects(raw: dict[str, str], needle: str) -> None:
    with pytest.raises(HugePagesRequestError, match=needle):
        parse_hugepages_requests(raw)


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "0"),
        (512 * MI, "512Mi"),
        (GI, "1Gi"),
        (1536 * MI, "1536Mi"),
        (3 * 1024, "3Ki"),
        (100, "100"),
    ],
)
def test_format_bytes(amount: int, text: str) -> None:
    assert format_bytes(amount) == text


@pytest.mark.parametrize(
    ("request_", "expect"),
    [
        pytest.param({"hugepages-2Mi": 512 * MI}, ["{0}:T", "{1}:T", "{0,1}:F"], id="fits-either-node"),
        pytest.param({"hugepages-2Mi": GI}, ["{0}:T", "{0,1}:F"], id="fits-node0-only"),
        pytest.param({"hugepages-2Mi": 1280 * MI}, ["{0,1}:T"], id="needs-both"),
        pytest.param({"hugepages-2Mi": 2 * GI}, [], id="fits-nowhere"),
        pytest.param({"hugepages-1Gi": GI, "hugepages-2Mi": 512 * MI}, ["{0}:T", "{0,1}:F"], id="two-sizes"),
    ],
)
def test_hints(request_: dict[str, int], expect: list[str]) -> None:
    acc = HugePageAccounts.from_topology(two_numa())
    assert [str(h) for h in acc.hints(request_)] == expect


def test_hints_follow_what_was_handed_out() -> None:
    acc = HugePageAccounts.from_topology(two_numa())
    acc.place(("a", "c"), {"hugepages-2Mi": 768 * MI}, {0})
    # node 0 has 256Mi left: a 512Mi request now only fits on node 1 (still preferred:
    # preference follows capacity, as kubelet's memory manager computes it).
    assert [str(h) for h in acc.hints({"hugepages-2Mi": 512 * MI})] == ["{1}:T", "{0,1}:F"]
    assert acc.free()[0]["hugepages-2Mi"] == 256 * MI
    acc.release(("a", "c"))
    assert acc.free()[0]["hugepages-2Mi"] == GI


def test_place_spreads_in_node_order_and_is_idempotent() -> None:
    acc = HugePageAccounts.from_topology(two_numa())
    got = acc.place(("p", "c"), {"hugepages-2Mi": 1280 * MI}, {1, 0})
    assert got == {0: {"hugepages-2Mi": GI}, 1: {"hugepages-2Mi": 256 * MI}}
    assert acc.place(("p", "c"), {"hugepages-2Mi": 2 * MI}, {1}) == got
    assert acc.nodes_of(("p", "c")) == {0, 1}


def test_place_rejects_with_the_numbers() -> None:
    acc = HugePageAccounts.from_topology(two_numa())
    acc.place(("x", "y"), {"hugepages-2Mi": 512 * MI}, {0})
    with pytest.raises(InsufficientHugePagesError) as err:
        acc.place(("p", "c"), {"hugepages-2Mi": 2 * GI}, {0, 1})
    assert str(err.value).startswith(
        "hugepages-2Mi: 2Gi requested, NUMA node 0 has 512Mi free of 1Gi, node 1 has 512Mi free of 512Mi"
    )
    assert "nr_hugepages" in str(err.value)
    assert ("p", "c") not in acc.held


# ------------------------------------------------------------------ manager


def fake_cgroup(writer: CgroupV1Cpuset, ref: ContainerCgroup) -> Path:
    """A container cgroup directory with the cpuset files the kernel would create."""
    path = writer.path_for(ref)
    path.mkdir(parents=True)
    (path / "cpuset.cpus").write_text("0-7")
    (path / "cpuset.mems").write_text("0-1")
    return path


def manager(topo: Topology, tmp: Path | None = None) -> CPUManager:
    writer = CgroupV1Cpuset(tmp) if tmp is not None else None
    mgr = CPUManager(topo, StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1), writer=writer)
    mgr.start()
    return mgr


def guaranteed(name: str, cpus: int, **pages: int) -> ContainerInfo:
    request = {k.replace("_", "-"): v for k, v in pages.items()}
    return ContainerInfo(
        pod_uid=f"uid-{name}", container_name=name, cgroup=None, exclusive_cpus=cpus, hugepages=request
    )


def test_exclusive_cpus_follow_the_node_where_hugepages_fit() -> None:
    mgr = manager(two_numa(pages_2m=(0, 256)))
    # CPUs alone would pack onto node 0 (reserved CPU 0 makes it fuller); the hugepages
    # only fit on node 1, so the CPUs come from node 1 and the pages sit beside them.
    pin = mgr.add_container(guaranteed("db", 2, hugepages_2Mi=256 * MI))
    assert pin.cpus <= CPUSet.range(4, 7) and pin.mems == CPUSet.of(1)
    assert mgr.hugepages.holding(("uid-db", "db")) == {1: {"hugepages-2Mi": 512 * MI // 2}}


def test_rejection_releases_the_cpus_just_taken() -> None:
    mgr = manager(two_numa(pages_2m=(128, 128)))
    shared = mgr.shared_pool()
    with pytest.raises(InsufficientHugePagesError) as err:
        mgr.add_container(guaranteed("big", 2, hugepages_2Mi=GI))
    assert str(err.value).startswith(
        "hugepages-2Mi: 1Gi requested, NUMA node 0 has 256Mi free of 256Mi, node 1 has 256Mi free of 256Mi"
    )
    mgr.add_container(guaranteed("hog", 4))  # takes all of node 1's CPUs
    mgr.add_container(guaranteed("p", 1, hugepages_2Mi=256 * MI))  # node 0's pages
    taken, shared = mgr.exclusive_cpus(), mgr.shared_pool()
    # Pages are left only on node 1, CPUs only on node 0: the CPUs just taken go back.
    with pytest.raises(InsufficientHugePagesError) as err:
        mgr.add_container(guaranteed("c", 1, hugepages_2Mi=256 * MI))
    assert "on NUMA nodes [0] (the NUMA nodes of its CPUs" in str(err.value)
    assert "NUMA node 0 has 0 free of 256Mi" in str(err.value)
    assert mgr.exclusive_cpus() == taken and mgr.shared_pool() == shared
    errors = mgr.metrics.registry.get_sample_value("topolet_cpu_manager_pinning_errors_total")
    assert errors == 2


def test_cpus_spanning_two_nodes_get_pages_on_those_nodes() -> None:
    mgr = manager(two_numa(pages_2m=(256, 256)))
    pin = mgr.add_container(guaranteed("wide", 6, hugepages_2Mi=768 * MI))
    assert pin.mems == CPUSet.of(0, 1)
    assert mgr.hugepages.nodes_of(("uid-wide", "wide")) == {0, 1}


def test_shared_guaranteed_container_gets_mems_of_its_pages(tmp_path: Path) -> None:
    topo = two_numa()
    mgr = manager(topo, tmp_path)
    ref = ContainerCgroup(pod_uid="uid-s", container_id="abc", qos="guaranteed")
    writer = CgroupV1Cpuset(tmp_path)
    fake_cgroup(writer, ref)
    info = ContainerInfo(pod_uid="uid-s", container_name="s", cgroup=ref, hugepages={"hugepages-2Mi": GI})
    pin = mgr.add_container(info)
    assert not pin.exclusive and pin.mems == CPUSet.of(0)
    assert (writer.path_for(ref) / "cpuset.mems").read_text() == "0"


def test_burstable_pages_count_against_every_node() -> None:
    mgr = manager(two_numa())
    ref = ContainerCgroup(pod_uid="uid-b", container_id="b", qos="burstable")
    info = ContainerInfo(
        pod_uid="uid-b", container_name="b", cgroup=ref, hugepages={"hugepages-2Mi": 1280 * MI}
    )
    pin = mgr.add_container(info)
    assert pin.mems is None
    assert mgr.hugepages.nodes_of(info.key) == {0, 1}


def test_pages_return_on_remove_and_on_reconcile() -> None:
    mgr = manager(two_numa())
    a, b = guaranteed("a", 1, hugepages_2Mi=GI), guaranteed("b", 0, hugepages_1Gi=GI)
    b = ContainerInfo(
        pod_uid=b.pod_uid,
        container_name="b",
        cgroup=ContainerCgroup(pod_uid=b.pod_uid, container_id="b"),
        hugepages=b.hugepages,
    )
    mgr.add_container(a)
    mgr.add_container(b)
    assert mgr.hugepages.allocated()[0] == {"hugepages-2Mi": GI, "hugepages-1Gi": GI}
    mgr.remove_container(a.pod_uid, "a")
    assert mgr.hugepages.allocated()[0]["hugepages-2Mi"] == 0
    counts = mgr.reconcile([])
    assert counts["released"] == 1 and not mgr.hugepages.held
    text = mgr.metrics.registry.get_sample_value(
        "topolet_cpu_manager_hugepages_allocated_bytes", {"numa_node": "0", "resource": "hugepages-1Gi"}
    )
    assert text == 0


def test_restart_derives_the_same_accounts_from_running_containers(tmp_path: Path) -> None:
    from cpumanager.checkpoint import CheckpointStore

    topo = two_numa(pages_2m=(256, 256))
    store = tmp_path / "cpu_manager_state"

    def fresh() -> CPUManager:
        mgr = CPUManager(
            topo,
            StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1),
            store=CheckpointStore(store, policy_name="static"),
        )
        mgr.start()
        return mgr

    first = fresh()
    running = [guaranteed("x", 2, hugepages_2Mi=512 * MI), guaranteed("y", 2, hugepages_2Mi=512 * MI)]
    for info in running:
        first.add_container(info)
    before = {k: first.hugepages.holding(k) for k in (running[0].key, running[1].key)}
    first.close()
    again = fresh()
    assert not again.hugepages.held
    counts = again.reconcile(list(reversed(running)))
    assert counts == {"admitted": 2, "repinned": 0, "released": 0, "failed": 0}
    assert {k: again.hugepages.holding(k) for k in before} == before
