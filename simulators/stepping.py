"""The update loop of a simulator: work done once per period, and whether it keeps the period."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass
class TickStats:
    """How an update loop keeps its period: ticks done, ticks that ended after the next one was due."""

    ticks: int = 0
    late: int = 0
    max_s: float = 0.0  # longest tick
    busy_s: float = 0.0  # time spent in ticks
    changes: int = 0  # values written (OPC UA)

    def record(self, took: float, late: bool) -> None:
        self.ticks += 1
        self.busy_s += took
        self.max_s = max(self.max_s, took)
        if late:
            self.late += 1

    def as_dict(self) -> dict[str, float]:
        return {"ticks": self.ticks, "late": self.late, "max_s": round(self.max_s, 4),
                "busy_s": round(self.busy_s, 3), "changes": self.changes}  # fmt: skip


async def tick_loop(period: float, tick: Callable[[], Awaitable[None]], stats: TickStats) -> None:
    """Call `tick` once per `period` on a fixed cadence (a late tick does not shift the next ones) and
    count, in `stats`, the ticks that ended after the next was due: an update loop falling behind."""
    next_due = time.monotonic()
    while True:
        next_due += period
        await asyncio.sleep(max(0.0, next_due - time.monotonic()))
        started = time.monotonic()
        await tick()
        ended = time.monotonic()
        stats.record(ended - started, ended > next_due + period)
        if ended > next_due + period:  # skip the slots already missed, as a PLC scan would
            next_due += period * int((ended - next_due) // period)
