"""Evidence periods: `--from` / `--to` (or `from=` / `to=`) as dates, local date-times or epoch milliseconds.

A date means the whole local day in the enterprise's time zone: `--from 2024-05-01 --to 2024-05-31`
is 1 May 00:00 to 1 June 00:00. A date-time without an offset is local time in that zone; with an
offset (or `Z`) it is taken as written. A bare integer of 10 or more digits is epoch milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from cloud_bridge.metrics.calendar import local_ms

MAX_DAYS = 400
MAX_TEXT = 40  # characters of a date, date-time or epoch ms; anything longer is refused before it is read
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class PeriodError(ValueError):
    """A period that cannot be evidence: the reason is meant for the user."""


@dataclass(frozen=True, slots=True)
class Period:
    start: int  # epoch ms, inclusive
    end: int  # epoch ms, exclusive
    as_of: int  # min(end, now): what the figures are computed up to
    timezone: str

    def iso(self, ms: int) -> str:
        return iso_local(ms, self.timezone)

    def as_dict(self) -> dict[str, object]:
        return {
            "from": self.iso(self.start),
            "to": self.iso(self.end),
            "as_of": self.iso(self.as_of),
            "from_ms": self.start,
            "to_ms": self.end,
            "as_of_ms": self.as_of,
            "timezone": self.timezone,
        }


def iso_local(ms: int, tz: str) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).isoformat(timespec="seconds")


# instants are taken between these (epoch ms): 2000-01-01 and 2100-01-01 UTC, well inside every store's range
EARLIEST_MS = 946_684_800_000
LATEST_MS = 4_102_444_800_000


def parse_instant(text: str, tz: str, *, end: bool = False) -> int:
    """Epoch ms of a date (its local midnight; with `end`, the next one), a date-time or epoch ms, between
    the years 2000 and 2100 (PeriodError with the reason otherwise)."""
    try:
        ms = _instant(text, tz, end)
    except (OverflowError, OSError):  # far outside what a calendar or the platform's clock can hold
        raise PeriodError(f"{text!r} is out of range (2000-01-01 to 2100-01-01)") from None
    if not EARLIEST_MS <= ms <= LATEST_MS:
        raise PeriodError(f"{text!r} is out of range (2000-01-01 to 2100-01-01)")
    return ms


def _instant(text: str, tz: str, end: bool) -> int:
    t = text.strip()
    if not t:
        raise PeriodError("empty date")
    if len(t) > MAX_TEXT:
        raise PeriodError(f"{t[:MAX_TEXT]!r}… is too long for a date, a date-time or epoch ms")
    if _DATE.fullmatch(t):
        try:
            d = date.fromisoformat(t)
        except ValueError:
            raise PeriodError(f"{text!r} is not a date (YYYY-MM-DD)") from None
        return local_ms(d + timedelta(days=1) if end else d, 0, tz)
    if t.isascii() and t.isdigit() and len(t) >= 10:  # not '²' nor other digits int() refuses
        return int(t)
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise PeriodError(
            f"{text!r} is not a date (YYYY-MM-DD), a date-time (YYYY-MM-DDTHH:MM[:SS][+08:00]) or epoch ms"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(tz))
    return round(dt.timestamp() * 1000)


def parse_period(from_text: str, to_text: str, tz: str, now_ms: int) -> Period:
    start = parse_instant(from_text, tz)
    end = parse_instant(to_text, tz, end=True)
    return make_period(start, end, tz, now_ms)


def make_period(start: int, end: int, tz: str, now_ms: int) -> Period:
    if end <= start:
        raise PeriodError("the period must end after it starts ('to' is before or equal to 'from')")
    if end - start > MAX_DAYS * 86_400_000:
        raise PeriodError(f"a period is at most {MAX_DAYS} days")
    if start >= now_ms:
        raise PeriodError("the period starts in the future: there is no evidence for it yet")
    return Period(start, end, min(end, now_ms), tz)
