"""Evidence maths for the MIIT SME digital level indicators (2024): ratios, score bands, online time,
data completeness and the business areas data is collected for.

Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cloud_bridge.metrics.counters import counter_steps, increase_within, overlap_ms
from cloud_bridge.metrics.labels import COLLECTION_AREAS, DOMAIN_AREAS
from cloud_bridge.metrics.timeline import online_intervals

# MIIT 2024 bands for 生产设备数字化率 and 生产设备联网率: [0,10%] → 0, (10,20] → 1.5, (20,40] → 3,
# (40,60] → 4.5, (60,100] → 6 points
BANDS: tuple[tuple[int, float], ...] = ((10, 0.0), (20, 1.5), (40, 3.0), (60, 4.5), (100, 6.0))


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def score_band(numerator: int, denominator: int) -> float | None:
    """Points for a ratio of equipment counts under the MIIT 2024 bands; None without a denominator.

    Exact on integers: 1 of 10 (10 %) scores 0, 2 of 10 (20 %) 1.5, 61 of 100 scores 6.
    """
    if denominator <= 0:
        return None
    for upper_pct, points in BANDS:
        if numerator * 100 <= upper_pct * denominator:
            return points
    return BANDS[-1][1]


def band_label(numerator: int, denominator: int) -> str:
    """The band a ratio falls in, as written in the indicators: '[0,10%]', '(10,20%]', ..."""
    if denominator <= 0:
        return "—"
    lower = 0
    for upper_pct, _ in BANDS:
        if numerator * 100 <= upper_pct * denominator:
            return f"[0,{upper_pct}%]" if lower == 0 else f"({lower},{upper_pct}%]"
        lower = upper_pct
    return "(60,100%]"


@dataclass(frozen=True, slots=True)
class OnlineSummary:
    intervals: tuple[tuple[int, int], ...]  # online, clipped to the period
    online_ms: int  # anywhere in the period
    online_planned_ms: int  # inside planned operation time
    planned_ms: int
    rate: float | None  # online_planned_ms / planned_ms


def cap_online(transitions: Sequence[tuple[int, bool]], cap_ms: int | None) -> list[tuple[int, bool]]:
    """The transitions with the device taken offline at `cap_ms` (its gateway's last sign of life, when
    the gateway is offline now and has not reported the device since)."""
    out = sorted(transitions, key=lambda t: (t[0], not t[1]))
    if cap_ms is None:
        return out
    kept = [t for t in out if t[0] <= cap_ms]
    if kept and kept[-1][1] and all(t[0] <= cap_ms for t in out):
        kept.append((cap_ms, False))
        return kept
    return out


def online_summary(
    transitions: Sequence[tuple[int, bool]], start: int, end: int, work: Sequence[tuple[int, int]]
) -> OnlineSummary:
    """Online time of a device in [start, end) from its online/offline transitions (those before `start`
    included), and the time-based online rate against the planned operation intervals `work`."""
    ivs = [(max(a, start), min(b, end)) for a, b in online_intervals(transitions, start, end)]
    ivs = [(a, b) for a, b in ivs if b > a]
    planned = [(max(a, start), min(b, end)) for a, b in work if min(b, end) > max(a, start)]
    planned_ms = sum(b - a for a, b in planned)
    online_planned = overlap_ms(ivs, planned)
    return OnlineSummary(
        tuple(ivs), sum(b - a for a, b in ivs), online_planned, planned_ms, ratio(online_planned, planned_ms)
    )


def online_at(transitions: Sequence[tuple[int, bool]], ts: int) -> bool:
    """Was the device online at `ts` (its last transition at or before then says so)."""
    state = False
    for t, online in sorted(transitions, key=lambda t: (t[0], not t[1])):
        if t > ts:
            break
        state = online
    return state


@dataclass(frozen=True, slots=True)
class Completeness:
    received: float  # good readings the gateway took inside planned time (from its reading counters)
    expected: float  # readings the poll plan calls for inside planned time
    ratio: float | None


def completeness(
    good_readings: Sequence[tuple[int, float]], work: Sequence[tuple[int, int]], expected_per_s: float | None
) -> Completeness:
    """Data completeness = good readings taken / readings expected, inside planned operation time.

    `good_readings` are the gateway's cumulative good-reading counter at instants (it restarts from zero
    when the gateway restarts: a fall is a reset); `expected_per_s` is Σ over the device's tags of
    1 / poll interval (None when a tag has no fixed interval, e.g. an OPC UA subscription).
    """
    steps = counter_steps(good_readings, None)
    received = increase_within(steps, work)
    if expected_per_s is None:
        return Completeness(received, 0.0, None)
    expected = expected_per_s * sum(b - a for a, b in work) / 1000
    return Completeness(received, expected, ratio(received, expected))


# ---------------------------------------------------------------- networked (联网)


@dataclass(frozen=True, slots=True)
class NetworkedRule:
    """What makes a device networked (联网) for a period, besides having delivered good data.

    `min_online_ratio`: online for at least this share of the period's planned operation time (of the whole
    period when it has none); `min_completeness`: data completeness at least this (where it is measurable; a
    device read by subscription has none, and the condition does not apply to it). The default, online for
    at least half of the planned time, keeps a device connected for a demonstration or one afternoon out of
    the count while one switched off for a week of maintenance in a month still counts.
    """

    min_online_ratio: float = 0.5
    min_completeness: float | None = None


# why a device is not networked: keys of cloud_bridge.metrics.labels.NOT_NETWORKED
NO_GOOD_DATA, ONLINE_BELOW, COMPLETENESS_BELOW = "no_good_data", "online_below", "completeness_below"


def networked_fails(
    rule: NetworkedRule,
    *,
    good_samples: int,
    online_planned_ms: int,
    planned_ms: int,
    online_ms: int,
    window_ms: int,
    completeness: float | None,
) -> tuple[str, ...]:
    """The conditions of `rule` a device fails (none: it is networked)."""
    fails: list[str] = []
    if good_samples <= 0:
        fails.append(NO_GOOD_DATA)
    online, basis = (online_planned_ms, planned_ms) if planned_ms > 0 else (online_ms, window_ms)
    if rule.min_online_ratio > 0 and (basis <= 0 or online < rule.min_online_ratio * basis):
        fails.append(ONLINE_BELOW)
    if rule.min_completeness is not None and completeness is not None and completeness < rule.min_completeness:
        fails.append(COMPLETENESS_BELOW)
    return tuple(fails)


# ---------------------------------------------------------------- business areas (数据采集)


@dataclass(frozen=True, slots=True)
class AreaSpec:
    """A business area of 数据采集 and the tag domains whose tags collect data for it."""

    key: str
    zh: str
    en: str
    domains: tuple[str, ...]


# the indicators' areas (labels.COLLECTION_AREAS); each is covered by the tag domain of the same key, if any
DEFAULT_AREAS: tuple[AreaSpec, ...] = tuple(
    AreaSpec(k, lb.zh, lb.en, (k,) if k in DOMAIN_AREAS else ()) for k, lb in COLLECTION_AREAS.items()
)


@dataclass(frozen=True, slots=True)
class TaggedDevice:
    """A connected device as the areas see it: its tags with their domains, and what it delivered."""

    id: str
    tags: Sequence[tuple[str, str | None]]  # (tag name, domain)
    has_data: bool  # good data arrived from it in the period
    networked: bool


@dataclass(frozen=True, slots=True)
class AreaCoverage:
    spec: AreaSpec
    tags: tuple[str, ...]  # "device/tag" of every tag collecting for it
    devices: tuple[str, ...]  # the devices with such tags
    devices_with_data: tuple[str, ...]  # those whose good data arrived in the period
    counted: bool  # a networked device collects for it: the area counts as automatically collected


def area_coverage(specs: Sequence[AreaSpec], devices: Sequence[TaggedDevice]) -> list[AreaCoverage]:
    """Every area of `specs`, in their order, with the tags and devices that collect data for it."""
    out = []
    for spec in specs:
        domains = set(spec.domains)
        tags: list[str] = []
        ids: list[str] = []
        for d in devices:
            mine = [name for name, domain in d.tags if domain in domains]
            if mine:
                tags.extend(f"{d.id}/{name}" for name in mine)
                ids.append(d.id)
        with_data = tuple(d.id for d in devices if d.id in ids and d.has_data)
        counted = any(d.networked for d in devices if d.id in ids)
        out.append(AreaCoverage(spec, tuple(tags), tuple(dict.fromkeys(ids)), with_data, counted))
    return out
