"""A planned block as it is read, and bad-address isolation.

When a device answers a block with ILLEGAL DATA ADDRESS (or ILLEGAL DATA VALUE, which devices that
choke on large requests give), the block is split at a clean cut (no tag straddles it) near its
middle and both halves are read, recursively, until the refused tags are found. Only those tags
are marked bad, with the exception. What the search learned is kept until it is tried again:

- the refused tags are left out and their registers become *barriers* the planner never reads across;
- when both halves of a refused piece read fine, the gap (or the cut) between them is the barrier,
  or, for ILLEGAL DATA VALUE, the device's largest request is taken as the larger half;

and the block's good tags are planned again around the barriers, so the next scan reads them in as
few requests as before minus what the device refuses, without searching again. Every `bad_retry`
seconds (and at the first scan after a reconnect) the refused tags are re-read alone, one that answers
again rejoining the plan, and each refused piece that taught a barrier or a smaller request size is
read again whole: when it reads fine (the refusal was a one-off: a device busy or booting) what it
taught is dropped and the block is planned as before. A scan that would send no request (every tag
of the block refused, the retry not due) re-reads the smallest refused piece as a probe that the
device still answers (`read(..., probe=True)`, the driver's choice).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from drivers.base import Changes, RawValue, Reading, TagSet
from drivers.modbus.decode import BlockDecoder, Field
from drivers.modbus.plan import Barrier, Block, Span, plan_blocks
from drivers.modbus.protocol import SPLIT_CODES, DeviceException, exception_text, payload_size, read_request
from edge_config.modbus import Table

ILLEGAL_DATA_VALUE = 3  # what many devices answer to a request larger than they take

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TagRef:
    """One configured tag, as the reader needs it."""

    index: int  # position in the device's config
    name: str
    table: Table
    offset: int
    count: int  # registers (1 for coils and discrete inputs)
    type: str
    byte_order: str
    bit: int | None = None
    length: int | None = None

    @property
    def end(self) -> int:
        return self.offset + self.count

    @property
    def span(self) -> Span:
        return (self.name, self.table, self.offset, self.count)


@dataclass(frozen=True, slots=True)
class Limits:
    max_registers: int = 125
    max_bits: int = 2000
    max_gap: int = 16
    bad_retry: float = 60.0


class Piece:
    """One request as it is sent now: the window of `refs`, its PDU and its decoder."""

    __slots__ = (
        "count",
        "decoder",
        "function",
        "indices",
        "last_data",
        "last_values",
        "names",
        "pdu",
        "refs",
        "size",
        "start",
        "table",
        "tagset",
    )

    def __init__(self, table: Table, refs: Sequence[TagRef]) -> None:
        self.table = table
        self.refs = tuple(refs)
        self.start = min(r.offset for r in refs)
        self.count = max(r.end for r in refs) - self.start
        self.pdu = read_request(table, self.start, self.count)
        self.function = self.pdu[0]
        self.size = payload_size(table, self.count)
        fields = [Field(r.offset - self.start, r.type, r.byte_order, r.bit, r.length) for r in self.refs]
        self.decoder = BlockDecoder(fields, self.count, bits=table.is_bit)
        self.indices = tuple(r.index for r in self.refs)
        self.names = tuple(r.name for r in self.refs)
        self.tagset = TagSet(self.names)
        # what the last scan reported by exception saw (None: report every tag next time)
        self.last_data: bytes | None = None
        self.last_values: Sequence[RawValue] | None = None

    @property
    def end(self) -> int:
        return self.start + self.count

    def __repr__(self) -> str:
        return f"{self.table.value}:{self.start}+{self.count}"

    def fill(self, out: list[Reading | None], data: bytes, ts: int) -> None:
        make = good_reading
        for i, name, value in zip(self.indices, self.names, self.decoder(data), strict=True):
            out[i] = make(name, value, ts)

    def fill_bad(self, out: list[Reading | None], ts: int, error: str) -> None:
        for i, name in zip(self.indices, self.names, strict=True):
            out[i] = Reading(name, None, ts, "bad", error)


# reads one piece: its data bytes, or DeviceException; anything else (DriverError) ends the scan
Request = Callable[[Piece], Awaitable[bytes]]


# a good reading: Reading(tag, value, ts), quality and error by default
good_reading: Callable[[str, RawValue, int], Reading] = Reading


class Sink(Protocol):
    """Where a scan's pieces go: the data of a piece read, or the error of a piece refused."""

    def good(self, piece: Piece, data: bytes) -> None: ...

    def bad(self, piece: Piece, error: str) -> None: ...


class AllReadings:
    """Every tag's reading, by config index (`readings()` in config order)."""

    __slots__ = ("out", "ts")

    def __init__(self, size: int, ts: int) -> None:
        self.out: list[Reading | None] = [None] * size
        self.ts = ts

    def good(self, piece: Piece, data: bytes) -> None:
        piece.fill(self.out, data, self.ts)

    def bad(self, piece: Piece, error: str) -> None:
        piece.fill_bad(self.out, self.ts, error)

    def readings(self) -> list[Reading]:
        return [r for r in self.out if r is not None]


class ChangedReadings:
    """Report by exception: only the tags whose value differs from the piece's previous read.

    A piece whose bytes are the same as last time costs one comparison; otherwise it is decoded and
    its values compared. A piece with no previous read (the first scan, a new plan, after an error)
    reports every tag. Refused pieces report their bad readings every scan.
    """

    __slots__ = ("changes",)

    def __init__(self, ts: int) -> None:
        self.changes = Changes([], ts)

    def good(self, piece: Piece, data: bytes) -> None:
        c = self.changes
        c.read += len(piece.names)
        c.covered.append(piece.tagset)
        if data == piece.last_data:
            return
        piece.last_data = data
        values = piece.decoder(data)
        last, piece.last_values = piece.last_values, values
        ts, out, new = c.ts, c.readings, tuple.__new__  # Reading(name, v, ts) without its Python __new__
        if last is None:
            out.extend([new(Reading, (name, v, ts, "good", "")) for name, v in zip(piece.names, values, strict=True)])
            return
        for name, v, was in zip(piece.names, values, last, strict=True):
            if v != was:  # NaN never equals itself: reported every time, the normalizer holds it
                out.append(new(Reading, (name, v, ts, "good", "")))

    def bad(self, piece: Piece, error: str) -> None:
        c = self.changes
        n = len(piece.names)
        c.read += n
        c.bad += n
        piece.last_data = piece.last_values = None
        ts = c.ts
        c.readings.extend([Reading(name, None, ts, "bad", error) for name in piece.names])


def clean_cut(refs: Sequence[TagRef]) -> tuple[list[TagRef], list[TagRef]] | None:
    """Split tags (sorted by offset) in two at the cut no tag straddles that is nearest the middle.

    None when there is no such cut (a single tag, or tags that all overlap).
    """
    best: int | None = None
    reach = refs[0].end
    for k in range(1, len(refs)):
        if refs[k].offset >= reach and (best is None or abs(2 * k - len(refs)) < abs(2 * best - len(refs))):
            best = k
        reach = max(reach, refs[k].end)
    if best is None:
        return None
    return list(refs[:best]), list(refs[best:])


@dataclass(frozen=True, slots=True)
class Learned:
    """What the search of one refused piece taught that a later read of the piece can undo."""

    piece: Piece  # the request the device refused, read again whole to check
    gaps: tuple[Barrier, ...]
    limit: int | None


@dataclass
class Found:
    """What one isolation search learned."""

    good: list[tuple[Piece, bytes]]
    bad: list[tuple[Piece, int]]
    gaps: list[Barrier]
    limit: int | None = None  # the device refuses requests larger than this


async def isolate(piece: Piece, code: int, request: Request) -> Found:
    """`piece` was refused with `code`: find the refused tags by splitting it."""
    found = Found([], [], [])
    await _search(piece, code, request, found)
    return found


async def _search(piece: Piece, code: int, request: Request, found: Found) -> None:
    if code not in SPLIT_CODES:
        found.bad.append((piece, code))
        return
    refs = sorted(piece.refs, key=lambda r: (r.offset, r.end))
    halves = clean_cut(refs)
    if halves is None:
        windows = {(r.offset, r.end) for r in refs}
        if len(windows) == 1:
            found.bad.append((piece, code))
            return
        # tags that all overlap (a string with tags inside it): read each window alone
        parts = [Piece(piece.table, [r for r in refs if (r.offset, r.end) == w]) for w in sorted(windows)]
    else:
        parts = [Piece(piece.table, h) for h in halves]
    all_good = True
    for part in parts:
        try:
            data = await request(part)
        except DeviceException as exc:
            all_good = False
            await _search(part, exc.code, request, found)
            continue
        found.good.append((part, data))
    if not all_good:
        return
    if halves is None or code == ILLEGAL_DATA_VALUE:
        # every part reads, the whole does not: the device refuses requests this large
        largest = max(p.count for p in parts)
        found.limit = largest if found.limit is None else min(found.limit, largest)
    else:
        # each half reads, the whole does not: the device refuses the addresses between them
        found.gaps.append((parts[0].end, parts[1].start))


class BlockState:
    """One planned block of a poll group and what isolation learned about it."""

    def __init__(self, block: Block, refs: Sequence[TagRef], limits: Limits, label: str = "") -> None:
        self.block = block
        self.refs = tuple(refs)
        self.limits = limits
        self.label = label
        self.pieces: list[Piece] = [Piece(block.table, self.refs)]
        self.bad: dict[tuple[int, int], tuple[Piece, int]] = {}  # window -> refused piece, exception code
        self.learned: list[Learned] = []  # barriers and request sizes taught by refused pieces that read fine
        self.max_count = limits.max_bits if block.table.is_bit else limits.max_registers
        self.retry_at = 0.0
        self.searches = 0

    @property
    def gaps(self) -> list[Barrier]:
        """The barriers learned from refused pieces whose halves read fine."""
        return [g for entry in self.learned for g in entry.gaps]

    @property
    def limit(self) -> int:
        """The largest request the device is read in now: the configured one, or smaller as learned."""
        limit = min([self.max_count, *(e.limit for e in self.learned if e.limit is not None)])
        return max(limit, max(r.count for r in self.refs))

    def due(self, now: float) -> bool:
        """Is a retry of the refused pieces (and of what they taught) due at `now`?"""
        return bool(self.bad or self.learned) and now >= self.retry_at

    def sends(self, now: float) -> bool:
        """Does a scan at `now` send a request without a probe (a piece to read, or a retry due)?"""
        return bool(self.pieces) or self.due(now)

    def smallest_refused(self) -> Piece | None:
        """The refused piece a probe reads (the smallest, the first of equals); None if nothing is refused."""
        pieces = [p for p, _ in self.bad.values()]
        return min(pieces, key=lambda p: (p.count, p.start)) if pieces else None

    async def read(self, request: Request, sink: Sink, now: float, probe: bool = False) -> None:
        """Read every piece into `sink`; bad readings for what the device refuses.

        `probe`: when no retry is due, re-read the smallest refused piece anyway (the driver asks for it
        when the scan would otherwise send nothing, so that a dead device cannot look alive).
        """
        for piece in self.pieces:
            try:
                data = await request(piece)
            except DeviceException as exc:
                if exc.code in SPLIT_CODES:
                    await self._isolate(piece, exc.code, request, sink, now)
                else:  # busy, device failure...: this scan only
                    sink.bad(piece, exception_text(exc.code))
                continue
            sink.good(piece, data)
        if self.due(now):
            await self._retry(request, sink, now)
        elif probe:
            smallest = self.smallest_refused()
            if smallest is not None and await self._reread([smallest], request, sink):
                self._replan()
        for piece, code in self.bad.values():
            sink.bad(piece, exception_text(code))

    def forget(self) -> None:
        """Report every tag on the next scan by exception (after a reconnect: anything may have changed),
        and retry what the device refused at that scan (it may have been restarted or reprogrammed)."""
        for piece in [*self.pieces, *(p for p, _ in self.bad.values())]:
            piece.last_data = piece.last_values = None
        self.retry_at = 0.0

    async def _isolate(self, piece: Piece, code: int, request: Request, sink: Sink, now: float) -> None:
        self.searches += 1
        found = await isolate(piece, code, request)
        for part, data in found.good:
            sink.good(part, data)
        for part, c in found.bad:
            self.bad[(part.start, part.end)] = (part, c)
        if found.gaps or found.limit is not None:
            self.learned.append(Learned(piece, tuple(found.gaps), found.limit))
            self.retry_at = now + self.limits.bad_retry
        if found.limit is not None:
            log.warning("%s: %s refused; reading at most %d at a time", self.label, piece, self.limit)
        if found.bad:
            self.retry_at = now + self.limits.bad_retry
            log.warning(
                "%s: %s refused; marked bad: %s",
                self.label,
                piece,
                "; ".join(f"{', '.join(p.names)} ({exception_text(c)})" for p, c in found.bad),
            )
        self._replan()

    async def _reread(self, pieces: Sequence[Piece], request: Request, sink: Sink) -> bool:
        """Read refused pieces again: those that answer rejoin (True if any did)."""
        recovered = False
        for piece in pieces:
            window = (piece.start, piece.end)
            try:
                data = await request(piece)
            except DeviceException as exc:
                self.bad[window] = (piece, exc.code)
                continue
            del self.bad[window]
            sink.good(piece, data)
            recovered = True
            log.info("%s: %s answers again: %s", self.label, piece, ", ".join(piece.names))
        return recovered

    async def _retry(self, request: Request, sink: Sink, now: float) -> None:
        changed = await self._reread([p for p, _ in self.bad.values()], request, sink)
        # what refused pieces taught: read each whole again (its tags are read by this scan's pieces: the
        # data only says whether the device takes the request now)
        for entry in list(self.learned):
            try:
                await request(entry.piece)
            except DeviceException:
                continue
            self.learned.remove(entry)
            changed = True
            log.info("%s: %s reads whole again; planned as before it was refused", self.label, entry.piece)
        self.retry_at = now + self.limits.bad_retry
        if changed:
            self._replan()

    def _replan(self) -> None:
        refused = {i for piece, _ in self.bad.values() for i in piece.indices}
        good = [r for r in self.refs if r.index not in refused]
        barriers = [*self.gaps, *self.bad]
        limit = self.limit
        blocks = plan_blocks(
            [r.span for r in good], min(limit, 125), self.limits.max_gap, limit, {self.block.table: barriers}
        )
        by_name = {r.name: r for r in good}
        self.pieces = [Piece(b.table, [by_name[n] for n in b.tags]) for b in blocks]
