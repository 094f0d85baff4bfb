"""OEE per ISO 22400-2, with the six-loss breakdown, from a state timeline, counters and a shift calendar.

Time model (ISO 22400-2; names as in the standard):

    window ─┬─ unscheduled (outside every shift)
            ├─ planned breaks (calendar)                           planned downtime
            └─ POT planned operation time ─┬─ offline, unknown     reported on their own: neither
                                           │                       running nor a stop, and not in PBT
                                           ├─ planned_stop (state)  planned downtime
                                           └─ PBT planned busy time ─┬─ fault, setup, idle (availability losses)
                                                                     ├─ micro-stops (availability or performance,
                                                                     │  a policy)
                                                                     └─ APT actual production time
                                                                        (running, + micro-stops when they are
                                                                         a performance loss)

    availability A = APT / PBT
    observed       = (POT − offline − unknown) / POT   how much of the planned time the device was seen
    A over all planned busy time = APT / (POT − planned_stop)   offline and unknown counted as lost, shown
                                                                 beside A so a mostly-offline device stands out
    performance  P = ideal cycle time × produced / APT   (above 1 means the ideal cycle time is wrong:
                                                           flagged `performance_above_one`, not clipped)
    quality      Q = good / produced
    OEE          = A × P × Q  (= ideal cycle time × good / PBT)

Losses in seconds add up: PBT = fault + setup + idle + micro-stops + speed loss + scrap loss + ideal
cycle time × good, where speed loss = running − ideal cycle time × produced and scrap loss = ideal
cycle time × (produced − good).

Counts: each delta between two counter readings (wrap and reset aware, see counters.py) is spread
over the running time between them — production happens while running — and over offline or unknown
time, whose share is reported as `during_offline` and left out of P and Q. Everything is split at
shift boundaries, and a per-shift result comes with the whole.

Pure functions, no I/O.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from cloud_bridge.metrics.calendar import ShiftLike, ShiftOccurrence, plan_slices
from cloud_bridge.metrics.counters import CounterStep, counter_steps
from cloud_bridge.metrics.timeline import (
    OFFLINE,
    UNKNOWN,
    Segment,
    mark_micro_stops,
    online_intervals,
    state_timeline,
)

MicroStopLoss = Literal["performance", "availability"]
QualityFrom = Literal["good", "reject", "none"]
_NOT_OBSERVED = frozenset((OFFLINE, UNKNOWN))
EPS = 1e-9


@dataclass(frozen=True, slots=True)
class OeeParams:
    """The device's OEE settings as the maths needs them."""

    ideal_cycle_time_s: float | None = None
    micro_stop_s: float = 120.0
    micro_stop_loss: MicroStopLoss = "performance"
    counter_max: float | None = None  # engineering value at which the counters wrap; None: they don't
    resolution: float = 1.0  # one count, in engineering units
    has_counter: bool = True
    quality_from: QualityFrom = "none"  # good counter, reject counter, or no quality data (Q assumed 1)


class OeeSettings(Protocol):
    """A device's OEE settings as configured or announced (the wire's `OeeMeta` is one)."""

    @property
    def total_count_tag(self) -> str | None: ...
    @property
    def good_count_tag(self) -> str | None: ...
    @property
    def reject_count_tag(self) -> str | None: ...
    @property
    def ideal_cycle_time_s(self) -> float | None: ...
    @property
    def counter_max(self) -> float | None: ...
    @property
    def resolution(self) -> float: ...
    @property
    def micro_stop_s(self) -> float: ...
    @property
    def micro_stop_loss(self) -> str: ...


def oee_params(o: OeeSettings) -> OeeParams:
    """The maths' parameters from a device's OEE settings."""
    quality_from: QualityFrom = "good" if o.good_count_tag else "reject" if o.reject_count_tag else "none"
    return OeeParams(
        ideal_cycle_time_s=o.ideal_cycle_time_s,
        micro_stop_s=o.micro_stop_s,
        micro_stop_loss="availability" if o.micro_stop_loss == "availability" else "performance",
        counter_max=o.counter_max,
        resolution=o.resolution,
        has_counter=o.total_count_tag is not None,
        quality_from=quality_from,
    )


@dataclass(frozen=True, slots=True)
class CountPoint:
    """Counter readings at one instant (None: not read, or not configured)."""

    ts: int
    total: float | None = None
    good: float | None = None
    reject: float | None = None


TIME_KEYS = (
    "window",
    "unscheduled",
    "planned_breaks",
    "planned_operation",
    "offline",
    "unknown",
    "planned_stop",
    "planned_busy",
    "running",
    "fault",
    "setup",
    "idle",
    "micro_stops",
    "actual_production",
    "offline_total",
    "running_outside_plan",
)


@dataclass(frozen=True, slots=True)
class TimelineSegment:
    """A stretch of one state in one place of the calendar (`plan`: work, break or none = unscheduled)."""

    start: int
    end: int
    state: str
    micro: bool
    plan: str


@dataclass(frozen=True)
class OeeResult:
    start: int
    end: int
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    time_ms: dict[str, int]
    losses_s: dict[str, float | None]
    counts: dict[str, float]
    flags: tuple[str, ...]
    params: OeeParams
    shift: ShiftOccurrence | None = None
    shifts: tuple[OeeResult, ...] = ()
    observed: float | None = None  # (POT − offline − unknown) / POT
    availability_all: float | None = None  # APT / (POT − planned stop): offline and unknown time counted as lost
    timeline: tuple[TimelineSegment, ...] = ()  # the window's states (of the whole only, not of each shift)

    def to_dict(self, tz: str | ZoneInfo | None = None) -> dict[str, Any]:
        """JSON-ready: times in seconds, ratios as fractions (0..1, P may exceed 1)."""
        d: dict[str, Any] = {
            "from_ms": self.start,
            "to_ms": self.end,
            "availability": _round(self.availability),
            "availability_all": _round(self.availability_all),
            "observed": _round(self.observed),
            "performance": _round(self.performance),
            "quality": _round(self.quality),
            "oee": _round(self.oee),
            "time_s": {k: round(v / 1000, 3) for k, v in self.time_ms.items()},
            "losses_s": {k: (None if v is None else round(v, 3)) for k, v in self.losses_s.items()},
            "counts": {k: round(v, 3) for k, v in self.counts.items()},
            "flags": list(self.flags),
            "ideal_cycle_time_s": self.params.ideal_cycle_time_s,
            "micro_stop_threshold_s": self.params.micro_stop_s,
            "micro_stop_loss": self.params.micro_stop_loss,
            "quality_from": self.params.quality_from,
        }
        if self.shift is not None:
            d["shift"] = self.shift.name
            d["shift_start_ms"] = self.shift.start
            if tz is not None:
                d["shift_label"] = self.shift.label(tz)
        if self.shifts:
            d["shifts"] = [s.to_dict(tz) for s in self.shifts]
        return d


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


@dataclass(slots=True)
class _Atom:
    """A stretch with one state and one place in the calendar."""

    start: int
    end: int
    state: str
    micro: bool
    plan: str  # work, break, none
    shift: ShiftOccurrence | None
    counts: dict[str, float] = field(default_factory=dict)
    covered: bool = False  # between the first and the last reading of the production counter

    @property
    def ms(self) -> int:
        return self.end - self.start


def _atoms(segments: Sequence[Segment], slices: Sequence[Any]) -> list[_Atom]:
    out: list[_Atom] = []
    j = 0
    for seg in segments:
        t = seg.start
        while j < len(slices) and slices[j].end <= t:
            j += 1
        k = j
        while t < seg.end:
            if k < len(slices) and slices[k].start <= t < slices[k].end:
                s = slices[k]
                end = min(seg.end, s.end)
                out.append(_Atom(t, end, seg.state, seg.micro, s.kind, s.shift))
                t = end
                if t >= s.end:
                    k += 1
            else:
                nxt = slices[k].start if k < len(slices) else seg.end
                end = min(seg.end, nxt) if nxt > t else seg.end
                out.append(_Atom(t, end, seg.state, seg.micro, "none", None))
                t = end
    return out


def _cover(atoms: Sequence[_Atom], spans: Sequence[tuple[int, int]]) -> list[_Atom]:
    """Cut the atoms at the ends of `spans` (sorted, disjoint) and mark those inside one as covered:
    performance is measured where the counters say what was made."""
    ends = sorted({t for span in spans for t in span})
    starts = [s for s, _ in spans]
    out: list[_Atom] = []
    for a in atoms:
        cuts = sorted({a.start, a.end, *(t for t in ends if a.start < t < a.end)})
        for lo, hi in itertools.pairwise(cuts):
            i = bisect.bisect_right(starts, lo) - 1  # the span starting at or before lo
            inside = i >= 0 and hi <= spans[i][1]
            out.append(_Atom(lo, hi, a.state, a.micro, a.plan, a.shift, {}, inside))
    return out


def _covered_spans(totals: Sequence[int], steps: Sequence[CounterStep]) -> list[tuple[int, int]]:
    """From the first to the last production counter reading, less the steps of a counter jump (what was
    made in them is unknown, not zero)."""
    spans, t = [], totals[0]
    for st in (s for s in steps if s.change == "jump"):  # in time order, as counter_steps makes them
        if st.t0 > t:
            spans.append((t, st.t0))
        t = max(t, st.t1)
    if totals[-1] > t:
        spans.append((t, totals[-1]))
    return spans


def _attribute(steps: Sequence[CounterStep], atoms: Sequence[_Atom], key: str) -> None:
    """Spread each step's delta over the running (and offline/unknown) time between its readings."""
    ends = [a.end for a in atoms]
    for st in steps:
        if st.delta == 0:
            continue
        i = bisect.bisect_right(ends, st.t0)
        parts: list[tuple[_Atom, int]] = []
        while i < len(atoms) and atoms[i].start < st.t1:
            a = atoms[i]
            ov = min(a.end, st.t1) - max(a.start, st.t0)
            if ov > 0:
                parts.append((a, ov))
            i += 1
        weighted = [(a, ov) for a, ov in parts if a.state == "running" or a.state in _NOT_OBSERVED]
        if not weighted or sum(ov for _, ov in weighted) == 0:
            weighted = parts  # counted while not running (a state read late): by plain time
        total = sum(ov for _, ov in weighted)
        if total <= 0:
            continue
        for a, ov in weighted:
            a.counts[key] = a.counts.get(key, 0.0) + st.delta * ov / total


def compute_oee(
    *,
    start: int,
    end: int,
    states: Sequence[tuple[int, str]],
    online: Sequence[tuple[int, bool]],
    counts: Sequence[CountPoint],
    shifts: Sequence[ShiftLike],
    tz: str | ZoneInfo,
    params: OeeParams,
) -> OeeResult:
    """OEE of one device for [start, end), with a result per shift occurrence in `shifts`.

    `states` and `online` should reach back before `start` (the last state point and transition before
    it) and, to classify a stop that straddles `end`, a micro-stop threshold past it; `counts` should
    include the last reading before `start` and the first after `end` when there are any.
    """
    if end <= start:
        raise ValueError("the window must end after it starts")
    stamps = [t for t, _ in states] + [t for t, _ in online] + [c.ts for c in counts]
    lo = min([start, *stamps])
    hi = max([end, *stamps])
    segments = state_timeline(states, online_intervals(online, lo, hi), lo, hi)
    segments = mark_micro_stops(segments, round(params.micro_stop_s * 1000))
    atoms = _atoms(segments, plan_slices(shifts, tz, lo, hi))
    max_rate = 1.0 / params.ideal_cycle_time_s if params.ideal_cycle_time_s else None
    steps: dict[str, list[CounterStep]] = {}
    for key in ("total", "good", "reject"):
        pts = [(c.ts, float(v)) for c in counts if (v := getattr(c, key)) is not None]
        steps[key] = counter_steps(pts, params.counter_max, resolution=params.resolution, max_rate=max_rate)
    totals = sorted(c.ts for c in counts if c.total is not None)
    if len(totals) >= 2:
        atoms = _cover(atoms, _covered_spans(totals, steps["total"]))
    for key, key_steps in steps.items():
        _attribute(key_steps, atoms, key)

    inside = _clip_atoms(atoms, start, end)
    whole = _aggregate(inside, start, end, params, steps, None)
    per_shift: dict[str, list[_Atom]] = {}
    occ: dict[str, ShiftOccurrence] = {}
    for a in inside:
        if a.shift is not None:
            per_shift.setdefault(a.shift.key, []).append(a)
            occ[a.shift.key] = a.shift
    children = []
    for key in sorted(per_shift, key=lambda k: occ[k].start):
        o = occ[key]
        children.append(_aggregate(per_shift[key], max(o.start, start), min(o.end, end), params, steps, o))
    return dataclasses.replace(whole, shifts=tuple(children), timeline=_timeline(inside))


def _timeline(atoms: Sequence[_Atom]) -> tuple[TimelineSegment, ...]:
    """The atoms as segments, adjacent ones of the same state, micro-stop mark and plan merged."""
    out: list[TimelineSegment] = []
    for a in atoms:
        last = out[-1] if out else None
        if last and last.end == a.start and (last.state, last.micro, last.plan) == (a.state, a.micro, a.plan):
            out[-1] = dataclasses.replace(last, end=a.end)
        else:
            out.append(TimelineSegment(a.start, a.end, a.state, a.micro, a.plan))
    return tuple(out)


def _clip_atoms(atoms: Sequence[_Atom], start: int, end: int) -> list[_Atom]:
    out = []
    for a in atoms:
        lo, hi = max(a.start, start), min(a.end, end)
        if hi <= lo:
            continue
        if lo == a.start and hi == a.end:
            out.append(a)
            continue
        share = (hi - lo) / a.ms  # counts of a cut atom: by time share (they were spread evenly over it)
        counts = {k: v * share for k, v in a.counts.items()}
        out.append(_Atom(lo, hi, a.state, a.micro, a.plan, a.shift, counts, a.covered))
    return out


def _aggregate(
    atoms: Sequence[_Atom],
    start: int,
    end: int,
    params: OeeParams,
    steps: dict[str, list[CounterStep]],
    shift: ShiftOccurrence | None,
) -> OeeResult:
    t = dict.fromkeys(TIME_KEYS, 0)
    t["window"] = end - start
    produced = good_c = reject_c = during_offline = outside_plan = 0.0
    covered_run = covered_micro = 0
    for a in atoms:
        observed = a.state not in _NOT_OBSERVED
        if a.state == OFFLINE:
            t["offline_total"] += a.ms
        if a.plan == "none":
            t["unscheduled"] += a.ms
        elif a.plan == "break":
            t["planned_breaks"] += a.ms
        else:
            t["planned_operation"] += a.ms
            if a.micro:
                t["micro_stops"] += a.ms
                covered_micro += a.ms if a.covered else 0
            elif a.state in t:
                t[a.state] += a.ms
                covered_run += a.ms if a.covered and a.state == "running" else 0
        if a.plan != "work" and a.state == "running":
            t["running_outside_plan"] += a.ms
        n = a.counts.get("total", 0.0)
        if not observed:
            during_offline += n
        elif a.plan != "work":
            outside_plan += n
        else:
            produced += n
            good_c += a.counts.get("good", 0.0)
            reject_c += a.counts.get("reject", 0.0)
    t["planned_busy"] = t["planned_operation"] - t["planned_stop"] - t["offline"] - t["unknown"]
    perf_policy = params.micro_stop_loss == "performance"
    t["actual_production"] = t["running"] + (t["micro_stops"] if perf_policy else 0)

    flags: list[str] = []
    if params.quality_from == "good":
        good = good_c
    elif params.quality_from == "reject":
        good = produced - reject_c
    else:
        good = produced
        flags.append("quality_assumed")
    scrap = produced - good

    pbt, apt = t["planned_busy"], t["actual_production"]
    availability = apt / pbt if pbt > 0 else None
    pot = t["planned_operation"]
    seen_share = (pot - t["offline"] - t["unknown"]) / pot if pot > 0 else None
    busy_all = pot - t["planned_stop"]  # PBT with the offline and unknown time counted in
    availability_all = apt / busy_all if busy_all > 0 else None
    ict = params.ideal_cycle_time_s
    # performance where the counters cover the run time (not past the last reading received)
    counted_apt = covered_run + (covered_micro if perf_policy else 0)
    performance = None
    if params.has_counter and ict and counted_apt > 0:
        performance = ict * produced / (counted_apt / 1000)
    quality = good / produced if params.has_counter and produced > EPS else None
    if quality is not None and (1 < quality < 1 + EPS or -EPS < quality < 0):
        quality = min(max(quality, 0.0), 1.0)  # float noise of two counters spread the same way
    oee = None
    if availability is not None and performance is not None and quality is not None:
        oee = availability * performance * quality

    if pbt <= 0:
        flags.append("no_planned_busy_time")
    if not params.has_counter:
        flags.append("no_counter")
    if not ict:
        flags.append("no_ideal_cycle_time")
    if performance is not None and performance > 1 + EPS:
        flags.append("performance_above_one")  # the ideal cycle time is set too long: fix it, we don't clip
    if params.has_counter and produced > EPS and apt == 0:
        flags.append("counts_without_running")
    if quality is not None and not 0 <= quality <= 1:
        flags.append("quality_out_of_range")  # good counter above total: a wiring or config error
    if t["offline"] or t["unknown"]:
        flags.append("not_observed_time")
    if seen_share is not None and seen_share < 0.5:
        flags.append("mostly_unobserved")  # A, P and Q speak for the part that was seen: less than half
    if params.has_counter and apt - counted_apt > 1000:
        flags.append("counts_cover_part")  # P measured on the run time the counter readings cover
    # a wrap or reset belongs to the window that holds the reading that shows it
    rollovers = sum(1 for s in steps["total"] if s.change == "rollover" and start < s.t1 <= end)
    resets = sum(1 for s in steps["total"] if s.change == "reset" and start < s.t1 <= end)
    jumps = sum(1 for s in steps["total"] if s.change == "jump" and start < s.t1 <= end)
    if rollovers:
        flags.append("counter_rollover")
    if resets:
        flags.append("counter_reset")
    if jumps:
        flags.append("counter_jump")  # set back to a value it could not have counted up to: not counted

    # time-equivalent losses over the whole APT (production scaled up when the counters cover part of it)
    scale = apt / counted_apt if counted_apt > 0 else 0.0
    measured = bool(ict) and params.has_counter and counted_apt > 0
    losses: dict[str, float | None] = {
        "fault": t["fault"] / 1000,
        "setup": t["setup"] / 1000,
        "idle": t["idle"] / 1000,
        "micro_stops": t["micro_stops"] / 1000,
        "speed": (t["running"] / 1000 - (ict or 0) * produced * scale) if measured else None,
        "scrap": (ict or 0) * scrap * scale if measured else None,
    }
    counts = {
        "produced": produced,
        "good": good,
        "scrap": scrap,
        "during_offline": during_offline,
        "outside_plan": outside_plan,
        "rollovers": float(rollovers),
        "resets": float(resets),
        "jumps": float(jumps),
    }
    return OeeResult(
        start,
        end,
        availability,
        performance,
        quality,
        oee,
        t,
        losses,
        counts,
        tuple(flags),
        params,
        shift,
        observed=seen_share,
        availability_all=availability_all,
    )
