"""The update loop of a simulator: work done once per period, and whether it keeps the period."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass
class TickStats:
    """How an update loop keeps its period: ticks done, ticks that ended a whole update period or more after
    they were due (`late`), slots skipped because of them (`missed`: an update loop falling behind)."""

    ticks: int = 0
    late: int = 0
    missed: int = 0
    max_s: float = 0.0  # longest tick
    busy_s: float = 0.0  # time spent in ticks
    changes: int = 0  # values written (OPC UA)

    def as_dict(self) -> dict[str, float]:
        return {"ticks": self.ticks, "late": self.late, "missed": self.missed, "max_s": round(self.max_s, 4),
                "busy_s": round(self.busy_s, 3), "changes": self.changes}  # fmt: skip


async def tick_loop(period: float, tick: Callable[[], Awaitable[None]], stats: TickStats,
                    update_period: float | None = None) -> None:  # fmt: skip
    """Call `tick` once per `period` on a fixed cadence (a late tick does not shift the next ones: the loop
    catches up). A tick that ends `update_period` (default `period`) or more after it was due is late: the
    slots it ran over are skipped, as a PLC scan does, and counted in `stats.missed`. With slices of an
    update period (`period` = update period / n), a slow slice delays the next ones without skipping
    them until the loop is a whole update period behind."""
    behind = update_period or period
    due = time.monotonic()
    while True:
        due += period
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        started = time.monotonic()
        await tick()
        ended = time.monotonic()
        stats.ticks += 1
        stats.busy_s += ended - started
        stats.max_s = max(stats.max_s, ended - started)
        if ended >= due + behind:
            stats.late += 1
            skipped = int((ended - due) // period)
            stats.missed += skipped
            due += period * skipped
