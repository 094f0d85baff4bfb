"""The shared time helpers: one backoff rule for the poller, the publisher and the ingester; the clock."""

from __future__ import annotations

import time

import pytest

from edge_config.timing import backoff_delay, now_ms


def test_backoff_doubles_from_base_up_to_the_cap() -> None:
    assert [backoff_delay(a, base=0.5, cap=4.0) for a in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [backoff_delay(a, cap=60.0) for a in range(1, 8)] == [1, 2, 4, 8, 16, 32, 60]
    assert backoff_delay(0) == 1.0  # attempt 0 counts as the first


def test_backoff_jitter_spreads_within_its_fraction() -> None:
    delays = [backoff_delay(8, cap=4.0, jitter=0.2) for _ in range(200)]
    assert all(3.2 <= d <= 4.8 for d in delays)
    assert len({round(d, 6) for d in delays}) > 10
    assert backoff_delay(1, base=0.5, jitter=0.2) == pytest.approx(0.5, rel=0.21)


def test_now_ms_is_the_wall_clock_in_milliseconds() -> None:
    before = time.time() * 1000
    ms = now_ms()
    after = time.time() * 1000
    assert isinstance(ms, int) and before - 1 <= ms <= after + 1
