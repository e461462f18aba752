"""topolet's cpu_manager_state encoding against kubelet's own, byte for byte."""

from __future__ import annotations

from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from cpumanager.checkpoint_format import CPUManagerCheckpoint, encode
from tests.oracle_client import Oracle
from topology.cpuset import CPUSet

_cpusets = st.sets(st.integers(0, 300), max_size=12).map(CPUSet)
_names = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)


def test_checkpoint_matches_kubelet(oracle: Oracle) -> None:
    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(
        policy=st.sampled_from(["static", "none"]),
        default=_cpusets,
        entries=st.dictionaries(
            _names, st.dictionaries(_names, _cpusets, min_size=1, max_size=3), max_size=4
        ),
    )
    def check(policy: str, default: CPUSet, entries: dict[str, dict[str, CPUSet]]) -> None:
        want = oracle.ask(
            {
                "op": "checkpoint",
                "policy": policy,
                "default": str(default),
                "entries": {p: {c: str(s) for c, s in cs.items()} for p, cs in entries.items()},
            }
        )
        frozen = MappingProxyType({p: MappingProxyType(dict(cs)) for p, cs in entries.items()})
        assert encode(CPUManagerCheckpoint(policy, default, frozen)) == want["blob"]

    check()
