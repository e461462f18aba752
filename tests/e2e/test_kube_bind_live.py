"""Bindings through libcurl (kube.curl_post) against the real kube-apiserver, over TLS
with the admin kubeconfig's client certificate: the pod is bound to the node asked
for, and binding it again is refused as a conflict with the API server's message."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kube.errors import KubeConflict, KubeNotFound
from kube.resources import Pods
from tests.e2e.cluster import E2ECluster

NAMESPACE = "default"


def test_a_binding_through_libcurl_binds_and_a_second_is_refused(cluster: E2ECluster) -> None:
    core: Any = cluster.core
    node = next(iter(cluster.topologies))
    name = "e2e-curl-bind"
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        # a scheduler nobody runs: only this test binds the pod
        "spec": {"schedulerName": "e2e-nobody", "containers": [{"name": "c", "image": "none"}]},
    }
    made = json.loads(core.create_namespaced_pod(NAMESPACE, body, _preload_content=False).data)
    uid = str(made["metadata"]["uid"])
    pods = Pods(cluster.api)
    try:
        assert pods.transport == "libcurl"
        assert str(cluster.api.configuration.host).startswith("https://")
        pods.bind(NAMESPACE, name, uid, node)
        read = json.loads(core.read_namespaced_pod(name, NAMESPACE, _preload_content=False).data)
        assert read["spec"]["nodeName"] == node
        with pytest.raises(KubeConflict, match=rf"409 Conflict: .*already assigned to node \"{node}\""):
            pods.bind(NAMESPACE, name, uid, node)
        with pytest.raises(KubeNotFound, match="404 Not Found"):
            pods.bind(NAMESPACE, "e2e-no-such-pod", "", node)
    finally:
        pods.close()
        core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
