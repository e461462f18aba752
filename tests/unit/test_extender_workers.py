"""``topolet extender --workers N``: N processes on one port, binds through one coordinator.

Real worker processes (forked), real ``SO_REUSEPORT`` sockets on 127.0.0.1, real HTTP.
Each connection is pinned to the worker that accepted it (the ``Server`` header names
it), so the tests can send a filter to one worker and a bind to another.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.cache import NRTCache
from scheduler.errors import SchedulerError
from scheduler.service import ExtenderCore
from scheduler.workers import WorkerPool
from tests.extender_helpers import GU, MemoryBinder, nrt_obj, v1_pod
from topology.nrt import NodeResourceTopology

ZONES = {0: {"cpu": "4", "memory": "8Gi"}, 1: {"cpu": "4", "memory": "8Gi"}}


def _core() -> ExtenderCore:
    cache = NRTCache()
    cache.upsert(NodeResourceTopology.from_dict(nrt_obj("w1", ZONES)))
    return ExtenderCore(cache, binder=MemoryBinder())


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(2, ("127.0.0.1", 0), _core)
    workers.start()
    yield workers
    workers.stop()


class Conn:
    """One keep-alive connection, and the worker that serves it."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.http = http.client.HTTPConnection(*address, timeout=10)
        self.http.request("GET", "/healthz")
        reply = self.http.getresponse()
        reply.read()
        self.worker = reply.getheader("Server") or ""

    def post(self, verb: str, body: Any) -> Any:
        self.http.request("POST", f"/{verb}", body=json.dumps(body).encode())
        reply = self.http.getresponse()
        data = reply.read()
        assert reply.status == 200, data
        return json.loads(data)


def _one_per_worker(address: tuple[str, int], workers: int) -> list[Conn]:
    """Open connections until every worker holds one (the kernel picks the worker)."""
    found: dict[str, Conn] = {}
    for _ in range(200):
        conn = Conn(address)
        if conn.worker in found:
            conn.http.close()
        else:
            found[conn.worker] = conn
        if len(found) == workers:
            return [found[k] for k in sorted(found)]
    raise AssertionError(f"only workers {sorted(found)} answered")


def _pod(name: str) -> dict[str, Any]:
    return v1_pod(name, ("a", GU, {"cpu": "4", "memory": "1Gi"}), uid=f"uid-{name}")


def _filter(conn: Conn, pod: dict[str, Any]) -> Any:
    return conn.post("filter", {"Pod": pod, "Nodes": None, "NodeNames": ["w1"]})


def _bind(conn: Conn, pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    args = {"PodName": meta["name"], "PodNamespace": meta["namespace"], "PodUID": meta["uid"], "Node": "w1"}
    error: str = conn.post("bind", args)["Error"]
    return error


def test_every_worker_serves_the_one_port(pool: WorkerPool) -> None:
    conns = _one_per_worker(pool.address, 2)
    assert [c.worker for c in conns] == ["topolet-extender/0", "topolet-extender/1"]
    for conn in conns:
        assert _filter(conn, _pod("a"))["NodeNames"] == ["w1"]


def test_pods_filtered_on_stale_data_by_two_workers_are_not_double_booked(pool: WorkerPool) -> None:
    one, two = _one_per_worker(pool.address, 2)
    a, b, c = _pod("a"), _pod("b"), _pod("c")
    assert _filter(one, a)["NodeNames"] == ["w1"]
    assert _bind(two, a) == ""  # filtered on worker 0, bound through worker 1: zone node-0 held
    assert _filter(one, b)["NodeNames"] == ["w1"]  # node-1 is still free
    assert _filter(two, c)["NodeNames"] == ["w1"]  # the same stale view, before b binds
    assert _bind(one, b) == ""
    refused = _bind(two, c)
    assert "no longer fits" in refused and "no single NUMA node has cpu 4" in refused
    for conn in (one, two):  # both workers now hold both reservations
        deadline = time.monotonic() + 5
        while _filter(conn, c)["NodeNames"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "w1" in _filter(conn, c)["FailedNodes"]


def test_zero_workers_is_refused() -> None:
    with pytest.raises(SchedulerError, match="workers: expected a positive number"):
        WorkerPool(0, ("127.0.0.1", 0), _core)


def test_cli_workers_serve_and_stop_together(tmp_path: Path) -> None:
    (tmp_path / "w1.json").write_text(json.dumps(nrt_obj("w1", ZONES)))
    cmd = [sys.executable, "-m", "topolet", "extender", "--nrt-dir", str(tmp_path)]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+) with 2 workers", line)
        assert match, line
        address = ("127.0.0.1", int(match.group(1)))
        conns = _one_per_worker(address, 2)
        assert [_filter(c, _pod("a"))["NodeNames"] for c in conns] == [["w1"], ["w1"]]
        for c in conns:
            c.http.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(address, timeout=1).close()
        except OSError:
            break  # nobody listens any more: the workers stopped with the parent
        time.sleep(0.05)
    else:
        raise AssertionError("a worker still listens after the parent stopped")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(["--workers", "0"], "--workers: expected a positive number", id="zero-workers"),
        pytest.param(["--nrt-dir", "/nonexistent"], "not a directory", id="missing-dir"),
    ],
)
def test_cli_refuses_bad_worker_settings(flags: list[str], message: str, tmp_path: Path) -> None:
    base = ["--nrt-dir", str(tmp_path)] if "--nrt-dir" not in flags else []
    out = subprocess.run(
        [sys.executable, "-m", "topolet", "extender", *base, *flags, "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0 and message in out.stderr
