"""The cloud ingester: MQTT (shared subscription) → TSDB and evidence ledger.

Threads: paho's network thread receives messages and queues them (bounded by the MQTT in-flight
window); one worker thread decodes, writes and acknowledges them in arrival order. A message is
acknowledged (PUBACK, paho manual ack) only after both stores accepted it; while a store fails,
the worker retries that message with capped exponential backoff and holds it, and the broker stops
sending once the in-flight window is full: that is the backpressure.

Per data message: duplicate check on (ent, gw, seq) → TSDB write → `Ledger.record_data`, whose
row is the commit point (a message whose TSDB write failed is not recorded, so a redelivery
retries it). Anything that breaks the wire contract is dead-lettered in the ledger and acknowledged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from influxdb_client.rest import ApiException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud_bridge.ledger import Ledger
from cloud_bridge.mqtt_common import host_port, make_client
from cloud_bridge.tsdb import TsdbWriter
from cloud_bridge.wire import (
    DataMessage,
    TopicInfo,
    WireError,
    decode_data,
    decode_events,
    decode_status,
    parse_topic,
)
from edge_config.models import CloudConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

SESSION_EXPIRY_S = 86_400  # a persistent session (fixed client_id) survives a day of ingester downtime
SHARED_SUB, STATUS_SUB = 1, 2  # MQTT 5 subscription identifiers (see Ingester.subscriptions)
TSDB_PERMANENT = frozenset((400, 413, 422))  # the TSDB refuses the batch itself: retrying cannot help


@dataclass(slots=True)
class IngestStats:
    messages: int = 0  # every message received, whatever became of it
    data_messages: int = 0  # data messages newly recorded
    event_messages: int = 0  # events messages newly recorded
    status_messages: int = 0
    samples_ingested: int = 0  # samples of newly recorded data messages
    duplicates: int = 0  # data/events messages already recorded, acknowledged and dropped
    dead_letters: int = 0
    tsdb_skipped_strings: int = 0  # samples not written to the TSDB (strings)
    errors: int = 0  # failed store attempts (each retry counts)


class _Stopped(Exception):
    """The ingester is stopping while a store keeps failing: leave the message unacknowledged."""


class _Rejected(Exception):
    """The TSDB refused a batch as malformed: dead-letter it."""


@dataclass(frozen=True, slots=True)
class _Item:
    message: mqtt.MQTTMessage
    generation: int  # connection the message arrived on; acks only go back on the same one


class Ingester:
    def __init__(
        self,
        config: CloudConfig,
        tsdb: TsdbWriter | None = None,
        ledger: Ledger | None = None,
        *,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
    ) -> None:
        self.config = config
        m = config.mqtt
        self.prefix = m.topic_prefix
        self._own_tsdb = tsdb is None and config.influx is not None
        self.tsdb = tsdb if tsdb is not None else (TsdbWriter(config.influx) if config.influx else None)
        self._own_ledger = ledger is None
        self.ledger = ledger if ledger is not None else Ledger(config.ledger.url)
        self.retry_initial = retry_initial
        self.retry_max = retry_max

        # A configured client_id gets a persistent session: unacknowledged messages are redelivered
        # after a restart. It must then be unique per ingester instance.
        self.persistent = m.client_id is not None
        self.client_id = m.client_id or f"edgegw-ingest-{uuid.uuid4().hex[:12]}"
        self.host, self.port = host_port(m.url)
        password = os.environ.get("EDGEGW_MQTT_PASSWORD") or m.password
        self._client = make_client(
            m.url,
            m.protocol,
            self.client_id,
            m.username,
            password,
            m.tls,
            manual_ack=True,
            clean_session=not self.persistent,
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=m.inflight)
        self._generation = 0
        self._sub_mids: set[int] = set()
        self._subscribed = threading.Event()
        self._abort = threading.Event()  # stop now: abandon retries, ack nothing more
        self._stats = IngestStats()
        self._stats_lock = threading.Lock()
        self._pending = 0  # messages received and not yet handled
        self._idle = threading.Condition()
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def shared(self) -> bool:
        m = self.config.mqtt
        return bool(m.shared_group) and m.protocol == "5"

    @property
    def subscriptions(self) -> list[list[str]]:
        """Topic filters, one list per SUBSCRIBE (identifier 1, 2, ... with a shared group)."""
        m = self.config.mqtt
        if self.shared:
            # A spec-conformant broker sends no retained messages to a shared subscription (Mosquitto
            # does anyway): a second, plain subscription to the status topics brings each ingester
            # the retained statuses. Live statuses are taken from the shared one only (see _wanted).
            return [
                [f"$share/{m.shared_group}/{self.prefix}/#"],
                [f"{self.prefix}/+/+/status", f"{self.prefix}/+/+/+/status"],
            ]
        return [[f"{self.prefix}/#"]]

    def start(self) -> None:
        """Connect in the background (paho's network thread) and start the worker; returns at once."""
        self._worker = threading.Thread(target=self._work, name="edgegw-ingest-worker", daemon=True)
        self._worker.start()
        m = self.config.mqtt
        props: Properties | None = None
        if m.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.ReceiveMaximum = m.inflight
            props.SessionExpiryInterval = SESSION_EXPIRY_S if self.persistent else 0
        self._client.connect_async(
            self.host,
            self.port,
            keepalive=int(m.keepalive),
            clean_start=not self.persistent,
            properties=props,
        )
        self._client.loop_start()

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        """True once the broker granted the subscriptions on the current connection."""
        return self._subscribed.wait(timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once every message received so far has been handled."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Handle what was already received (up to `drain_timeout`), disconnect, close own stores."""
        if self._abort.is_set():
            return
        self.wait_idle(drain_timeout)
        self._abort.set()
        self._client.disconnect()
        self._client.loop_stop()
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()
            self._worker = None
        if self._own_tsdb and self.tsdb is not None:
            self.tsdb.close()
        if self._own_ledger:
            self.ledger.close()

    @property
    def stats(self) -> IngestStats:
        """A consistent snapshot of the counters."""
        with self._stats_lock:
            return replace(self._stats)

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + delta)

    # ------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("MQTT connect to %s:%s refused: %s", self.host, self.port, reason)
            return
        self._generation += 1
        self._sub_mids.clear()
        for ident, filters in enumerate(self.subscriptions, start=1):
            sub_props: Properties | None = None
            if self.shared:
                sub_props = Properties(PacketTypes.SUBSCRIBE)
                sub_props.SubscriptionIdentifier = ident
            _, mid = client.subscribe([(t, 1) for t in filters], properties=sub_props)
            if mid is not None:
                self._sub_mids.add(mid)
        log.info("connected to %s:%s, subscribing to %s", self.host, self.port, self.subscriptions)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        if mid not in self._sub_mids:
            return
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("subscription refused by the broker: %s", failed)
            return
        self._sub_mids.discard(mid)
        if not self._sub_mids:
            self._subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Properties | None
    ) -> None:
        self._subscribed.clear()
        if not self._abort.is_set():
            log.warning("MQTT connection lost (%s); paho reconnects", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        item = _Item(message, self._generation)
        with self._idle:
            self._pending += 1
        while not self._abort.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        self._done()

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    # ------------------------------------------------------------ worker thread

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if not self._abort.is_set():
                    self._handle(item.message)
                    self._ack(item)
            except _Stopped:
                pass  # not acknowledged: the broker redelivers it (persistent session) or another member does
            except Exception as e:
                # A bug of ours, not a store failure (those are retried inside _handle). Keep the
                # message if the ledger can, and acknowledge it: an unacknowledged message would
                # hold a slot of the in-flight window for the rest of the connection.
                log.exception("unexpected error handling a message on %r", item.message._topic)
                self._count(errors=1)
                with contextlib.suppress(Exception):
                    self.ledger.dead_letter(repr(item.message._topic), bytes(item.message.payload), f"internal: {e!r}")
                    self._count(dead_letters=1)
                self._ack(item)
            finally:
                self._done()

    def _ack(self, item: _Item) -> None:
        if item.message.qos > 0 and item.generation == self._generation:
            self._client.ack(item.message.mid, item.message.qos)

    def _handle(self, message: mqtt.MQTTMessage) -> None:
        """Process one message completely (stores retried until they accept); then it may be acknowledged."""
        self._count(messages=1)
        payload = bytes(message.payload)  # already bytes: no copy
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = repr(message._topic)
        try:
            info = parse_topic(topic, self.prefix)
            if info.kind == "data":
                data = decode_data(payload)
                _check_ids(info, data.gw, data.dev)
                self._ingest_data(info.enterprise_id, data)
            elif info.kind == "events":
                events = decode_events(payload)
                _check_ids(info, events.gw, events.dev)
                if self._retry(lambda: self.ledger.record_events(info.enterprise_id, events)):
                    self._count(event_messages=1)
                else:
                    self._count(duplicates=1)
            elif self._wanted(message):
                status = decode_status(payload)
                self._retry(
                    lambda: self.ledger.record_status(info.enterprise_id, info.gateway_id, info.device_id, status)
                )
                self._count(status_messages=1)
        except (WireError, _Rejected) as e:
            self._dead_letter(topic, payload, str(e))

    def _ingest_data(self, ent: str, msg: DataMessage) -> None:
        if self._retry(lambda: self.ledger.is_duplicate(ent, msg.gw, msg.seq)):
            self._count(duplicates=1)
            return
        tsdb = self.tsdb
        written = self._retry(lambda: tsdb.write(ent, msg), tsdb=True) if tsdb is not None else len(msg.samples)
        if self._retry(lambda: self.ledger.record_data(ent, msg)):
            n = len(msg.samples)
            self._count(data_messages=1, samples_ingested=n, tsdb_skipped_strings=n - written)
        else:
            self._count(duplicates=1)  # another ingester recorded it meanwhile

    def _wanted(self, message: mqtt.MQTTMessage) -> bool:
        """With a shared group a live status arrives twice (shared and plain subscription): keep the
        shared copy, and the plain one only when it is the retained snapshot sent on subscribing."""
        ids = getattr(message.properties, "SubscriptionIdentifier", None) if self.shared else None
        if not ids:
            return True
        return (SHARED_SUB in ids and not message.retain) or (STATUS_SUB in ids and message.retain)

    def _dead_letter(self, topic: str, payload: bytes, reason: str) -> None:
        log.warning("dead letter on %r: %s", topic, reason)
        self._retry(lambda: self.ledger.dead_letter(topic, payload, reason))
        self._count(dead_letters=1)

    def _retry(self, fn: Callable[[], T], *, tsdb: bool = False) -> T:
        """Call fn until it succeeds, backing off from retry_initial to retry_max seconds."""
        delay = self.retry_initial
        while True:
            try:
                return fn()
            except Exception as e:
                if tsdb and isinstance(e, ApiException) and e.status in TSDB_PERMANENT:
                    raise _Rejected(f"TSDB rejected the batch: HTTP {e.status} {_body(e)}") from e
                self._count(errors=1)
                log.warning(
                    "%s failed (%s: %s); retrying in %.1f s",
                    "TSDB" if tsdb else "ledger",
                    type(e).__name__,
                    e,
                    delay,
                )
            if self._abort.wait(delay):
                raise _Stopped
            delay = min(delay * 2, self.retry_max)


def _check_ids(info: TopicInfo, gw: str, dev: str) -> None:
    if gw != info.gateway_id or dev != info.device_id:
        raise WireError(
            f"payload gw/dev {gw!r}/{dev!r} do not match the topic's {info.gateway_id!r}/{info.device_id!r}"
        )


def _body(e: ApiException) -> str:
    body = e.body
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    return text[:500]
