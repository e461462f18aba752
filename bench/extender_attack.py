"""The extender under attack on loopback: idle connections, slowloris clients and huge
bodies, while a steady client sends filter + prioritize pairs and a prober asks /healthz.

The attackers run in a child process of their own (real attackers do not share the
server's interpreter). Bounded in count and time. Reports the steady client's p50/p99, the slowest /healthz,
how many attackers were refused (503) or cut at the request deadline, RSS before/after,
and the server process's threads and file descriptors before and after (a leak shows as
a difference once the attackers are gone).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing
import os
import resource
import socket
import threading
import time
from typing import Any

from bench.stats import percentile
from scheduler.cache import NRTCache
from scheduler.extender import DEFAULT_SERVER, ExtenderServer
from scheduler.http11 import MAX_CONNECTIONS
from scheduler.service import ExtenderCore

__all__ = ["run_attack"]


def _fds() -> dict[str, int]:
    """Open file descriptors of this process: sockets, and all (pipes of the bench's own
    child process and the multiprocessing resource tracker included)."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
    return {"sockets": sum(t.startswith("socket:") for t in targets), "all": len(targets)}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _steady(
    address: tuple[str, int], body: bytes, stop: threading.Event, out: list[float], errors: list[str]
) -> None:
    """Filter + prioritize pairs on one keep-alive connection; a failed request is
    recorded in *errors* (and the connection reopened), never silently dropped."""
    conn = http.client.HTTPConnection(*address, timeout=10)
    while not stop.is_set():
        for verb in ("filter", "prioritize"):
            started = time.perf_counter()
            try:
                conn.request("POST", f"/{verb}", body=body, headers={"Content-Type": "application/json"})
                reply = conn.getresponse()
                reply.read()
            except (OSError, http.client.HTTPException) as err:
                errors.append(f"{verb}: {type(err).__name__}: {err}")
                conn.close()
                conn = http.client.HTTPConnection(*address, timeout=10)
                continue
            if reply.status != 200:
                errors.append(f"{verb}: HTTP {reply.status}")
            out.append((time.perf_counter() - started) * 1000)
        time.sleep(0.002)
    conn.close()


def _prober(address: tuple[str, int], stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection(*address, timeout=10)
            conn.request("GET", "/healthz")
            reply = conn.getresponse()
            reply.read()
            conn.close()
            elapsed = (time.perf_counter() - started) * 1000
            out.append(elapsed if reply.status == 200 else -elapsed)  # negative: refused (503)
        except OSError:
            out.append(float("inf"))
        time.sleep(0.05)


def _open(address: tuple[str, int], count: int, first: bytes) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        try:
            s = socket.create_connection(address, timeout=5)
            if first:
                s.sendall(first)
            socks.append(s)
        except OSError:
            break
    return socks


def _attack(
    address: tuple[str, int], idle: int, slowloris: int, huge: int, seconds: float, results: Any
) -> None:
    """The attackers (run in a child process): open them all, trickle for *seconds*, then
    count the 503 answers and close; puts ``(counts, refused)`` on *results*."""
    started = time.monotonic()
    idle_socks = _open(address, idle, b"")
    slow_socks = _open(address, slowloris, b"POST /filter HTTP/1.1\r\nHost: x\r\n")
    big_head = b"POST /filter HTTP/1.1\r\nContent-Length: 1073741824\r\n\r\n"
    huge_socks = _open(address, huge, big_head + b"[" * 65536)
    while time.monotonic() - started < seconds:
        for s in slow_socks:  # one byte per client per round: each read alone is quick
            with contextlib.suppress(OSError):
                s.sendall(b"X")
        time.sleep(1.0)
    refused = 0
    for s in idle_socks + slow_socks + huge_socks:
        try:
            s.settimeout(0.01)
            if s.recv(64).startswith(b"HTTP/1.1 503"):
                refused += 1
        except OSError:
            pass
        s.close()
    counts = {"idle": len(idle_socks), "slowloris": len(slow_socks), "huge": len(huge_socks)}
    results.put((counts, refused))


def run_attack(
    *,
    nodes: int = 500,
    names: int = 500,
    idle: int = 2000,
    slowloris: int = 1000,
    huge: int = 20,
    seconds: float = 10.0,
    server_kind: str = DEFAULT_SERVER,
    max_connections: int = MAX_CONNECTIONS,
) -> dict[str, Any]:
    """Attack an in-process extender (*server_kind*: ``uvicorn`` or ``builtin``) for
    *seconds*; returns the figures."""
    from bench.extender import _pod, build_cluster, pod_shapes

    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    cluster = build_cluster(nodes)
    cache = NRTCache()
    for nrt in cluster:
        cache.upsert(nrt)
    server = ExtenderServer(
        ExtenderCore(cache), ("127.0.0.1", 0), server=server_kind, max_connections=max_connections
    )
    server.start()
    load_before = [round(x, 2) for x in os.getloadavg()]
    address = server.address
    body = json.dumps(
        {"Pod": _pod(pod_shapes()[0], 0), "Nodes": None, "NodeNames": [n.name for n in cluster[:names]]}
    ).encode()
    time.sleep(0.2)
    before = {"threads": threading.active_count(), "fds": _fds(), "rss_mb": _rss_mb()}
    stop = threading.Event()
    steady: list[float] = []
    errors: list[str] = []
    probes: list[float] = []
    workers = [
        threading.Thread(target=_steady, args=(address, body, stop, steady, errors), daemon=True),
        threading.Thread(target=_prober, args=(address, stop, probes), daemon=True),
    ]
    for w in workers:
        w.start()
    time.sleep(0.5)
    ctx = multiprocessing.get_context("spawn")  # not fork: this process runs threads
    results: Any = ctx.Queue()
    attacker = ctx.Process(
        target=_attack, args=(address, idle, slowloris, huge, seconds, results), name="attackers"
    )
    attacker.start()  # its own process, as real attackers are: they do not share the server's GIL
    counts, refused = results.get(timeout=seconds + 120)
    attacker.join(timeout=30)
    attacker.close()
    results.close()  # its pipe is not the server's: the fd count after must not include it
    results.join_thread()
    stop.set()
    for w in workers:
        w.join(timeout=10)
    deadline = time.monotonic() + 15
    while server._server.connections and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    after = {"threads": threading.active_count(), "fds": _fds(), "rss_mb": _rss_mb()}
    server.stop()
    finite = [abs(p) for p in probes if p != float("inf")]
    return {
        "server": server_kind,
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        "attackers": counts,
        "refused_503": refused,
        "steady": {
            "requests": len(steady),
            "errors": len(errors),
            "first_errors": errors[:3],
            "p50_ms": round(percentile(steady, 50), 2) if steady else None,
            "p99_ms": round(percentile(steady, 99), 2) if steady else None,
        },
        "healthz": {
            "probes": len(probes),
            "failed": len(probes) - len(finite),
            "refused_503": sum(1 for p in probes if p < 0),
            "max_ms": round(max(finite), 2),
            "p99_ms": round(percentile(finite, 99), 2),
        },
        "before": before,
        "after": after,
        "seconds": seconds,
    }
