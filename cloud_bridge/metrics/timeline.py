"""A device's state timeline: states from the state tag, cut by the times the device was offline.

Inputs are what both the edge history and the cloud ledger hold:
- online transitions `(ts, online)` from the device's online/offline events;
- state points `(ts, state)` from the state tag mapped through the config's state map, each
  holding until the next one.

A state point only speaks for the online stretch it was taken in: after a reconnect the state is
`unknown` until the next point arrives. Time the device was offline is `offline`, never one of
the machine states.

Pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

MACHINE_STATES = ("running", "idle", "fault", "setup", "planned_stop")
OFFLINE = "offline"
UNKNOWN = "unknown"
ALL_STATES = (*MACHINE_STATES, OFFLINE, UNKNOWN)
STOP_STATES = frozenset(("idle", "fault"))  # unplanned stops; short ones are micro-stops


@dataclass(frozen=True, slots=True)
class Segment:
    start: int  # epoch ms, inclusive
    end: int  # epoch ms, exclusive
    state: str
    micro: bool = False  # part of a micro-stop (a short unplanned stop between runs)

    @property
    def ms(self) -> int:
        return self.end - self.start


def online_intervals(transitions: Sequence[tuple[int, bool]], lo: int, hi: int) -> list[tuple[int, int]]:
    """Intervals in which the device was online, from its transitions, unclipped at the start (an interval
    that began before `lo` keeps its true start) and closed at `hi` when still open. Offline before the
    first transition."""
    out: list[tuple[int, int]] = []
    since: int | None = None
    for ts, online in sorted(transitions, key=lambda t: (t[0], not t[1])):
        if ts >= hi:
            break
        if online and since is None:
            since = ts
        elif not online and since is not None:
            if ts > since:
                out.append((since, ts))
            since = None
    if since is not None and hi > since:
        out.append((since, hi))
    return [(a, b) for a, b in out if b > lo]


def state_timeline(
    states: Sequence[tuple[int, str]], online: Sequence[tuple[int, int]], lo: int, hi: int
) -> list[Segment]:
    """Segments covering [lo, hi) exactly, adjacent ones of the same state merged."""
    if hi <= lo:
        return []
    points = sorted(states, key=lambda p: p[0])
    raw: list[Segment] = []
    t = lo
    i = 0
    for a, b in sorted(online):
        if b <= lo or a >= hi:
            continue
        if a > t:
            raw.append(Segment(t, a, OFFLINE))
        # the state at the start of the stretch: the last point taken in it before then
        state = UNKNOWN
        cursor = a
        while i < len(points) and points[i][0] < a:
            i += 1
        while i < len(points) and points[i][0] < b:
            ts, st = points[i]
            if ts > cursor:
                raw.append(Segment(cursor, ts, state))
                cursor = ts
            state = st
            i += 1
        raw.append(Segment(cursor, b, state))
        t = max(t, b)
    if t < hi:
        raw.append(Segment(t, hi, OFFLINE))
    return _merge(_clip(raw, lo, hi))


def _clip(segments: Sequence[Segment], lo: int, hi: int) -> list[Segment]:
    out = []
    for s in segments:
        a, b = max(s.start, lo), min(s.end, hi)
        if b > a:
            out.append(replace(s, start=a, end=b))
    return out


def clip(segments: Sequence[Segment], lo: int, hi: int) -> list[Segment]:
    """The segments inside [lo, hi)."""
    return _clip(segments, lo, hi)


def _merge(segments: Sequence[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for s in segments:
        if out and out[-1].state == s.state and out[-1].micro == s.micro and out[-1].end == s.start:
            out[-1] = replace(out[-1], end=s.end)
        else:
            out.append(s)
    return out


def mark_micro_stops(segments: Sequence[Segment], threshold_ms: int) -> list[Segment]:
    """Flag unplanned stops (idle or fault, one or several in a row) shorter than `threshold_ms` that
    come right after running and end in running (or are still going on at the end of the timeline)."""
    segs = list(segments)
    if threshold_ms <= 0:
        return segs
    out = list(segs)
    i = 0
    while i < len(segs):
        if segs[i].state not in STOP_STATES:
            i += 1
            continue
        j = i
        while j + 1 < len(segs) and segs[j + 1].state in STOP_STATES and segs[j + 1].start == segs[j].end:
            j += 1
        length = segs[j].end - segs[i].start
        before_running = i > 0 and segs[i - 1].state == "running" and segs[i - 1].end == segs[i].start
        after_ok = j == len(segs) - 1 or (segs[j + 1].state == "running" and segs[j + 1].start == segs[j].end)
        if length < threshold_ms and before_running and after_ok:
            for k in range(i, j + 1):
                out[k] = replace(segs[k], micro=True)
        i = j + 1
    return out
