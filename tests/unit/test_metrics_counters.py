"""Counter deltas: growth, wraps (16/32-bit, scaled), resets and jumps, told apart by plausibility; spreading
over time."""

from __future__ import annotations

import pytest

from cloud_bridge.metrics.counters import (
    CounterStep,
    counter_delta,
    counter_steps,
    default_counter_max,
    increase_within,
    overlap_ms,
)


@pytest.mark.parametrize(
    ("prev", "cur", "counter_max", "plausible", "value", "change"),
    [
        (100, 150, 65535, None, 50, "count"),
        (150, 150, 65535, None, 0, "count"),
        # 16-bit wrap: 65530 → 65535 is 5, → 0 is 1 more, → 4 is 4 more
        (65530, 4, 65535, None, 10, "rollover"),
        # a fall too large to be a wrap (more than half the range) is a reset: counted up from zero
        (1000, 5, 65535, None, 5, "reset"),
        # without a known rate a fall near the top reads as a wrap ...
        (60000, 100, 65535, None, 5636, "rollover"),
        # ... with a rate it cannot be: a reset
        (60000, 100, 65535, 200, 100, "reset"),
        (0xFFFF_FFFA, 3, 0xFFFF_FFFF, None, 9, "rollover"),
        # a counter that does not wrap (float register): any fall is a reset
        (10.5, 2.0, None, None, 2.0, "reset"),
        # a signed counter reset below zero counts nothing
        (100, -5, None, None, 0.0, "reset"),
        # set back to a value it could not have counted up to from zero in the time (at most 200 here): a
        # PLC restored from a backup, a preset counter; counting `cur` would add its whole history
        (5_000_000, 4_000_010, 0xFFFF_FFFF, 200, 0.0, "jump"),
        (5_000_000, 200, 0xFFFF_FFFF, 200, 200, "reset"),  # at the bound: a reset
        (5_000_000, 4_000_010, 0xFFFF_FFFF, None, 4_000_010, "reset"),  # no rate known: cannot tell
    ],
)
def test_counter_delta(
    prev: float, cur: float, counter_max: float | None, plausible: float | None, value: float, change: str
) -> None:
    d = counter_delta(prev, cur, counter_max, max_plausible=plausible)
    assert (d.value, d.change) == (pytest.approx(value), change)


def test_scaled_counter_wraps_by_its_resolution() -> None:
    # uint16 × 0.1: wraps at 6553.5; 6553.0 → 6553.5 (0.5) → 0 (0.1) → 0.2 (0.2)
    d = counter_delta(6553.0, 0.2, 6553.5, resolution=0.1)
    assert d.change == "rollover" and d.value == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("tag_type", "scale", "expected"),
    [
        ("uint16", 1.0, 65535),
        ("uint32", 1.0, 4294967295),
        ("int16", 1.0, 32767),
        ("int32", 1.0, 2147483647),
        ("uint64", 1.0, 2**64 - 1),
        ("uint16", 0.1, pytest.approx(6553.5)),
        ("float32", 1.0, None),
        ("bool", 1.0, None),
        (None, 1.0, None),
    ],
)
def test_default_counter_max(tag_type: str | None, scale: float, expected: object) -> None:
    assert default_counter_max(tag_type, scale) == expected


def test_steps_tell_wrap_from_reset_by_the_ideal_rate() -> None:
    # 10 parts/s at most: a 1 s step can move ~10, so 14 → 2 is a reset, 65530 → 4 a wrap
    points = [(3000, 2), (0, 65530), (1000, 4), (2000, 14), (2000, 99)]  # unsorted; a repeated ts is skipped
    steps = counter_steps(points, 65535, max_rate=10.0)
    assert steps == [
        CounterStep(0, 1000, 10, "rollover"),
        CounterStep(1000, 2000, 10, "count"),
        CounterStep(2000, 3000, 2, "reset"),
    ]


def test_increase_within_spreads_evenly() -> None:
    steps = [CounterStep(0, 10_000, 100, "count"), CounterStep(10_000, 20_000, 50, "count")]
    assert increase_within(steps, [(2_000, 7_000)]) == pytest.approx(50)
    assert increase_within(steps, [(8_000, 12_000), (15_000, 30_000)]) == pytest.approx(20 + 10 + 25)
    assert increase_within(steps, []) == 0


def test_overlap() -> None:
    assert overlap_ms([(0, 10), (20, 30)], [(5, 25)]) == 10
    assert overlap_ms([(5, 25)], [(20, 30), (0, 10)]) == 10
    assert overlap_ms([(0, 10)], [(10, 20)]) == 0
