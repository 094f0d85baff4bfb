"""Cumulative counters read from devices: deltas between readings, telling a wrap from a reset.

A counter register only grows until it wraps at its maximum (16-bit, 32-bit, or a device's own
`counter_max`) or someone resets it (by hand, or at shift change). Production is the sum of the
deltas between consecutive readings:

- the value grew: delta = cur − prev;
- the value fell and a wrap is plausible: delta = (counter_max − prev) + resolution + cur
  ("plausible" means the wrapped delta is at most `max_plausible`: twice what the machine could
  make at its ideal rate in the elapsed time, or half the counter range when no rate is known);
- otherwise it was reset: delta = cur (counted up from zero since the reset);
- unless cur is more than the machine could have counted up from zero in the elapsed time (known from
  `max_plausible`): then it was not reset to zero but set back to another value (a PLC replaced or
  restored from a backup, a preset counter, another device at the address): a jump, delta = 0 (what
  was made between the two readings cannot be known; counting `cur` would add the counter's whole
  history as production).

Pure functions, no I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Change = Literal["count", "rollover", "reset", "jump"]

# largest raw value of the integer register types; floats do not wrap
RAW_MAX: dict[str, int] = {
    "uint16": 0xFFFF,
    "uint32": 0xFFFF_FFFF,
    "uint64": 0xFFFF_FFFF_FFFF_FFFF,
    "int16": 0x7FFF,
    "int32": 0x7FFF_FFFF,
    "int64": 0x7FFF_FFFF_FFFF_FFFF,
}


def default_counter_max(tag_type: str | None, scale: float = 1.0, offset: float = 0.0) -> float | None:
    """The engineering value at which a counter of this register type wraps (None: it does not)."""
    raw = RAW_MAX.get(tag_type or "")
    if raw is None:
        return None
    if scale == 1.0 and offset == 0.0:
        return raw
    return raw * scale + offset


@dataclass(frozen=True, slots=True)
class Delta:
    value: float
    change: Change


def counter_delta(
    prev: float,
    cur: float,
    counter_max: float | None = None,
    *,
    resolution: float = 1.0,
    max_plausible: float | None = None,
) -> Delta:
    """The count between two readings of a cumulative counter (see the module doc for the rules)."""
    if cur >= prev:
        return Delta(cur - prev, "count")
    if counter_max is not None and prev <= counter_max:
        wrapped = (counter_max - prev) + resolution + cur
        limit = max_plausible if max_plausible is not None else (counter_max + resolution) / 2
        if 0 <= wrapped <= limit:
            return Delta(wrapped, "rollover")
    if max_plausible is not None and cur > max_plausible:
        return Delta(0.0, "jump")
    return Delta(max(cur, 0.0), "reset")


@dataclass(frozen=True, slots=True)
class CounterStep:
    """What a counter did between two readings at t0 and t1 (epoch ms)."""

    t0: int
    t1: int
    delta: float
    change: Change


def counter_steps(
    points: Sequence[tuple[int, float]],
    counter_max: float | None = None,
    *,
    resolution: float = 1.0,
    max_rate: float | None = None,
) -> list[CounterStep]:
    """Steps between consecutive (ts, value) readings, sorted by time.

    `max_rate` (counts per second, e.g. 1 / ideal cycle time) bounds how far a counter can move in the
    time between two readings; it is what tells a wrap from a reset on wide counters.
    """
    ordered = sorted(points, key=lambda p: p[0])
    out: list[CounterStep] = []
    for (t0, v0), (t1, v1) in itertools.pairwise(ordered):
        if t1 <= t0:
            continue
        plausible = None
        if max_rate is not None and max_rate > 0:
            plausible = 2.0 * max_rate * (t1 - t0) / 1000.0 + 10 * resolution
        d = counter_delta(v0, v1, counter_max, resolution=resolution, max_plausible=plausible)
        out.append(CounterStep(t0, t1, d.value, d.change))
    return out


def increase_within(steps: Sequence[CounterStep], intervals: Sequence[tuple[int, int]]) -> float:
    """The part of the counters' increase that falls inside `intervals`, spreading each step evenly
    over its time (for gateway-side counters such as readings taken, which grow steadily)."""
    ivs = sorted(intervals)
    total = 0.0
    for s in steps:
        span = s.t1 - s.t0
        if span <= 0 or s.delta == 0:
            continue
        inside = overlap_ms([(s.t0, s.t1)], ivs)
        total += s.delta * inside / span
    return total


def overlap_ms(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> int:
    """Total length of the intersection of two sets of intervals (each may be unsorted, not overlapping)."""
    xs, ys = sorted(a), sorted(b)
    i = j = 0
    total = 0
    while i < len(xs) and j < len(ys):
        lo = max(xs[i][0], ys[j][0])
        hi = min(xs[i][1], ys[j][1])
        if hi > lo:
            total += hi - lo
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return total
