"""The polling loop of one device: scan on a fixed cadence, reconnect with backoff, never overlap."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

from drivers.base import Driver, DriverError
from gateway.channel import DeviceChannel


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 30.0, jitter: float = 0.2) -> float:
    """Capped exponential backoff with ± `jitter` spread so many gateways don't retry in step."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return float(delay * (1 + random.uniform(-jitter, jitter)))


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def next_slot(next_due: float, now: float, interval: float) -> tuple[float, int]:
    """The next scan time on the cadence, and how many slots were missed (overruns are counted, not queued)."""
    if next_due >= now:
        return next_due, 0
    missed = int((now - next_due) // interval) + 1
    return next_due + missed * interval, missed


async def poll_loop(
    channel: DeviceChannel,
    driver: Driver,
    interval: float,
    stop: asyncio.Event,
    *,
    backoff_cap: float = 30.0,
) -> None:
    """Scan every `interval` seconds until `stop`; a device that fails is reported offline and retried."""
    state = channel.state
    attempt = 0
    connected = False
    next_due = time.monotonic()
    while not stop.is_set():
        try:
            if not connected:
                await driver.connect()
                connected = True
            readings = await driver.read()
        except DriverError as e:
            connected = False
            attempt += 1
            state.scans += 1
            channel.set_online(False, str(e))
            await driver.close()
            await sleep_or_stop(stop, backoff_delay(attempt, base=min(1.0, interval), cap=backoff_cap))
            next_due = time.monotonic()
            continue
        attempt = 0
        state.scans += 1
        channel.set_online(True, "responding")
        channel.emit(readings)
        next_due, missed = next_slot(next_due + interval, time.monotonic(), interval)
        state.overruns += missed
        await sleep_or_stop(stop, next_due - time.monotonic())
    await driver.close()
