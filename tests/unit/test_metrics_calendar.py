"""The shift calendar: shifts across midnight, breaks, weekdays, the default 24 h shift, DST, current shift."""

from __future__ import annotations

from datetime import date

import pytest

from cloud_bridge.metrics.calendar import (
    ShiftSpec,
    current_shift,
    local_ms,
    occurrences,
    plan_slices,
    work_intervals,
)

TZ = "Asia/Shanghai"
H = 3_600_000
DAY = date(2024, 5, 1)  # a Wednesday
T0 = local_ms(DAY, 0, TZ)

A = ShiftSpec("A", (8 * 60, 20 * 60), break_spans=((12 * 60, 12 * 60 + 30),))
B = ShiftSpec("B", (20 * 60, 32 * 60))  # 20:00 to 08:00 the next day


def hours(slices: list) -> list[tuple[float, float, str, str]]:  # type: ignore[type-arg]
    return [((s.start - T0) / H, (s.end - T0) / H, s.kind, s.shift.name) for s in slices]


def test_local_midnight_in_shanghai_is_utc_plus_8() -> None:
    assert T0 == 1714492800000  # 2024-04-30T16:00:00Z


def test_two_shifts_with_a_break_over_one_day() -> None:
    slices = plan_slices([A, B], TZ, T0, T0 + 24 * H)
    assert hours(slices) == [
        (0.0, 8.0, "work", "B"),  # the night shift that started on 30 April
        (8.0, 12.0, "work", "A"),
        (12.0, 12.5, "break", "A"),
        (12.5, 20.0, "work", "A"),
        (20.0, 24.0, "work", "B"),
    ]
    assert slices[0].shift.start == T0 - 4 * H and slices[0].shift.end == T0 + 8 * H
    assert work_intervals(slices) == [(T0, T0 + 12 * H), (T0 + int(12.5 * H), T0 + 24 * H)]


def test_weekdays_are_the_days_a_shift_starts_on() -> None:
    weekdays = ShiftSpec("A", (8 * 60, 20 * 60), weekdays=frozenset(range(5)))  # Mon–Fri
    saturday = local_ms(date(2024, 5, 4), 0, TZ)
    assert plan_slices([weekdays], TZ, saturday, saturday + 24 * H) == []
    friday_night = ShiftSpec("N", (22 * 60, 30 * 60), weekdays=frozenset({4}))
    [s] = plan_slices([friday_night], TZ, saturday, saturday + 24 * H)
    assert ((s.start - saturday) / H, (s.end - saturday) / H) == (0.0, 6.0)


def test_a_break_across_midnight_in_a_night_shift() -> None:
    night = ShiftSpec("N", (22 * 60, 30 * 60), break_spans=((23 * 60 + 30, 24 * 60 + 30),))
    slices = plan_slices([night], TZ, T0 + 22 * H, T0 + 30 * H)
    assert hours(slices) == [
        (22.0, 23.5, "work", "N"),
        (23.5, 24.5, "break", "N"),
        (24.5, 30.0, "work", "N"),
    ]


def test_no_shifts_means_24_hours_a_day() -> None:
    slices = plan_slices([], TZ, T0 + 5 * H, T0 + 53 * H)
    assert [(s.kind, s.shift.name) for s in slices] == [("work", "day")] * 3
    assert sum(s.end - s.start for s in slices) == 48 * H
    assert work_intervals(slices) == [(T0 + 5 * H, T0 + 53 * H)]


def test_daylight_saving_day_is_23_hours() -> None:
    berlin = "Europe/Berlin"
    start = local_ms(date(2024, 3, 31), 0, berlin)
    [occ] = [o for o in occurrences([], berlin, start, start + 1) if o.start == start]
    assert occ.end - occ.start == 23 * H


def test_current_shift_and_between_shifts() -> None:
    assert current_shift([A, B], TZ, T0 + 21 * H).name == "B"
    assert current_shift([A, B], TZ, T0 + 21 * H).start == T0 + 20 * H
    day_only = ShiftSpec("D", (8 * 60, 17 * 60))
    last = current_shift([day_only], TZ, T0 + 18 * H)  # after work: the shift that just ended
    assert (last.name, last.start, last.end) == ("D", T0 + 8 * H, T0 + 17 * H)
    assert current_shift([], TZ, T0 + 3 * H).start == T0
    assert current_shift([A, B], TZ, T0 + 9 * H).label(TZ) == "2024-05-01 A"


def test_instants_are_taken_between_2000_and_2100_only() -> None:
    from cloud_bridge.metrics.period import PeriodError, parse_instant

    assert parse_instant("2000-01-01T00:00Z", "UTC") == 946_684_800_000
    for text in ("1999-12-31", "2100-01-02", "0001-01-01", "123456789012345678901234567890", "9999-12-31T00:00+14:00"):
        with pytest.raises(PeriodError, match="out of range"):
            parse_instant(text, "Asia/Shanghai")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("9" * 5000, "too long"),  # int() refuses over 4,300 digits: a ValueError and a 500 before
        ("9" * 41, "too long"),
        ("²" * 10, "is not a date"),  # str.isdigit() is true for '²', int() refuses it
        ("٢٠٢٤-٠٥-٠١", "is not a date"),  # Arabic-Indic digits
        ("١٧٠٠٠٠٠٠٠٠٠٠٠", "is not a date"),
    ],
)
def test_an_instant_too_long_or_in_other_digits_is_a_period_error(text: str, reason: str) -> None:
    from cloud_bridge.metrics.period import PeriodError, parse_instant

    with pytest.raises(PeriodError, match=reason) as info:
        parse_instant(text, "Asia/Shanghai")
    assert len(str(info.value)) < 200  # the value is not echoed whole
