"""An API client: from a kubeconfig file, the pod's service account, or a plain URL."""

from __future__ import annotations

from kubernetes import client as _client
from kubernetes import config as _config

from kube.errors import KubeConfigError

__all__ = ["ApiClient", "api_client", "api_client_for_url"]

#: The official client's connection object; pass it to :mod:`kube.resources`.
ApiClient = _client.ApiClient


def api_client(kubeconfig: str = "") -> ApiClient:
    """A client from *kubeconfig*, or in-cluster when it is empty. A missing or unusable
    configuration raises :class:`~kube.errors.KubeConfigError` (a ValueError) saying what to set."""
    try:
        if kubeconfig:
            made: ApiClient = _config.new_client_from_config(config_file=kubeconfig)
            return made
        conf = _client.Configuration()
        _config.load_incluster_config(client_configuration=conf)
    except (_config.ConfigException, OSError) as e:
        where = kubeconfig or "in-cluster service account"
        raise KubeConfigError(
            "kubeconfig",
            None,
            "",
            f"cannot use {where}: {e}; set kubeconfig to a kubeconfig file, or run inside the cluster",
        ) from e
    return ApiClient(conf)


def api_client_for_url(url: str) -> ApiClient:
    """A client for an API server at *url* with no credentials (loopback test servers)."""
    conf = _client.Configuration()
    conf.host = url
    return ApiClient(conf)
