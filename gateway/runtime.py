"""The edge runtime: one task per device, each writing into the buffer through its `DeviceChannel`.

A device that fails is reported (status event + retained status) and retried; it never stalls
another device.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloud_bridge.uplink.buffer import Buffer, Outgoing
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire.codec import Topics
from drivers.base import Driver, SubscribingDriver
from edge_config.models import GatewayConfig
from edge_config.timing import now_ms
from edge_config.version import __version__
from gateway.channel import DeviceChannel, DeviceState
from gateway.normalize import Normalizer, TagSpec
from gateway.oee.history import OeeHistory
from gateway.oee.tracker import DeviceTracker, meta_messages
from gateway.poller import poll_loop, sleep_or_stop
from gateway.subscriber import subscribe_loop

log = logging.getLogger(__name__)

DriverFactory = Callable[..., Driver]  # (device) -> Driver; OPC UA devices also get data_dir=...
RESTART_DELAY = 10.0  # seconds before a device loop that failed unexpectedly is started again
COMMIT_DELAY = 0.01  # seconds: messages handed over within this are committed together
MAX_HELD = 10_000  # events the buffer refused that are kept in memory to be written again


class Runtime:
    """Owns the devices' tasks; writes everything that leaves into the buffer."""

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
        self.restart_delay = RESTART_DELAY
        gw = config.gateway
        self.topics = Topics(config.mqtt.topic_prefix, gw.enterprise_id, gw.id)
        self.devices = {d.id: DeviceState(d.id, d.name, d.driver) for d in config.devices}
        self.commit_delay = COMMIT_DELAY
        self._pending: list[Outgoing] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._refusal_logged = -60.0
        self._held: list[Outgoing] = []
        self.events_lost = 0  # held events dropped past MAX_HELD (the disk stayed full that long)
        hist = config.history
        self.history = OeeHistory(Path(gw.data_dir) / "oee_history.db", retention_s=hist.retention)
        self.trackers = {
            d.id: DeviceTracker(
                d,
                self.topics,
                self._enqueue,
                self.history,
                snapshot_interval_s=hist.snapshot_interval,
                local_interval_s=hist.local_interval,
            )
            for d in config.devices
        }

    def _enqueue(self, messages: list[Outgoing]) -> None:
        """Queue `messages` for the buffer. What the devices and trackers hand over within `commit_delay`
        is written in one transaction (group commit: one fsync for the scans of every device that finished
        together, instead of one each)."""
        self._pending.extend(messages)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self.commit_delay, self._flush)

    def _flush(self) -> None:
        """Write what is queued. When the buffer refuses (disk full, I/O error), events and statuses
        (online/offline, OEE states and snapshots, metadata: the evidence) are held in memory and written
        first, in order, with their own timestamps, as soon as the buffer takes a write again; the data is
        lost and counted on its device (`samples_lost`)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        pending, self._pending = self._pending, []
        if not pending and not self._held:
            return
        batch = self._held + pending if self._held else pending
        try:
            self.buffer.enqueue(batch)
        except Exception as exc:
            self._refused(pending, exc)
            return
        self._held = []
        self.publisher.wake()

    def _refused(self, pending: list[Outgoing], exc: Exception) -> None:
        held = [m for m in pending if m.kind != "data"]
        self._held.extend(held)
        if len(self._held) > MAX_HELD:
            lost = len(self._held) - MAX_HELD
            del self._held[:lost]
            self.events_lost += lost
        for m in pending:
            state = self.devices.get(m.dev)
            if m.kind == "data" and state is not None:
                state.samples_buffered -= m.samples
                state.samples_lost += m.samples
        now = time.monotonic()
        if now - self._refusal_logged >= 60.0:
            self._refusal_logged = now
            log.error("the buffer refused %d message(s) (%s): data lost and counted, events held", len(pending), exc)

    @property
    def events_held(self) -> int:
        """Events and statuses waiting in memory for the buffer to take writes again."""
        return len(self._held)

    def channel(self, device: Any) -> DeviceChannel:
        normalizer = Normalizer(
            TagSpec(t.name, t.type, t.scale, t.offset, t.unit, t.deadband, t.deadband_percent, t.heartbeat)
            for t in device.tags
        )
        return DeviceChannel(
            self.devices[device.id], self.topics, normalizer, self._enqueue, observer=self.trackers[device.id]
        )

    async def _run_device(self, device: Any, channel: DeviceChannel, stop: asyncio.Event) -> None:
        if device.driver == "opcua":  # subscribing (and polling) device: it needs data_dir for certificates
            driver = self.driver_factory(device, data_dir=self.config.gateway.data_dir)
            if isinstance(driver, SubscribingDriver):
                cap = device.connection.reconnect_max_delay
                await subscribe_loop(channel, driver, stop, backoff_cap=cap)
                return
        else:
            driver = self.driver_factory(device)
        await poll_loop(channel, driver, device.poll_interval, stop)

    async def _supervise(self, device: Any, stop: asyncio.Event) -> None:
        """Run a device's loop; if it fails in a way its loop does not handle (a bug), report the device
        offline, log it, and start the loop again after `restart_delay`: the other devices go on."""
        channel = self.channel(device)
        while not stop.is_set():
            try:
                await self._run_device(device, channel, stop)
                return
            except Exception as exc:
                log.exception("device %s: its loop failed; starting it again in %gs", device.id, self.restart_delay)
                channel.set_online(False, f"internal error: {exc!r}")
            await sleep_or_stop(stop, self.restart_delay)

    async def run(self, stop: asyncio.Event) -> None:
        # evidence first: each device's retained metadata, and offline reports for devices the last run
        # left online (the gateway stopped); then the devices
        if self.config.devices:
            self._enqueue(meta_messages(self.config, self.topics, ts=now_ms(), version=__version__))
        for tracker in self.trackers.values():
            tracker.recover()
        tasks = [asyncio.create_task(self._supervise(d, stop), name=f"device-{d.id}") for d in self.config.devices]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            for tracker in self.trackers.values():
                tracker.final_snapshot()  # the counters as last read, so the cloud knows them up to the stop
            self._flush()  # what is queued goes in before the publisher's last drain
            self.history.touch(force=True)  # the gateway was alive until now
