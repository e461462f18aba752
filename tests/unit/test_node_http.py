"""The node agent's HTTP endpoint over real HTTP on 127.0.0.1: /metrics, /healthz, /readyz."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from topolet.node_http import METRIC_NAMES, AgentMetrics, NodeHTTPServer, parse_address

DOC = Path(__file__).resolve().parents[2] / "docs" / "node-config.md"


class Flag:
    def __init__(self) -> None:
        self.ready, self.reason = False, "device plugins not registered with kubelet: nvidia.com/gpu"

    def __call__(self) -> tuple[bool, str]:
        return self.ready, self.reason


@pytest.fixture
def served() -> Iterator[tuple[NodeHTTPServer, Flag, AgentMetrics]]:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    flag = Flag()
    server = NodeHTTPServer("127.0.0.1:0", registry, flag).start()
    yield server, flag, metrics
    server.stop()


def call(server: NodeHTTPServer, method: str, path: str) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read().decode()
    finally:
        conn.close()


Served = tuple[NodeHTTPServer, Flag, AgentMetrics]


def test_metrics_parse_and_carry_every_agent_family(served: Served) -> None:
    server, _, metrics = served
    metrics.nrt_publishes.labels("create").inc()
    metrics.registered.labels("nvidia.com/gpu").set(1)
    status, ctype, body = call(server, "GET", "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert set(METRIC_NAMES) <= set(families)
    (sample,) = [s for s in families["topolet_node_nrt_publish"].samples if s.name.endswith("_total")]
    assert (sample.labels, sample.value) == ({"verb": "create"}, 1.0)


@pytest.mark.parametrize(
    ("ready", "status", "body"),
    [
        pytest.param(
            False,
            503,
            "not ready: device plugins not registered with kubelet: nvidia.com/gpu\n",
            id="not-ready-says-why",
        ),
        pytest.param(True, 200, "ok\n", id="ready"),
    ],
)
def test_readyz(served: Served, ready: bool, status: int, body: str) -> None:
    server, flag, _ = served
    flag.ready = ready
    assert call(server, "GET", "/readyz")[::2] == (status, body)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/healthz", 200, id="healthz"),
        pytest.param("HEAD", "/healthz", 200, id="head"),
        pytest.param("GET", "/healthz?verbose", 200, id="query-ignored"),
        pytest.param("GET", "/", 404, id="root-404"),
        pytest.param("GET", "/metricsx", 404, id="unknown-404"),
        pytest.param("POST", "/metrics", 405, id="post-405"),
        pytest.param("DELETE", "/readyz", 405, id="delete-405"),
    ],
)
def test_paths_and_methods(served: Served, method: str, path: str, status: int) -> None:
    server, _, _ = served
    assert call(server, method, path)[0] == status
    assert call(server, "GET", "/healthz")[0] == 200  # still serving


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0.0.0.0:9464", ("0.0.0.0", 9464), id="all-v4"),
        pytest.param(":9464", ("0.0.0.0", 9464), id="empty-host"),
        pytest.param("[::1]:80", ("::1", 80), id="v6"),
        pytest.param("127.0.0.1:0", ("127.0.0.1", 0), id="free-port"),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["9464", "host:", "host:99999", "host:http"], ids=repr)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="metricsBindAddress: expected HOST:PORT"):
        parse_address(text)


def test_every_agent_metric_is_documented() -> None:
    documented = set(re.findall(r"`(topolet_node_[a-z_]+)", DOC.read_text()))
    for name in METRIC_NAMES:
        assert any(d == name or d.startswith(name + "_") for d in documented), f"{name} is not in the docs"
