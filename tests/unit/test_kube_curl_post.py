"""Binds through libcurl (kube.curl_post): the Binding the API server receives, refusals
as the kube.errors kinds the kubernetes client path gives (same kind, same message),
a token read through the client's refresh hook on every request, and the bounds: no
answer, an answer that never ends, a reply over the cap."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from bench.kube_certs import Pki, make_pki
from kube import curl_post
from kube.curl_post import CurlPoster, unsupported
from kube.errors import KubeConflict, KubeError, KubeNotFound, KubeUnavailable
from kube.resources import Pods
from tests.apiserver_standin import ApiServerStandIn
from tests.extender_helpers import GU, v1_pod


@pytest.fixture
def apiserver() -> Iterator[ApiServerStandIn]:
    server = ApiServerStandIn().start()
    yield server
    server.stop()


def _api(url: str, configure: Callable[[client.Configuration], None] | None = None) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = url
    if configure is not None:
        configure(cfg)
    return client.ApiClient(cfg)


def _pod(apiserver: ApiServerStandIn, name: str) -> tuple[str, str, str]:
    meta = apiserver.put_pod(v1_pod(name, ("a", GU, {"cpu": "1", "memory": "1Gi"})))["metadata"]
    return meta["namespace"], meta["name"], meta["uid"]


def test_the_binding_sent_is_the_one_the_kubernetes_client_sends(apiserver: ApiServerStandIn) -> None:
    curl = Pods(_api(apiserver.url))
    plain = Pods(_api(apiserver.url, lambda c: setattr(c, "tls_server_name", "x")))
    assert (curl.transport, plain.transport) == ("libcurl", "kubernetes-client")
    for pods, name in ((curl, "by-curl"), (plain, "by-client")):
        ns, pod, uid = _pod(apiserver, name)
        pods.bind(ns, pod, uid, "w1")
    by_curl, by_client = apiserver.bindings
    assert by_curl["metadata"]["name"] == "by-curl"
    by_curl["metadata"]["name"] = "by-client"
    by_curl["metadata"]["uid"] = by_client["metadata"]["uid"]
    assert by_curl == by_client
    (path, headers), _ = apiserver.posts
    assert path == "/api/v1/namespaces/default/pods/by-curl/binding"
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers


@pytest.mark.parametrize("tls_name", ["", "x"], ids=["libcurl", "kubernetes-client"])
def test_refusals_are_the_same_kinds_and_messages_either_way(
    apiserver: ApiServerStandIn, tls_name: str
) -> None:
    pods = Pods(_api(apiserver.url, lambda c: setattr(c, "tls_server_name", tls_name or None)))
    ns, name, uid = _pod(apiserver, "twice")
    pods.bind(ns, name, uid, "w1")
    with pytest.raises(KubeConflict) as conflict:
        pods.bind(ns, name, uid, "w2")
    assert conflict.value.status == 409
    assert str(conflict.value) == (
        f"bind pod {ns}/{name} to w2: API server answered 409 Conflict: Operation cannot be "
        f'fulfilled on pods/binding "{name}": pod {name} is already assigned to node "w1"'
    )
    with pytest.raises(KubeNotFound) as missing:
        pods.bind(ns, "nobody", "", "w1")
    assert str(missing.value) == (
        f'bind pod {ns}/nobody to w1: API server answered 404 Not Found: pods "nobody" not found'
    )


def test_the_token_is_read_through_the_refresh_hook_on_every_request(apiserver: ApiServerStandIn) -> None:
    tokens = iter(["first", "second"])

    def refresh(cfg: client.Configuration) -> None:
        cfg.api_key["authorization"] = next(tokens)

    def configure(cfg: client.Configuration) -> None:
        cfg.api_key = {"authorization": "stale"}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        cfg.refresh_api_key_hook = refresh  # type: ignore[assignment]

    pods = Pods(_api(apiserver.url, configure))
    assert pods.transport == "libcurl"
    for name in ("t1", "t2"):
        pods.bind(*_pod(apiserver, name), "w1")
    assert [h["authorization"] for _, h in apiserver.posts] == ["Bearer first", "Bearer second"]


def test_no_server_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(KubeUnavailable, match=r"^bind pod ns/p to w1: .*libcurl error 7"):
        Pods(_api(f"http://127.0.0.1:{port}")).bind("ns", "p", "", "w1")


def test_a_server_that_never_answers_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(curl_post, "REQUEST_TIMEOUT_S", 0.3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)  # the kernel completes the handshake; nobody reads or answers
        poster = CurlPoster(_api(f"http://127.0.0.1:{s.getsockname()[1]}"))
        with pytest.raises(KubeUnavailable, match="libcurl error 28"):
            poster.post("/api/v1/namespaces/ns/pods/p/binding", b"{}", "bind")


def test_a_reply_over_the_cap_is_cut(apiserver: ApiServerStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(curl_post, "MAX_REPLY", 16)  # a Status reply is longer
    ns, name, uid = _pod(apiserver, "big")
    with pytest.raises(KubeError, match=r"reply over 16 bytes"):
        Pods(_api(apiserver.url)).bind(ns, name, uid, "w1")


def test_each_thread_has_its_own_handle(apiserver: ApiServerStandIn) -> None:
    pods = Pods(_api(apiserver.url))
    made = [_pod(apiserver, f"th-{i}") for i in range(40)]
    errors: list[BaseException] = []

    def run(part: list[tuple[str, str, str]]) -> None:
        try:
            for ns, name, uid in part:
                pods.bind(ns, name, uid, "w1")
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(made[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(b["metadata"]["name"] for b in apiserver.bindings) == sorted(n for _, n, _ in made)
    assert apiserver.connections == 4
    pods.close()
    with pytest.raises(KubeUnavailable, match="closed"):
        pods.bind(*_pod(apiserver, "late"), "w1")


@pytest.mark.parametrize(
    ("setting", "value"),
    [("proxy", "http://proxy:3128"), ("tls_server_name", "api"), ("assert_hostname", "api")],
)
def test_settings_libcurl_is_not_given_keep_the_kubernetes_client(setting: str, value: str) -> None:
    api = _api("https://127.0.0.1:6443", lambda c: setattr(c, setting, value))
    assert unsupported(api) == f"the client sets {setting}"
    assert CurlPoster.for_client(api) is None
    assert Pods(api).transport == "kubernetes-client"
    with pytest.raises(ValueError, match=setting):
        CurlPoster(api)
    assert "neither" in unsupported(_api("unix:///run/api.sock"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_apiserver(pki: Pki) -> Iterator[ApiServerStandIn]:
    """The stand-in over TLS, asking for a client certificate signed by the test CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.serving.cert, pki.serving.key)
    ctx.load_verify_locations(pki.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = ApiServerStandIn(tls=ctx).start()
    yield server
    server.stop()


def test_tls_with_the_clients_ca_and_certificate(tls_apiserver: ApiServerStandIn, pki: Pki) -> None:
    cert = pki.client("binder", "topolet-extender")

    def configure(cfg: client.Configuration) -> None:
        cfg.ssl_ca_cert = str(pki.ca)
        cfg.cert_file, cfg.key_file = str(cert.cert), str(cert.key)

    pods = Pods(_api(tls_apiserver.url, configure))
    assert pods.transport == "libcurl" and tls_apiserver.url.startswith("https://")
    pods.bind(*_pod(tls_apiserver, "over-tls"), "w1")
    assert [b["metadata"]["name"] for b in tls_apiserver.bindings] == ["over-tls"]


def test_tls_without_the_ca_verifies_against_the_default_bundle_and_fails(
    tls_apiserver: ApiServerStandIn, pki: Pki
) -> None:
    cert = pki.client("binder", "topolet-extender")

    def configure(cfg: client.Configuration) -> None:
        cfg.cert_file, cfg.key_file = str(cert.cert), str(cert.key)

    # the test CA is in no public bundle: libcurl refuses the server's certificate
    with pytest.raises(KubeUnavailable, match="libcurl error 60"):
        Pods(_api(tls_apiserver.url, configure)).bind(*_pod(tls_apiserver, "unverified"), "w1")
    assert tls_apiserver.bindings == []

    def insecure(cfg: client.Configuration) -> None:
        configure(cfg)
        cfg.verify_ssl = False

    Pods(_api(tls_apiserver.url, insecure)).bind(*_pod(tls_apiserver, "insecure"), "w1")
    assert [b["metadata"]["name"] for b in tls_apiserver.bindings] == ["insecure"]


def test_tls_without_a_client_certificate_is_refused(tls_apiserver: ApiServerStandIn, pki: Pki) -> None:
    pods = Pods(_api(tls_apiserver.url, lambda c: setattr(c, "ssl_ca_cert", str(pki.ca))))
    with pytest.raises(KubeUnavailable, match="libcurl error"):
        pods.bind(*_pod(tls_apiserver, "no-cert"), "w1")
    assert tls_apiserver.bindings == []
