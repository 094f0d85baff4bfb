"""The edge runtime: one task per device, each writing into the buffer through its `DeviceChannel`.

A device that fails is reported (status event + retained status) and retried; it never stalls
another device.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloud_bridge.uplink.buffer import Buffer, Outgoing
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire.codec import Topics
from drivers.base import Driver, SubscribingDriver, shared
from edge_config.models import GatewayConfig
from edge_config.timing import now_ms
from edge_config.version import __version__
from gateway.channel import DeviceChannel, DeviceState
from gateway.compact import CompactConfig
from gateway.heap import trim_heap
from gateway.live import LiveValues
from gateway.normalize import Normalizer, TagSpec
from gateway.oee.history import OeeHistory
from gateway.oee.tracker import DeviceTracker, meta_message
from gateway.poller import poll_loop, sleep_or_stop
from gateway.reload import ReloadPlan, plan_reload
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
        config: GatewayConfig | CompactConfig,
        buffer: Buffer,
        publisher: Publisher,
        driver_factory: DriverFactory,
    ) -> None:
        self._set_config(config)
        config = self.config
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
        self.history = OeeHistory(
            Path(gw.data_dir) / "oee_history.db",
            retention_s=config.history.retention,
            max_future_skew_s=config.history.max_future_skew,
        )
        self.trackers = {d.id: self._tracker(d) for d in self.config.devices}
        self.scan_times: dict[str, ScanTimes] = {d.id: ScanTimes() for d in self.config.devices}
        self._stop: asyncio.Event | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._device_stops: dict[str, asyncio.Event] = {}
        self._channels: dict[str, DeviceChannel] = {}
        self._reload_lock = asyncio.Lock()
        self.live: dict[str, LiveValues] = {}  # per device: the last readings (the console's live values)

    def _set_config(self, config: GatewayConfig | CompactConfig) -> None:
        """Keep `config` compact (`gateway.compact`): `self.config` is its models without the tag lists."""
        self._compact = config if isinstance(config, CompactConfig) else CompactConfig(config)
        self.config_sha = self._compact.sha
        self.config = self._compact.light

    def full_config(self) -> GatewayConfig:
        """The config in force with every tag, validated again from its packed form (editor, reload)."""
        return self._compact.full()

    def device_config(self, dev_id: str) -> Any:
        """One device's full config (its tags validated again)."""
        return self._compact.device(dev_id)

    @property
    def device_digests(self) -> dict[str, str]:
        """SHA-256 of each device's canonical config (what hot reload compares)."""
        return self._compact.digests

    def _meta(self, device: Any) -> Outgoing:
        """A device's retained metadata, from its model (its tags read once, a chunk at a time)."""
        gw = self.config.gateway.id
        return meta_message(device, self.topics, gw=gw, ts=now_ms(), sha=self.config_sha, version=__version__)

    def _tracker(self, device: Any) -> DeviceTracker:
        hist = self.config.history
        return DeviceTracker(
            device,
            self.topics,
            self._enqueue,
            self.history,
            snapshot_interval_s=hist.snapshot_interval,
            local_interval_s=hist.local_interval,
            max_future_skew_s=hist.max_future_skew,
        )

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
        fields = ("name", "type", "scale", "offset", "unit", "deadband", "deadband_percent", "heartbeat")
        specs = [TagSpec(*(shared(getattr(t, f)) for f in fields)) for t in device.tags]
        normalizer = Normalizer(specs)
        self.live[device.id] = LiveValues(normalizer)
        tracker = self.trackers[device.id]
        return DeviceChannel(self.devices[device.id], self.topics, normalizer, self._enqueue, observer=tracker)

    def _driver(self, dev_id: str, full: Any = None) -> Driver:
        """A driver for the device, made from its model (`full`, or made again from the compact config), its
        tags validated a chunk at a time: the driver keeps what it needs as compact per-tag state."""
        device = full if full is not None else self._compact.streamed(dev_id)
        if device.driver == "opcua":  # subscribing (and polling) device: it needs data_dir for certificates
            return self.driver_factory(device, data_dir=self.config.gateway.data_dir)
        return self.driver_factory(device)

    async def _run_device(self, device: Any, channel: DeviceChannel, stop: asyncio.Event, full: Any = None) -> None:
        driver = self._driver(device.id, full)
        del full  # not kept in this frame for the life of the device
        if device.driver == "opcua" and isinstance(driver, SubscribingDriver):
            cap = device.connection.reconnect_max_delay
            await subscribe_loop(channel, driver, stop, backoff_cap=cap)
            return
        await poll_loop(channel, driver, device.poll_interval, stop, on_scan_time=self.scan_times[device.id].observe)

    async def _supervise(self, device: Any, stop: asyncio.Event) -> None:
        """Run a device's loop; if it fails in a way its loop does not handle (a bug), report the device
        offline, log it, and start the loop again after `restart_delay`: the other devices go on.

        `device` is the light model (no tag list); the channel is built from the full one."""
        full = self._compact.streamed(device.id)  # the tags validated a chunk at a time as they are read
        # its metadata first (before its online status and data), from the same tags as its channel and
        # driver: a device of one chunk has its tags validated once at start
        self._enqueue([self._meta(full)])
        channel = self._channels[device.id] = self.channel(full)
        first = [full]  # the first driver is made from the same model; a restart validates the tags again
        del full
        while not stop.is_set():
            try:
                await self._run_device(device, channel, stop, first.pop() if first else None)
                return
            except Exception as exc:
                log.exception("device %s: its loop failed; starting it again in %gs", device.id, self.restart_delay)
                channel.set_online(False, f"internal error: {exc!r}")
            await sleep_or_stop(stop, self.restart_delay)

    async def run(self, stop: asyncio.Event) -> None:
        # evidence first: offline reports for devices the last run left online (the gateway stopped); then
        # the devices, each sending its retained metadata as it starts (`_supervise`)
        for tracker in self.trackers.values():
            tracker.recover()
        self._stop = stop
        for d in self.config.devices:
            self._start(d)
        try:
            await stop.wait()
            for ev in self._device_stops.values():
                ev.set()
            await asyncio.gather(*self._tasks.values())
        finally:
            for t in self._tasks.values():
                t.cancel()
            for tracker in self.trackers.values():
                tracker.final_snapshot()  # the counters as last read, so the cloud knows them up to the stop
            self._flush()  # what is queued goes in before the publisher's last drain
            self.history.touch(force=True)  # the gateway was alive until now

    def _start(self, device: Any) -> None:
        ev = self._device_stops[device.id] = asyncio.Event()
        if self._stop is not None and self._stop.is_set():
            ev.set()
        self._tasks[device.id] = asyncio.create_task(self._supervise(device, ev), name=f"device-{device.id}")

    async def _halt(self, dev_id: str, reason: str) -> None:
        """Stop one device's task (its driver closed), take its last counters and report it offline."""
        self._device_stops[dev_id].set()
        task = self._tasks.pop(dev_id)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        del self._device_stops[dev_id]
        self.trackers[dev_id].final_snapshot()
        channel = self._channels.pop(dev_id, None)
        if channel is not None:
            channel.set_online(False, reason)

    def device_task(self, dev_id: str) -> asyncio.Task[None] | None:
        return self._tasks.get(dev_id)

    async def reload(self, new: GatewayConfig) -> ReloadPlan:
        """Apply `new` while running: changed devices restart, added ones start, removed ones stop (reported
        offline); the others, the buffer and seq are untouched. Sections that need a restart are named in
        the plan and not applied. Every device's metadata is sent again (the config hash changed): a started
        device's as it starts."""
        async with self._reload_lock:
            plan = plan_reload(self.config, new, old_devices=self.device_digests)
            for dev_id in plan.removed:
                await self._halt(dev_id, "removed from the config")
            for dev_id in plan.changed:
                await self._halt(dev_id, "config changed: restarting")
            # hot sections only: the running buffer, publisher, history settings stay as they started
            self._set_config(
                self.full_config().model_copy(
                    update={"devices": new.devices, "timezone": new.timezone, "shifts": new.shifts}
                )
            )
            del new  # from here on the compact form only: no tag models kept
            by_id = {d.id: d for d in self.config.devices}
            for dev_id in plan.removed:
                del self.devices[dev_id], self.trackers[dev_id], self.scan_times[dev_id]
                self.live.pop(dev_id, None)
            for dev_id in plan.changed + plan.added:
                d = by_id[dev_id]
                state = self.devices.get(dev_id)
                if state is None:
                    self.devices[dev_id] = DeviceState(d.id, d.name, d.driver)
                else:  # counters go on; what the device is may have changed
                    state.name, state.driver = d.name, d.driver
                self.trackers[dev_id] = self._tracker(d)
                self.scan_times.setdefault(dev_id, ScanTimes())
            if plan.added or plan.changed or plan.removed:  # the others' metadata (the config hash changed);
                self._enqueue([self._meta(self._compact.streamed(d)) for d in plan.unchanged])  # started: their own
            for dev_id in plan.changed + plan.added:
                self._start(by_id[dev_id])
            # keep the config's device order
            self.devices = {d.id: self.devices[d.id] for d in self.config.devices}
            log.info(
                "config reloaded: %d added, %d changed, %d removed, %d untouched%s",
                len(plan.added),
                len(plan.changed),
                len(plan.removed),
                len(plan.unchanged),
                f"; at the next start: {', '.join(plan.restart_needed)}" if plan.restart_needed else "",
            )
            trim_heap()  # the old config's models are garbage now
            return plan


class ScanTimes:
    """A histogram of scan durations (seconds), cumulative like Prometheus's."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.sum += seconds
        self.counts[bisect.bisect_left(self.BUCKETS, seconds)] += 1

    def cumulative(self) -> list[tuple[str, int]]:
        out, total = [], 0
        for bound, n in zip((*(str(b) for b in self.BUCKETS), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out
