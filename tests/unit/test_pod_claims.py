"""kube.pod_claims: a pod's ResourceClaims and the containers that use each, bounded; a
malformed pod fails as the pod model's InvalidPodError naming the field (the scheduler's
wrapper turns it into PodSpecError, tested in test_extender_claims)."""

from __future__ import annotations

from typing import Any

import pytest

from kube.pod import InvalidPodError
from kube.pod_claims import MAX_POD_CLAIMS, pod_claims


def claimed_pod() -> dict[str, Any]:
    res = {"claims": [{"name": "gpu"}, {"name": "nic"}]}
    return {
        "metadata": {"name": "p", "namespace": "ml"},
        "spec": {
            "initContainers": [{"name": "warm", "resources": {"claims": [{"name": "nic"}]}}],
            "containers": [{"name": "app", "resources": res}, {"name": "side"}],
            "resourceClaims": [
                {"name": "gpu", "resourceClaimName": "gpu-claim"},
                {"name": "nic", "resourceClaimTemplateName": "nic-template"},
            ],
        },
        "status": {"resourceClaimStatuses": [{"name": "nic", "resourceClaimName": "p-nic-x7"}]},
    }


def test_claims_of_each_container_direct_and_generated() -> None:
    claims = pod_claims(claimed_pod())
    assert claims is not None and claims.namespace == "ml"
    assert claims.claims_of("app") == {"gpu-claim", "p-nic-x7"}
    assert claims.claims_of("warm") == {"p-nic-x7"}
    assert claims.claims_of("side") == frozenset() and claims.claims_of("nobody") == frozenset()


def test_a_template_claim_not_generated_yet_names_nothing() -> None:
    pod = claimed_pod()
    del pod["status"]
    claims = pod_claims(pod)
    assert claims is not None and claims.claims_of("app") == {"gpu-claim"}
    assert claims.entries_of("app") == {"gpu", "nic"}


def test_a_pod_without_claims_has_none() -> None:
    assert pod_claims({"spec": {"containers": [{"name": "a"}]}}) is None


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p["spec"].update(resourceClaims=[{"name": f"c{i}"} for i in range(MAX_POD_CLAIMS + 1)]),
         "spec.resourceClaims"),
        (lambda p: p["spec"]["resourceClaims"][0].update(resourceClaimName="x" * 254),
         "spec.resourceClaims[0].resourceClaimName"),
        (lambda p: p["status"].update(resourceClaimStatuses="nic"), "status.resourceClaimStatuses"),
        (lambda p: p["spec"]["containers"][0]["resources"].update(claims=[7]),
         "spec.containers[0].resources.claims[0]"),
    ],
)  # fmt: skip
def test_malformed_claim_fields_fail_as_invalid_pod_naming_the_field(mutate: Any, field: str) -> None:
    pod = claimed_pod()
    mutate(pod)
    with pytest.raises(InvalidPodError) as err:
        pod_claims(pod)
    assert err.value.field == field and str(err.value).startswith(f"pod {field}: expected ")
    assert len(str(err.value)) < 200  # the value shown is cut, not echoed whole
