"""Sets of seqs kept as contiguous ranges (first, last), both ends included: pure functions.

The ledger keeps which (ent, gw, seq) it received as ranges per gateway (`received_seqs`): a gateway's
seqs grow by one per message, so an hour of messages is one row instead of one per message.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

Range = tuple[int, int]  # first, last (included)


def to_ranges(seqs: Iterable[int]) -> list[Range]:
    """The sorted, disjoint, non-adjacent ranges that hold exactly `seqs`."""
    out: list[Range] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Overlapping or adjacent ranges joined: the same set of seqs, in the fewest ranges."""
    out: list[Range] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def contains(ranges: Sequence[Range], seq: int) -> bool:
    """Whether `seq` is in `ranges` (sorted and disjoint, as `merge` gives them)."""
    i = bisect.bisect_right(ranges, (seq, 2**63)) - 1
    return i >= 0 and ranges[i][0] <= seq <= ranges[i][1]


def claim(held: Iterable[Range], seqs: Iterable[int]) -> tuple[list[int], list[Range]]:
    """The seqs not in `held` (sorted, each once), and the ranges of `held` ∪ `seqs`."""
    ranges = merge(held)
    new = [s for s in sorted(set(seqs)) if not contains(ranges, s)]
    return new, merge([*ranges, *to_ranges(new)])


def size(ranges: Iterable[Range]) -> int:
    """How many seqs the (disjoint) ranges hold."""
    return sum(last - first + 1 for first, last in ranges)
