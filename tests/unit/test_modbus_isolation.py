"""Bad-address isolation: find the refused registers, keep the plan, re-try rarely. In-memory device."""

from __future__ import annotations

import struct

from drivers.base import Reading
from drivers.modbus.blocks import AllReadings, BlockState, Limits, Piece, TagRef, clean_cut
from drivers.modbus.plan import plan_blocks
from drivers.modbus.protocol import DeviceException
from edge_config.modbus import Table

HR = Table.HOLDING_REGISTER


class Device:
    """Register a holds the value a; `refused` addresses answer exception 2; larger reads than
    `max_count` answer exception 3."""

    def __init__(self, refused: set[int] | None = None, max_count: int | None = None) -> None:
        self.refused = refused or set()
        self.max_count = max_count
        self.requests: list[tuple[int, int]] = []

    async def request(self, piece: Piece) -> bytes:
        self.requests.append((piece.start, piece.count))
        if self.max_count is not None and piece.count > self.max_count:
            raise DeviceException(3)
        if any(piece.start <= a < piece.end for a in self.refused):
            raise DeviceException(2)
        return struct.pack(f">{piece.count}H", *range(piece.start, piece.end))


def refs(*spans: tuple[int, int]) -> list[TagRef]:
    return [
        TagRef(i, f"t{off}", HR, off, n, "uint16" if n == 1 else "string", "ABCD", None, None if n == 1 else n)
        for i, (off, n) in enumerate(spans)
    ]


def state(tags: list[TagRef], max_gap: int = 16, bad_retry: float = 60.0) -> BlockState:
    (block,) = plan_blocks([t.span for t in tags], max_gap=max_gap)
    return BlockState(block, tags, Limits(max_gap=max_gap, bad_retry=bad_retry), "dev")


async def scan(s: BlockState, dev: Device, now: float) -> list[Reading]:
    sink = AllReadings(len(s.refs), ts=1)
    dev.requests.clear()
    await s.read(dev.request, sink, now=now)
    assert all(r is not None for r in sink.out)
    return sink.readings()


async def test_illegal_address_in_the_middle_leaves_neighbours_good() -> None:
    tags = refs(*[(a, 1) for a in range(20)])
    s, dev = state(tags), Device(refused={9})
    readings = await scan(s, dev, now=0)
    assert [r.tag for r in readings if r.quality == "bad"] == ["t9"]
    assert readings[9] == Reading("t9", None, 1, "bad", "exception 2 (illegal data address)")
    assert [r.value for r in readings if r.quality == "good"] == [a for a in range(20) if a != 9]
    assert len(dev.requests) <= 1 + 2 * 5  # the block, then two halves per level of a binary search
    assert s.searches == 1

    # the next scan does not search again: the good tags in as few requests as the barrier allows
    readings = await scan(s, dev, now=1)
    assert dev.requests == [(0, 9), (10, 10)]
    assert [r.quality for r in readings].count("bad") == 1 and s.searches == 1


async def test_bad_tags_are_retried_rarely_and_rejoin() -> None:
    tags = refs(*[(a, 1) for a in range(20)])
    s, dev = state(tags, bad_retry=30.0), Device(refused={3, 4})
    await scan(s, dev, now=0)
    assert sorted(s.bad) == [(3, 4), (4, 5)]
    await scan(s, dev, now=29)
    assert (3, 1) not in dev.requests and (4, 1) not in dev.requests  # not yet
    await scan(s, dev, now=30)
    assert dev.requests[-2:] == [(3, 1), (4, 1)]  # each refused tag alone, once per bad_retry
    dev.refused = {4}  # hr:3 answers again (the PLC program was fixed)
    readings = await scan(s, dev, now=60)
    assert readings[3] == Reading("t3", 3, 1)
    await scan(s, dev, now=61)
    assert dev.requests == [(0, 4), (5, 15)]  # t3 back in the plan, t4 still left out


async def test_an_unmapped_gap_becomes_a_barrier() -> None:
    # tags 0..4 and 8..12, read across the gap 5..7 which the device refuses
    tags = refs(*[(a, 1) for a in [*range(5), *range(8, 13)]])
    s, dev = state(tags, max_gap=4), Device(refused={5, 6, 7})
    readings = await scan(s, dev, now=0)
    assert all(r.quality == "good" for r in readings) and not s.bad
    assert s.gaps == [(5, 8)]
    await scan(s, dev, now=1)
    assert dev.requests == [(0, 5), (8, 5)]


async def test_a_device_that_chokes_on_large_requests() -> None:
    tags = refs(*[(a, 1) for a in range(40)])
    s, dev = state(tags), Device(max_count=16)
    readings = await scan(s, dev, now=0)
    assert all(r.quality == "good" for r in readings)
    await scan(s, dev, now=1)
    assert all(count <= 16 for _, count in dev.requests) and len(dev.requests) <= 4


async def test_a_refused_string_with_a_tag_inside() -> None:
    # a string over 0..3 whose last register is refused, a uint16 inside it at 1, and one after
    tags = refs((0, 4), (1, 1), (4, 1))
    s, dev = state(tags), Device(refused={3})
    readings = await scan(s, dev, now=0)
    assert [(r.tag, r.quality) for r in readings] == [("t0", "bad"), ("t1", "good"), ("t4", "good")]
    await scan(s, dev, now=1)
    assert sorted(dev.requests) == [(1, 1), (4, 1)]


async def test_other_exceptions_mark_the_block_bad_for_this_scan_only() -> None:
    tags = refs((0, 1), (1, 1))
    s = state(tags)

    class Busy(Device):
        async def request(self, piece: Piece) -> bytes:
            self.requests.append((piece.start, piece.count))
            raise DeviceException(6)

    readings = await scan(s, Busy(), now=0)
    assert {r.error for r in readings} == {"exception 6 (server device busy)"}
    assert not s.bad and s.searches == 0
    assert all(r.quality == "good" for r in await scan(s, Device(), now=1))


def test_clean_cut() -> None:
    assert clean_cut(refs((0, 1))) is None
    assert clean_cut(refs((0, 4), (1, 1), (3, 1))) is None  # everything overlaps the string
    left, right = clean_cut(refs((0, 1), (1, 1), (2, 1), (3, 1))) or ([], [])
    assert [r.offset for r in left] == [0, 1] and [r.offset for r in right] == [2, 3]
    left, right = clean_cut(refs((0, 4), (1, 1), (4, 1), (5, 1))) or ([], [])
    assert [r.offset for r in left] == [0, 1] and [r.offset for r in right] == [4, 5]


class Glitch(Device):
    """A device that answers `code` to the next `times` requests (busy or booting), then reads fine."""

    def __init__(self, code: int, times: int = 1) -> None:
        super().__init__()
        self.code, self.times = code, times

    async def request(self, piece: Piece) -> bytes:
        if self.times:
            self.requests.append((piece.start, piece.count))
            self.times -= 1
            raise DeviceException(self.code)
        return await super().request(piece)


async def test_a_one_off_refusal_is_tried_again_and_the_block_planned_as_before() -> None:
    for code in (2, 3):  # illegal data address (a barrier between halves), illegal data value (a size limit)
        tags = refs(*[(a, 1) for a in range(4)])
        s, dev = state(tags, bad_retry=30.0), Glitch(code)
        readings = await scan(s, dev, now=0)
        assert all(r.quality == "good" for r in readings) and not s.bad
        await scan(s, dev, now=1)
        assert dev.requests == [(0, 2), (2, 2)]  # what the search learned, kept until the retry
        await scan(s, dev, now=30)
        assert dev.requests == [(0, 2), (2, 2), (0, 4)]  # the refused piece read whole again: it reads
        assert not s.gaps and s.limit == 125
        await scan(s, dev, now=31)
        assert dev.requests == [(0, 4)]  # one request again, as before the refusal


async def test_one_off_refusals_do_not_accumulate_barriers() -> None:
    tags = refs(*[(a, 1) for a in range(10)])
    s, dev = state(tags, bad_retry=60.0), Device()
    await scan(s, dev, now=0)
    for t in range(1, 6):  # five glitches before the retry is due
        glitch = Glitch(2)
        await scan(s, glitch, now=t)
    await scan(s, dev, now=6)
    assert len(dev.requests) > 1
    assert s.retry_at == 65  # each search puts the retry off by bad_retry
    await scan(s, dev, now=65)  # the retry: every piece that taught a barrier reads whole
    assert not s.gaps and not s.bad
    await scan(s, dev, now=66)
    assert dev.requests == [(0, 10)]


async def test_a_real_refusal_stays_isolated_across_retries() -> None:
    # an unmapped gap (5..7) and a refused tag (hr:12): retried every bad_retry, still refused, still kept
    tags = refs(*[(a, 1) for a in [*range(5), *range(8, 13)]])
    s, dev = state(tags, max_gap=4, bad_retry=30.0), Device(refused={5, 6, 7, 12})
    await scan(s, dev, now=0)
    await scan(s, dev, now=1)
    assert s.gaps == [(5, 8)] and sorted(s.bad) == [(12, 13)]
    searches = s.searches
    for now in (40, 80, 120):
        readings = await scan(s, dev, now=now)
        assert [r.tag for r in readings if r.quality == "bad"] == ["t12"]
        assert s.gaps == [(5, 8)] and sorted(s.bad) == [(12, 13)] and s.searches == searches
        await scan(s, dev, now=now + 1)
        assert dev.requests == [(0, 5), (8, 4)]  # no new search between retries, the gap read around


async def test_a_probe_reads_the_smallest_refused_piece_when_nothing_else_would_be_sent() -> None:
    tags = refs((0, 4), (4, 1))  # a string and a uint16, both refused
    s, dev = state(tags), Device(refused={0, 1, 2, 3, 4})
    await scan(s, dev, now=0)
    assert not s.pieces and sorted(s.bad) == [(0, 4), (4, 5)]
    assert not s.sends(now=1) and s.smallest_refused() is not None
    sink = AllReadings(len(s.refs), ts=1)
    dev.requests.clear()
    await s.read(dev.request, sink, now=1, probe=True)
    assert dev.requests == [(4, 1)]  # the smallest, alone
    assert [r.quality for r in sink.readings()] == ["bad", "bad"]
    dev.refused = {0, 1, 2, 3}  # hr:4 answers again: the probe finds it and it rejoins
    sink = AllReadings(len(s.refs), ts=1)
    await s.read(dev.request, sink, now=2, probe=True)
    assert [(r.tag, r.quality) for r in sink.readings()] == [("t0", "bad"), ("t4", "good")]
    assert [(p.start, p.count) for p in s.pieces] == [(4, 1)]
