"""The extender load test, scaled down to fit a unit-test budget: silent, slowloris and
huge-body attackers (in their own process) over a lowered connection cap, while a steady
client sends filter + prioritize pairs and a prober asks ``/healthz`` on new connections.
Runs against the default server (uvicorn)."""

from __future__ import annotations

from bench.extender_attack import run_attack


def test_steady_client_and_healthz_survive_an_attack_over_the_connection_cap() -> None:
    out = run_attack(nodes=200, names=200, idle=300, slowloris=150, huge=5, seconds=3.0, max_connections=200)
    assert out["attackers"] == {"idle": 300, "slowloris": 150, "huge": 5}
    steady, health = out["steady"], out["healthz"]
    assert steady["errors"] == 0, steady["first_errors"]
    assert steady["requests"] > 100 and steady["p99_ms"] <= 50
    # Silent attackers make room for probes: every probe is answered 200, promptly.
    assert health["failed"] == 0 and health["refused_503"] == 0 and health["max_ms"] <= 100
    assert out["after"]["threads"] == out["before"]["threads"]
    assert out["after"]["fds"]["sockets"] == out["before"]["fds"]["sockets"]
    assert out["after"]["rss_mb"] - out["before"]["rss_mb"] < 100
