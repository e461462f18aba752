"""The extender's error boundary: 400 for the request's fault, 500 (and a traceback in the
log) for the extender's own, whatever exception type the bug raises.

A bug that raises ``ValueError`` deep in the core must not reach kube-scheduler as
"bad request": kube-scheduler would blame the pod, and nobody would look at the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest

from scheduler.cache import NRTCache
from scheduler.errors import InputError, PodSpecError, SchedulerError
from scheduler.extender import ExtenderServer
from scheduler.service import ExtenderCore
from scheduler.wire import WireError
from tests.extender_helpers import GU, MemoryBinder, args, get, nrt_obj, post, v1_pod
from topology.nrt import NodeResourceTopology

PREFIX = "/topolet"
POD = v1_pod("p", ("a", GU, {"cpu": "2", "memory": "1Gi"}))
FILTER = args(POD, ["w1"])
BIND = {"PodName": "p", "PodNamespace": "default", "PodUID": "u", "Node": "w1"}


@pytest.fixture
def server() -> Iterator[ExtenderServer]:
    cache = NRTCache(reservation_timeout_s=60)
    cache.upsert(NodeResourceTopology.from_dict(nrt_obj("w1", {0: {"cpu": "4", "memory": "8Gi"}})))
    srv = ExtenderServer(
        ExtenderCore(cache, fit_mode="kubelet", binder=MemoryBinder()), ("127.0.0.1", 0), path_prefix=PREFIX
    )
    srv.start()
    yield srv
    srv.stop()


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "scheduler.extender" and r.exc_info is not None]


# ------------------------------------------------------------ input errors: 400
BAD_INPUT = [
    pytest.param("filter", None, b"{not json", "not valid JSON", id="filter/truncated-json"),
    pytest.param("filter", {"NodeNames": ["w1"]}, None, "Pod", id="filter/no-pod"),
    pytest.param("filter", {"Pod": POD, "NodeNames": "w1"}, None, "NodeNames", id="filter/names-not-a-list"),
    pytest.param(
        "prioritize",
        {"Pod": v1_pod("p", ("a", GU, {"cpu": "lots"})), "NodeNames": ["w1"]},
        None,
        "cpu",
        id="prioritize/bad-cpu-quantity",
    ),
    pytest.param("bind", {"PodName": "p"}, None, "PodNamespace", id="bind/missing-keys"),
    pytest.param("preempt", [], None, "ExtenderPreemptionArgs", id="preempt/body-is-a-list"),
]


@pytest.mark.parametrize(("verb", "body", "raw", "names"), BAD_INPUT)
def test_malformed_body_is_400_without_a_traceback(
    server: ExtenderServer,
    caplog: pytest.LogCaptureFixture,
    verb: str,
    body: Any,
    raw: bytes | None,
    names: str,
) -> None:
    caplog.set_level(logging.INFO, logger="scheduler.extender")
    status, reply = post(server.address, f"{PREFIX}/{verb}", body, raw=raw)
    assert status == 400, reply
    assert names in reply["Error"]
    assert _tracebacks(caplog) == []
    assert get(server.address, "/healthz") == (200, "ok")


# ------------------------------------------------------- our own bugs: 500
def _raise(exc: Exception) -> Callable[..., NoReturn]:
    def boom(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise exc

    return boom


BUGS = [
    # (id, verb, body, ExtenderCore method that fails, the exception it raises)
    ("filter/fit-raises-ValueError", "filter", FILTER, "filter_answer", ValueError("bad zone index")),
    ("filter/fit-raises-KeyError", "filter", FILTER, "filter_answer", KeyError("node-7")),
    ("prioritize/score-raises-ValueError", "prioritize", FILTER, "_score_answer", ValueError("nan")),
    ("bind/raises-ValueError", "bind", BIND, "bind", ValueError("reservation underflow")),
    # A pod parser that fails with a plain ValueError has a bug: malformed pods raise PodSpecError.
    ("filter/pod-parser-raises-ValueError", "filter", FILTER, "parse", ValueError("quantity")),
    # Scheduler errors that are not input errors are ours too.
    ("filter/core-raises-SchedulerError", "filter", FILTER, "filter_answer", SchedulerError("state")),
]


@pytest.mark.parametrize(("verb", "body", "method", "exc"), [pytest.param(*b[1:], id=b[0]) for b in BUGS])
def test_a_bug_in_the_core_is_500_with_a_traceback_in_the_log(
    server: ExtenderServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    verb: str,
    body: Any,
    method: str,
    exc: Exception,
) -> None:
    caplog.set_level(logging.INFO, logger="scheduler.extender")
    monkeypatch.setattr(ExtenderCore, method, _raise(exc))
    status, reply = post(server.address, f"{PREFIX}/{verb}", body)
    assert status == 500, reply
    assert f"internal error in {verb}" in reply["Error"]
    assert type(exc).__name__ in reply["Error"]
    [record] = _tracebacks(caplog)
    assert record.levelno == logging.ERROR and verb in record.getMessage()
    assert record.exc_info is not None and record.exc_info[1] is exc
    assert "Traceback (most recent call last)" in caplog.text and method in caplog.text
    monkeypatch.undo()
    assert get(server.address, "/healthz") == (200, "ok")  # still serving
    assert post(server.address, f"{PREFIX}/{verb}", body)[0] == 200  # and answering


def test_an_input_error_raised_inside_the_core_is_still_400(
    server: ExtenderServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What decides 400 is the exception's class (the request is at fault), not where it
    was raised: a pod the core finds malformed is the sender's error."""
    caplog.set_level(logging.INFO, logger="scheduler.extender")
    monkeypatch.setattr(ExtenderCore, "parse", _raise(PodSpecError("spec.containers[0].name", "a name")))
    status, reply = post(server.address, f"{PREFIX}/filter", FILTER)
    assert status == 400 and "spec.containers[0].name" in reply["Error"]
    assert _tracebacks(caplog) == []


def test_input_errors_are_the_only_400s() -> None:
    """The wire and pod errors share the one base the extender maps to 400."""
    assert issubclass(WireError, InputError) and issubclass(PodSpecError, InputError)
    assert issubclass(InputError, SchedulerError)
