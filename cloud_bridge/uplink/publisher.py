"""The MQTT publisher: drains the store-and-forward buffer in order, QoS 1, and deletes on PUBACK.

paho-mqtt runs its network loop in its own thread and reconnects by itself; its callbacks hop
onto the asyncio loop with `call_soon_threadsafe`, so all buffer and counter work happens on
one thread. A message handed to paho and not yet acknowledged when the connection drops is
re-sent by paho after the reconnect (same packet id, DUP set); one never handed over waits in
the buffer. A gateway restart re-sends everything still in the buffer: consumers dedupe on
(`ent`, `gw`, `seq`).

Faults the field brings:
- a broker that takes messages and never acknowledges them (wedged, or a broken middlebox): when
  nothing is acknowledged for `mqtt.ack_timeout` while messages are in flight, the connection is
  dropped, a new one made, and everything unacknowledged is sent again from the buffer;
- a PUBACK with a failure reason: permanent ones (not authorised, bad topic, bad payload format)
  dead-letter the message in the buffer (listable and replayable: `edgegw buffer dead-letters`);
  any other is transient: the message stays queued and is sent again after a backoff.

`hist` is true for every message that waited through an outage or a restart (made before this
process started, or while the broker could not be reached), false for what went out as read.
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
from cloud_bridge.wire.signing import chained_payload, chained_prefix, seal
from edge_config.models import MqttSection
from edge_config.timing import backoff_delay, now_ms

log = logging.getLogger(__name__)


def reconnect_delay(attempt: int) -> int:
    """Whole seconds before the next reconnect (paho takes integers), spread ± 30 % so the many gateways
    of a pilot behind one 4G operator do not all come back in the same second."""
    return max(1, round(backoff_delay(attempt, base=1.0, cap=60.0, jitter=0.3)))


# PUBACK reason codes (MQTT 5) that no retry can cure; every other failure is retried after a backoff
PERMANENT_PUBACK_CODES = frozenset((0x87, 0x90, 0x99))  # not authorised, topic name invalid, payload format invalid
# health says "stalled" when the oldest unacknowledged message is older than this (or half the ack timeout)
STALLED_AFTER_S = 5.0


def is_permanent(reason_code: int) -> bool:
    return reason_code in PERMANENT_PUBACK_CODES


@dataclass
class PublisherStats:
    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    published: int = 0
    acked: int = 0
    rejected: int = 0  # dead-lettered for good
    nacked: int = 0  # refused with a transient reason, sent again later
    stalls: int = 0  # connections dropped because nothing was acknowledged for ack_timeout
    replayed: int = 0
    crashes: int = 0  # the drain loop failed and was started again (by the agent's supervisor)
    last_crash: str = ""
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
        self._inflight: dict[int, tuple[Pending, float]] = {}  # mid -> (row, monotonic time sent), oldest first
        self._inflight_ids: set[int] = set()
        self._progress = time.monotonic()  # last acknowledgement, or when the in-flight window last filled
        self._hold_until = 0.0  # after a transient refusal: no new sends before this (monotonic)
        self._nacks = 0
        self._outage = False  # the broker could not be reached (or failed) since the last connection
        self._hist_before = 0  # rows made before this (epoch ms) waited through an outage or a restart
        self._checkpoints_sent: set[int] = set()  # checkpoint rows published on this connection
        self._checkpoints_seen = -1  # the buffer's checkpoint_serial when its checkpoints were last read
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
        self._loop.call_soon_threadsafe(self._connected, client, not reason_code.is_failure, str(reason_code))

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._unreachable, client)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        assert self._loop is not None
        self._attempt += 1
        delay = reconnect_delay(self._attempt)
        client.reconnect_delay_set(min_delay=delay, max_delay=delay)
        self._loop.call_soon_threadsafe(self._disconnected, client, str(reason_code), bool(reason_code.is_failure))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        assert self._loop is not None
        code = int(getattr(reason_code, "value", 0))
        self._loop.call_soon_threadsafe(self._acked, client, mid, bool(reason_code.is_failure), code, str(reason_code))

    # ------------------------------------------------------------ loop side (a replaced client is ignored)

    def _connected(self, client: Any, ok: bool, reason: str) -> None:
        if client is not self._client:
            return
        if not ok:
            self._outage = True
            self.stats.last_error = f"broker refused the connection: {reason}"
            log.warning("MQTT connect refused: %s", reason)
            return
        self.stats.connected = True
        self.stats.connects += 1
        self._attempt = 0
        self._connected_since = now_ms()
        self._hist_before = self._connected_since if self._outage else self._started_ms
        self._outage = False
        self._progress = time.monotonic()
        self._publish_status()
        log.info("MQTT connected to %s", self.settings.url)
        self._wake.set()

    def _unreachable(self, client: Any) -> None:
        if client is self._client:
            self._outage = True
            self.stats.last_error = f"cannot reach the broker at {self.settings.url}"

    def _disconnected(self, client: Any, reason: str, failure: bool = True) -> None:
        if client is not self._client:
            return
        if self.stats.connected and failure:
            self.stats.disconnects += 1
            log.warning("MQTT connection lost: %s", reason)
        self.stats.connected = False
        if failure:
            self._outage = True
            self.stats.last_error = f"disconnected: {reason}"

    def _acked(self, client: Any, mid: int, failed: bool, code: int, reason: str) -> None:
        if client is not self._client:
            return  # an answer on a connection given up (its messages are being sent again)
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # the birth message, or a late duplicate ack
        row = entry[0]
        self._inflight_ids.discard(row.id)
        self._progress = time.monotonic()
        if not failed:
            self.stats.acked += 1
            self.stats.samples_acked[row.dev] += row.samples
            self._acked_ids.append(row.id)
            self._nacks = 0
        elif is_permanent(code):
            self._reject(row, f"broker rejected it: {reason}")
        else:
            self._retry_later(row, reason)
        self._wake.set()

    def _retry_later(self, row: Pending, reason: str) -> None:
        """A transient refusal (quota exceeded, unspecified error, …): the message stays queued and the
        drain pauses for a backoff, then sends it again."""
        self.stats.nacked += 1
        self._nacks += 1
        delay = backoff_delay(self._nacks, base=1.0, cap=60.0, jitter=0.2)
        self._hold_until = time.monotonic() + delay
        if row.kind == "checkpoint":
            self._checkpoints_sent.discard(row.id)
            self._checkpoints_seen = -1  # read again: it goes out before its messages
        else:
            self._last_id = min(self._last_id, row.id - 1)
        self.stats.last_error = f"{row.topic} seq={row.seq}: refused for now ({reason}); again in {delay:.0f} s"
        log.warning("broker refused seq=%s for now (%s): sending it again in %.1f s", row.seq, reason, delay)

    def oldest_unacked_s(self) -> float:
        """Age in seconds of the oldest message in flight (0 when none is)."""
        for _row, sent in self._inflight.values():
            return time.monotonic() - sent
        return 0.0

    def health(self) -> dict[str, Any]:
        """The link as the edge API reports it."""
        age = self.oldest_unacked_s()
        stalled_after = min(STALLED_AFTER_S, self.settings.ack_timeout / 2)
        state = "stalled" if age >= stalled_after else "connected" if self.stats.connected else "disconnected"
        return {
            "state": state,
            "connected": self.stats.connected,
            "url": self.settings.url,
            "in_flight": len(self._inflight),
            "oldest_unacked_s": round(age, 1),
            "stalls": self.stats.stalls,
            "nacked": self.stats.nacked,
            "dead_lettered": self.stats.rejected,
            "crashes": self.stats.crashes,
            "last_crash": self.stats.last_crash,
            "last_error": self.stats.last_error,
        }

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
            "dead_letters": d.dead_letters,
            "quarantined": d.quarantined,
        }

    def _publish_status(self) -> None:
        """The retained gateway status (birth), with the store-and-forward backlog."""
        self._next_status = time.monotonic() + self.status_interval
        status = Status(True, now_ms(), version=self.version, backlog=self.backlog())
        self._client.publish(self.topics.status, self._status_payload(status), qos=1, retain=True)

    def _status_payload(self, status: Status) -> bytes:
        """The gateway status, signed with the gateway's key when it has one (the cloud ignores a
        gateway status its registered key did not sign)."""
        payload = encode_status(status)
        chain = self.buffer.chain
        return seal(chain.key, self.topics.status, payload) if chain is not None else payload

    def wake(self) -> None:
        """Tell the drain loop that new messages wait in the buffer."""
        self._wake.set()

    def _payload(self, row: Pending) -> bytes:
        if row.seq is None:
            return row.body
        hist = row.created_ms < self._hist_before
        if hist:
            self.stats.replayed += 1
        chain = self.buffer.chain
        if row.prev is not None and chain is not None:  # the bytes hashed when the row was buffered
            return chained_payload(chained_prefix(chain.ent, chain.gw, row.dev, row.seq, row.prev, row.body), hist)
        return envelope(self.topics.gateway_id, row.dev, row.seq, hist, row.body)

    def _drain_once(self) -> int:
        self._flush_acks()
        with contextlib.suppress(Exception):  # a full disk: sealing is tried again on the next pass
            self.buffer.seal_if_due()
        if not self.stats.connected:
            return 0
        now = time.monotonic()
        if now >= self._next_status:
            self._publish_status()
        room = self.settings.inflight - len(self._inflight)
        if room <= 0 or now < self._hold_until:
            return 0
        rows = self.buffer.peek(room, after_id=self._last_id)
        if len(rows) < room and self.buffer.seal_if_due(room=True):  # the link has room: seal what waits
            rows = self.buffer.peek(room, after_id=self._last_id)
        if rows and not self._inflight:
            self._progress = now  # the ack clock starts with the first message in flight
        if self.buffer.chain is not None and self._checkpoints_seen != self.buffer.checkpoint_serial:
            # every checkpoint goes out before the messages it covers
            pending = [c for c in self.buffer.checkpoints() if c.id not in self._checkpoints_sent]
            if not pending:
                self._checkpoints_seen = self.buffer.checkpoint_serial
            rows = pending + rows
        sent = 0
        for row in rows:
            if row.kind != "checkpoint":
                self._last_id = row.id
            if row.id in self._inflight_ids:
                continue  # re-read after a transient refusal of an older one: still in flight
            try:
                info = self._client.publish(row.topic, self._payload(row), qos=1, retain=row.retain)
            except ValueError as e:  # paho refuses e.g. an oversized payload or a bad topic
                self._reject(row, str(e))
                continue
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self._reject(row, mqtt.error_string(info.rc))
                continue
            self._inflight[info.mid] = (row, now)  # NO_CONN: paho keeps it and sends it after the reconnect
            self._inflight_ids.add(row.id)
            if row.kind == "checkpoint":
                self._checkpoints_sent.add(row.id)
            self.stats.published += 1
            sent += 1
        return sent

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

    def _new_client(self) -> Any:
        """A paho client, connecting in its own network thread."""
        host, port = host_port(self.settings.url)
        client = make_client(
            self.settings.url,
            self.settings.protocol,
            self.client_id,
            self.settings.username,
            self.settings.password,
            self.settings.tls,
        )
        client.max_inflight_messages_set(self.settings.inflight)
        client.max_queued_messages_set(0)
        will = self._status_payload(Status(False, now_ms(), version=self.version))
        client.will_set(self.topics.status, will, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        client.connect_async(host, port, keepalive=int(self.settings.keepalive))
        client.loop_start()
        return client

    @staticmethod
    def _close_client(client: Any) -> None:
        with contextlib.suppress(Exception):
            client.disconnect()
        client.loop_stop()

    def _stalled(self) -> bool:
        return bool(self._inflight) and time.monotonic() - self._progress > self.settings.ack_timeout

    async def _reconnect_stalled(self) -> None:
        """Nothing acknowledged for ack_timeout: give the connection up and send the unacknowledged
        messages again on a new one (they are still in the buffer; consumers dedupe on seq)."""
        age = self.oldest_unacked_s()
        self.stats.stalls += 1
        self.stats.last_error = (
            f"no acknowledgement for {self.settings.ack_timeout:g} s with {len(self._inflight)} messages in flight "
            f"(oldest {age:.0f} s): reconnecting"
        )
        log.warning("MQTT: %s", self.stats.last_error)
        old = self._client
        self._client = None  # its late callbacks are ignored from here on
        self.stats.connected = False
        self._outage = True
        self._inflight.clear()
        self._inflight_ids.clear()
        self._checkpoints_sent.clear()
        self._checkpoints_seen = -1
        self._last_id = 0
        await asyncio.to_thread(self._close_client, old)
        self._new_client()

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, drain the buffer until `stop` is set, then say goodbye cleanly."""
        self._loop = asyncio.get_running_loop()
        self._inflight.clear()
        self._inflight_ids.clear()
        self._checkpoints_sent.clear()
        self._checkpoints_seen = -1
        self._last_id = 0
        self._new_client()
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                if self._stalled():
                    await self._reconnect_stalled()
                if self._drain_once() == 0:
                    self._wake.clear()
                    waker = asyncio.ensure_future(self._wake.wait())
                    # a short wait while messages wait for their checkpoint (sealed within Chain.interval_ms)
                    chain = self.buffer.chain
                    wait = min(1.0, chain.interval_ms / 4000) if chain is not None and self.buffer.unsealed else 1.0
                    await asyncio.wait({waker, stopper}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                    waker.cancel()
                else:
                    await asyncio.sleep(0)
            await self._finish()
        finally:
            stopper.cancel()
            if self._client is not None:
                self._client.loop_stop()

    async def _finish(self, grace: float = 3.0) -> None:
        """Drain what is already buffered for a short grace period, then publish offline and disconnect."""
        deadline = time.monotonic() + grace
        with contextlib.suppress(Exception):
            self.buffer.seal_if_due(force=True)  # what is buffered goes out with its checkpoint
        while self.stats.connected and time.monotonic() < deadline:
            sent = self._drain_once()
            if sent == 0 and not self._inflight:
                break
            await asyncio.sleep(0.05)
        self._flush_acks()
        if self.stats.connected:
            bye = self._status_payload(Status(False, now_ms(), version=self.version))
            info = self._client.publish(self.topics.status, bye, qos=1, retain=True)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(info.wait_for_publish, 1.0)
            self._client.disconnect()
        self.stats.connected = False
