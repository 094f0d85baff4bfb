"""Report by exception in the Modbus driver: a scan hands over only the tags whose value changed.

What a consumer rebuilds from the changes (the last reading of every covered tag) must be what a
full read gives, scan after scan. In-memory device with registers the test sets.
"""

from __future__ import annotations

import asyncio
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import Changes, Reading
from drivers.modbus.blocks import AllReadings, BlockState, ChangedReadings, Limits, Piece, TagRef
from drivers.modbus.plan import plan_blocks
from drivers.modbus.protocol import DeviceException
from edge_config.modbus import Table

HR = Table.HOLDING_REGISTER

# hr:0 uint16, hr:1 int32 BADC, hr:3 float32 CDAB, hr:5 bits 0 and 9, hr:6 string of 2, hr:8 uint64
TAGS = [
    TagRef(0, "u16", HR, 0, 1, "uint16", "ABCD"),
    TagRef(1, "i32", HR, 1, 2, "int32", "BADC"),
    TagRef(2, "f32", HR, 3, 2, "float32", "CDAB"),
    TagRef(3, "bit0", HR, 5, 1, "bool", "ABCD", bit=0),
    TagRef(4, "bit9", HR, 5, 1, "bool", "ABCD", bit=9),
    TagRef(5, "text", HR, 6, 2, "string", "ABCD", length=2),
    TagRef(6, "u64", HR, 8, 4, "uint64", "ABCD"),
]
SIZE = 12


class Registers:
    """Holding registers 0..SIZE-1; addresses in `refused` answer exception 2."""

    def __init__(self) -> None:
        self.words = [0] * SIZE
        self.refused: set[int] = set()

    async def request(self, piece: Piece) -> bytes:
        if any(piece.start <= a < piece.end for a in self.refused):
            raise DeviceException(2)
        return struct.pack(f">{piece.count}H", *self.words[piece.start : piece.end])


def block_state() -> BlockState:
    (block,) = plan_blocks([t.span for t in TAGS])
    return BlockState(block, TAGS, Limits(), "dev")


async def changes(s: BlockState, dev: Registers, ts: int) -> Changes:
    sink = ChangedReadings(ts)
    await s.read(dev.request, sink, now=0.0)
    return sink.changes


async def full(s: BlockState, dev: Registers, ts: int) -> list[Reading]:
    sink = AllReadings(len(TAGS), ts)
    await s.read(dev.request, sink, now=0.0)
    return sink.readings()


async def test_first_scan_reports_every_tag_then_only_changes() -> None:
    dev, s = Registers(), block_state()
    first = await changes(s, dev, 1)
    assert [r.tag for r in first.readings] == [t.name for t in TAGS]
    assert all(type(r) is Reading and r == Reading(r.tag, r.value, 1) for r in first.readings)
    assert (first.read, first.bad) == (7, 0)
    assert [n for ts in first.covered for n in ts.names] == [t.name for t in TAGS]

    same = await changes(s, dev, 2)
    assert same.readings == [] and (same.read, same.bad) == (7, 0)
    assert [n for ts in same.covered for n in ts.names] == [t.name for t in TAGS]

    dev.words[5] = 0x0200  # bit 9 only
    dev.words[2] = 7  # low word of i32
    moved = await changes(s, dev, 3)
    assert moved.readings == [Reading("i32", 0x0700, 3), Reading("bit9", True, 3)]

    s.forget()  # after a reconnect
    assert len((await changes(s, dev, 4)).readings) == 7


async def test_refused_addresses_are_reported_bad_every_scan_and_counted() -> None:
    dev, s = Registers(), block_state()
    dev.refused = {6}  # the string
    await changes(s, dev, 1)  # isolation: the neighbours read, the string is bad
    replanned = await changes(s, dev, 2)  # new pieces around the refused string: every tag once more
    assert len(replanned.readings) == 7
    scan = await changes(s, dev, 3)
    assert [(r.tag, r.quality) for r in scan.readings] == [("text", "bad")]
    assert (scan.read, scan.bad) == (7, 1)
    assert "text" not in {n for ts in scan.covered for n in ts.names}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, SIZE - 1), st.integers(0, 0xFFFF)), max_size=4), max_size=12))
def test_the_changes_rebuild_what_a_full_read_gives(writes: list[list[tuple[int, int]]]) -> None:
    asyncio.run(rebuild(writes))


async def rebuild(writes: list[list[tuple[int, int]]]) -> None:
    dev, s, ref = Registers(), block_state(), block_state()
    seen: dict[str, Reading] = {}
    for ts, step in enumerate(writes):
        for address, value in step:
            dev.words[address] = value
        scan = await changes(s, dev, ts)
        for r in scan.readings:
            seen[r.tag] = r
        assert scan.read == len(TAGS) and {n for c in scan.covered for n in c.names} == set(seen)
        rebuilt = [seen[t.name] for t in TAGS]
        want = await full(ref, dev, ts)
        # repr: a NaN float32 equals nothing, not even itself; the timestamp is when it last changed
        assert [repr((r.tag, r.value, r.quality)) for r in rebuilt] == [repr((r.tag, r.value, r.quality)) for r in want]
