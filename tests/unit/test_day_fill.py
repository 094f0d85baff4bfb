"""The background day fill's pure parts: which days are closed, runs of consecutive days, when it wakes."""

from __future__ import annotations

from datetime import date

import pytest

from cloud_bridge.cloud.evidence.fill import AFTER_MIDNIGHT_MS, closed_days, next_wake, runs
from cloud_bridge.metrics.calendar import local_ms
from edge_config import ConfigError, load_text
from edge_config.models import CloudConfig

TZ = "Asia/Shanghai"
H = 3_600_000
DAY = 24 * H
T0 = local_ms(date(2024, 5, 10), 0, TZ)


def test_closed_days_end_at_today_s_midnight() -> None:
    days = closed_days(T0 + 15 * H, TZ, 3)
    assert days == [(T0 - 3 * DAY, T0 - 2 * DAY), (T0 - 2 * DAY, T0 - DAY), (T0 - DAY, T0)]
    assert closed_days(T0, TZ, 1) == [(T0 - DAY, T0)]  # at midnight, yesterday is closed


def test_closed_days_follow_daylight_saving() -> None:
    tz = "Europe/Berlin"
    today = local_ms(date(2024, 4, 1), 0, tz)
    (a, b), (c, d) = closed_days(today + H, tz, 2)
    assert (b - a, d - c) == (DAY, DAY - H)  # 31 March 2024 had 23 hours


def test_runs_are_consecutive_and_bounded() -> None:
    days = [(i * DAY, (i + 1) * DAY) for i in (0, 1, 2, 4, 5, 6, 7, 8)]
    assert [[d[0] // DAY for d in r] for r in runs(days, 3)] == [[0, 1, 2], [4, 5, 6], [7, 8]]
    assert runs([], 3) == []


def test_next_wake_is_the_sooner_of_the_period_and_midnight() -> None:
    assert next_wake(T0 + H, 900, [TZ]) == T0 + H + 900_000
    late = T0 + DAY - 5 * 60_000
    assert next_wake(late, 900, [TZ]) == T0 + DAY + AFTER_MIDNIGHT_MS
    assert next_wake(late, 900, ["UTC", TZ]) == T0 + DAY + AFTER_MIDNIGHT_MS  # UTC's midnight is 8 h later


@pytest.mark.parametrize(
    ("text", "where"),
    [("evidence: {fill_days: -1}", "fill_days"), ("evidence: {fill_every_s: 5}", "fill_every_s")],
)
def test_fill_settings_are_checked(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(text, CloudConfig, "cloud.yaml")
    assert where in str(info.value)
    assert load_text("evidence: {fill_days: 0}", CloudConfig, "cloud.yaml").evidence.fill_days == 0
