"""A device's channel into the buffer: online/offline reporting and readings → samples → buffer.

Pollers and subscription handlers both talk to a `DeviceChannel`; neither knows MQTT.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cloud_bridge.uplink.buffer import Outgoing
from cloud_bridge.wire.codec import Event, Sample, Status, Topics, encode_data_body, encode_event_body, encode_status
from drivers.base import Changes, Reading
from edge_config.timing import now_ms
from gateway.normalize import Normalizer

log = logging.getLogger(__name__)

Enqueue = Callable[[list[Outgoing]], None]
LOSS_LOG_EVERY = 60.0  # seconds between log lines about messages the buffer refused
REASON_EVERY = 10.0  # seconds at least between retained statuses sent again for a new offline reason


@dataclass
class DeviceState:
    id: str
    name: str
    driver: str
    online: bool = False
    reported: bool = False  # has any status been reported yet
    reason: str = "not connected yet"
    last_seen_ms: int | None = None
    scans: int = 0
    overruns: int = 0
    samples_read: int = 0
    samples_buffered: int = 0
    samples_lost: int = 0  # normalized but not buffered: the buffer refused them (disk full, I/O error)
    bad_readings: int = 0


class ChannelObserver(Protocol):
    """Sees what passes through a channel (the OEE tracker); must not raise."""

    def on_online(self, online: bool, ts: int, reason: str) -> None: ...

    def on_scan(self, readings: Sequence[Reading], ts: int, read: int, good: int) -> None:
        """A scan (or a notification batch) at `ts`: `read` tags read, `good` of them good; `readings`
        holds at least every tag that changed."""


class DeviceChannel:
    def __init__(
        self,
        state: DeviceState,
        topics: Topics,
        normalizer: Normalizer,
        enqueue: Enqueue,
        observer: ChannelObserver | None = None,
    ) -> None:
        self.state = state
        self.topics = topics
        self.normalizer = normalizer
        self._units = normalizer.units()
        self._enqueue = enqueue
        self.observer = observer
        self._loss_logged = -LOSS_LOG_EVERY
        self._since_ms = 0  # when the reported status began
        self._sent_reason = ""  # the reason in the last status sent
        self._reason_due = 0.0  # monotonic time from which a changed reason may be sent again
        self.clock: Callable[[], float] = time.monotonic

    def set_online(self, online: bool, reason: str) -> None:
        """Report a change of the device's reachability (first report always goes out). A device that stays
        offline for another reason has its reason updated at once and its retained status sent again
        with it (the time it went offline kept) at most every `REASON_EVERY` seconds; the offline event
        is not repeated."""
        state = self.state
        if state.reported and state.online == online:
            if not online:
                state.reason = reason
                self._refresh_reason()
            return
        state.online, state.reason, state.reported = online, reason, True
        ts = now_ms()
        self._since_ms, self._sent_reason = ts, reason
        self._reason_due = self.clock() + REASON_EVERY
        kind = "online" if online else "offline"
        log.info("device %s %s: %s", state.id, kind, reason)
        if self.observer is not None:
            self.observer.on_online(online, ts, reason)
        self._put(
            [
                Outgoing(
                    "events", self.topics.events(state.id), state.id, encode_event_body([Event(kind, ts, reason)])
                ),
                self._status(online, ts, reason),
            ]
        )

    def _status(self, online: bool, ts: int, reason: str) -> Outgoing:
        state = self.state
        return Outgoing("status", self.topics.device_status(state.id), state.id,
                        encode_status(Status(online, ts, reason)), retain=True)  # fmt: skip

    def _refresh_reason(self) -> None:
        """The retained offline status again, when its reason is not the current one and the last was
        sent `REASON_EVERY` ago (a reason changing on every probe sends no more than that)."""
        state = self.state
        now = self.clock()
        if state.reason == self._sent_reason or now < self._reason_due:
            return
        self._sent_reason, self._reason_due = state.reason, now + REASON_EVERY
        log.info("device %s still offline: %s", state.id, state.reason)
        self._put([self._status(False, self._since_ms, state.reason)])

    def emit(self, readings: Sequence[Reading]) -> int:
        """Normalize a scan's (or a notification batch's) readings and buffer what is worth sending."""
        state = self.state
        state.last_seen_ms = now_ms()
        if not readings:
            return 0
        bad = sum(1 for r in readings if r.quality == "bad")
        state.samples_read += len(readings)
        state.bad_readings += bad
        if self.observer is not None:
            good = sum(1 for r in readings if r.quality == "good")
            self.observer.on_scan(readings, max(r.ts for r in readings), len(readings), good)
        return self._send(self.normalizer.apply(readings))

    def emit_changes(self, scan: Changes) -> int:
        """A scan reported by exception: normalize the changed readings, heartbeat the unchanged ones."""
        state = self.state
        state.last_seen_ms = now_ms()
        state.samples_read += scan.read
        state.bad_readings += scan.bad
        if self.observer is not None:
            self.observer.on_scan(scan.readings, scan.ts, scan.read, scan.read - scan.bad)
        samples = self.normalizer.apply(scan.readings)
        beats = self.normalizer.beat(scan.ts, scan.covered)
        return self._send(samples + beats if beats else samples)

    def _send(self, samples: list[Sample]) -> int:
        if not samples:
            return 0
        state = self.state
        if self._units:
            present = {s.tag for s in samples}
            body = encode_data_body(samples, {k: u for k, u in self._units.items() if k in present})
        else:
            body = encode_data_body(samples)
        if not self._put([Outgoing("data", self.topics.data(state.id), state.id, body, samples=len(samples))]):
            state.samples_lost += len(samples)
            return 0
        state.samples_buffered += len(samples)
        return len(samples)

    def _put(self, messages: list[Outgoing]) -> bool:
        """Buffer `messages`; False when the buffer cannot take them. A full disk or an I/O error loses
        them (counted, logged once a minute) but never stops the device's loop: the next scan tries again."""
        try:
            self._enqueue(messages)
        except Exception as exc:
            now = time.monotonic()
            if now - self._loss_logged >= LOSS_LOG_EVERY:
                self._loss_logged = now
                log.error("device %s: the buffer refused %d message(s), their data is lost: %s", self.state.id,
                          len(messages), exc)  # fmt: skip
            return False
        return True
