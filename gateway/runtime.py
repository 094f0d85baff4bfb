"""The edge runtime: one polling task per device, normalization, and the buffer in front of MQTT.

A device that fails is reported (status event + retained status) and retried with capped
exponential backoff and jitter; it never stalls another device. Scans never overlap: a scan
that takes longer than the poll interval is counted as an overrun and the next one starts at
the next free slot, not queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from cloud_bridge.buffer import Buffer, Outgoing
from cloud_bridge.publisher import Publisher
from cloud_bridge.wire import Event, Status, Topics, encode_data_body, encode_event_body, encode_status
from drivers.base import Driver, DriverError
from edge_config.models import GatewayConfig
from gateway.normalize import Normalizer, TagSpec

log = logging.getLogger(__name__)

DriverFactory = Callable[[object], Driver]


def now_ms() -> int:
    return int(time.time() * 1000)


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 30.0, jitter: float = 0.2) -> float:
    """Capped exponential backoff with ± `jitter` spread so many gateways don't retry in step."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return float(delay * (1 + random.uniform(-jitter, jitter)))


@dataclass
class DeviceState:
    id: str
    name: str
    driver: str
    online: bool = False
    reason: str = "not connected yet"
    last_seen_ms: int | None = None
    scans: int = 0
    overruns: int = 0
    samples_read: int = 0
    samples_buffered: int = 0
    bad_readings: int = 0


class Runtime:
    """Owns the devices' polling tasks; writes everything that leaves into the buffer."""

    def __init__(
        self,
        config: GatewayConfig,
        buffer: Buffer,
        publisher: Publisher,
        driver_factory: DriverFactory,
    ) -> None:
        self.config = config
        self.buffer = buffer
        self.publisher = publisher
        self.driver_factory = driver_factory
        gw = config.gateway
        self.topics = Topics(config.mqtt.topic_prefix, gw.enterprise_id, gw.id)
        self.devices = {d.id: DeviceState(d.id, d.name, d.driver) for d in config.devices}

    def _enqueue(self, messages: list[Outgoing]) -> None:
        self.buffer.enqueue(messages)
        self.publisher.wake()

    def _set_online(self, state: DeviceState, online: bool, reason: str) -> None:
        if state.online == online and state.scans > 0:
            return
        state.online, state.reason = online, reason
        ts = now_ms()
        kind = "online" if online else "offline"
        log.info("device %s %s: %s", state.id, kind, reason)
        self._enqueue(
            [
                Outgoing(
                    "events",
                    self.topics.events(state.id),
                    state.id,
                    encode_event_body([Event(kind, ts, reason)]),
                ),
                Outgoing(
                    "status",
                    self.topics.device_status(state.id),
                    state.id,
                    encode_status(Status(online, ts, reason)),
                    retain=True,
                ),
            ]
        )

    async def _poll_device(self, device: object, stop: asyncio.Event) -> None:
        dev_id: str = device.id  # type: ignore[attr-defined]
        interval: float = device.poll_interval  # type: ignore[attr-defined]
        tags = device.tags  # type: ignore[attr-defined]
        state = self.devices[dev_id]
        normalizer = Normalizer(TagSpec(t.name, t.type, t.scale, t.offset, t.unit, t.deadband) for t in tags)
        units = normalizer.units()
        driver = self.driver_factory(device)
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
                if state.online or state.scans == 0:
                    self._set_online(state, False, str(e))
                state.scans += 1
                await driver.close()
                delay = backoff_delay(attempt, base=min(1.0, interval), cap=30.0)
                await _sleep_or_stop(stop, delay)
                next_due = time.monotonic()
                continue
            attempt = 0
            state.scans += 1
            state.last_seen_ms = now_ms()
            if not state.online:
                self._set_online(state, True, "responding")
            state.samples_read += len(readings)
            state.bad_readings += sum(1 for r in readings if r.quality == "bad")
            samples = normalizer.apply(readings)
            if samples:
                present = {s.tag for s in samples}
                body = encode_data_body(samples, {k: u for k, u in units.items() if k in present})
                self._enqueue([Outgoing("data", self.topics.data(dev_id), dev_id, body, samples=len(samples))])
                state.samples_buffered += len(samples)
            next_due += interval
            now = time.monotonic()
            if next_due < now:  # overrun: skip the missed slots, never queue scans
                missed = int((now - next_due) // interval) + 1
                state.overruns += missed
                next_due += missed * interval
            await _sleep_or_stop(stop, next_due - now)
        await driver.close()

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._poll_device(d, stop), name=f"poll-{d.id}") for d in self.config.devices]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
