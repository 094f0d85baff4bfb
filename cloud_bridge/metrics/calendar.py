"""The shift calendar: which stretches of time are planned for production, shift by shift.

A shift has a start and an end as local clock times (the end may be on the next day), the weekdays
it starts on, and planned breaks inside it. Local times become epoch milliseconds through
`zoneinfo`, so a calendar stays right across daylight-saving changes where a zone has them.
Time outside every shift is unscheduled; breaks are planned downtime.

Pure functions: the zone database is read by `zoneinfo`, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

DAY_MIN = 1440
ALL_WEEKDAYS = frozenset(range(7))  # 0 = Monday


class ShiftLike(Protocol):
    """What the calendar needs of a shift (edge_config's `Shift` has these)."""

    @property
    def name(self) -> str: ...

    @property
    def span(self) -> tuple[int, int]:
        """(start, end) in minutes from the start day's midnight; 0 <= start < end <= start + 1440."""
        ...

    @property
    def weekdays(self) -> frozenset[int]:
        """Days the shift starts on, 0 = Monday."""
        ...

    @property
    def break_spans(self) -> tuple[tuple[int, int], ...]:
        """Planned breaks in minutes from the start day's midnight, inside `span`."""
        ...


@dataclass(frozen=True, slots=True)
class ShiftSpec:
    """A plain shift, for defaults and tests."""

    name: str
    span: tuple[int, int]
    weekdays: frozenset[int] = ALL_WEEKDAYS
    break_spans: tuple[tuple[int, int], ...] = field(default=())


DEFAULT_SHIFTS: tuple[ShiftSpec, ...] = (ShiftSpec("day", (0, DAY_MIN)),)


@dataclass(frozen=True, slots=True)
class ShiftOccurrence:
    """One shift on one day, in epoch milliseconds."""

    name: str
    start: int
    end: int
    breaks: tuple[tuple[int, int], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}@{self.start}"

    def label(self, tz: str | ZoneInfo) -> str:
        zone = _zone(tz)
        day = datetime.fromtimestamp(self.start / 1000, zone).date()
        return f"{day.isoformat()} {self.name}"


@dataclass(frozen=True, slots=True)
class PlanSlice:
    """A stretch of planned time: `work` (planned operation) or a planned `break`."""

    start: int
    end: int
    kind: Literal["work", "break"]
    shift: ShiftOccurrence


def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def local_ms(day: date, minutes: int, tz: str | ZoneInfo) -> int:
    """Epoch ms of `minutes` after local midnight of `day` (wall-clock arithmetic)."""
    zone = _zone(tz)
    dt = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(minutes=minutes)
    return round(dt.timestamp() * 1000)


def local_date(ms: int, tz: str | ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, _zone(tz)).date()


def occurrences(shifts: Sequence[ShiftLike], tz: str | ZoneInfo, start_ms: int, end_ms: int) -> list[ShiftOccurrence]:
    """Every shift occurrence that overlaps [start_ms, end_ms), unclipped, by start time."""
    zone = _zone(tz)
    specs: Sequence[ShiftLike] = shifts or DEFAULT_SHIFTS
    out: list[ShiftOccurrence] = []
    day = local_date(start_ms, zone) - timedelta(days=1)
    last = local_date(end_ms, zone)
    while day <= last:
        wd = day.weekday()
        for s in specs:
            if wd not in s.weekdays:
                continue
            a, b = s.span
            occ_start, occ_end = local_ms(day, a, zone), local_ms(day, b, zone)
            if occ_end <= start_ms or occ_start >= end_ms or occ_end <= occ_start:
                continue
            breaks = tuple((local_ms(day, x, zone), local_ms(day, y, zone)) for x, y in sorted(s.break_spans) if y > x)
            out.append(ShiftOccurrence(s.name, occ_start, occ_end, breaks))
        day += timedelta(days=1)
    out.sort(key=lambda o: (o.start, o.name))
    return out


def plan_slices(shifts: Sequence[ShiftLike], tz: str | ZoneInfo, start_ms: int, end_ms: int) -> list[PlanSlice]:
    """Planned time inside [start_ms, end_ms): work and break slices, clipped, sorted, not overlapping.

    Where two occurrences overlap (a calendar the config would refuse), the earlier one keeps the time.
    """
    out: list[PlanSlice] = []
    cursor = start_ms
    for occ in occurrences(shifts, tz, start_ms, end_ms):
        pieces: list[tuple[int, int, Literal["work", "break"]]] = []
        t = occ.start
        for bs, be in occ.breaks:
            bs, be = max(bs, occ.start), min(be, occ.end)
            if be <= bs or bs < t:
                continue
            if bs > t:
                pieces.append((t, bs, "work"))
            pieces.append((bs, be, "break"))
            t = be
        if t < occ.end:
            pieces.append((t, occ.end, "work"))
        for a, b, kind in pieces:
            a, b = max(a, start_ms, cursor), min(b, end_ms)
            if b > a:
                out.append(PlanSlice(a, b, kind, occ))
                cursor = b
    return out


def work_intervals(slices: Sequence[PlanSlice]) -> list[tuple[int, int]]:
    """The planned-operation intervals (breaks left out), merged."""
    out: list[tuple[int, int]] = []
    for s in slices:
        if s.kind != "work":
            continue
        if out and out[-1][1] == s.start:
            out[-1] = (out[-1][0], s.end)
        else:
            out.append((s.start, s.end))
    return out


def current_shift(shifts: Sequence[ShiftLike], tz: str | ZoneInfo, now_ms: int) -> ShiftOccurrence:
    """The shift occurrence running at `now_ms`; between shifts, the last one that ended."""
    week_ms = 8 * DAY_MIN * 60_000
    occs = occurrences(shifts, tz, now_ms - week_ms, now_ms + 1)
    running = [o for o in occs if o.start <= now_ms < o.end]
    if running:
        return running[-1]
    past = [o for o in occs if o.end <= now_ms]
    if past:
        return max(past, key=lambda o: o.end)
    # a calendar with no shift in the past eight days: the local day so far
    day = local_date(now_ms, tz)
    return ShiftOccurrence("day", local_ms(day, 0, tz), local_ms(day, DAY_MIN, tz))
