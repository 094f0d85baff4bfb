"""The overview's day summaries, pure parts: which late data drops which days, the local days of a period,
the calendar fingerprint."""

from __future__ import annotations

from datetime import date

from cloud_bridge.cloud.evidence.overview import calendar_key, local_days, starts_a_day
from cloud_bridge.cloud.ledger.days import QUARTER_MS, days_to_forget
from cloud_bridge.metrics.calendar import local_ms
from edge_config.models import Shift

NOW = 1_700_000_000_000 - 1_700_000_000_000 % QUARTER_MS + 120_000  # two minutes past a quarter hour


def test_late_data_drops_its_devices_days_from_its_earliest_timestamp() -> None:
    stamps = [
        ("e", "g", "d1", NOW - 86_400_000),
        ("e", "g", "d1", NOW - 3 * 86_400_000),  # the earliest of d1 counts
        ("e", "g", "d2", NOW - 60_000),  # live: after the last quarter hour, nothing to drop
        ("e", "g2", "d1", NOW - 200_000),  # before the quarter hour: a midnight may lie between
    ]
    assert days_to_forget(stamps, NOW) == [
        {"e": "e", "g": "g", "d": "d1", "ts": NOW - 3 * 86_400_000},
        {"e": "e", "g": "g2", "d": "d1", "ts": NOW - 200_000},
    ]
    assert days_to_forget([("e", "g", "d", NOW)], NOW) == []


def test_local_days() -> None:
    tz = "Asia/Shanghai"
    start = local_ms(date(2024, 5, 1), 0, tz)
    days = local_days(start, start + 3 * 86_400_000 + 5, tz)
    assert days == [(start + i * 86_400_000, start + (i + 1) * 86_400_000) for i in range(3)]
    assert local_days(start, start + 86_400_000 - 1, tz) == []  # no whole day
    assert starts_a_day(start, tz) and not starts_a_day(start + 3_600_000, tz)
    # a day of 23 hours where the clocks go forward
    berlin = local_ms(date(2024, 3, 31), 0, "Europe/Berlin")
    [(a, b)] = local_days(berlin, berlin + 23 * 3_600_000, "Europe/Berlin")
    assert b - a == 23 * 3_600_000


def test_the_calendar_fingerprint_follows_the_shifts_and_the_zone() -> None:
    a = [Shift.model_validate({"name": "A", "start": "08:00", "end": "17:00"})]
    b = [Shift.model_validate({"name": "A", "start": "08:00", "end": "16:00"})]
    assert calendar_key("Asia/Shanghai", a) == calendar_key("Asia/Shanghai", list(a))
    assert len({calendar_key("Asia/Shanghai", a), calendar_key("Asia/Shanghai", b), calendar_key("UTC", a)}) == 3
