"""The one translation of the kubernetes client's failures into topolet's errors."""

from __future__ import annotations

import json

import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from kube.errors import (
    KubeConflict,
    KubeDenied,
    KubeError,
    KubeGone,
    KubeInvalid,
    KubeNotFound,
    KubeUnavailable,
    api_errors,
    from_status,
    translate,
)


def api_exception(status: int, reason: str, message: str) -> ApiException:
    err = ApiException(status=status, reason=reason)
    err.body = json.dumps({"kind": "Status", "code": status, "reason": reason, "message": message})
    return err


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        pytest.param(400, KubeInvalid, id="400-invalid"),
        pytest.param(403, KubeDenied, id="403-denied"),
        pytest.param(404, KubeNotFound, id="404-not-found"),
        pytest.param(409, KubeConflict, id="409-conflict"),
        pytest.param(410, KubeGone, id="410-gone"),
        pytest.param(422, KubeInvalid, id="422-invalid"),
        pytest.param(429, KubeUnavailable, id="429-later"),
        pytest.param(503, KubeUnavailable, id="503-later"),
        pytest.param(418, KubeError, id="other-status"),
    ],
)
def test_api_exception_by_status(status: int, kind: type[KubeError]) -> None:
    err = translate("get pods/x", api_exception(status, "Reason", "the server's words"))
    assert type(err) is kind
    assert (err.status, err.reason, err.message) == (status, "Reason", "the server's words")
    assert str(err) == f"get pods/x: API server answered {status} Reason: the server's words"


@pytest.mark.parametrize(
    "raised",
    [
        pytest.param(urllib3.exceptions.MaxRetryError(None, "/api", "refused"), id="max-retry"),  # type: ignore[arg-type]
        pytest.param(urllib3.exceptions.ProtocolError("Response ended prematurely"), id="cut-short"),
        pytest.param(ConnectionResetError("reset"), id="reset"),
        pytest.param(ApiException(status=0, reason="client failure"), id="no-status"),
    ],
)
def test_no_answer_is_unavailable(raised: Exception) -> None:
    with pytest.raises(KubeUnavailable) as err, api_errors("watch pods"):
        raise raised
    assert err.value.status is None and err.value.__cause__ is raised
    assert str(err.value).startswith("watch pods: ")


def test_a_watch_error_event_status_becomes_its_kind() -> None:
    status = {
        "kind": "Status",
        "code": 410,
        "reason": "Expired",
        "message": "too old resource version: 5 (9)",
    }
    err = from_status("watch pods", status)
    assert isinstance(err, KubeGone) and err.status == 410 and "too old" in str(err)


def test_our_own_bugs_are_not_translated() -> None:
    with pytest.raises(KeyError), api_errors("get pods/x"):
        raise KeyError("a bug")
