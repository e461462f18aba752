"""JSON POSTs to the API server through libcurl (pycurl): the path of every Binding.

The ``kubernetes`` client spends about 0.6 ms of CPU per Binding on a 2-vCPU machine:
its call layers, urllib3 and ``http.client`` run in Python and TLS runs under the
interpreter lock. libcurl makes the same request in about 0.2 ms and releases the lock
for the whole transfer, which matters to the extender: its filter and prioritize run
on one event loop beside the threads that bind.

:meth:`CurlPoster.for_client` takes the connection settings of an
:class:`~kube.client.ApiClient` (server URL, CA, client certificate and key, bearer
token, refreshed through the client's own hook on every request). A setting libcurl is
not given here (an HTTP proxy, a TLS server name or host-name override, socket
options) makes it return None, and the caller keeps using the ``kubernetes`` client.
Each thread gets its own libcurl handle, which keeps its connection alive between
requests. Every request has a connect timeout and an overall timeout, and a reply is
read up to :data:`MAX_REPLY` bytes. Failures are :mod:`kube.errors` kinds, as with the
client.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from typing import Any

import certifi
import pycurl

from kube.client import ApiClient
from kube.errors import KubeError, KubeUnavailable, from_status

__all__ = ["CONNECT_TIMEOUT_S", "MAX_REPLY", "REQUEST_TIMEOUT_S", "CurlPoster", "unsupported"]

#: The most reply bytes read (a Binding's reply is a ``Status`` of a few hundred bytes).
MAX_REPLY = 1024 * 1024
#: Seconds to connect (TCP and TLS) to the API server.
CONNECT_TIMEOUT_S = 10.0
#: Seconds for a whole request, connecting included.
REQUEST_TIMEOUT_S = 30.0


def unsupported(api: ApiClient) -> str:
    """Why *api*'s settings cannot be honoured here ("" when they can)."""
    cfg = api.configuration
    host = str(cfg.host or "")
    if not host.startswith(("http://", "https://")):
        return f"server URL {host!r} is neither http:// nor https://"
    for name in ("proxy", "tls_server_name", "assert_hostname", "socket_options", "proxy_headers"):
        if getattr(cfg, name, None):
            return f"the client sets {name}"
    return ""


class _Sink:
    """A reply body up to :data:`MAX_REPLY` bytes (libcurl's write callback)."""

    __slots__ = ("over", "parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.over = False

    def reset(self) -> None:
        self.parts.clear()
        self.size = 0
        self.over = False

    def write(self, data: bytes) -> int | None:
        self.size += len(data)
        if self.size > MAX_REPLY:
            self.over = True
            return 0  # libcurl stops the transfer: CURLE_WRITE_ERROR
        self.parts.append(data)
        return None


class _Handle:
    """One thread's libcurl handle and its reply sink."""

    __slots__ = ("curl", "sink")

    def __init__(self, curl: pycurl.Curl, sink: _Sink) -> None:
        self.curl = curl
        self.sink = sink


class CurlPoster:
    """POSTs JSON bodies to paths of one API server with the credentials of an
    :class:`~kube.client.ApiClient`; build it with :meth:`for_client`."""

    def __init__(self, api: ApiClient) -> None:
        reason = unsupported(api)
        if reason:
            raise ValueError(f"libcurl cannot make this client's requests: {reason}")
        self._cfg = api.configuration
        self._base = str(self._cfg.host).rstrip("/")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._handles: list[pycurl.Curl] = []
        self._closed = False

    @classmethod
    def for_client(cls, api: ApiClient) -> CurlPoster | None:
        """A poster for *api*, or None when a setting of *api* is not given to libcurl."""
        return None if unsupported(api) else cls(api)

    def _handle(self) -> _Handle:
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is not None:
            return handle
        cfg = self._cfg
        curl = pycurl.Curl()
        sink = _Sink()
        curl.setopt(pycurl.NOSIGNAL, 1)  # threads: no SIGALRM for timeouts
        curl.setopt(pycurl.PROXY, "")  # as the client: no proxy from the environment
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, int(CONNECT_TIMEOUT_S * 1000))
        curl.setopt(pycurl.TIMEOUT_MS, int(REQUEST_TIMEOUT_S * 1000))
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.WRITEFUNCTION, sink.write)
        curl.setopt(pycurl.POST, 1)
        if self._base.startswith("https://"):
            verify = 1 if cfg.verify_ssl else 0
            curl.setopt(pycurl.SSL_VERIFYPEER, verify)
            curl.setopt(pycurl.SSL_VERIFYHOST, 2 if verify else 0)
            if cfg.ssl_ca_cert:
                curl.setopt(pycurl.CAINFO, str(cfg.ssl_ca_cert))
            elif getattr(cfg, "ca_cert_data", None):
                data = cfg.ca_cert_data
                curl.setopt(pycurl.CAINFO_BLOB, data if isinstance(data, bytes) else str(data).encode())
            else:  # as the kubernetes client (urllib3): the certifi bundle, not libcurl's build path
                curl.setopt(pycurl.CAINFO, certifi.where())
            if cfg.cert_file:
                curl.setopt(pycurl.SSLCERT, str(cfg.cert_file))
            if cfg.key_file:
                curl.setopt(pycurl.SSLKEY, str(cfg.key_file))
        handle = _Handle(curl, sink)
        self._local.handle = handle
        with self._lock:
            self._handles.append(curl)
        return handle

    def _headers(self) -> list[str]:
        headers = ["Content-Type: application/json", "Accept: application/json", "Expect:"]
        # auth_settings() reads the token through the client's refresh hook, if it has one
        for setting in self._cfg.auth_settings().values():
            value = setting.get("value")
            if setting.get("in") == "header" and value:
                headers.append(f"{setting['key']}: {value}")
        return headers

    def post(self, path: str, body: bytes, what: str) -> dict[str, Any]:
        """POST *body* (JSON) to *path* (``/api/v1/...``); the reply as a JSON object ({}
        when it is not one). A refusal raises the :mod:`kube.errors` kind of its status; no
        answer raises :class:`~kube.errors.KubeUnavailable`. *what* names the request in
        errors."""
        if self._closed:
            raise KubeUnavailable(what, None, "", "the client was closed")
        handle = self._handle()
        curl, sink = handle.curl, handle.sink
        sink.reset()
        curl.setopt(pycurl.URL, self._base + path)
        curl.setopt(pycurl.HTTPHEADER, self._headers())
        curl.setopt(pycurl.POSTFIELDS, body)
        try:
            curl.perform()  # releases the interpreter lock for the whole transfer
        except pycurl.error as err:
            if sink.over:
                raise KubeError(what, None, "", f"reply over {MAX_REPLY} bytes") from None
            code, message = err.args if len(err.args) == 2 else (-1, str(err))
            raise KubeUnavailable(what, None, "", f"{message} (libcurl error {code})") from None
        status = int(curl.getinfo(pycurl.RESPONSE_CODE))
        raw = b"".join(sink.parts)
        try:
            reply = json.loads(raw) if raw else {}
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            reply = {}
        if 200 <= status < 300:
            return reply
        message = reply.get("message") or raw[:200].decode("utf-8", "replace")
        # the status line's reason phrase, as the kubernetes client reports it
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = str(reply.get("reason") or "")
        raise from_status(what, {"code": status, "reason": reason, "message": message})

    def close(self) -> None:
        """Close every thread's handle (and its connection)."""
        with self._lock:
            self._closed = True
            handles, self._handles = self._handles, []
        for curl in handles:
            curl.close()
