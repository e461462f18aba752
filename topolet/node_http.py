"""The node agent's one HTTP endpoint, and the agent's own metrics.

* ``GET /metrics``: every metric of one prometheus-client registry (the CPU manager's and
  :class:`AgentMetrics`), in the text exposition format;
* ``GET /healthz``: ``200 ok`` while the process serves;
* ``GET /readyz``: ``200 ok`` once the readiness check passes (state restored, plugins
  registered), else ``503`` with the reason as the body.

Anything else is ``404``; methods other than GET and HEAD are ``405``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["AgentMetrics", "METRIC_NAMES", "NodeHTTPServer", "Readiness", "parse_address"]

log = logging.getLogger(__name__)

#: ``() -> (ready, reason)``; the reason is shown when not ready.
Readiness = Callable[[], tuple[bool, str]]

#: The agent's own metric families (docs/node-config.md lists them); /metrics also serves
#: the CPU manager's (``cpumanager.metrics``).
METRIC_NAMES = (
    "topolet_node_ready",
    "topolet_node_reconcile_duration_seconds",
    "topolet_node_rekeyed",
    "topolet_node_step_errors",
    "topolet_node_device_plugin_registered",
    "topolet_node_devices",
    "topolet_node_nrt_publish",
    "topolet_node_nrt_publish_errors",
    "topolet_node_topology_discoveries",
)


class AgentMetrics:
    """The node agent's metrics, registered in *registry*."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ready = Gauge("topolet_node_ready", "1 when /readyz answers 200.", registry=registry)
        self.reconcile_seconds = Histogram(
            "topolet_node_reconcile_duration_seconds",
            "Duration of a reconcile sweep (re-key included).",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=registry,
        )
        self.rekeyed = Counter(
            "topolet_node_rekeyed",
            "CPU device-plugin allocations re-keyed to the container holding them.",
            registry=registry,
        )
        self.step_errors = Counter(
            "topolet_node_step_errors",
            "Background steps of the agent that failed (retried next tick), by step.",
            ["step"],
            registry=registry,
        )
        self.registered = Gauge(
            "topolet_node_device_plugin_registered",
            "1 while the device plugin of a resource is registered with kubelet.",
            ["resource"],
            registry=registry,
        )
        self.devices = Gauge(
            "topolet_node_devices",
            "Devices a plugin advertises, by health.",
            ["resource", "health"],
            registry=registry,
        )
        self.nrt_publishes = Counter(
            "topolet_node_nrt_publish",
            "NodeResourceTopology writes to the API server, by verb.",
            ["verb"],
            registry=registry,
        )
        self.nrt_errors = Counter(
            "topolet_node_nrt_publish_errors",
            "NodeResourceTopology writes that failed (retried with backoff).",
            registry=registry,
        )
        self.discoveries = Counter(
            "topolet_node_topology_discoveries",
            "Topology discoveries (start and udev GPU events).",
            registry=registry,
        )


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` → (host, port); ``[::1]:9464`` for IPv6; an empty host means all."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"metricsBindAddress: expected HOST:PORT such as 0.0.0.0:9464, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)

    def _reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._reply(200, b"ok\n")
        elif path == "/readyz":
            ready, reason = self.server.readiness()
            self._reply(200, b"ok\n") if ready else self._reply(503, f"not ready: {reason}\n".encode())
        else:
            self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

    do_HEAD = do_GET

    def _not_allowed(self) -> None:
        self._reply(405, b"method not allowed: use GET\n")

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    readiness: Readiness


class NodeHTTPServer:
    """Serve /metrics, /healthz and /readyz on *address* (``HOST:PORT``) in a thread.

    >>> srv = NodeHTTPServer("127.0.0.1:0", registry, lambda: (True, "")).start()  # doctest: +SKIP
    >>> srv.port                                                                       # doctest: +SKIP
    """

    def __init__(self, address: str, registry: CollectorRegistry, readiness: Readiness) -> None:
        host, port = parse_address(address)
        self._server = _Server((host, port), _Handler)
        self._server.registry = registry
        self._server.readiness = readiness
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}"

    def start(self) -> NodeHTTPServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="topolet-node-http", daemon=True
        )
        self._thread.start()
        log.info("serving /metrics, /healthz and /readyz on %s", self.url)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
