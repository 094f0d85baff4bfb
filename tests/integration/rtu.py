"""Helpers for the Modbus integration tests: a `socat` pty pair standing in for an RS-485 line (the
gateway opens one end, a simulator the other), a hostile far end that answers as a test says, and a
device channel that records what a poll loop reports."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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


Pieces = Sequence[tuple[float, bytes]]


class HostileLine:
    """The devices' end of a line, answering as a test says (in a thread): `answer(request)` gives the
    answer as pieces `(seconds after the request, bytes)`. A request that arrives while an answer is
    still going out cuts the rest of it off (the device turns to the new request), so a device that
    trickles its answer holds the line only as long as the gateway waits for it."""

    def __init__(self, port: str, answer: Callable[[bytes], Pieces]) -> None:
        self.port = port
        self.answer = answer
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile line", daemon=True)
        self._ser: Any = None

    def __enter__(self) -> HostileLine:
        import serial  # pyserial

        self._ser = serial.Serial(self.port, 9600, timeout=0.01)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._ser.close()

    def _run(self) -> None:
        ser = self._ser
        pending = b""
        while not self._stop.is_set():
            chunk = ser.read(256)
            if chunk:
                pending += chunk
                continue
            if not pending:
                continue
            frame, pending, start = pending, b"", time.monotonic()  # 10 ms quiet: the request is whole
            self.requests.append(frame)
            for at, piece in self.answer(frame):
                while time.monotonic() < start + at and not ser.in_waiting and not self._stop.is_set():
                    time.sleep(0.002)
                if ser.in_waiting or self._stop.is_set():
                    break  # a new request: the rest of this answer is not sent
                ser.write(piece)
                ser.flush()


def trickle(data: bytes, every: float, first: float = 0.01) -> Pieces:
    """`data` a byte at a time, `every` seconds apart."""
    return [(first + i * every, data[i : i + 1]) for i in range(len(data))]
