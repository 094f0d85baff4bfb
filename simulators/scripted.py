"""A machine that plays a script: a list of (duration, state, speed) segments, with counters.

For end-to-end tests of OEE and evidence: served by `ModbusTcpSimulator` like any equipment model,
it makes exactly the production the script says, so what the gateway, the cloud and the evidence
pack report can be checked against the script. Counters are analytic (no drift), wrap at
`counter_max` (16-bit by default) and can be reset at the start of a segment (`reset=True`).

States use the loom's codes: 0 idle, 1 running, 2 fault, 3 setup, 4 planned stop.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STATE_CODES: dict[str, int] = {"idle": 0, "running": 1, "fault": 2, "setup": 3, "planned_stop": 4}

SCRIPTED_TAGS: list[dict[str, Any]] = [
    {"name": "run_state", "address": "hr:0", "type": "uint16", "domain": "equipment",
     "description": "0 idle, 1 running, 2 fault, 3 setup, 4 planned stop"},
    {"name": "total_count", "address": "hr:1", "type": "uint16", "unit": "pcs", "domain": "production",
     "description": "parts made (16-bit, wraps)"},
    {"name": "reject_count", "address": "hr:2", "type": "uint16", "unit": "pcs", "domain": "quality",
     "description": "parts rejected (16-bit, wraps)"},
    {"name": "rate", "address": "hr:3", "type": "uint16", "unit": "pcs/min", "domain": "equipment",
     "description": "current production rate"},
    {"name": "energy_kwh", "address": "ir:0", "type": "float32", "unit": "kWh", "domain": "energy",
     "description": "active energy"},
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Segment:
    duration: float  # seconds
    state: str  # idle, running, fault, setup, planned_stop
    speed: float = 0.0  # parts per second while in this segment
    reject_ratio: float = 0.0  # share of the parts that are rejects
    reset: bool = False  # counters are reset to zero when the segment starts

    def __post_init__(self) -> None:
        if self.state not in STATE_CODES:
            raise ValueError(f"unknown state {self.state!r} (one of {', '.join(STATE_CODES)})")
        if self.duration <= 0 or self.speed < 0 or not 0 <= self.reject_ratio <= 1:
            raise ValueError("duration must be above 0, speed 0 or more, reject_ratio in [0, 1]")


class ScriptedMachine:
    """Plays `segments` from the first `step(now)`; after the end the last segment's state stays, and
    production stops."""

    def __init__(
        self,
        segments: Sequence[Segment],
        *,
        start_total: int = 0,
        start_reject: int = 0,
        counter_max: int = 0xFFFF,
        power_kw: float = 3.0,
    ) -> None:
        if not segments:
            raise ValueError("a script needs at least one segment")
        self.segments = list(segments)
        self.start_total = start_total
        self.start_reject = start_reject
        self.counter_max = counter_max
        self.power_kw = power_kw
        self.t0: float | None = None
        self.now: float | None = None
        starts = [0.0]
        for s in self.segments:
            starts.append(starts[-1] + s.duration)
        self.starts = starts  # starts[i]: offset of segment i; starts[-1]: end of the script

    @property
    def tags(self) -> Sequence[Mapping[str, Any]]:
        return SCRIPTED_TAGS

    @property
    def length(self) -> float:
        return self.starts[-1]

    def step(self, now: float) -> None:
        if self.t0 is None:
            self.t0 = now
        self.now = now

    # ------------------------------------------------------------ the script's truth (offsets in seconds)

    def segment_at(self, offset: float) -> int:
        for i in range(len(self.segments)):
            if offset < self.starts[i + 1]:
                return i
        return len(self.segments) - 1

    def made(self, offset: float, *, rejects: bool = False) -> float:
        """Parts made (or rejected) from the start of the script to `offset`, fractional."""
        total = 0.0
        for s, a in zip(self.segments, self.starts, strict=False):
            span = min(max(offset - a, 0.0), s.duration)
            total += s.speed * span * (s.reject_ratio if rejects else 1.0)
        return total

    def time_in(self, state: str, lo: float = 0.0, hi: float | None = None) -> float:
        """Seconds the script spends in `state` between two offsets."""
        hi = self.length if hi is None else hi
        out = 0.0
        for s, a in zip(self.segments, self.starts, strict=False):
            if s.state == state:
                out += max(0.0, min(hi, a + s.duration) - max(lo, a))
        return out

    def counter(self, offset: float, *, rejects: bool = False) -> int:
        """The register value at `offset`: from the start value (or the last reset), wrapped."""
        base = self.start_reject if rejects else self.start_total
        since = 0.0
        for s, a in zip(self.segments, self.starts, strict=False):
            if s.reset and a <= offset:
                base, since = 0, a
        made = math.floor(self.made(offset, rejects=rejects) - self.made(since, rejects=rejects) + 1e-9)
        return (base + made) % (self.counter_max + 1)

    # ------------------------------------------------------------ EquipmentModel

    def raw_values(self) -> dict[str, bool | int | float | str]:
        offset = 0.0 if self.t0 is None or self.now is None else self.now - self.t0
        seg = self.segments[self.segment_at(offset)]
        running = offset < self.length and seg.speed > 0
        return {
            "run_state": STATE_CODES[seg.state],
            "total_count": self.counter(offset),
            "reject_count": self.counter(offset, rejects=True),
            "rate": round(seg.speed * 60) if running else 0,
            "energy_kwh": self.power_kw * offset / 3600.0,
        }


def scripted_device_config(
    device_id: str,
    host: str,
    port: int,
    *,
    ideal_cycle_time: float,
    poll_interval: float = 1.0,
    micro_stop: float = 120.0,
    name: str = "",
) -> dict[str, Any]:
    """A device dict for a scripted machine; it validates as edge_config's ModbusTcpDevice."""
    return {
        "id": device_id,
        "name": name or f"scripted {device_id}",
        "type": "scripted_machine",
        "line": "test-line",
        "production": True,
        "driver": "modbus_tcp",
        "connection": {"host": host, "port": port, "unit_id": 1, "timeout": "1s"},
        "poll_interval": poll_interval,
        "tags": copy.deepcopy(SCRIPTED_TAGS),
        "oee": {
            "state_tag": "run_state",
            "states": {"idle": [0], "running": [1], "fault": [2], "setup": [3], "planned_stop": [4]},
            "total_count_tag": "total_count",
            "reject_count_tag": "reject_count",
            "ideal_cycle_time": ideal_cycle_time,
            "micro_stop": micro_stop,
        },
    }
