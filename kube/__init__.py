"""What the API server says: the pod model and topolet's one adapter for the Kubernetes API.

The bottom layer beside :mod:`topology` (it may import only :mod:`topology`) and the only
importer of the official ``kubernetes`` client:

* :mod:`kube.pod` — the one pod model: QoS class, exclusive CPUs, hugepages, devices,
  init-container reuse and sidecars as kubelet counts them;
* :mod:`kube.pod_claims` — a pod's DRA claims and the containers that use each, read
  with the bounded field readers of :mod:`kube.bounded`;
* :mod:`kube.errors` — the one place where ``ApiException`` and urllib3 errors become
  topolet errors (:class:`~kube.errors.KubeError` and its kinds);
* :mod:`kube.watch` — the one list/watch loop (resourceVersion, bookmarks, ``410 Gone`` →
  relist with the deletions missed, backoff with jitter, a clean stop);
* :mod:`kube.client` — an ``ApiClient`` from a kubeconfig, the service account or a URL;
* :mod:`kube.resources` — the calls topolet makes on pods, nodes, NodeResourceTopology
  objects, ResourceSlices and ResourceClaims, plain JSON both ways.
"""
