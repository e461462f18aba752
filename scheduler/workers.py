"""Several extender processes on one port, with one place that holds reservations.

Filter and prioritize are CPU-bound Python: one process answers at most one at a time.
:class:`WorkerPool` forks ``N`` worker processes; each opens its own listening socket
on the same port with ``SO_REUSEPORT``, so the kernel spreads kube-scheduler's
connections over them, and each keeps its own NRT cache (fed by its own source: the
same files or the same API watch) and its own result caches.

Reservations must not be split that way: bind re-checks a pod against the node's
current view *including every pod bound before it*, which only works where all binds
meet. So the parent process is the **bind coordinator**:

* every worker forwards each filtered pod object and each bind to the coordinator
  over a pipe (:class:`BindRelay`); the coordinator keeps its own
  :class:`~scheduler.service.ExtenderCore` (its own cache and source, and the
  binder), re-checks, reserves and creates the Binding exactly as a single process
  does, one bind at a time;
* a successful reservation is sent to every worker, which applies it to its own
  cache; the worker that forwarded the bind has it before it answers kube-scheduler.

What this means for stale data: two pods filtered on the same stale zone, by any
workers, are never both bound (the coordinator refuses the second). A filter served
by another worker in the instant between a bind and the arrival of its reservation
may still pass the reserved zone, like a filter that runs before the bind; the
coordinator's re-check then refuses that pod's bind and kube-scheduler retries it.
Reservations end in every process the same way (NRT update, pod deletion seen by
each process's own watch, timeout on each clock).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection, wait
from typing import Any

from scheduler.cache import NRTCache
from scheduler.errors import SchedulerError
from scheduler.extender import DEFAULT_MAX_BODY, DEFAULT_SERVER, ExtenderServer
from scheduler.http11 import listening_socket
from scheduler.service import ExtenderCore
from scheduler.wire import BindRequest, ExtenderBindingResult

__all__ = ["BindCoordinator", "BindRelay", "WorkerPool"]

log = logging.getLogger(__name__)

#: Builds one process's core (its cache, its source started); called in each worker
#: after the fork, and once in the parent for the coordinator.
CoreFactory = Callable[[], ExtenderCore]
_BIND_TIMEOUT_S = 30.0


class BindRelay:
    """Worker side: forwards pods and binds to the coordinator, applies its reservations."""

    def __init__(self, conn: Connection, cache: NRTCache) -> None:
        self._conn = conn
        self._cache = cache
        self._send_lock = threading.Lock()
        self._bind_lock = threading.Lock()
        self._results: queue.Queue[ExtenderBindingResult] = queue.Queue()

    def attach(self, core: ExtenderCore) -> None:
        core.bind_route = self.bind
        core.on_filter = self.pod_seen
        threading.Thread(target=self._read, name="bind-relay", daemon=True).start()

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self._conn.send(message)

    def _read(self) -> None:
        while True:
            try:
                kind, *rest = self._conn.recv()
            except (EOFError, OSError):
                log.error("the bind coordinator is gone; this worker stops")
                os.kill(os.getpid(), signal.SIGTERM)
                return
            if kind == "reserve":
                node, key, amounts = rest
                self._cache.reserve(node, key, amounts)
            elif kind == "result":
                self._results.put(rest[0])

    def pod_seen(self, raw_pod: Mapping[str, Any]) -> None:
        self._send(("pod", raw_pod))

    def bind(self, request: BindRequest) -> ExtenderBindingResult:
        with self._bind_lock:
            self._send(("bind", request))
            try:
                return self._results.get(timeout=_BIND_TIMEOUT_S)
            except queue.Empty:
                return {"Error": f"bind coordinator did not answer within {_BIND_TIMEOUT_S:.0f} s"}


class BindCoordinator:
    """Parent side: learns pods, runs every bind through one core, fans reservations out."""

    def __init__(self, core: ExtenderCore, conns: list[Connection]) -> None:
        self.core = core
        self._conns = list(conns)
        self._stop = threading.Event()

    def serve_forever(self) -> None:
        while not self._stop.is_set() and self._conns:
            if not wait(self._conns, timeout=0.1):
                continue
            binds: list[tuple[Connection, BindRequest]] = []
            for conn in list(self._conns):
                self._drain(conn, binds)
            for conn, request in binds:
                self._bind(conn, request)

    def _drain(self, conn: Connection, binds: list[tuple[Connection, BindRequest]]) -> None:
        """Take every pending message of *conn*: pods are learnt at once, binds queued."""
        try:
            while conn.poll():
                kind, body = conn.recv()
                if kind == "pod":
                    self.core.parse(body)
                elif kind == "bind":
                    binds.append((conn, body))
        except (EOFError, OSError):
            self._conns.remove(conn)

    def _bind(self, conn: Connection, request: BindRequest) -> None:
        result = self.core.bind(request)
        key = request.pod_uid or f"{request.pod_namespace}/{request.pod_name}"
        ordered = [conn] + [c for c in self._conns if c is not conn]
        if not result["Error"]:
            for res in (r for r in self.core.cache.reservations(request.node) if r.pod_key == key):
                amounts = {n: dict(row) for n, row in res.amounts.items()}
                self._broadcast(ordered, ("reserve", request.node, key, amounts))
        self._broadcast([conn], ("result", result))

    def _broadcast(self, conns: list[Connection], message: tuple[Any, ...]) -> None:
        for conn in conns:
            try:
                conn.send(message)
            except OSError:
                log.warning("a worker went away while reservations were sent")

    def stop(self) -> None:
        self._stop.set()


def _worker_main(
    index: int,
    conn: Connection,
    factory: CoreFactory,
    address: tuple[str, int],
    prefix: str,
    max_body: int,
    holder: socket.socket,
    server_kind: str = DEFAULT_SERVER,
) -> None:
    holder.close()  # the parent's copy keeps the port until every worker listens
    core = factory()
    if not isinstance(core.cache, NRTCache):
        raise SchedulerError("extender workers need an NRTCache")
    BindRelay(conn, core.cache).attach(core)
    sock = listening_socket(address, reuse_port=True)
    server = ExtenderServer(
        core,
        sock=sock,
        path_prefix=prefix,
        max_body=max_body,
        server_name=f"topolet-extender/{index}",
        server=server_kind,
    )
    conn.send(("ready", index))
    server.serve_forever()


def _port_holder(address: tuple[str, int]) -> socket.socket:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise SchedulerError(f"cannot listen on {address[0]}:{address[1]}: {err}") from err
    return sock


class WorkerPool:
    """``workers`` extender processes on *address*, binds coordinated in this process."""

    def __init__(
        self,
        workers: int,
        address: tuple[str, int],
        factory: CoreFactory,
        *,
        path_prefix: str = "",
        max_body: int = DEFAULT_MAX_BODY,
        server: str = DEFAULT_SERVER,
    ) -> None:
        if workers < 1:
            raise SchedulerError(f"workers: expected a positive number, got {workers}")
        self.workers = workers
        self._requested = address
        self._factory = factory
        self._prefix = path_prefix
        self._max_body = max_body
        self._server_kind = server
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._coordinator: BindCoordinator | None = None
        self.address = address

    def start(self, timeout_s: float = 30.0) -> None:
        """Fork the workers and wait until each one listens; start the coordinator."""
        holder = _port_holder(self._requested)  # bound, not listening: fixes port 0
        self.address = (self._requested[0], int(holder.getsockname()[1]))
        try:
            self._fork(holder, timeout_s)
        finally:
            holder.close()

    def _fork(self, holder: socket.socket, timeout_s: float) -> None:
        ctx = multiprocessing.get_context("fork")
        conns: list[Connection] = []
        for index in range(self.workers):
            mine, theirs = ctx.Pipe()
            args = (
                index,
                theirs,
                self._factory,
                self.address,
                self._prefix,
                self._max_body,
                holder,
                self._server_kind,
            )
            proc = ctx.Process(target=_worker_main, args=args, name=f"extender-worker-{index}", daemon=True)
            proc.start()
            self._procs.append(proc)
            conns.append(mine)
        for index, (conn, started) in enumerate(zip(conns, self._procs, strict=True)):
            if conn not in wait([conn, started.sentinel], timeout_s):
                self.stop()
                code = started.exitcode
                why = f"exited with code {code}" if code is not None else "did not start"
                raise SchedulerError(f"extender worker {index} {why} (within {timeout_s:.0f} s of start-up)")
            conn.recv()
        self._coordinator = BindCoordinator(self._factory(), conns)
        threading.Thread(target=self._coordinator.serve_forever, name="bind-coordinator", daemon=True).start()

    def serve_forever(self) -> None:
        """Block until a worker exits (then stop them all and raise)."""
        wait([p.sentinel for p in self._procs])
        dead = [p for p in self._procs if p.exitcode is not None]
        self.stop()
        codes = ", ".join(f"{p.name} exit code {p.exitcode}" for p in dead)
        raise SchedulerError(f"an extender worker stopped ({codes}); stopping the others")

    def stop(self) -> None:
        if self._coordinator is not None:
            self._coordinator.stop()
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(timeout=5)
