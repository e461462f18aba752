"""k-combinations as kubelet's ``iterateCombinations`` produces them, slice sharing included.

kubelet builds each combination by appending to the previous prefix (Go ``append``), so
combinations that share a prefix also share one backing array past its last growth, and a
combination kept by reference (kubelet keeps its best one that way) reads whatever the
last combination written into that array holds. In v1.34 this decides which NUMA nodes
``distribute-cpus-across-numa`` picks once four or more nodes are combined. This module
reproduces it: :func:`slice_combinations` yields :class:`SharedSlice` views whose
:meth:`~SharedSlice.values` are read when the answer is used, as kubelet reads them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

__all__ = ["SharedSlice", "slice_combinations"]


class SharedSlice:
    """The first *length* items of a backing array that later combinations may overwrite."""

    __slots__ = ("_array", "_length")

    def __init__(self, array: list[int], length: int) -> None:
        self._array, self._length = array, length

    def values(self) -> tuple[int, ...]:
        """The items as they are now."""
        return tuple(self._array[: self._length])

    def __len__(self) -> int:
        return self._length


def _grown_capacity(capacity: int, needed: int) -> int:
    # Go's append on a full []int: double the capacity (small slices), at least what is
    # needed; 8-byte items land exactly on size classes for these powers of two.
    return max(capacity * 2, needed)


def slice_combinations(items: Sequence[int], k: int) -> Iterator[SharedSlice]:
    """Every k-combination of *items* in kubelet's order, as shared slices."""
    if k < 1:
        return

    def helper(start: int, array: list[int], length: int, capacity: int, left: int) -> Iterator[SharedSlice]:
        if left == 0:
            yield SharedSlice(array, length)
            return
        for i in range(start, len(items) - left + 1):
            if length < capacity:
                child, cap = array, capacity
                child[length] = items[i]
            else:
                cap = _grown_capacity(capacity, length + 1)
                child = array[:length] + [items[i]] + [0] * (cap - length - 1)
            yield from helper(i + 1, child, length + 1, cap, left - 1)

    yield from helper(0, [], 0, 0, k)
