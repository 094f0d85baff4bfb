"""The loop of one subscribing device (OPC UA): start the driver, hand its batches to the channel,
report online/offline with the driver's reason, and start it again with backoff when it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from drivers.base import DriverError, DriverStatus, Reading, SubscribingDriver
from edge_config.timing import backoff_delay
from gateway.channel import DeviceChannel
from gateway.heap import settle_heap
from gateway.poller import sleep_or_stop

log = logging.getLogger(__name__)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class _Run:
    """One start of the driver: what it reported, and whether it has stopped delivering."""

    def __init__(self, channel: DeviceChannel) -> None:
        self.channel = channel
        self.lost = asyncio.Event()
        self.reported_online = False

    def on_status(self, status: DriverStatus) -> None:
        if self.lost.is_set():
            return  # this run is over; late reports from it don't count
        self.channel.set_online(status.online, status.reason)
        self.reported_online = self.reported_online or status.online
        if not status.online:
            self.lost.set()

    def fail(self, reason: str) -> None:
        self.channel.set_online(False, reason)
        self.lost.set()


async def subscribe_loop(
    channel: DeviceChannel,
    driver: SubscribingDriver,
    stop: asyncio.Event,
    *,
    backoff_base: float = 1.0,
    backoff_cap: float = 10.0,
) -> None:
    """Run `driver` until `stop`; a start that fails or a session that dies is retried with backoff."""
    state = channel.state
    attempt = 0

    def emit(readings: Sequence[Reading]) -> None:
        channel.emit(readings)

    while not stop.is_set():
        run = _Run(channel)
        state.scans += 1
        try:
            await driver.start(emit, run.on_status)
        except DriverError as e:
            run.fail(str(e))
        except Exception as e:  # a driver bug must not take the gateway down
            log.exception("device %s: driver failed to start", state.id)
            run.fail(f"{type(e).__name__}: {e}")
        else:
            if not run.lost.is_set():
                attempt = 0
                if not run.reported_online:
                    channel.set_online(True, "subscribed")
                settle_heap()
            await _first(stop, run.lost)
        try:
            await driver.stop()
        except Exception:
            log.exception("device %s: driver failed to stop", state.id)
        if stop.is_set():
            break
        attempt += 1
        await sleep_or_stop(stop, backoff_delay(attempt, base=backoff_base, cap=backoff_cap, jitter=0.2))
