"""The MQTT publisher: drains the store-and-forward buffer in order, QoS 1, and deletes on PUBACK.

paho-mqtt runs its network loop in its own thread and reconnects by itself; its callbacks hop
onto the asyncio loop with `call_soon_threadsafe`, so all buffer and counter work happens on
one thread. A message handed to paho and not yet acknowledged when the connection drops is
re-sent by paho after the reconnect (same packet id, DUP set); one never handed over waits in
the buffer. A gateway restart re-sends everything still in the buffer: consumers dedupe on
(`gw`, `seq`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from cloud_bridge.uplink.buffer import Buffer, Pending
from cloud_bridge.wire.codec import Status, Topics, encode_status, envelope
from cloud_bridge.wire.mqtt import host_port, make_client
from edge_config.models import MqttSection
from edge_config.timing import backoff_delay, now_ms

log = logging.getLogger(__name__)


def reconnect_delay(attempt: int) -> int:
    """Whole seconds before the next reconnect (paho takes integers), spread ± 30 % so the many gateways
    of a pilot behind one 4G operator do not all come back in the same second."""
    return max(1, round(backoff_delay(attempt, base=1.0, cap=60.0, jitter=0.3)))


@dataclass
class PublisherStats:
    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    published: int = 0
    acked: int = 0
    rejected: int = 0
    replayed: int = 0
    last_error: str = ""
    samples_acked: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Publisher:
    def __init__(
        self,
        settings: MqttSection,
        topics: Topics,
        buffer: Buffer,
        *,
        version: str,
        client_id: str | None = None,
        status_interval: float = 10.0,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.buffer = buffer
        self.version = version
        self.client_id = client_id or settings.client_id or f"edgegw-{topics.enterprise_id}-{topics.gateway_id}"
        self.stats = PublisherStats()
        self.status_interval = status_interval
        self._next_status = 0.0
        self._attempt = 0
        self._inflight: dict[int, Pending] = {}
        self._acked_ids: list[int] = []
        self._rejected: list[tuple[int, str]] = []
        self._write_error_logged = -60.0
        self._last_id = 0
        self._connected_since = 0
        self._started_ms = now_ms()
        self._wake = asyncio.Event()
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ paho thread → loop

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._connected, not reason_code.is_failure, str(reason_code))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        assert self._loop is not None
        self._attempt += 1
        delay = reconnect_delay(self._attempt)
        client.reconnect_delay_set(min_delay=delay, max_delay=delay)
        self._loop.call_soon_threadsafe(self._disconnected, str(reason_code), bool(reason_code.is_failure))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._acked, mid, bool(reason_code.is_failure), str(reason_code))

    # ------------------------------------------------------------ loop side

    def _connected(self, ok: bool, reason: str) -> None:
        if not ok:
            self.stats.last_error = f"broker refused the connection: {reason}"
            log.warning("MQTT connect refused: %s", reason)
            return
        self.stats.connected = True
        self.stats.connects += 1
        self._attempt = 0
        self._connected_since = now_ms()
        self._publish_status()
        log.info("MQTT connected to %s", self.settings.url)
        self._wake.set()

    def _disconnected(self, reason: str, failure: bool = True) -> None:
        if self.stats.connected and failure:
            self.stats.disconnects += 1
            log.warning("MQTT connection lost: %s", reason)
        self.stats.connected = False
        if failure:
            self.stats.last_error = f"disconnected: {reason}"

    def _acked(self, mid: int, failed: bool, reason: str) -> None:
        row = self._inflight.pop(mid, None)
        if row is None:
            return  # the birth message, or a late duplicate ack
        if failed:
            self._reject(row, f"broker rejected it: {reason}")
        else:
            self.stats.acked += 1
            self.stats.samples_acked[row.dev] += row.samples
            self._acked_ids.append(row.id)
        self._wake.set()

    def _reject(self, row: Pending, reason: str) -> None:
        """A message that can never be sent (not authorised, too large): dead-lettered in the buffer,
        counted and logged, not retried for ever and not blocking the queue."""
        self.stats.rejected += 1
        self.stats.last_error = f"{row.topic} seq={row.seq}: {reason}"
        log.error("dead-lettered message seq=%s on %s: %s", row.seq, row.topic, reason)
        self._rejected.append((row.id, reason))

    def backlog(self) -> dict[str, int]:
        d = self.buffer.depth()
        return {
            "messages": d.messages,
            "bytes": d.bytes,
            "samples": d.samples,
            "behind_ms": d.behind_ms(now_ms()),
            "dropped_messages": d.dropped_messages,
            "dropped_samples": d.dropped_samples,
        }

    def _publish_status(self) -> None:
        """The retained gateway status (birth), with the store-and-forward backlog."""
        self._next_status = time.monotonic() + self.status_interval
        status = Status(True, now_ms(), version=self.version, backlog=self.backlog())
        self._client.publish(self.topics.status, encode_status(status), qos=1, retain=True)

    def wake(self) -> None:
        """Tell the drain loop that new messages wait in the buffer."""
        self._wake.set()

    def _payload(self, row: Pending) -> bytes:
        if row.seq is None:
            return row.body
        hist = row.created_ms < self._connected_since and (self.stats.connects > 1 or row.created_ms < self._started_ms)
        if hist:
            self.stats.replayed += 1
        return envelope(self.topics.gateway_id, row.dev, row.seq, hist, row.body)

    def _drain_once(self) -> int:
        self._flush_acks()
        if not self.stats.connected:
            return 0
        if time.monotonic() >= self._next_status:
            self._publish_status()
        room = self.settings.inflight - len(self._inflight)
        if room <= 0:
            return 0
        rows = self.buffer.peek(room, after_id=self._last_id)
        for row in rows:
            self._last_id = row.id
            try:
                info = self._client.publish(row.topic, self._payload(row), qos=1, retain=row.retain)
            except ValueError as e:  # paho refuses e.g. an oversized payload or a bad topic
                self._reject(row, str(e))
                continue
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self._reject(row, mqtt.error_string(info.rc))
                continue
            self._inflight[info.mid] = row  # NO_CONN: paho keeps it and sends it after the reconnect
            self.stats.published += 1
        return len(rows)

    def _flush_acks(self) -> None:
        """Delete what the broker acknowledged, move what it refused aside. If the buffer cannot be
        written (disk full, I/O error) they are kept and tried again on the next pass; meanwhile the
        messages stay in the buffer (sent again after a restart: consumers dedupe on seq)."""
        try:
            if self._acked_ids:
                self.buffer.ack(self._acked_ids)
                self._acked_ids = []
            while self._rejected:
                row_id, reason = self._rejected[0]
                self.buffer.dead_letter([row_id], reason)
                self._rejected.pop(0)
        except Exception as exc:
            now = time.monotonic()
            if now - self._write_error_logged >= 60.0:
                self._write_error_logged = now
                log.error("could not update the buffer after the broker's answers (will retry): %s", exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, drain the buffer until `stop` is set, then say goodbye cleanly."""
        self._loop = asyncio.get_running_loop()
        host, port = host_port(self.settings.url)
        client = make_client(
            self.settings.url,
            self.settings.protocol,
            self.client_id,
            self.settings.username,
            self.settings.password,
            self.settings.tls,
        )
        self._client = client
        client.max_inflight_messages_set(self.settings.inflight)
        client.max_queued_messages_set(0)
        will = encode_status(Status(False, now_ms(), version=self.version))
        client.will_set(self.topics.status, will, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.connect_async(host, port, keepalive=int(self.settings.keepalive))
        client.loop_start()
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                if self._drain_once() == 0:
                    self._wake.clear()
                    waker = asyncio.ensure_future(self._wake.wait())
                    await asyncio.wait({waker, stopper}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                    waker.cancel()
                else:
                    await asyncio.sleep(0)
            await self._finish()
        finally:
            stopper.cancel()
            client.loop_stop()

    async def _finish(self, grace: float = 3.0) -> None:
        """Drain what is already buffered for a short grace period, then publish offline and disconnect."""
        deadline = time.monotonic() + grace
        while self.stats.connected and time.monotonic() < deadline:
            sent = self._drain_once()
            if sent == 0 and not self._inflight:
                break
            await asyncio.sleep(0.05)
        self._flush_acks()
        if self.stats.connected:
            bye = encode_status(Status(False, now_ms(), version=self.version))
            info = self._client.publish(self.topics.status, bye, qos=1, retain=True)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(info.wait_for_publish, 1.0)
            self._client.disconnect()
        self.stats.connected = False
