"""The extender's hint providers: the subset table gives exactly the hints, in kubelet's
order, that the subset-by-subset walk gives, on random zones (up to the table's 10 zones,
sparse zones, amounts near the int64 guard)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.admission import _hints_for, _hints_one_by_one
from scheduler.views import Item

_AMOUNT = st.one_of(st.integers(0, 64_000), st.integers(0, 2**61))


@st.composite
def _case(draw: st.DrawFn) -> tuple[Item, dict[int, dict[str, int]], dict[int, dict[str, int]]]:
    ids = draw(st.lists(st.integers(0, 63), min_size=0, max_size=11, unique=True))
    zones: dict[int, dict[str, int]] = {}
    allocatable: dict[int, dict[str, int]] = {}
    for n in ids:
        reports = draw(st.booleans()) or len(ids) < 3
        zones[n] = {"cpu": draw(_AMOUNT)} if reports else {"memory": 1}
        if draw(st.booleans()):
            allocatable[n] = {"cpu": draw(_AMOUNT)}
    amount = draw(_AMOUNT)
    need = draw(st.sampled_from([0, amount, amount // 2]))
    return Item("cpu", amount, need, False, True), zones, allocatable


@settings(max_examples=400, deadline=None)
@given(_case())
def test_the_subset_table_gives_the_walks_hints(
    case: tuple[Item, dict[int, dict[str, int]], dict[int, dict[str, int]]],
) -> None:
    item, zones, allocatable = case
    ids = tuple(sorted(n for n, avail in zones.items() if item.name in avail))
    got = _hints_for(item, zones, allocatable)
    if not ids:
        assert got is None
        return
    assert got == _hints_one_by_one(item, ids, zones, allocatable)


def test_a_two_socket_node() -> None:
    zones = {0: {"cpu": 6000}, 1: {"cpu": 16000}}
    allocatable = {0: {"cpu": 16000}, 1: {"cpu": 16000}}
    hints = _hints_for(Item("cpu", 8000, 8000, False, True), zones, allocatable)
    assert hints is not None
    assert [(sorted(h.numa_affinity or ()), h.preferred) for h in hints] == [([1], True), ([0, 1], False)]
