"""Helpers for the Modbus integration tests: a `socat` pty pair standing in for an RS-485 line (the
gateway opens one end, a simulator the other), and a device channel that records what a poll loop
reports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from drivers.base import Changes, Reading
from gateway.channel import DeviceState
from gateway.poller import poll_loop
from simulators.pty import PtyPair


@contextmanager
def pty_pair(directory: Path, name: str = "tty") -> Iterator[tuple[str, str]]:
    """Start socat with two linked ptys; yield (the gateway's end, the devices' end); stop socat."""
    pair = PtyPair(directory, name)
    try:
        ends = pair.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield ends
    finally:
        pair.stop()


class Recorder:
    """Stands in for a DeviceChannel: records scans (with the monotonic time) and status changes.

    A scan reported by exception is recorded whole: the unchanged tags it covered with their last
    reported reading (which the driver must have reported before), at the scan's time.
    """

    def __init__(self, device_id: str) -> None:
        self.state = DeviceState(device_id, device_id, "modbus")
        self.scans: list[tuple[float, list[Reading]]] = []
        self.changes: list[Changes] = []
        self.status: list[tuple[float, bool, str]] = []
        self._last: dict[str, Reading] = {}

    def set_online(self, online: bool, reason: str) -> None:
        if not self.status or self.status[-1][1] != online:
            self.status.append((time.monotonic(), online, reason))

    def emit(self, readings: Sequence[Reading]) -> int:
        self.scans.append((time.monotonic(), list(readings)))
        return len(readings)

    def emit_changes(self, scan: Changes) -> int:
        self.changes.append(scan)
        for r in scan.readings:
            self._last[r.tag] = r
        changed = {r.tag for r in scan.readings}
        same = [self._last[n]._replace(ts=scan.ts) for s in scan.covered for n in s.names if n not in changed]
        self.scans.append((time.monotonic(), [*scan.readings, *same]))
        return len(scan.readings)

    def good_times(self, tag: str | None = None) -> list[float]:
        """When scans with good readings (of `tag`, or of all their tags) arrived."""
        return [
            t
            for t, rs in self.scans
            if rs
            and all(r.quality == "good" for r in rs if tag is None or r.tag == tag)
            and (tag is None or any(r.tag == tag for r in rs))
        ]


async def poll_for(pairs: Sequence[tuple[Any, Recorder]], seconds: float) -> None:
    """Run one poll loop per (driver, recorder) for `seconds`, then stop them all."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(poll_loop(rec, drv, 1.0, stop)) for drv, rec in pairs]  # type: ignore[arg-type]
    try:
        await asyncio.sleep(seconds)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
