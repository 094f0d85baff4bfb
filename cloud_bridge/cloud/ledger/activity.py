"""Data activity per device and hour, with a mask of the minutes that had samples: pure functions.

The ledger keeps, per device and hour, the samples and good samples, the first and last timestamp and a
60-bit mask (bit m: minute m of the hour had samples). A period that starts and ends on whole hours (days
in any whole-hour time zone) reads the hours exactly. An edge inside an hour is read at minute
resolution: the hour counts (all its samples) when one of its minutes with samples overlaps the period,
and first / last seen are the hour's own where its first / last minute with samples is inside the
period, else the edge of the first / last such minute inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

HOUR_MS = 3_600_000
MINUTE_MS = 60_000


def hour_of(ts: int) -> int:
    return ts - ts % HOUR_MS


def minute_bit(ts: int) -> int:
    return 1 << (ts % HOUR_MS) // MINUTE_MS


@dataclass(frozen=True, slots=True)
class HourRow:
    hour: int
    samples: int
    good_samples: int
    first_ts: int
    last_ts: int
    minutes: int


def within(row: HourRow, start: int, end: int) -> HourRow | None:
    """The row as the period [start, end) reads it (see the module docstring); None when none of its
    minutes with samples overlaps the period."""
    if row.hour >= start and row.hour + HOUR_MS <= end:
        return row
    lo = max(0, (start - row.hour) // MINUTE_MS)  # first minute overlapping the period
    hi = min(59, (end - 1 - row.hour) // MINUTE_MS)  # last one
    if lo > hi:
        return None
    mask = row.minutes & ((1 << (hi + 1)) - (1 << lo))
    if not mask:
        return None
    first_min, last_min = (mask & -mask).bit_length() - 1, mask.bit_length() - 1
    own_first, own_last = (row.minutes & -row.minutes).bit_length() - 1, row.minutes.bit_length() - 1
    first = row.first_ts if first_min == own_first else row.hour + first_min * MINUTE_MS
    last = row.last_ts if last_min == own_last else row.hour + (last_min + 1) * MINUTE_MS - 1
    return HourRow(row.hour, row.samples, row.good_samples, max(first, start), min(last, end - 1), row.minutes)
