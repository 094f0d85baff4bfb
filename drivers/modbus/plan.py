"""Block planning: the fewest Modbus requests that read a device's tags. Pure, no I/O.

A block is one read request: a window [start, end) of one table. It is *valid* when

- it reads at most the request limit (`max_registers`, or `max_bits` for coils and discrete inputs),
- every run of addresses in it that no tag inside it uses is at most the largest gap worth bridging
  (`max_gap` registers, or `16 × max_gap` bits: the same bytes on the wire), and
- it crosses no *barrier*: address ranges the device is known to refuse, found by bad-address
  isolation (a zero-length barrier `(p, p)` forbids reading across address p).

`plan_blocks` returns the minimum number of valid blocks such that every tag lies wholly inside one.
The greedy below is optimal (tests check it against an exhaustive search): take the uncovered tag
that starts first at `s`; some block must contain it, and any block starting before `s` covers no
more uncovered tags than one starting at `s` with the same end, so choose the valid block from `s`
that reaches furthest. Whether a window is valid does not depend on which tags are covered yet, so
the furthest-reaching choice never leaves more work than any other (the usual exchange argument).

A tag that itself overlaps a barrier (a string holding a refused register) is read alone.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from edge_config.modbus import Table

MAX_REGISTERS = 125  # Modbus limit of FC 3/4
MAX_BITS = 2000  # Modbus limit of FC 1/2
BITS_PER_GAP_REGISTER = 16  # a gap of g registers costs as many bytes as 16·g bits

# tables in the order their blocks are read
TABLE_ORDER: dict[Table, int] = {
    t: i for i, t in enumerate((Table.COIL, Table.DISCRETE_INPUT, Table.HOLDING_REGISTER, Table.INPUT_REGISTER))
}

# (tag name, table, zero-based offset, registers or bits the tag occupies)
Span = tuple[str, Table, int, int]
# an address range [start, end) the device refuses; (p, p) forbids reading across p
Barrier = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers (or bits) of `table` from `start`, covering `tags`."""

    table: Table
    start: int
    count: int
    tags: tuple[str, ...] = ()

    @property
    def end(self) -> int:
        """First address after the block."""
        return self.start + self.count


def crosses(start: int, end: int, barrier: Barrier) -> bool:
    """Does the window [start, end) read any address of `barrier` (or across a zero-length one)?"""
    lo, hi = barrier
    if hi > lo:
        return start < hi and lo < end
    return start < lo < end


def plan_blocks(
    spans: Iterable[Span],
    max_registers: int = MAX_REGISTERS,
    max_gap: int = 16,
    max_bits: int = MAX_BITS,
    barriers: Mapping[Table, Sequence[Barrier]] | None = None,
) -> list[Block]:
    """The fewest blocks that read every span, sorted by table then address.

    Tags at the same offset keep their config order inside a block. Raises ValueError for a tag
    larger than one request reads or beyond address 65535.
    """
    if not 1 <= max_registers <= MAX_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MAX_REGISTERS}, not {max_registers}")
    if not 1 <= max_bits <= MAX_BITS:
        raise ValueError(f"max_bits must be 1..{MAX_BITS}, not {max_bits}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be 0 or more, not {max_gap}")

    by_table: dict[Table, list[Span]] = {}
    for span in spans:
        name, table, offset, count = span
        limit = max_bits if table.is_bit else max_registers
        if count < 1:
            raise ValueError(f"tag {name!r}: count must be 1 or more")
        if count > limit:
            raise ValueError(f"tag {name!r} needs {count} registers, more than one request reads ({limit})")
        if offset < 0 or offset + count > 65536:
            raise ValueError(f"tag {name!r}: {table.value}:{offset} + {count} is beyond address 65535")
        by_table.setdefault(table, []).append(span)

    blocks: list[Block] = []
    for table in sorted(by_table, key=TABLE_ORDER.__getitem__):
        limit, gap = (max_bits, max_gap * BITS_PER_GAP_REGISTER) if table.is_bit else (max_registers, max_gap)
        fences = sorted((barriers or {}).get(table, ()))
        blocks.extend(_plan_table(table, by_table[table], limit, gap, fences))
    return blocks


def _plan_table(table: Table, spans: list[Span], limit: int, gap: int, fences: list[Barrier]) -> list[Block]:
    order = sorted(spans, key=lambda s: s[2])  # stable: config order on ties
    starts = [s[2] for s in order]
    ends = [s[2] + s[3] for s in order]
    done = [False] * len(order)
    taken: list[list[int]] = []  # tag indices of each block, in address order

    # tags that overlap a barrier are read alone; the largest first, so tags nested in one share its read
    fenced = [i for i in range(len(order)) if any(crosses(starts[i], ends[i], f) for f in fences)]
    for i in sorted(fenced, key=lambda i: (starts[i] - ends[i], starts[i])):
        if not done[i]:
            taken.append(_take(starts[i], ends[i], starts, ends, done))

    fence_starts = [lo for lo, _ in fences]  # sorted, as `fences` is
    for i in range(len(order)):
        if done[i]:
            continue
        s = starts[i]
        reach = s + limit
        k = bisect.bisect_right(fence_starts, s)
        if k < len(fence_starts):
            reach = min(reach, fence_starts[k])
        taken.append(_take(s, _furthest_end(s, reach, ends[i], starts, ends, gap), starts, ends, done))

    blocks = []
    for idx in taken:
        lo, hi = starts[idx[0]], max(ends[j] for j in idx)
        blocks.append(Block(table, lo, hi - lo, tuple(order[j][0] for j in idx)))
    blocks.sort(key=lambda b: (b.start, b.end))
    return blocks


def _take(lo: int, hi: int, starts: list[int], ends: list[int], done: list[bool]) -> list[int]:
    """Mark and return the tags not yet taken that lie wholly inside [lo, hi)."""
    out = []
    for j in range(bisect.bisect_left(starts, lo), bisect.bisect_left(starts, hi)):
        if not done[j] and ends[j] <= hi:
            done[j] = True
            out.append(j)
    return out


def _furthest_end(s: int, reach: int, min_end: int, starts: list[int], ends: list[int], gap: int) -> int:
    """The largest end b ≤ reach such that [s, b) holds the tag ending at `min_end` and no hole > gap.

    Tags are added in order of their end; the union of what is added is kept as sorted disjoint
    intervals with a count of the holes wider than `gap`. A window is valid right after every tag
    ending at its end has been added and no wide hole remains.
    """
    lo_i = bisect.bisect_left(starts, s)
    hi_i = bisect.bisect_left(starts, reach)
    cand = sorted((ends[j], starts[j]) for j in range(lo_i, hi_i) if ends[j] <= reach)
    union: list[list[int]] = []  # [start, end] disjoint, sorted, non-touching
    wide = 0
    best = min_end
    for idx, (e, st) in enumerate(cand):
        # merge [st, e): e is the largest end so far, so it absorbs every interval ending at or after st
        new_lo = st
        while union and union[-1][1] >= st:
            last = union.pop()
            new_lo = min(new_lo, last[0])
            if union and last[0] - union[-1][1] > gap:
                wide -= 1
        if union and new_lo - union[-1][1] > gap:
            wide += 1
        union.append([new_lo, e])
        last_of_end = idx + 1 == len(cand) or cand[idx + 1][0] != e
        if last_of_end and e >= min_end and wide == 0 and union[0][0] == s:
            best = e
    return best
