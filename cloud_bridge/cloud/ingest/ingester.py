"""The cloud ingester: MQTT (shared subscription) → TSDB and evidence ledger, in batches.

Threads: paho's network thread receives messages and queues them; one worker thread takes every
message that is waiting (up to `batch_messages` messages or `batch_samples` samples, lingering up
to `linger` seconds for more when the queue runs dry) and handles the batch:

1. decode and validate each message, bounded before parsing (a broken one is set aside for the
   dead-letter table);
1b. trust (`cloud_bridge.cloud.trust.gate`, README "Trust model"): topic, envelope and registry agree,
   checkpoints and signed statuses verify, each chained message is proven by its gateway's checkpoint
   (whichever ingester stored it: looked up in the ledger before holding, and again once the batch is
   written), held until it comes (in the ledger's `unproven`, acknowledged), or refused; held messages a
   checkpoint now proves are taken back by `sweep`, whichever ingester holds them, after every batch that
   kept a checkpoint or held a message (or once a second when idle);
2. drop duplicates on (ent, gw, seq): repeats inside the batch, then ONE ledger query for the rest;
3. write the points of all new data messages to the TSDB in ONE request;
4. record all new messages in the ledger in ONE transaction (`Ledger.record_batch`), whose
   `received` row is each message's commit point;
5. record statuses and dead letters;
6. acknowledge the whole batch (PUBACK, paho manual ack) in arrival order, as MQTT 3.1.1 requires.

A folder thread adds the batches' pending tag statistics to the ledger's tag_stats every
`fold_interval` seconds (Ledger.fold_tag_stats; they were recorded with each batch, exactly once).

A store that fails is retried with capped exponential backoff while the batch is held. Nothing is
acknowledged before both stores accepted it, and the broker sends no more than the in-flight
window (MQTT 5 Receive Maximum = `mqtt.inflight`) of unacknowledged messages: the queue and the
batch in hand never hold more than that, whatever the backlog. That is the backpressure; the
backlog waits in the broker (a persistent session keeps it across ingester restarts).

Exactly once, and where it is only at least once:
- The ledger is exactly once: its (ent, gw, seq) primary key admits each message once, whichever
  ingester, redelivery or replay brings it.
- The TSDB write comes after the dedupe check and before the ledger commit, so a duplicate that
  arrives after the commit never reaches the TSDB. Two windows remain, both between a message's
  TSDB write and its ledger commit: (a) the ingester dies there (its batch is redelivered and
  written again); (b) two copies of one (gw, seq) (a gateway's replay of a message it never saw
  acknowledged) reach two ingesters of a shared group at the same moment: both pass the dedupe
  check, both write the TSDB, one ledger commit wins and the other is counted as a duplicate.
  InfluxDB keeps one point per series and timestamp, so it is unaffected; VictoriaMetrics keeps
  both copies unless it runs with `-dedup.minScrapeInterval=1ms`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import chain
from sys import intern
from typing import Any, NamedTuple, TypeVar

import paho.mqtt.client as mqtt
from influxdb_client.rest import ApiException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud_bridge.cloud.ingest.metrics import IngestMetrics
from cloud_bridge.cloud.ingest.tsdb import TsdbWriter
from cloud_bridge.cloud.ledger.writer import NO_HORIZON, Flags, Ledger
from cloud_bridge.cloud.trust.archive import GRACE_MS, archive_closed
from cloud_bridge.cloud.trust.gate import RELEASE_LIMIT, Held, Refusal, TrustGate
from cloud_bridge.wire.codec import (
    EARLIEST_MS,
    DataMessage,
    DeviceMeta,
    EventMessage,
    Status,
    TopicInfo,
    WireError,
    decode_events,
    decode_meta,
    decode_status,
    parse_topic,
)
from cloud_bridge.wire.fastdecode import decode_data
from cloud_bridge.wire.mqtt import host_port, make_client, send_pubacks, share_property_tables
from cloud_bridge.wire.signing import chain_hash, signed_part
from edge_config.models import CloudConfig
from edge_config.timing import backoff_delay, is_future, now_ms

log = logging.getLogger(__name__)
T = TypeVar("T")

SESSION_EXPIRY_S = 86_400  # a persistent session (fixed client_id) survives a day of ingester downtime
SHARED_SUB, STATUS_SUB = 1, 2  # MQTT 5 subscription identifiers (see Ingester.subscriptions)
TSDB_PERMANENT = frozenset((400, 413, 422))  # the TSDB refuses the batch itself: retrying cannot help

Record = DataMessage | EventMessage  # what the ledger records under (ent, gw, seq)
Key = tuple[str, str, int]  # (ent, gw, seq)


@dataclass(slots=True)
class IngestStats:
    messages: int = 0  # every message received, whatever became of it
    batches: int = 0  # batches handled (each: one dedupe query, one TSDB request, one ledger transaction)
    data_messages: int = 0  # data messages newly recorded
    event_messages: int = 0  # events messages newly recorded
    status_messages: int = 0
    samples_ingested: int = 0  # samples of newly recorded data messages
    duplicates: int = 0  # data/events messages already recorded, acknowledged and dropped
    dead_letters: int = 0
    tsdb_skipped_strings: int = 0  # samples not written to the TSDB (strings)
    errors: int = 0  # failed store attempts (each retry counts)
    refused: int = 0  # not provably from a registered gateway (dead-lettered; see trust_counts per gateway)
    held: int = 0  # chained messages set aside until their checkpoint arrives
    released: int = 0  # held messages proven later and recorded
    checkpoints: int = 0  # signed checkpoints verified and kept
    future_samples: int = 0  # stamped beyond the allowed skew: flagged, kept out of the evidence
    future_events: int = 0


class _Stopped(Exception):
    """The ingester is stopping while a store keeps failing: leave the batch unacknowledged."""


class _Rejected(Exception):
    """A store refused a batch for what it holds (not for being down): find the culprit, dead-letter it."""


class _Item(NamedTuple):  # a NamedTuple: built in paho's network thread for every message, cheaply
    message: mqtt.MQTTMessage
    generation: int  # connection the message arrived on; acks only go back on the same one


@dataclass(slots=True)
class _Parsed:
    """One message after decoding: something to record, a status, a dead letter, or nothing."""

    topic: str
    payload: bytes
    ent: str = ""
    record: Record | None = None  # deduplicated on (ent, gw, seq) and recorded in the ledger
    status: Status | None = None
    meta: DeviceMeta | None = None  # retained device metadata (birth): kept as the device's latest
    info: TopicInfo | None = None
    reason: str | None = None  # set: goes to the dead-letter table
    samples: int = 0
    lines: list[str] = field(default_factory=list)  # line protocol of a data message
    in_tsdb: bool = False  # its points were written (never write them again, even on a retry one by one)
    claimed: bool = False  # newly recorded in the ledger by this batch
    h: bytes | None = None  # chain hash of a chained message (SHA-256 of its signed part)
    signed: memoryview | None = None  # its signed part (kept as the proof)
    checkpoint: bool = False  # a checkpoint, verified in _process against the registry
    refused: str | None = None  # what kind of refusal (counted per claimed gateway)
    hold: bool = False  # proven by no checkpoint yet: set aside in `unproven`
    held: Held | None = None  # taken back from `unproven`

    @property
    def key(self) -> Key:
        assert self.record is not None
        return (self.ent, self.record.gw, self.record.seq)


class Ingester:
    """MQTT → TSDB + ledger. Tuning: `batch_messages` / `batch_samples` bound one batch (the
    message bound is also kept to half the in-flight window, so the next batch arrives while this
    one is written: set `mqtt.inflight` to 1000 for batches of 500); `linger` is how long an
    unfilled batch waits for more messages."""

    def __init__(
        self,
        config: CloudConfig,
        tsdb: TsdbWriter | None = None,
        ledger: Ledger | None = None,
        *,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        batch_messages: int = 500,
        batch_samples: int = 50_000,
        linger: float = 0.02,
        fold_interval: float = 10.0,
    ) -> None:
        self.config = config
        m = config.mqtt
        self.prefix = m.topic_prefix
        self._own_tsdb = tsdb is None and config.influx is not None
        self.tsdb = tsdb if tsdb is not None else (TsdbWriter(config.influx) if config.influx else None)
        self._own_ledger = ledger is None
        self.ledger = ledger if ledger is not None else Ledger(config.ledger.url)
        self.trust = (
            TrustGate(self.ledger.db, proof_timeout_s=config.trust.proof_timeout)
            if config.trust.mode == "enforce"
            else None
        )
        self.limits = config.limits
        self.max_future_skew_ms = int(config.trust.max_future_skew * 1000)
        self.max_unproven = config.trust.max_unproven
        self._next_sweep = 0.0
        self._next_prune = 0.0
        self.fold_interval = fold_interval
        self._folder: threading.Thread | None = None
        # the series cap (`_over_series_cap`): (ent, gw) → dev → tags known to exist (those this process let
        # through, or, once counted exactly, every one of the ledger); an upper bound of each gateway's count
        self._series: dict[tuple[str, str], dict[str, set[str]]] = {}
        self._series_count: dict[tuple[str, str], int] = {}
        self._series_exact: set[tuple[str, str]] = set()  # gateways whose sets were loaded whole from the ledger
        self._series_folded = False  # the pending tag statistics folded once before the first count
        self._flags: Flags = {}  # future timestamps the ledger flagged in this batch
        self._held_counts: dict[tuple[str, str], int] | None = None  # waiting for their proof, per gateway
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.batch_messages = max(1, min(batch_messages, m.inflight // 2))
        self.batch_samples = max(1, batch_samples)
        self.linger = linger

        # A configured client_id gets a persistent session: unacknowledged messages are redelivered
        # after a restart. It must then be unique per ingester instance.
        self.persistent = m.client_id is not None
        self.client_id = m.client_id or f"edgegw-ingest-{uuid.uuid4().hex[:12]}"
        self.host, self.port = host_port(m.url)
        password = m.password
        share_property_tables()  # paho decodes each PUBLISH's properties without rebuilding its tables
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
        self.metrics = IngestMetrics()  # batch sizes, store latency, newest sample (cloud_bridge.cloud.ingest.metrics)
        self._pending = 0  # messages received and not yet handled (queued or in the batch in hand)
        self._idle = threading.Condition()
        self._worker: threading.Thread | None = None
        # Topic kind → decoder of that kind's payload into a _Parsed (add new kinds here).
        self._decoders: dict[str, Callable[[TopicInfo, mqtt.MQTTMessage, _Parsed], None]] = {
            "data": self._decode_data,
            "events": self._decode_events,
            "status": self._decode_status,
            "meta": self._decode_meta,
            "checkpoint": self._decode_checkpoint,
        }

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
                [f"{self.prefix}/+/+/status", f"{self.prefix}/+/+/+/status", f"{self.prefix}/+/+/+/meta"],
            ]
        return [[f"{self.prefix}/#"]]

    def start(self) -> None:
        """Connect in the background (paho's network thread) and start the worker; returns at once."""
        self._worker = threading.Thread(target=self._work, name="edgegw-ingest-worker", daemon=True)
        self._worker.start()
        self._folder = threading.Thread(target=self._fold_every, name="edgegw-ingest-fold", daemon=True)
        self._folder.start()
        m = self.config.mqtt
        props: Properties | None = None
        if m.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.ReceiveMaximum = m.inflight
            props.SessionExpiryInterval = SESSION_EXPIRY_S if self.persistent else 0
            props.MaximumPacketSize = self.limits.max_payload + 65_536  # the broker drops larger ones for us
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

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    @property
    def pending(self) -> int:
        """Messages received and not yet handled: never more than the in-flight window (MQTT 5)."""
        with self._idle:
            return self._pending

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
        if self._folder is not None:
            self._folder.join()
            self._folder = None
        self.fold()
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
                if delta:
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
        # A full queue blocks paho's network thread, so the socket is not read either: backpressure
        # even where the broker does not honour Receive Maximum (MQTT 3.1.1).
        while not self._abort.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        self._done(1)

    def _done(self, n: int) -> None:
        with self._idle:
            self._pending -= n
            if self._pending == 0:
                self._idle.notify_all()

    # ------------------------------------------------------------ worker thread

    def _work(self) -> None:
        last = False
        while not last:
            items, parsed, last = self._collect()
            try:
                if items and not self._abort.is_set():
                    self._process_safely(parsed)
                    self._ack(items)
                if not self._abort.is_set():
                    # A checkpoint kept, or a message held: what the other ingesters hold (or what this one
                    # just held) may be provable now, whichever ingester stored its checkpoint.
                    self.sweep(force=any(p.checkpoint or (p.hold and p.held is None) for p in parsed))
                    self.prune()
            except _Stopped:
                pass  # not acknowledged: the broker redelivers it (persistent session) or another member does
            finally:
                self._done(len(items))
                del items, parsed  # not held while the next batch is collected

    def _collect(self) -> tuple[list[_Item], list[_Parsed], bool]:
        """Wait for a message, then take what else is waiting (and what arrives within `linger`) up
        to the batch bounds, decoding as it goes. True as the third value once stop() was called."""
        while True:
            try:
                first = self._queue.get(timeout=1.0)
                break
            except queue.Empty:
                if self._abort.is_set():
                    return [], [], True
                self.sweep()  # held messages whose checkpoint came through another ingester, or expired
        if first is None:
            return [], [], True
        items = [first]
        parsed = [self._parse(first.message)]
        samples = parsed[0].samples
        deadline = time.monotonic() + self.linger
        while len(items) < self.batch_messages and samples < self.batch_samples:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is None:
                return items, parsed, True
            items.append(item)
            p = self._parse(item.message)
            parsed.append(p)
            samples += p.samples
        return items, parsed, False

    def _ack(self, items: list[_Item]) -> None:
        """PUBACK in arrival order, only on the connection the messages came in on (packet ids are
        per connection; a persistent session redelivers the others); the batch's QoS 1 acknowledgements
        as one write (`send_pubacks`)."""
        generation = self._generation
        current = [item.message for item in items if item.generation == generation]
        send_pubacks(self._client, [m.mid for m in current if m.qos == 1])
        for m in current:
            if m.qos > 1:  # never subscribed to, but acknowledged as paho would
                self._client.ack(m.mid, m.qos)

    # ------------------------------------------------------------ handling (no MQTT below this line)

    def handle(self, message: mqtt.MQTTMessage) -> None:
        """Handle one message completely, as the worker does, without acknowledging it."""
        self.handle_batch([message])

    def handle_batch(self, messages: Sequence[mqtt.MQTTMessage]) -> None:
        """Handle messages as one batch: decode, dedupe, TSDB, ledger, dead letters. Stores are
        retried until they accept; no exception escapes (a bug of ours dead-letters the message with
        reason `internal: …`) except while stop() abandons the retries."""
        self._process_safely([self._parse(m) for m in messages])

    def _parse(self, message: mqtt.MQTTMessage) -> _Parsed:
        """Decode and validate one message; a message that breaks the contract gets a `reason`."""
        payload = bytes(message.payload)  # already bytes: no copy
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = repr(message._topic)
        p = _Parsed(topic, payload)
        try:
            info = p.info = parse_topic(topic, self.prefix)
            decoder = self._decoders.get(info.kind)
            if decoder is None:
                raise WireError(f"topic kind {info.kind!r} is not handled")
            if len(payload) > self.limits.max_payload:  # bounded before anything parses it
                raise WireError(
                    f"payload of {len(payload)} bytes: above limits.max_payload ({self.limits.max_payload})"
                )
            decoder(info, message, p)
        except WireError as e:
            p.reason = str(e)
        except Exception as e:  # a bug of ours: keep the message, do not stop
            log.exception("unexpected error decoding a message on %r", topic)
            p.reason = f"internal: {e!r}"
        if p.reason is not None:
            p.record = p.status = p.meta = None
            p.samples = 0
            p.checkpoint = False
        if "\x00" in topic:  # MQTT forbids it, but keep the dead letter storable anyway
            p.topic = repr(topic)
        return p

    def _decode_data(self, info: TopicInfo, message: mqtt.MQTTMessage, p: _Parsed) -> None:
        if p.payload.count(b'"tag"') > self.limits.max_samples:  # counted before parsing
            raise WireError(f"more than limits.max_samples ({self.limits.max_samples}) samples in one message")
        data = decode_data(p.payload)
        if len(data.samples) > self.limits.max_samples:  # the count above misses a key spelt "t\u0061g"
            raise WireError(f"more than limits.max_samples ({self.limits.max_samples}) samples in one message")
        _check_ids(info, data.gw, data.dev, data.ent)
        _check_storable(p.payload, lambda: _data_strings(data))
        p.ent, p.record, p.samples = info.enterprise_id, data, len(data.samples)
        self._chain(p, data.prev)

    def _chain(self, p: _Parsed, prev: bytes | None) -> None:
        if prev is not None:
            part = signed_part(p.payload)
            if part is None:
                raise WireError("a chained message must end with its 'hist' field")
            p.signed, p.h = part, chain_hash(part)

    def _decode_checkpoint(self, info: TopicInfo, message: mqtt.MQTTMessage, p: _Parsed) -> None:
        if len(p.payload) > 256 * 1024:
            raise WireError("a checkpoint larger than 256 KB")
        p.ent, p.checkpoint = info.enterprise_id, True

    def _decode_events(self, info: TopicInfo, message: mqtt.MQTTMessage, p: _Parsed) -> None:
        events = decode_events(p.payload, earliest_ms=EARLIEST_MS)
        _check_ids(info, events.gw, events.dev, events.ent)
        _check_storable(
            p.payload,
            lambda: chain.from_iterable((e.kind, e.reason, e.state or "") for e in events.events),
        )
        p.ent, p.record = info.enterprise_id, events
        self._chain(p, events.prev)

    def _decode_status(self, info: TopicInfo, message: mqtt.MQTTMessage, p: _Parsed) -> None:
        if self._wanted(message):
            status = decode_status(p.payload, earliest_ms=EARLIEST_MS)
            _check_storable(p.payload, lambda: (status.reason, status.version or ""))
            p.ent, p.status = info.enterprise_id, status

    def _decode_meta(self, info: TopicInfo, message: mqtt.MQTTMessage, p: _Parsed) -> None:
        if self._wanted(message):
            meta = decode_meta(p.payload, earliest_ms=EARLIEST_MS)
            _check_ids(info, meta.gw, meta.dev)
            _check_storable(p.payload, lambda: (p.payload.decode(errors="replace"),))
            p.ent, p.meta = info.enterprise_id, meta

    def _process_safely(self, batch: list[_Parsed]) -> None:
        try:
            self._process(batch)
        except _Stopped:
            raise
        except Exception as e:
            # A bug of ours, not a store failure (those are retried inside _process). Find the
            # message(s) it comes from, keep them as dead letters if the ledger can, and go on: an
            # unacknowledged message would hold a slot of the in-flight window for good.
            if len(batch) > 1:
                log.exception("unexpected error in a batch of %d messages; handling them one by one", len(batch))
                for p in batch:
                    self._process_safely([p])
                return
            [p] = batch
            log.exception("unexpected error handling a message on %r", p.topic)
            self._count(errors=1)
            with contextlib.suppress(Exception):
                self.ledger.dead_letter(p.topic, p.payload, f"internal: {e!r}")
                self._count(dead_letters=1)

    def _process(self, batch: list[_Parsed]) -> None:
        """One batch through both stores (see the module docstring); then it may be acknowledged."""
        counts = dict.fromkeys(IngestStats.__dataclass_fields__, 0)
        counts["messages"], counts["batches"] = len(batch), 1

        # Trust: registry, signatures, checkpoints; each chained message proven, held or refused. Retried
        # only while a store is down: anything else escapes to _process_safely, which finds its message.
        if self.trust is not None:
            counts["checkpoints"] += self._retry(partial(self._screen, batch), refusal=_not_an_outage)

        self._store(batch, counts)

        now = now_ms()
        for p in batch:  # a status or metadata from the future would hold its place for ever: flagged, not kept
            stamped = p.status.ts if p.status is not None else p.meta.ts if p.meta is not None else None
            if stamped is not None and p.info is not None and is_future(stamped, now, self.max_future_skew_ms):
                flag = (p.info.enterprise_id, p.info.gateway_id, "future:statuses")
                self._flags[flag] = self._flags.get(flag, 0) + 1
                p.status = p.meta = None
        for p in batch:
            if p.status is not None and p.info is not None:
                info = p.info
                self._retry(
                    partial(self.ledger.record_status, info.enterprise_id, info.gateway_id, info.device_id, p.status)
                )
                counts["status_messages"] += 1
        for p in batch:
            if p.meta is not None:
                self._retry(partial(self.ledger.record_meta, p.ent, p.meta))
                counts["status_messages"] += 1
        if self.trust is not None:  # a checkpoint another ingester stored meanwhile: recorded now, never held
            self._store(self._proven_meanwhile(batch), counts)
        held = [_to_hold(p) for p in batch if p.hold and p.held is None]
        if held and self.trust is not None:
            self._retry(partial(self.trust.hold, held))
            counts["held"] += len(held)
        refusals: dict[tuple[str, str, str], tuple[int, str]] = {}
        for p in batch:
            if p.reason is not None:
                log.warning("dead letter on %r: %s", p.topic, p.reason)
                payload = p.payload[: self.limits.dead_letter_bytes]
                self._retry(partial(self.ledger.dead_letter, p.topic, payload, p.reason))
                counts["dead_letters"] += 1
                if p.refused is not None and p.info is not None:
                    what = (p.info.enterprise_id, p.info.gateway_id, f"refused:{p.refused}")
                    refusals[what] = (refusals.get(what, (0, ""))[0] + 1, p.reason)
                    counts["refused"] += 1
        for what, n in self._flags.items():
            refusals[what] = (refusals.get(what, (0, ""))[0] + n, "timestamps beyond trust.max_future_skew")
            if what[2] in ("future:samples", "future:events"):
                counts[what[2].replace(":", "_")] += n
        self._flags = {}
        if refusals and self.trust is not None:
            self._retry(partial(self.trust.count, refusals))
        self._count(**counts)
        self.metrics.batch([p.record for p in batch])

    def _store(self, batch: list[_Parsed], counts: dict[str, int]) -> None:
        """Dedupe, TSDB, ledger: the batch's messages to record (neither held nor refused)."""
        # Dedupe: repeats inside the batch, then one ledger query for the rest.
        candidates = [p for p in batch if p.record is not None and not p.hold]
        fresh: list[_Parsed] = []
        if candidates:
            known = self._retry(lambda: self.ledger.recorded(p.key for p in candidates))
            seen: set[Key] = set()
            for p in candidates:
                key = p.key
                if key in known or key in seen:
                    counts["duplicates"] += 1
                else:
                    seen.add(key)
                    fresh.append(p)

        # A bound on the series one gateway may create (the TSDB's index, the ledger's tag statistics).
        self._count_series({(p.ent, p.record.gw) for p in fresh if isinstance(p.record, DataMessage)})
        fresh = [p for p in fresh if not self._over_series_cap(p)]

        # TSDB: every point of the new data messages in one request.
        data = [(p, p.record) for p in fresh if isinstance(p.record, DataMessage) and not p.in_tsdb]
        if data and self.tsdb is not None:
            for p, msg in data:
                p.lines = self.tsdb.lines(p.ent, msg)
            written = self._write_tsdb([p for p, _ in data])
            counts["tsdb_skipped_strings"] += sum(p.samples for p, _ in data if p.reason is None) - written
            fresh = [p for p in fresh if p.reason is None]
        for p in fresh:
            p.lines = []  # let the batch's line protocol go before the next batch is built

        # Ledger: every new message in one transaction; not claimed = a copy another ingester just recorded.
        if fresh:
            self._record(fresh)
            for p in fresh:
                if p.reason is not None:
                    continue  # refused by the ledger: a dead letter
                if not p.claimed:
                    counts["duplicates"] += 1
                elif isinstance(p.record, DataMessage):
                    counts["data_messages"] += 1
                    counts["samples_ingested"] += p.samples
                else:
                    counts["event_messages"] += 1

    def _proven_meanwhile(self, batch: list[_Parsed]) -> list[_Parsed]:
        """The messages about to be held whose checkpoint is now in the ledger (stored by another ingester
        while this batch was written): proven (returned, to record) or refused, instead of held."""
        gate = self.trust
        assert gate is not None
        waiting = [p for p in batch if p.hold and p.held is None]
        if not waiting:
            return []
        trusted = self._retry(partial(gate.trusted, [p.key for p in waiting]))
        proven = []
        for p in waiting:
            signed = trusted.get(p.key)
            if signed is not None:
                p.hold = False
                if _judge(p, signed):
                    proven.append(p)
        return proven

    def _count_series(self, gateways: set[tuple[str, str]]) -> None:
        """Start the series count of the gateways not seen yet from the ledger's count (one statement for
        the batch, no series fetched); the first time, fold what an earlier run left pending."""
        unseen = gateways - self._series.keys()
        if not unseen:
            return
        if not self._series_folded:
            self._retry(self.ledger.fold_tag_stats)
            self._series_folded = True
        counts = self._retry(partial(self.ledger.series_counts, unseen))
        for key in unseen:
            self._series[key] = {}
            self._series_count[key] = counts.get(key, 0)

    def _over_series_cap(self, p: _Parsed) -> bool:
        """True (and a reason set: a dead letter) when a data message would take its gateway past
        `limits.max_series_per_gateway` distinct device/tag series.

        Cheap while far from the cap: a gateway's count starts from the ledger's and grows by the tags this
        process has not seen for the device yet, an upper bound (a tag may exist already). Only when that
        bound would pass the cap is the gateway counted exactly (its series loaded from the ledger, pending
        statistics folded first), so nothing is refused that the exact count lets through. The gateway's
        count was started by `_count_series` for the batch."""
        msg = p.record
        if not isinstance(msg, DataMessage) or p.info is None:
            return False
        key = (p.ent, msg.gw)
        devices = self._series[key]
        known = devices.get(msg.dev)
        if known is None:
            known = devices[intern(msg.dev)] = set()
        tags = {s.tag for s in msg.samples}
        if tags <= known:
            return False
        new = tags - known
        cap = self.limits.max_series_per_gateway
        if self._series_count[key] + len(new) > cap and key not in self._series_exact:
            exact: dict[str, set[str]] = {}
            for dev, tag in self._retry(partial(self.ledger.series, p.ent, msg.gw)):
                exact.setdefault(intern(dev), set()).add(intern(tag))
            for dev, seen in devices.items():  # let through in a batch not recorded yet: counted too
                exact.setdefault(dev, set()).update(seen)
            self._series[key] = devices = exact
            self._series_count[key] = sum(len(t) for t in exact.values())
            self._series_exact.add(key)
            known = devices.setdefault(intern(msg.dev), set())
            new = tags - known
            if not new:
                return False
        if self._series_count[key] + len(new) > cap:
            p.reason = f"{len(new)} new series would take {p.ent}/{msg.gw} past limits.max_series_per_gateway ({cap})"
            p.record, p.samples = None, 0
            return True
        # one string per tag name however many devices and gateways carry it: the names repeat (devices of
        # one model), the strings each message decodes do not (≈ 10⁶ series: 95 → 43 MB, README "Ingester")
        known.update(map(intern, new))
        self._series_count[key] += len(new)
        return False

    def fold(self) -> int:
        """Add the tag statistics of recorded batches to tag_stats (Ledger.fold_tag_stats). Returns the
        batches folded; a failure is logged and left for the next time (nothing is lost: the pending
        statistics stay in the ledger, and every read of tag_stats folds them first)."""
        try:
            return self.metrics.timed("fold", self.ledger.fold_tag_stats)
        except Exception as e:
            log.warning("could not fold the tag statistics (%s); later", e)
            return 0

    def _fold_every(self) -> None:
        """The folder thread: a fold every `fold_interval` seconds, on its own ledger connection, so
        it runs while the worker waits for the stores (per tag once per interval, not once per batch)."""
        while not self._abort.wait(self.fold_interval):
            self.fold()

    def prune(self, *, force: bool = False) -> int:
        """Dead letters past `limits.dead_letter_retention` deleted, and the closed gateway-hours of
        checkpoints and message bodies moved into the chain archive (trust/archive.py), at most once an
        hour; `force`: now, and every hour before the current one counts as closed. Returns the dead
        letters deleted."""
        now = time.monotonic()
        if now < self._next_prune and not force:
            return 0
        self._next_prune = now + 3600.0
        try:
            archive_closed(self.ledger.db, now_ms(), grace_ms=0 if force else GRACE_MS)
        except Exception as e:
            log.warning("could not archive the closed hours of the chain (%s); in an hour", e)
        try:
            return self.ledger.prune_dead_letters(now_ms() - int(self.limits.dead_letter_retention * 1000))
        except Exception as e:
            log.warning("could not prune the dead letters (%s); in an hour", e)
            return 0

    def _screen(self, batch: list[_Parsed]) -> int:
        """Topic, envelope and registry against each other; signatures; each chained message proven
        (its hash is the one its gateway signed), held (no checkpoint yet) or refused. Returns the
        checkpoints kept. Idempotent: retried whole if the ledger fails. A message whose checks raise
        anything but a store failure is a dead letter (a store failure is retried: `_not_an_outage`)."""
        gate = self.trust
        assert gate is not None
        checkpoints = []
        gateways: dict[tuple[str, str], Refusal | None] = {}  # one registry look-up per gateway and batch
        gate.registry.prefetch((p.info.enterprise_id, p.info.gateway_id) for p in batch if p.info is not None)
        for p in batch:
            info = p.info
            if p.reason is not None or info is None:
                continue
            ent, gw = info.enterprise_id, info.gateway_id
            refusal: Refusal | None = None
            try:
                if p.checkpoint:
                    c = gate.check_checkpoint(ent, gw, p.topic, p.payload)
                    if isinstance(c, Refusal):
                        refusal = c
                    else:
                        checkpoints.append((c, p.topic, p.payload))
                elif p.status is not None or p.meta is not None:
                    refusal = gate.check_sealed(ent, gw, p.topic, p.payload)
                elif p.record is not None:
                    if (ent, gw) not in gateways:
                        gateways[(ent, gw)] = gate.gateway(ent, gw)
                    refusal = gateways[(ent, gw)]
                    if refusal is None and p.h is None:
                        refusal = Refusal(
                            "unchained", "no hash chain ('prev') in the envelope: not provably from the gateway"
                        )
            except Exception as e:
                if _not_an_outage(e) is None:
                    raise  # the ledger is down: the batch is retried whole
                # this message's own doing (a bug of ours it trips): it must not hold up every other one
                log.exception("unexpected error checking a message on %r", p.topic)
                _refuse(p, Refusal("internal", f"internal: {e!r}"[:1000]))
                p.refused = None  # not a trust refusal: not counted per gateway
                continue
            if refusal is not None:
                _refuse(p, refusal)
        gate.keep_checkpoints(checkpoints)
        records = [p for p in batch if p.record is not None]
        trusted = gate.trusted(p.key for p in records) if records else {}
        for p in records:
            signed = trusted.get(p.key)
            if signed is None:
                if p.held is not None and p.held.received_ms < now_ms() - gate.proof_timeout_ms:
                    _refuse(p, Refusal("unproven", "no signed checkpoint covered it within trust.proof_timeout"))
                elif p.held is None and not self._may_hold(p.key[:2]):
                    _refuse(p, Refusal("unproven", f"more than trust.max_unproven ({self.max_unproven}) wait"))
                else:
                    p.hold = True
            else:
                p.hold = False
                _judge(p, signed)
        return len(checkpoints)

    def _may_hold(self, gateway: tuple[str, str]) -> bool:
        """Room for one more message of `gateway` waiting for its proof (a flood of forgeries under its
        name is refused past trust.max_unproven, and never fills the ledger)."""
        if self._held_counts is None:
            assert self.trust is not None
            self._held_counts = self.trust.held_counts()
        n = self._held_counts.get(gateway, 0)
        if n >= self.max_unproven:
            return False
        self._held_counts[gateway] = n + 1
        return True

    def sweep(self, *, force: bool = False) -> int:
        """Take back held messages that a checkpoint now proves (recorded) or that waited past the proof
        timeout (refused), whichever ingester holds them; at most once a second unless forced (the worker
        forces it after a batch that kept a checkpoint or held a message: of two ingesters, one storing a
        gateway's checkpoint while the other holds its message, the one that commits last sees the other's
        row, so no held message waits for the timer). Returns how many were settled."""
        gate = self.trust
        now = time.monotonic()
        if gate is None or (not force and now < self._next_sweep):
            return 0
        self._next_sweep = now + 1.0
        try:
            if not gate.any_held():
                self._held_counts = None
                return 0
            covered, expired = gate.releasable(self.client_id)
        except Exception as e:
            log.warning("could not look at the held messages (%s); later", e)
            return 0
        items = list({(h.ent, h.gw, h.seq, h.h): h for h in covered + expired}.values())
        if len(items) >= RELEASE_LIMIT:
            self._next_sweep = 0.0  # more waiting: again after the next batch
        settled = 0
        for i in range(0, len(items), self.batch_messages):
            settled += self._settle(items[i : i + self.batch_messages])
        return settled

    def _settle(self, items: list[Held]) -> int:
        """Handle claimed held messages as one batch, then drop those settled from `unproven`."""
        gate = self.trust
        assert gate is not None
        parsed = []
        for h in items:
            msg = mqtt.MQTTMessage(topic=h.topic.encode())
            msg.payload = h.payload
            p = self._parse(msg)
            p.held = h
            parsed.append(p)
        self._process_safely(parsed)
        settled = [p.held for p in parsed if p.held is not None and not p.hold]
        self._retry(partial(gate.forget, settled))
        self._held_counts = None  # counted again from the ledger when next needed
        self._count(released=sum(1 for p in parsed if p.claimed))
        return len(settled)

    def _write_tsdb(self, group: list[_Parsed]) -> int:
        """Write the group's points as one request (retried while the TSDB fails); return the points
        written. If the TSDB refuses the request as malformed, halve the group to find the messages it
        refuses: those get a `reason` (dead letters), the others are written once."""
        tsdb = self.tsdb
        assert tsdb is not None
        lines = list(chain.from_iterable(p.lines for p in group))
        if not lines:
            return 0
        try:
            self._retry(
                lambda: self.metrics.timed("tsdb", lambda: tsdb.write_lines(lines)), store="TSDB", refusal=_tsdb_refusal
            )
        except _Rejected as e:
            if len(group) == 1:
                group[0].reason = str(e)
                return 0
            half = len(group) // 2
            return self._write_tsdb(group[:half]) + self._write_tsdb(group[half:])
        for p in group:
            p.in_tsdb = True
        return len(lines)

    def _record(self, group: list[_Parsed]) -> None:
        """Record the group in one ledger transaction (retried while the ledger fails), setting each
        one's `claimed`. If the ledger refuses it for what it holds (a data error, not an outage),
        halve the group to find the messages it refuses: those get a `reason` (dead letters)."""
        pairs = [(p.ent, p.record) for p in group if p.record is not None]
        proofs = {p.key: (p.h, p.signed) for p in group if p.h is not None and p.signed is not None}
        horizon = now_ms() + self.max_future_skew_ms if self.max_future_skew_ms else NO_HORIZON

        def record() -> list[bool]:
            flags: Flags = {}
            claimed = self.ledger.record_batch(pairs, proofs=proofs, horizon_ms=horizon, flags=flags)
            for k, n in flags.items():
                self._flags[k] = self._flags.get(k, 0) + n
            return claimed

        try:
            claimed = self._retry(lambda: self.metrics.timed("ledger", record), store="ledger", refusal=_ledger_refusal)
        except _Rejected as e:
            if len(group) == 1:
                group[0].reason = str(e)
                return
            half = len(group) // 2
            self._record(group[:half])
            self._record(group[half:])
            return
        for p, new in zip(group, claimed, strict=True):
            p.claimed = new

    def _wanted(self, message: mqtt.MQTTMessage) -> bool:
        """With a shared group a live status arrives twice (shared and plain subscription): keep the
        shared copy, and the plain one only when it is the retained snapshot sent on subscribing."""
        ids = getattr(message.properties, "SubscriptionIdentifier", None) if self.shared else None
        if not ids:
            return True
        return (SHARED_SUB in ids and not message.retain) or (STATUS_SUB in ids and message.retain)

    def _retry(
        self,
        fn: Callable[[], T],
        *,
        store: str = "ledger",
        refusal: Callable[[Exception], str | None] = lambda e: None,
    ) -> T:
        """Call fn until it succeeds, backing off from retry_initial to retry_max seconds; raise
        _Rejected at once if `refusal` names the failure as one that retrying cannot cure."""
        attempt = 0
        while True:
            attempt += 1
            delay = backoff_delay(attempt, base=self.retry_initial, cap=self.retry_max)
            try:
                return fn()
            except Exception as e:
                reason = refusal(e)
                if reason is not None:
                    raise _Rejected(reason) from e
                self._count(errors=1)
                log.warning("%s failed (%s: %s); retrying in %.1f s", store, type(e).__name__, e, delay)
            if self._abort.wait(delay):
                raise _Stopped


def _refuse(p: _Parsed, refusal: Refusal) -> None:
    p.reason, p.refused = refusal.reason, refusal.what
    p.record = p.status = p.meta = None
    p.samples = 0
    p.checkpoint = p.hold = False


def _judge(p: _Parsed, signed: bytes) -> bool:
    """True if the message is the one its gateway signed for its seq; else refused as a mismatch."""
    if signed == p.h:
        return True
    ent, gw, seq = p.key
    _refuse(p, Refusal("mismatch", f"seq {seq} is not the message {ent}/{gw} signed (another hash)"))
    return False


def _to_hold(p: _Parsed) -> Held:
    ent, gw, seq = p.key
    assert p.h is not None
    return Held(ent, gw, seq, p.h, p.topic, p.payload, now_ms())


def _check_ids(info: TopicInfo, gw: str, dev: str, ent: str | None = None) -> None:
    if gw != info.gateway_id or dev != info.device_id:
        raise WireError(
            f"payload gw/dev {gw!r}/{dev!r} do not match the topic's {info.gateway_id!r}/{info.device_id!r}"
        )
    if ent is not None and ent != info.enterprise_id:
        raise WireError(f"payload ent {ent!r} does not match the topic's {info.enterprise_id!r}")


# JSON escapes of U+0000 or of a UTF-16 surrogate: the strings may hold what the stores cannot (a NUL
# in PostgreSQL TEXT, a lone surrogate anywhere UTF-8 is required)
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def _check_storable(payload: bytes, strings: Callable[[], Iterable[str]]) -> None:
    """Refuse what the wire codec lets through but a store would refuse for good (retrying forever):
    NUL characters, lone surrogates (the codec already bounds every integer to 64 bits). The strings are
    only looked at when the payload could hold such characters (not pure ASCII, NUL bytes, or a
    suspicious escape)."""
    if payload.isascii() and b"\x00" not in payload and not _SUSPECT_ESCAPE.search(payload):
        return
    text = "\x01".join(strings())
    if "\x00" in text:
        raise WireError("a string holds U+0000 (NUL), which the ledger cannot store")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise WireError("a string holds a lone UTF-16 surrogate (not valid UTF-8)") from None


def _data_strings(msg: DataMessage) -> Iterator[str]:
    yield from (s.tag for s in msg.samples)
    yield from (s.v for s in msg.samples if isinstance(s.v, str))
    yield from msg.units
    yield from msg.units.values()


def _tsdb_refusal(e: Exception) -> str | None:
    if isinstance(e, ApiException) and e.status in TSDB_PERMANENT:
        return f"TSDB rejected the batch: HTTP {e.status} {_body(e)}"
    return None


# DB-API exception classes (sqlite3, psycopg) raised for what a statement holds, not for an outage
_DATA_ERRORS = frozenset(("DataError", "IntegrityError", "ProgrammingError", "NotSupportedError"))


# DB-API and SQLAlchemy exception classes of a store that does not answer (retried), by name: sqlite3's,
# psycopg's and SQLAlchemy's wrappers of them alike
_OUTAGE_ERRORS = frozenset(("OperationalError", "InterfaceError", "InternalError", "DatabaseError", "SQLAlchemyError"))


def _not_an_outage(e: Exception) -> str | None:
    """None for a store failure worth retrying (the database or the network down); otherwise the reason:
    an error no retry can cure (retrying it would stop the ingester for every gateway)."""
    names = {c.__name__ for c in type(e).__mro__}
    if isinstance(e, OSError) or (names & _OUTAGE_ERRORS and not names & _DATA_ERRORS):
        return None
    return f"not a store failure: {type(e).__name__}: {e}"[:1000]


def _ledger_refusal(e: Exception) -> str | None:
    if isinstance(e, ValueError | TypeError | OverflowError) or any(
        c.__name__ in _DATA_ERRORS for c in type(e).__mro__
    ):
        return f"ledger refused the message: {type(e).__name__}: {e}"[:1000]
    return None


def _body(e: ApiException) -> str:
    body = e.body
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    return text[:500]
