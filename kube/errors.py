"""The one place where the ``kubernetes`` client's failures become topolet errors.

Every call into the client goes through :func:`api_errors` (a context manager) or
:func:`translate`; callers catch :class:`KubeError` or one of its kinds and never see
``kubernetes.client.exceptions.ApiException`` or urllib3's exceptions:

=====================  ==================================================================
class                  when
=====================  ==================================================================
:class:`KubeNotFound`  404: no such object
:class:`KubeConflict`  409: already exists, or a stale ``resourceVersion`` on replace
:class:`KubeGone`      410: the watch's ``resourceVersion`` was compacted away; relist
:class:`KubeDenied`    401 / 403: the credentials may not do this
:class:`KubeInvalid`   400 / 422: the request or object was refused as malformed
:class:`KubeUnavailable`  no answer (connection refused or reset, a stream cut short,
                       a timeout) or 429 / 500 / 502 / 503 / 504: try again later
:class:`KubeError`     anything else the API server answered
=====================  ==================================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

__all__ = [
    "KubeConfigError",
    "KubeConflict",
    "KubeDenied",
    "KubeError",
    "KubeGone",
    "KubeInvalid",
    "KubeNotFound",
    "KubeUnavailable",
    "api_errors",
    "from_status",
    "translate",
]


class KubeError(Exception):
    """The API server refused or could not answer a request.

    ``status`` is the HTTP code (None when no answer came), ``reason`` the ``Status``
    reason (``NotFound``, ``Expired`` ...), ``message`` the server's message.
    """

    def __init__(self, what: str, status: int | None = None, reason: str = "", message: str = "") -> None:
        self.what, self.status, self.reason, self.message = what, status, reason, message
        if status is None:
            super().__init__(f"{what}: {message or 'no answer'}")
            return
        answer = f"{what}: API server answered {f'{status} {reason}'.strip()}"
        super().__init__(f"{answer}: {message}" if message else answer)


class KubeNotFound(KubeError):
    """404: the object does not exist."""


class KubeConflict(KubeError):
    """409: the object exists already, or was changed since the ``resourceVersion`` sent."""


class KubeGone(KubeError):
    """410: the ``resourceVersion`` asked for is older than the server's history; relist."""


class KubeDenied(KubeError):
    """401 / 403: these credentials may not make this request (check the RBAC rules)."""


class KubeInvalid(KubeError):
    """400 / 422: the request or the object was refused as malformed."""


class KubeUnavailable(KubeError):
    """No answer, or an answer that says "later" (429, 5xx): retry with backoff."""


class KubeConfigError(KubeError, ValueError):
    """No usable kubeconfig or in-cluster service account (also a ValueError: bad input)."""


_BY_STATUS: dict[int, type[KubeError]] = {
    400: KubeInvalid,
    401: KubeDenied,
    403: KubeDenied,
    404: KubeNotFound,
    409: KubeConflict,
    410: KubeGone,
    422: KubeInvalid,
    429: KubeUnavailable,
    500: KubeUnavailable,
    502: KubeUnavailable,
    503: KubeUnavailable,
    504: KubeUnavailable,
}


def _class(status: int | None) -> type[KubeError]:
    return KubeUnavailable if status is None else _BY_STATUS.get(status, KubeError)


def from_status(what: str, status: Mapping[str, Any]) -> KubeError:
    """The error a ``Status`` object says (a watch ``ERROR`` event's object)."""
    code = status.get("code")
    code = int(code) if isinstance(code, int | str) and str(code).isdigit() else None
    return _class(code)(what, code, str(status.get("reason") or ""), str(status.get("message") or ""))


def _body_message(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        parsed = json.loads(body or "{}")
    except (TypeError, ValueError):
        return str(body or "")
    return str(parsed.get("message") or body) if isinstance(parsed, dict) else str(body)


def translate(what: str, err: BaseException) -> KubeError:
    """*err* (raised by the client while doing *what*) as a :class:`KubeError`; not raised."""
    if isinstance(err, KubeError):
        return err
    if isinstance(err, ApiException):
        status = int(err.status) if err.status else None
        if status is None:  # the client raises ApiException(status=0) for its own failures
            return KubeUnavailable(what, None, "", str(err.reason or err))
        return _class(status)(what, status, str(err.reason or ""), _body_message(err.body))
    if isinstance(err, ConfigException):
        return KubeConfigError(what, None, "", str(err))
    return KubeUnavailable(what, None, "", f"{type(err).__name__}: {err}")


#: What a call into the client raises besides ApiException when the server does not answer.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
    OSError,
)


_CAUGHT: tuple[type[BaseException], ...] = (ApiException, ConfigException, *TRANSPORT_ERRORS)


@contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Run a client call; its failures leave as :class:`KubeError` (chained with ``from``)."""
    try:
        yield
    except _CAUGHT as err:
        raise translate(what, err) from err
