"""The extender load test, scaled down to fit a unit-test budget: silent, slowloris and
huge-body attackers (in their own process) over a lowered connection cap, while a steady
client sends filter + prioritize pairs and a prober asks ``/healthz`` on new connections.
Runs against the default server (uvicorn)."""

from __future__ import annotations

from bench.extender_attack import run_attack

ATTACK_S = 3.0
STARVED_MS = ATTACK_S * 1000 / 3  # a request held behind the attackers waits for its end


def test_steady_client_and_healthz_survive_an_attack_over_the_connection_cap() -> None:
    out = run_attack(
        nodes=200, names=200, idle=300, slowloris=150, huge=5, seconds=ATTACK_S, max_connections=200
    )
    assert out["attackers"] == {"idle": 300, "slowloris": 150, "huge": 5}
    steady, health = out["steady"], out["healthz"]
    assert steady["errors"] == 0, steady["first_errors"]
    # The bounds tell "served during the attack" from "starved until it ends" (3 s), with
    # room for a loaded machine; the latency figures themselves belong to
    # `topolet bench extender --attack`, not to this test.
    assert steady["requests"] > 100 and steady["p99_ms"] < STARVED_MS
    # Silent attackers make room for probes: every probe is answered 200 during the attack.
    assert health["failed"] == 0 and health["refused_503"] == 0 and health["max_ms"] < STARVED_MS
    assert out["after"]["threads"] == out["before"]["threads"]
    assert out["after"]["fds"]["sockets"] == out["before"]["fds"]["sockets"]
    assert out["after"]["rss_mb"] - out["before"]["rss_mb"] < 100
