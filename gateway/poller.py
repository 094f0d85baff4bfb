"""The polling loop of one device: poll groups on their own cadence, reconnect with backoff, never overlap.

A driver may read its tags in poll groups (`poll_intervals`, and `read(groups)` for the groups that
are due); a driver without groups is one group at the device's interval. One loop per device, so
scans never overlap: a scan that runs past a group's next slot counts the missed slots as overruns
and goes on at the next slot on the cadence; missed scans are not queued.

A driver that reports by exception (`read_changes`) is read that way: only changed tags are handed
over, and the channel heartbeats the rest.

A device that fails is reported offline and retried after a capped exponential backoff with jitter
(the driver's `backoff_max` when it has one); for a slave on a shared bus that is the probe, so a
dead slave costs the others at most one timeout per backoff period.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from drivers.base import ChangeDriver, Changes, Driver, DriverError, Reading
from edge_config.timing import backoff_delay
from gateway.channel import DeviceChannel

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_CAP = 30.0
DUE_SLACK = 0.002  # groups due within this of each other are read in one scan
OVERRUN_LOG_EVERY = 60.0


@runtime_checkable
class GroupedDriver(Protocol):
    """A driver that reads its tags in poll groups."""

    @property
    def poll_intervals(self) -> Sequence[float]: ...

    async def read(self, groups: Sequence[int] | None = None) -> Sequence[Reading]: ...


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _wake_on_stop(fut: asyncio.Future[None], _stopped: object) -> None:
    _wake(fut)


class Sleeper:
    """Sleeps that end early when `stop` is set, without a task or an exception per sleep.

    `sleep_or_stop` costs a task and two exceptions each time; a poll loop sleeps once per scan.
    """

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._stopped: asyncio.Task[bool] | None = None

    async def sleep(self, seconds: float) -> None:
        if self._stop.is_set():
            return
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        if self._stopped is None:
            self._stopped = loop.create_task(self._stop.wait())
        fut: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _wake, fut)
        wake = functools.partial(_wake_on_stop, fut)
        self._stopped.add_done_callback(wake)
        try:
            await fut
        finally:
            timer.cancel()
            self._stopped.remove_done_callback(wake)

    def close(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.cancel()


def next_slot(next_due: float, now: float, interval: float) -> tuple[float, int]:
    """The next scan time on the cadence, and how many slots were missed (overruns are counted, not queued)."""
    if next_due >= now:
        return next_due, 0
    missed = int((now - next_due) // interval) + 1
    return next_due + missed * interval, missed


class GroupSchedule:
    """When each poll group is due next. Pure: the caller gives the time."""

    def __init__(self, intervals: Sequence[float], now: float) -> None:
        if not intervals or any(i <= 0 for i in intervals):
            raise ValueError(f"poll intervals must be above 0: {list(intervals)}")
        self.intervals = tuple(intervals)
        self.next_due = [now] * len(self.intervals)

    def due(self, now: float) -> list[int]:
        """The groups to read now."""
        return [i for i, t in enumerate(self.next_due) if t <= now + DUE_SLACK]

    def next_wake(self) -> float:
        return min(self.next_due)

    def done(self, groups: Sequence[int], now: float) -> int:
        """Groups `groups` were read, finishing at `now`: schedule their next slot; return slots missed."""
        missed = 0
        for i in groups:
            self.next_due[i], m = next_slot(self.next_due[i] + self.intervals[i], now, self.intervals[i])
            missed += m
        return missed

    def reset(self, now: float) -> None:
        """Everything due at `now` (after a reconnect)."""
        self.next_due = [now] * len(self.intervals)


async def poll_loop(
    channel: DeviceChannel,
    driver: Driver,
    interval: float,
    stop: asyncio.Event,
    *,
    backoff_cap: float | None = None,
    on_scan_time: Callable[[float], None] | None = None,
) -> None:
    """Scan until `stop`; a device that fails is reported offline and retried. `on_scan_time` is given the
    seconds each good scan took, read to buffered (the metrics' histogram)."""
    state = channel.state
    grouped = driver if isinstance(driver, GroupedDriver) else None
    changing = driver if grouped is not None and isinstance(driver, ChangeDriver) else None
    intervals = tuple(grouped.poll_intervals) if grouped is not None else (interval,)
    cap = backoff_cap if backoff_cap is not None else float(getattr(driver, "backoff_max", DEFAULT_BACKOFF_CAP))
    base = min(1.0, *intervals)
    schedule = GroupSchedule(intervals, time.monotonic())
    sleeper = Sleeper(stop)
    attempt = 0
    connected = False
    logged_overrun = -OVERRUN_LOG_EVERY
    try:
        while not stop.is_set():
            now = time.monotonic()
            due = schedule.due(now)
            if not due:
                await sleeper.sleep(schedule.next_wake() - now)
                continue
            try:
                if not connected:
                    await driver.connect()
                    connected = True
                if changing is not None:
                    scan: Changes | Sequence[Reading] = await changing.read_changes(due)
                else:
                    scan = await (grouped.read(due) if grouped is not None else driver.read())
            except Exception as e:  # a DriverError, or a bug: either way this device only
                if not isinstance(e, DriverError):
                    log.exception("device %s: unexpected error in the driver", state.id)
                connected = False
                attempt += 1
                state.scans += 1
                channel.set_online(False, str(e) if isinstance(e, DriverError) else f"internal error: {e!r}")
                with contextlib.suppress(Exception):
                    await driver.close()
                await sleeper.sleep(backoff_delay(attempt, base=base, cap=cap, jitter=0.2))
                schedule.reset(time.monotonic())
                continue
            attempt = 0
            state.scans += 1
            channel.set_online(True, "responding")
            try:
                if isinstance(scan, Changes):
                    channel.emit_changes(scan)
                else:
                    channel.emit(scan)
            except Exception:  # a bug past the driver: this scan is lost, the device's loop goes on
                log.exception("device %s: a scan could not be handled; its values are lost", state.id)
            del scan  # its readings are not held while the loop sleeps (≈ 100 bytes per tag read)
            finished = time.monotonic()
            if on_scan_time is not None:
                on_scan_time(finished - now)
            missed = schedule.done(due, finished)
            if missed:
                state.overruns += missed
                if finished - logged_overrun >= OVERRUN_LOG_EVERY:
                    logged_overrun = finished
                    log.warning(
                        "device %s: scan overran its interval (%d slots missed so far); raise poll_interval "
                        "or read fewer tags",
                        state.id,
                        state.overruns,
                    )
    finally:
        sleeper.close()  # also when the task is cancelled
    await driver.close()
