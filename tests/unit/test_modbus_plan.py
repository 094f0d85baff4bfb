"""Block planning: greedy merging in address order, per table."""

from __future__ import annotations

import pytest

from drivers.modbus.plan import Block, plan_blocks
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
