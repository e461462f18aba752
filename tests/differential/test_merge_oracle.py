"""topolet's topology-manager hint merge against kubelet's own ``Policy.Merge``.

Random NUMA machines (1-8 nodes, sparse ids, random distances), every policy, the policy
options, and random provider answers (nil maps, nil and empty hint lists, nil and empty
affinities, preferred or not). The merged hint and the admit decision, or the error,
must be kubelet's.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.differential.machines import merge_requests
from tests.oracle_client import Oracle
from topology.hint_errors import HintError
from topology.hint_types import NUMAInfo, ProviderHints, TopologyHint
from topology.hints import PolicyOptions, merge_hints

MIN_STEPS = 10_000


def providers(raw: list[Any]) -> list[ProviderHints]:
    out: list[ProviderHints] = []
    for p in raw:
        if p is None:
            out.append(None)
            continue
        out.append(
            {
                res: None
                if hints is None
                else [TopologyHint.on(h["numa"], preferred=h["preferred"]) for h in hints]
                for res, hints in p.items()
            }
        )
    return out


def topolet_merge(req: dict[str, Any]) -> dict[str, Any]:
    try:
        options = PolicyOptions.parse(req["options"])
        table = {int(a): {int(b): d for b, d in row.items()} for a, row in req["distances"].items()}
        info = NUMAInfo(tuple(req["nodes"]), table)
        hint, admit = merge_hints(providers(req["providers"]), info, req["policy"], options)
    except HintError as e:
        return {"error": str(e)}
    numa = None if hint.numa_affinity is None else sorted(hint.numa_affinity)
    return {"error": "", "numa": numa, "preferred": hint.preferred, "admit": admit}


@pytest.mark.timeout(900)
def test_merge_matches_kubelet(oracle: Oracle) -> None:
    steps = 0

    @settings(
        max_examples=MIN_STEPS,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(req=merge_requests())
    def check(req: dict[str, Any]) -> None:
        nonlocal steps
        want = oracle.ask(req)
        got = topolet_merge(req)
        steps += 1
        if want["error"] or got["error"]:
            assert bool(want["error"]) == bool(got["error"]), f"kubelet {want} != topolet {got}"
            return
        assert got == want, f"merge of {req}"

    check()
    assert steps >= MIN_STEPS, f"only {steps} merges compared (want {MIN_STEPS})"
