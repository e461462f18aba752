"""CPUSet: cpu-list and hex-mask parsing/formatting tables, and set-algebra properties
checked against Python's ``set`` on random CPU ids in 0..1023."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topology.cpuset import CPUSet, CPUSetParseError

# --------------------------------------------------------------------------- cpu-list parsing


@pytest.mark.parametrize(
    ("text", "ids", "canonical"),
    [
        pytest.param("0-3,8,10-11", {0, 1, 2, 3, 8, 10, 11}, "0-3,8,10-11", id="ranges-and-singles"),
        pytest.param("", set(), "", id="empty"),
        pytest.param("\n", set(), "", id="empty-sysfs-line"),
        pytest.param("   ", set(), "", id="only-spaces"),
        pytest.param("0-3,8\n", {0, 1, 2, 3, 8}, "0-3,8", id="trailing-newline"),
        pytest.param(" 1 , 3 ", {1, 3}, "1,3", id="spaces-around-tokens"),
        pytest.param("7", {7}, "7", id="single-cpu"),
        pytest.param("4-4", {4}, "4", id="one-element-range"),
        pytest.param("8,0-3", {0, 1, 2, 3, 8}, "0-3,8", id="unsorted-input"),
        pytest.param("0-2,1-5", {0, 1, 2, 3, 4, 5}, "0-5", id="overlapping-ranges-merge"),
        pytest.param("0,1,2,3", {0, 1, 2, 3}, "0-3", id="adjacent-singles-collapse"),
        pytest.param("0-1,2-3", {0, 1, 2, 3}, "0-3", id="adjacent-ranges-collapse"),
        pytest.param("1023", {1023}, "1023", id="high-id"),
        pytest.param("0-27,56-83", set(range(28)) | set(range(56, 84)), "0-27,56-83", id="two-socket-node"),
    ],
)
def test_parse_and_format(text: str, ids: set[int], canonical: str) -> None:
    parsed = CPUSet.parse(text)
    assert set(parsed) == ids
    assert str(parsed) == canonical
    assert len(parsed) == len(ids)


@pytest.mark.parametrize(
    ("text", "bad_token"),
    [
        pytest.param("5-3", "5-3", id="descending-range"),
        pytest.param("1-2-3", "1-2-3", id="double-range"),
        pytest.param("-1", "-1", id="negative"),
        pytest.param("a", "a", id="not-a-number"),
        pytest.param("1,,2", "", id="empty-token"),
        pytest.param("0-3,x,8", "x", id="bad-token-in-middle"),
        pytest.param("1,", "", id="trailing-comma"),
        pytest.param("3-", "3-", id="open-range"),
        pytest.param("0x1", "0x1", id="hex-in-list"),
        pytest.param("\u0663", "\u0663", id="non-ascii-digit"),
    ],
)
def test_parse_rejects_bad_token(text: str, bad_token: str) -> None:
    with pytest.raises(CPUSetParseError) as info:
        CPUSet.parse(text)
    err = info.value
    assert err.token.strip() == bad_token
    assert repr(bad_token) in str(err)
    assert repr(text) in str(err)
    assert isinstance(err, ValueError)


# --------------------------------------------------------------------------- hex masks


@pytest.mark.parametrize(
    ("mask", "canonical"),
    [
        pytest.param("3", "0-1", id="single-digit"),
        pytest.param("ff\n", "0-7", id="one-word-newline"),
        pytest.param("0000ff00", "8-15", id="padded-word"),
        pytest.param("00000001,00000000", "32", id="two-words-msw-first"),
        pytest.param("ffffffff,ffffffff", "0-63", id="two-full-words"),
        pytest.param("0000000f,00000000,000000f0", "4-7,64-67", id="three-words"),
        pytest.param("00000000,0000ff00\x00", "8-15", id="trailing-nul"),
        pytest.param("\x00\x00ff\x00", "0-7", id="nuls-around"),
        pytest.param("0x10", "4", id="0x-prefix"),
        pytest.param("FF", "0-7", id="upper-case"),
        pytest.param("00000000", "", id="zero-mask"),
    ],
)
def test_parse_mask(mask: str, canonical: str) -> None:
    assert str(CPUSet.parse_mask(mask)) == canonical


@pytest.mark.parametrize(
    ("mask", "bad_word"),
    [
        pytest.param("", "", id="empty"),
        pytest.param("\x00\n", "", id="only-nul"),
        pytest.param("fg", "fg", id="non-hex-digit"),
        pytest.param("ff,,ff", "", id="empty-word"),
        pytest.param("123456789", "123456789", id="word-over-8-digits"),
        pytest.param("ff,zz", "zz", id="bad-second-word"),
        pytest.param("0-3", "0-3", id="cpu-list-not-mask"),
    ],
)
def test_parse_mask_rejects_bad_word(mask: str, bad_word: str) -> None:
    with pytest.raises(CPUSetParseError) as info:
        CPUSet.parse_mask(mask)
    assert info.value.token.strip() == bad_word
    assert repr(info.value.token) in str(info.value)


@pytest.mark.parametrize(
    ("cpus", "mask"),
    [
        pytest.param("", "0", id="empty"),
        pytest.param("0-7", "000000ff", id="one-word"),
        pytest.param("32", "00000001,00000000", id="second-word"),
        pytest.param("0,63", "80000000,00000001", id="both-ends"),
    ],
)
def test_to_mask(cpus: str, mask: str) -> None:
    assert CPUSet.parse(cpus).to_mask() == mask


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    "bad",
    [pytest.param(-1, id="negative"), pytest.param(True, id="bool"), pytest.param("1", id="string")],
)
def test_constructor_rejects_non_cpu_ids(bad: object) -> None:
    with pytest.raises(ValueError, match="non-negative integers"):
        CPUSet([bad])  # type: ignore[list-item]


def test_range_of_and_first() -> None:
    assert CPUSet.range(3, 6) == CPUSet.of(3, 4, 5, 6)
    assert CPUSet.of(9, 4).first() == 4
    with pytest.raises(ValueError):
        CPUSet().first()
    with pytest.raises(ValueError):
        CPUSet.range(5, 3)


def test_immutable_and_hashable() -> None:
    s = CPUSet.parse("0-3")
    with pytest.raises(AttributeError):
        s._bits = 0
    assert {s: 1}[CPUSet.of(0, 1, 2, 3)] == 1
    assert s != {0, 1, 2, 3}


# --------------------------------------------------------------------------- properties

ids = st.integers(min_value=0, max_value=1023)
id_sets = st.sets(ids, max_size=80)


def _ranges(values: set[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive ids, ascending (an independent oracle for str())."""
    runs: list[tuple[int, int]] = []
    for v in sorted(values):
        if runs and runs[-1][1] == v - 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _canonical(values: set[int]) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in _ranges(values))


@given(id_sets)
def test_str_is_canonical_cpu_list(values: set[int]) -> None:
    canonical = _canonical(values)
    assert str(CPUSet(values)) == canonical
    assert str(CPUSet.parse(canonical)) == canonical


@given(id_sets)
def test_parse_of_str_round_trips(values: set[int]) -> None:
    x = CPUSet(values)
    assert CPUSet.parse(str(x)) == x


@given(st.lists(st.tuples(ids, st.integers(min_value=0, max_value=40)), max_size=20), st.randoms())
def test_parse_accepts_any_order_and_overlap(spans: list[tuple[int, int]], rnd: object) -> None:
    tokens = [str(a) if n == 0 else f"{a}-{a + n}" for a, n in spans]
    rnd.shuffle(tokens)  # type: ignore[attr-defined]
    expected = {c for a, n in spans for c in range(a, a + n + 1)}
    assert set(CPUSet.parse(",".join(tokens))) == expected


@given(id_sets, id_sets)
def test_algebra_agrees_with_set(a: set[int], b: set[int]) -> None:
    x, y = CPUSet(a), CPUSet(b)
    assert set(x | y) == a | b
    assert set(x & y) == a & b
    assert set(x - y) == a - b
    assert set(x ^ y) == a ^ b
    assert set(x.union(y)) == a | b
    assert set(x.intersection(y)) == a & b
    assert set(x.difference(y)) == a - b
    assert set(x.symmetric_difference(y)) == a ^ b
    assert (x <= y) == (a <= b)
    assert (x < y) == (a < b)
    assert (x >= y) == (a >= b)
    assert (x > y) == (a > b)
    assert x.is_subset_of(y) == a.issubset(b)
    assert x.isdisjoint(y) == a.isdisjoint(b)
    assert (x == y) == (a == b)


@given(id_sets, ids)
def test_container_protocol_agrees_with_set(a: set[int], probe: int) -> None:
    x = CPUSet(a)
    assert len(x) == len(a)
    assert list(x) == sorted(a)
    assert x.sorted() == sorted(a)
    assert bool(x) == bool(a)
    assert (probe in x) == (probe in a)
    if a:
        assert x.first() == min(a)


@given(id_sets)
def test_mask_round_trips(values: set[int]) -> None:
    x = CPUSet(values)
    mask = x.to_mask()
    assert CPUSet.parse_mask(mask) == x
    assert CPUSet.parse_mask(mask + "\x00\n") == x
    assert all(len(w) == 8 for w in mask.split(",")) or not values
