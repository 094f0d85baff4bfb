"""Block planning: greedy merging in address order, per table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.plan import Block, crosses, plan_blocks
from edge_config.modbus import Table

HR, IR, CO, DI = Table.HOLDING_REGISTER, Table.INPUT_REGISTER, Table.COIL, Table.DISCRETE_INPUT


def test_contiguous_tags_make_one_block() -> None:
    spans = [("a", HR, 0, 1), ("b", HR, 1, 2), ("c", HR, 3, 4), ("d", HR, 7, 1)]
    assert plan_blocks(spans) == [Block(HR, 0, 8, ("a", "b", "c", "d"))]


def test_tags_are_sorted_by_address() -> None:
    spans = [("d", HR, 7, 1), ("a", HR, 0, 1), ("c", HR, 3, 4), ("b", HR, 1, 2)]
    assert plan_blocks(spans) == [Block(HR, 0, 8, ("a", "b", "c", "d"))]


def test_gap_up_to_max_gap_is_bridged() -> None:
    # a ends at 2, b starts at 12: gap of 10 unused registers
    spans = [("a", HR, 0, 2), ("b", HR, 12, 2)]
    assert plan_blocks(spans, max_gap=10) == [Block(HR, 0, 14, ("a", "b"))]
    assert plan_blocks(spans, max_gap=9) == [Block(HR, 0, 2, ("a",)), Block(HR, 12, 2, ("b",))]


def test_zero_gap_only_merges_adjacent_tags() -> None:
    spans = [("a", HR, 0, 1), ("b", HR, 1, 1), ("c", HR, 3, 1)]
    assert plan_blocks(spans, max_gap=0) == [Block(HR, 0, 2, ("a", "b")), Block(HR, 3, 1, ("c",))]


def test_125_register_limit_splits() -> None:
    # 100 float32 tags back to back: 200 registers -> 125 + 75 (a float never straddles blocks)
    spans = [(f"t{i}", HR, 2 * i, 2) for i in range(100)]
    blocks = plan_blocks(spans)
    assert [(b.start, b.count) for b in blocks] == [(0, 124), (124, 76)]
    assert len(blocks[0].tags) == 62 and len(blocks[1].tags) == 38
    # uint16 tags fill a block to exactly 125
    blocks = plan_blocks([(f"u{i}", HR, i, 1) for i in range(300)])
    assert [(b.start, b.count) for b in blocks] == [(0, 125), (125, 125), (250, 50)]


def test_lower_max_registers() -> None:
    spans = [(f"u{i}", IR, i, 1) for i in range(10)]
    assert [(b.start, b.count) for b in plan_blocks(spans, max_registers=4)] == [(0, 4), (4, 4), (8, 2)]


def test_bit_tables_use_2000() -> None:
    spans = [(f"c{i}", CO, i, 1) for i in range(2500)]
    blocks = plan_blocks(spans)
    assert [(b.table, b.start, b.count) for b in blocks] == [(CO, 0, 2000), (CO, 2000, 500)]
    # the register limit does not apply to bits
    assert len(plan_blocks(spans[:200], max_registers=10)) == 1


def test_bools_on_bits_of_one_register_share_it() -> None:
    spans = [("status", HR, 10, 1), ("alarm", HR, 10, 1), ("speed", HR, 11, 1), ("text", HR, 11, 4)]
    assert plan_blocks(spans) == [Block(HR, 10, 5, ("status", "alarm", "speed", "text"))]


def test_overlap_does_not_count_as_gap() -> None:
    # a big string, then a tag inside it: the block keeps the string's end
    spans = [("s", HR, 0, 10), ("inner", HR, 3, 1), ("after", HR, 10, 1)]
    assert plan_blocks(spans, max_gap=0) == [Block(HR, 0, 11, ("s", "inner", "after"))]


def test_tables_are_separate_and_ordered() -> None:
    spans = [("ir0", IR, 0, 1), ("hr0", HR, 0, 1), ("di0", DI, 0, 1), ("co0", CO, 0, 1), ("hr1", HR, 1, 1)]
    blocks = plan_blocks(spans)
    assert [(b.table, b.tags) for b in blocks] == [
        (CO, ("co0",)),
        (DI, ("di0",)),
        (HR, ("hr0", "hr1")),
        (IR, ("ir0",)),
    ]


def test_same_offset_keeps_config_order() -> None:
    spans = [("z", HR, 5, 1), ("a", HR, 5, 1)]
    assert plan_blocks(spans)[0].tags == ("z", "a")


def test_empty() -> None:
    assert plan_blocks([]) == []


def test_errors() -> None:
    with pytest.raises(ValueError, match="more than one request"):
        plan_blocks([("s", HR, 0, 20)], max_registers=10)
    with pytest.raises(ValueError, match="beyond address 65535"):
        plan_blocks([("f", HR, 65535, 2)])
    with pytest.raises(ValueError, match="max_registers"):
        plan_blocks([], max_registers=126)
    with pytest.raises(ValueError, match="max_bits"):
        plan_blocks([], max_bits=2001)


def test_every_tag_is_in_exactly_one_block_within_limits() -> None:
    spans = [(f"t{i}", HR, (i * 7919) % 3000, 1 + i % 4) for i in range(400)]
    blocks = plan_blocks(spans, max_registers=60, max_gap=5)
    names = [n for b in blocks for n in b.tags]
    assert sorted(names) == sorted(s[0] for s in spans)
    where = {s[0]: s for s in spans}
    for b in blocks:
        assert 1 <= b.count <= 60
        for n in b.tags:
            _, _, off, cnt = where[n]
            assert b.start <= off and off + cnt <= b.end
    starts = [b.start for b in blocks]
    assert starts == sorted(starts)


# ---------------------------------------------------------------- optimality against an exhaustive search


def _holes_ok(lo: int, hi: int, spans: list[tuple[int, int]], gap: int) -> bool:
    """Every run of addresses in [lo, hi) that no span inside [lo, hi) uses is at most `gap` long."""
    used = set()
    for s, e in spans:
        if lo <= s and e <= hi:
            used.update(range(s, e))
    run = 0
    for a in range(lo, hi):
        run = 0 if a in used else run + 1
        if run > gap:
            return False
    return True


def _optimum(spans: list[tuple[int, int]], limit: int, gap: int, barriers: list[tuple[int, int]]) -> int:
    """Minimum number of valid windows such that every span lies inside one: exact set cover by DP."""
    fenced = {(s, e) for s, e in spans if any(crosses(s, e, b) for b in barriers)}
    covers = set()
    for lo in {s for s, _ in spans}:
        for hi in {e for _, e in spans}:
            if hi <= lo or hi - lo > limit or not _holes_ok(lo, hi, spans, gap):
                continue
            if any(crosses(lo, hi, b) for b in barriers) and (lo, hi) not in fenced:
                continue
            covers.add(sum(1 << i for i, (s, e) in enumerate(spans) if lo <= s and e <= hi))
    full = (1 << len(spans)) - 1
    best = [0] + [len(spans) + 1] * full
    for mask in range(1, full + 1):
        low = mask & -mask  # some window must cover the lowest tag left
        best[mask] = 1 + min(best[mask & ~c] for c in covers if c & low)
    return best[full]


register_tag = st.tuples(st.integers(0, 40), st.sampled_from([1, 1, 1, 2, 2, 4, 3, 6]))
bit_tag = st.tuples(st.integers(0, 120), st.just(1))
barrier = st.tuples(st.integers(0, 46), st.integers(0, 4)).map(lambda t: (t[0], t[0] + t[1]))


@settings(max_examples=300, deadline=None)
@given(
    regs=st.lists(register_tag, min_size=1, max_size=8),
    bits=st.lists(bit_tag, max_size=6),
    max_registers=st.integers(6, 30),
    max_bits=st.integers(1, 60),
    max_gap=st.integers(0, 5),
    fences=st.lists(barrier, max_size=2),
)
def test_plan_is_minimal_and_valid(
    regs: list[tuple[int, int]],
    bits: list[tuple[int, int]],
    max_registers: int,
    max_bits: int,
    max_gap: int,
    fences: list[tuple[int, int]],
) -> None:
    spans = [(f"r{i}", HR, s, c) for i, (s, c) in enumerate(regs)] + [
        (f"b{i}", CO, s, c) for i, (s, c) in enumerate(bits)
    ]
    blocks = plan_blocks(spans, max_registers, max_gap, max_bits, barriers={HR: fences})

    # every tag in exactly one block, wholly inside it
    where = {name: (table, s, c) for name, table, s, c in spans}
    assert sorted(n for b in blocks for n in b.tags) == sorted(where)
    for b in blocks:
        for n in b.tags:
            table, s, c = where[n]
            assert table is b.table and b.start <= s and s + c <= b.end
        # tight, within limits, no wide hole, no barrier crossed (unless reading one fenced tag alone)
        inside = [(s, s + c) for t, s, c in where.values() if t is b.table]
        assert min(where[n][1] for n in b.tags) == b.start
        assert max(where[n][1] + where[n][2] for n in b.tags) == b.end
        if b.table is HR:
            assert b.count <= max_registers and _holes_ok(b.start, b.end, inside, max_gap)
            if any(crosses(b.start, b.end, f) for f in fences):
                assert (b.start, b.end) in {(s, s + c) for s, c in regs}
        else:
            assert b.count <= max_bits and _holes_ok(b.start, b.end, inside, 16 * max_gap)

    # and no plan does it in fewer requests
    hr_blocks = sum(1 for b in blocks if b.table is HR)
    co_blocks = sum(1 for b in blocks if b.table is CO)
    assert hr_blocks == _optimum([(s, s + c) for s, c in regs], max_registers, max_gap, fences)
    if bits:
        assert co_blocks == _optimum([(s, s + c) for s, c in bits], max_bits, 16 * max_gap, [])


def test_barriers_split_blocks() -> None:
    spans = [("a", HR, 0, 1), ("b", HR, 1, 1), ("c", HR, 2, 1), ("d", HR, 3, 1)]
    # a refused register at 2 is never read again; the others still go in as few requests as possible
    assert plan_blocks([s for s in spans if s[0] != "c"], barriers={HR: [(2, 3)]}) == [
        Block(HR, 0, 2, ("a", "b")),
        Block(HR, 3, 1, ("d",)),
    ]
    # a zero-length barrier forbids reading across an address (a device that refuses the whole)
    assert plan_blocks(spans, barriers={HR: [(2, 2)]}) == [Block(HR, 0, 2, ("a", "b")), Block(HR, 2, 2, ("c", "d"))]
    # a tag that holds a refused register is read alone, with the tags nested inside it
    text = [("s", HR, 0, 4), ("inner", HR, 1, 1), ("after", HR, 4, 1)]
    assert plan_blocks(text, barriers={HR: [(3, 4)]}) == [Block(HR, 0, 4, ("s", "inner")), Block(HR, 4, 1, ("after",))]


def test_bit_gap_is_sixteen_bits_per_register() -> None:
    spans = [("c0", CO, 0, 1), ("c1", CO, 33, 1)]
    assert len(plan_blocks(spans, max_gap=2)) == 1  # 32 unused bits = 4 bytes, like 2 registers
    assert len(plan_blocks(spans, max_gap=1)) == 2
