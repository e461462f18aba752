"""Concurrency stress on the real kernel: one owner for every CPU, sampled every 10 ms.

For ``TOPOLET_STRESS_SECONDS`` (default 60) s, on this machine's real CPUs and the real
cgroup v1 cpuset hierarchy:

* 10 loops of ``topolet run --cpus 1 --guaranteed -- sleep 0.2`` (exclusive requests; CPU 0
  reserved, so every other CPU is fought over) and 2 loops of shared runs;
* a node agent (standalone pod source, exclusive-CPU device plugin registered with the
  kubelet stand-in, reconcile every 200 ms) on the same state directory and cgroup root;
* a device-plugin client calling ``Allocate`` for single CPUs every 50 ms (claims expire
  after 0.3 s: no container ever takes them);
* a sampler, every 10 ms, reads every container cgroup's ``tasks`` (before and after),
  ``cpuset.cpus`` and its processes' ``/proc/<pid>/status`` ``Cpus_allowed_list``, and the
  checkpoint.

Asserted: never one exclusive CPU in two live containers' cpusets or processes, never an
exclusive CPU in a live shared container, never overlapping checkpoint entries; at the
end 0 leaked cgroups, 0 leaked records, 0 entries and 0 owner records. The counts (samples,
allocations) are printed (run with ``-s``) and written to ``stress.json`` in the test's
temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cpumanager.checkpoint_format import CPUManagerCheckpoint, decode
from tests.kubelet_standin import KubeletStandin
from topolet.node_agent import NodeAgent
from topolet.node_config import NodeConfig
from topology.cpuset import CPUSet

V1 = Path("/sys/fs/cgroup/cpuset")
ONLINE = CPUSet.parse(Path("/sys/devices/system/cpu/online").read_text())
RESERVED = CPUSet.of(ONLINE.first())
SECONDS = float(os.environ.get("TOPOLET_STRESS_SECONDS", "60"))
CPUS = "topolet.io/exclusive-cpus"
pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(int(SECONDS) + 600),
    pytest.mark.skipif(
        not (os.geteuid() == 0 and (V1 / "cpuset.cpus").exists() and len(ONLINE) >= 2)
        and not os.environ.get("CI"),
        reason="needs root, the cgroup v1 cpuset hierarchy and two online CPUs",
    ),
]


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _pids(cgroups: list[Path]) -> dict[Path, frozenset[int]]:
    out = {}
    for cg in cgroups:
        text = _read(cg / "tasks")
        out[cg] = frozenset(int(p) for p in text.split()) if text else frozenset()
    return out


def _allowed(pid: int) -> CPUSet | None:
    text = _read(Path(f"/proc/{pid}/status"))
    for line in (text or "").splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return CPUSet.parse(line.split(":", 1)[1].strip())
    return None


class Sampler(threading.Thread):
    def __init__(self, cg_root: Path, state: Path) -> None:
        super().__init__(name="sampler", daemon=True)
        self.cg_root, self.state = cg_root, state
        self.stop = threading.Event()
        self.samples = 0
        self.live_max = 0
        self.exclusive_seen = 0
        self.violations: list[str] = []
        self.crashed: BaseException | None = None

    def containers(self) -> list[Path]:
        # <root>/kubepods[/<qos>]/pod<uid>/<id>: a container is a child of a pod<uid> cgroup.
        # os.walk skips directories removed while it walks (runs end all the time).
        return [
            Path(d)
            for d, _, files in os.walk(self.cg_root)
            if "tasks" in files and Path(d).parent.name.startswith("pod")
        ]

    def sample(self) -> None:
        cgroups = self.containers()
        before = _pids(cgroups)
        cpus = {cg: _read(cg / "cpuset.cpus") for cg in cgroups}
        allowed = {pid: _allowed(pid) for pids in before.values() for pid in pids}
        after = _pids(cgroups)
        live = {
            cg: before[cg] & after[cg]
            for cg in cgroups
            if before[cg] & after[cg] and cpus[cg] and cpus[cg].strip()  # type: ignore[union-attr]
        }
        sets = {cg: CPUSet.parse(cpus[cg].strip()) for cg in live}  # type: ignore[union-attr]
        exclusive = {cg: s for cg, s in sets.items() if s.isdisjoint(RESERVED)}
        self.live_max = max(self.live_max, len(live))
        self.exclusive_seen += len(exclusive)
        for cg, s in exclusive.items():
            for other, t in sets.items():
                if other != cg and s & t:
                    self.violations.append(
                        f"CPU {s & t} of exclusive {cg.name} also in live {other.name} ({t})"
                    )
            for pid in live[cg]:
                got = allowed.get(pid)
                if got is not None and got != s:
                    self.violations.append(f"pid {pid} of exclusive {cg.name} allowed {got}, cpuset {s}")
        held = CPUSet().union(*exclusive.values())
        for cg, pids in live.items():
            if cg in exclusive:
                continue
            for pid in pids:
                got = allowed.get(pid)
                if got is not None and got & held:
                    self.violations.append(
                        f"pid {pid} of shared {cg.name} allowed exclusive CPUs {got & held}"
                    )
        raw = _read(self.state / "cpu_manager_state")
        if raw:
            cp = decode(raw, policy_name="static")
            assert isinstance(cp, CPUManagerCheckpoint)
            seen = CPUSet()
            for containers in cp.entries.values():
                for s in containers.values():
                    if s & seen or s & cp.default_cpu_set:
                        self.violations.append(f"checkpoint: CPUs {s} in two places")
                    seen |= s
        self.samples += 1

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                t = time.monotonic()
                self.sample()
                self.stop.wait(max(0.0, 0.01 - (time.monotonic() - t)))
        except BaseException as e:  # reported by the test, not lost in a thread
            self.crashed = e


@pytest.fixture
def cg_root(tmp_path: Path) -> Iterator[Path]:
    root = V1 / f"topolet-stress-{os.getpid()}-{tmp_path.name[-8:]}"
    yield root
    if root.exists():
        for d in sorted((q for q in root.rglob("*") if q.is_dir()), key=lambda q: -len(q.parts)):
            d.rmdir()
        root.rmdir()


def test_one_owner_under_concurrent_runs_agent_and_device_plugin(tmp_path: Path, cg_root: Path) -> None:
    state = tmp_path / "state"
    cg_root.mkdir()
    for name in ("cpuset.cpus", "cpuset.mems"):
        (cg_root / name).write_text((V1 / name).read_text())
    config = NodeConfig(
        node_name="stress",
        pod_source="standalone",
        state_dir=state,
        cgroup_root=cg_root,
        cgroup_version="v1",
        reserved_system_cpus=RESERVED,
        device_plugin_dir=tmp_path / "dp",
        pod_resources_socket=tmp_path / "none.sock",
        gpu_resource_names={},
        watch_udev=False,
        nvml="false",
        reconcile_period_s=0.2,
        metrics_bind_address="127.0.0.1:0",
    )
    kubelet = KubeletStandin(tmp_path / "dp")
    kubelet.start()
    agent = NodeAgent(config)
    agent.placeholder_grace_s = 0.3
    agent.start()
    sampler = Sampler(cg_root, state)
    deadline = time.monotonic() + SECONDS
    counts = {"runs": 0, "runsRefused": 0, "shared": 0, "claims": 0, "claimsRefused": 0}
    lock = threading.Lock()
    errors: list[str] = []

    def loop(i: int, exclusive: bool) -> None:
        args = ["--cpus", "1", "--guaranteed"] if exclusive else ["--cpus", "200m"]
        base = [
            sys.executable,
            "-m",
            "topolet",
            "run",
            "--state-dir",
            str(state),
            "--cgroup-root",
            str(cg_root),
        ]
        while time.monotonic() < deadline:
            r = subprocess.run(
                [*base, "--reserved-cpus", str(RESERVED), *args, "--name", f"l{i}", "--", "sleep", "0.2"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            key = ("runs" if exclusive else "shared") if r.returncode == 0 else "runsRefused"
            if r.returncode != 0 and "not admitted" not in r.stderr:
                errors.append(r.stderr[-2000:])
            with lock:
                counts[key] += 1

    def claims() -> None:
        kubelet.wait_registered(CPUS, timeout=10)
        free = list(ONLINE - RESERVED)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            try:
                kubelet.allocate(CPUS, [f"cpu{free[n % len(free)]}"], timeout=5)
                key = "claims"
            except grpc.RpcError:
                key = "claimsRefused"
            with lock:
                counts[key] += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=loop, args=(i, i < 10), daemon=True) for i in range(12)]
    threads.append(threading.Thread(target=claims, daemon=True))
    try:
        sampler.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(SECONDS + 300)
        time.sleep(0.5)  # claims expire, the agent sweeps
        agent.sweep()
    finally:
        sampler.stop.set()
        sampler.join(10)
        agent.stop()
        kubelet.stop()
    result = {"seconds": SECONDS, "samples": sampler.samples, "liveMax": sampler.live_max, **counts}
    (tmp_path / "stress.json").write_text(json.dumps(result))
    print(f"\nstress: {json.dumps(result)}")
    assert sampler.crashed is None, repr(sampler.crashed)
    assert not errors, errors[:3]
    assert sampler.violations == [], sampler.violations[:10]
    assert sampler.samples >= SECONDS * 10, "the sampler fell far behind"
    assert counts["runs"] > 0 and counts["claims"] > 0 and counts["shared"] > 0
    leaked = [p for p in cg_root.rglob("*") if p.is_dir() and p.name.startswith("pod")]
    assert leaked == [], leaked
    assert list((state / "standalone").glob("*.json")) == []
    assert "entries" not in json.loads((state / "cpu_manager_state").read_text())
    assert json.loads((state / "cpu_manager_state.owners").read_text())["owners"] == []
