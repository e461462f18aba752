"""NUMA node sets as integer bitmasks (bit N set = NUMA node N), and their iteration.

The topology manager compares and intersects NUMA sets many times per admission, so it
works on Python ints internally; :class:`topology.hints.TopologyHint` carries the same
set as a ``frozenset`` at the public surface. Bits are keyed by node *id*, so sparse ids
such as {0, 8} cost nothing and no list is ever indexed by id. Unlike kubelet's uint64
mask, ids are not capped at 63.

Orderings mirror kubelet's ``bitmask`` package:

* *narrower*: fewer nodes; on equal counts, the smaller integer value (so {1,2}=6 is
  narrower than {0,3}=9);
* subset iteration: by size, then lexicographically over the sorted node ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import combinations

from topology.hint_errors import NUMAMaskError

__all__ = ["count", "ids_of", "is_narrower", "iterate_masks", "mask_of", "narrowest"]


def mask_of(ids: Iterable[int]) -> int:
    """The mask with a bit set for every node id in *ids*."""
    mask = 0
    for node in ids:
        if isinstance(node, bool) or not isinstance(node, int) or node < 0:
            raise NUMAMaskError(f"NUMA node ids must be non-negative integers, got {node!r}")
        mask |= 1 << node
    return mask


def ids_of(mask: int) -> frozenset[int]:
    """The node ids whose bits are set in *mask*."""
    return frozenset(_bits(mask))


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def count(mask: int) -> int:
    """Number of nodes in *mask*."""
    return mask.bit_count()


def is_narrower(a: int, b: int) -> bool:
    """True when *a* is narrower than *b*: fewer nodes, then the smaller integer value."""
    ca, cb = a.bit_count(), b.bit_count()
    if ca == cb:
        return a < b
    return ca < cb


def narrowest(a: int, b: int) -> int:
    """The narrower of two masks (*a* when they are equal)."""
    return b if is_narrower(b, a) else a


def iterate_masks(node_ids: Iterable[int]) -> Iterator[int]:
    """Every non-empty subset of *node_ids* as a mask: by size, then lexicographically
    over the sorted ids (kubelet's ``IterateBitMasks`` order)."""
    ordered = sorted(set(node_ids))
    mask_of(ordered)  # validates the ids once
    bits = [1 << node for node in ordered]
    for size in range(1, len(bits) + 1):
        for combo in combinations(bits, size):
            yield sum(combo)
