"""The ingester's batch path without MQTT or servers: Ledger.record_batch / recorded, the line
protocol, and Ingester.handle_batch with a recording TSDB double (one request per batch, duplicates
never written, a refused message found by halving and dead-lettered)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client.rest import ApiException
from sqlalchemy import text

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ingest.tsdb import TsdbWriter, to_lines
from cloud_bridge.cloud.ledger.writer import Ledger
from cloud_bridge.wire.codec import (
    DataMessage,
    Event,
    EventMessage,
    Sample,
    Status,
    Topics,
    encode_data_body,
    encode_event_body,
    encode_status,
    envelope,
)
from edge_config.models import CloudConfig, InfluxSection, IngestMqttSection, LedgerSection, TrustSection

ENT, GW = "ent-1", "gw-1"
TOPICS = Topics("sf/v1", ENT, GW)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    led.close()


def snapshot(led: Ledger) -> tuple[object, ...]:
    tags = [t for d in led.devices() for t in led.tag_stats(d["dev"], ent=d["ent"], gw=d["gw"])]
    return led.devices(), tags, led.events(), led.received_count(), led.total_samples()


# ---------------------------------------------------------------- Ledger.record_batch, Ledger.recorded

samples_st = st.lists(
    st.builds(
        Sample,
        tag=st.sampled_from(["a", "b", "c"]),
        v=st.one_of(st.floats(-10, 10), st.integers(-5, 5), st.booleans(), st.sampled_from(["x", "y"])),
        ts=st.integers(0, 5),  # few timestamps: ties between samples and between messages
        q=st.sampled_from(["good", "uncertain", "bad"]),
    ),
    min_size=1,
    max_size=6,
)
messages_st = st.lists(
    st.one_of(
        st.builds(
            DataMessage,
            gw=st.sampled_from(["gw-1", "gw-2"]),
            dev=st.sampled_from(["d1", "d2"]),
            seq=st.integers(0, 8),  # repeats: duplicates inside a batch and across batches
            hist=st.booleans(),
            samples=samples_st.map(tuple),
            units=st.dictionaries(st.sampled_from(["a", "b", "z"]), st.sampled_from(["kW", "rpm"]), max_size=2),
        ),
        st.builds(
            EventMessage,
            gw=st.just("gw-1"),
            dev=st.just("d1"),
            seq=st.integers(0, 8),
            hist=st.just(False),
            events=st.lists(st.builds(Event, kind=st.just("online"), ts=st.integers(0, 5)), min_size=1, max_size=2).map(
                tuple
            ),
        ),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(messages_st, st.integers(1, 5))
def test_record_batch_equals_recording_one_by_one(messages: list[DataMessage | EventMessage], size: int) -> None:
    one, many = Ledger("sqlite:///:memory:"), Ledger("sqlite:///:memory:")
    try:
        expected = [
            one.record_data(ENT, m) if isinstance(m, DataMessage) else one.record_events(ENT, m) for m in messages
        ]
        got: list[bool] = []
        for i in range(0, len(messages), size):  # in batches of `size`
            got += many.record_batch([(ENT, m) for m in messages[i : i + size]])
        assert got == expected
        assert snapshot(many) == snapshot(one)
    finally:
        one.close()
        many.close()


def test_record_batch_is_idempotent_and_all_or_nothing(ledger: Ledger) -> None:
    a = DataMessage(GW, "d1", 1, False, (Sample("t", 1.0, 10),), {"t": "kW"})
    b = DataMessage(GW, "d1", 2, False, (Sample("t", 2.0, 20),), {})
    ev = EventMessage(GW, "d1", 3, False, (Event("online", 5, "up"),))
    assert ledger.record_batch([(ENT, a), (ENT, a), (ENT, ev)]) == [True, False, True]
    assert ledger.record_batch([(ENT, a), (ENT, b), (ENT, ev), ("ent-2", a)]) == [False, True, False, True]
    assert ledger.total_samples() == 3 and ledger.received_count() == 4
    [t] = ledger.tag_stats("d1", ent=ENT)
    assert (t["samples"], t["last_ts"], t["last_value_text"], t["unit"]) == (2, 20, "2.0", "kW")
    bad = DataMessage(GW, "d1", 9, False, (), {})
    with pytest.raises(ValueError):
        ledger.record_batch([(ENT, DataMessage(GW, "d1", 8, False, (Sample("t", 1.0, 1),), {})), (ENT, bad)])
    assert not ledger.is_duplicate(ENT, GW, 8)  # nothing of the failed batch was kept
    assert ledger.record_batch([]) == []


def test_recorded_finds_exactly_the_known_keys(ledger: Ledger) -> None:
    ledger.record_batch(
        [(ENT, DataMessage(GW, "d", seq, False, (Sample("t", 1, 1),), {})) for seq in range(0, 1200, 2)]
    )
    keys = [(ENT, GW, seq) for seq in range(1200)] + [("ent-2", GW, 0), (ENT, "gw-2", 0), (ENT, GW, 0)]
    assert ledger.recorded(keys) == {(ENT, GW, seq) for seq in range(0, 1200, 2)}
    assert ledger.recorded([]) == set()


# ---------------------------------------------------------------- line protocol


def test_line_protocol_cache_changes_nothing() -> None:
    msg = DataMessage(
        "gw 1",
        "dev,1",
        1,
        False,
        (
            Sample("a=b", 1.5, 10),
            Sample("a=b", 2, 11, "bad"),
            Sample("t", True, 12),
            Sample("s", "text", 13),
            Sample("huge", 10**400, 14),
        ),
        {"a=b": "k W"},
    )
    expected = [
        r"sf,dev=dev\,1,ent=e,gw=gw\ 1,q=good,tag=a\=b,unit=k\ W v=1.5 10",
        r"sf,dev=dev\,1,ent=e,gw=gw\ 1,q=bad,tag=a\=b,unit=k\ W v=2.0 11",
        r"sf,dev=dev\,1,ent=e,gw=gw\ 1,q=good,tag=t v=1.0 12",
    ]
    assert to_lines("sf", "e", msg) == expected
    cache: dict[tuple[str, str, str | None], str] = {}
    assert to_lines("sf", "e", msg, cache) == expected
    assert to_lines("sf", "e", msg, cache) == expected  # from the cache
    other = DataMessage("g", "d", 2, False, (Sample("a=b", 3.0, 20),), {})  # same tag, no unit
    assert to_lines("sf", "e", other, cache) == [r"sf,dev=d,ent=e,gw=g,q=good,tag=a\=b v=3.0 20"]


# ---------------------------------------------------------------- Ingester.handle_batch, no MQTT


class RecordingTsdb(TsdbWriter):
    """Keeps each request's lines instead of sending them; refuses (HTTP 400) any request with a
    line containing `poison`."""

    def __init__(self, poison: str | None = None) -> None:
        super().__init__(InfluxSection(url="http://127.0.0.1:9"))  # never contacted
        self.requests: list[list[str]] = []
        self.poison = poison

    def write_lines(self, lines: list[str]) -> None:
        if self.poison and any(self.poison in line for line in lines):
            raise ApiException(status=400, reason="Bad Request")
        self.requests.append(list(lines))


def make_ingester(tmp_path: Path, tsdb: TsdbWriter | None) -> Ingester:
    config = CloudConfig(
        mqtt=IngestMqttSection(url="mqtt://127.0.0.1:1", inflight=1000),
        influx=None,
        ledger=LedgerSection(url=f"sqlite:///{tmp_path}/ledger.db"),
        trust=TrustSection(mode="off"),  # hand-made messages: the pipeline's mechanics, not its trust
    )
    return Ingester(config, tsdb=tsdb, retry_initial=0.01)


def message(topic: str, payload: bytes) -> mqtt.MQTTMessage:
    m = mqtt.MQTTMessage(topic=topic.encode())
    m.payload = payload
    return m


T0 = 1_700_000_000_000  # the ingester takes timestamps from 2000-01-01 (codec.EARLIEST_MS)


def data(dev: str, seq: int, *samples: Sample) -> mqtt.MQTTMessage:
    return message(TOPICS.data(dev), envelope(GW, dev, seq, False, encode_data_body(samples)))


def test_handle_batch_one_request_dedupe_and_dead_letters(tmp_path: Path) -> None:
    tsdb = RecordingTsdb()
    ing = make_ingester(tmp_path, tsdb)
    try:
        ing.handle_batch(
            [
                data("d1", 1, Sample("t", 1.0, T0 + 1), Sample("s", "text", T0 + 1)),
                data("d2", 2, Sample("t", 2.0, T0 + 2)),
                data("d1", 1, Sample("t", 1.0, T0 + 1)),  # the same (gw, seq) again in the batch
                message(TOPICS.data("d1"), b"{broken"),
                message(
                    TOPICS.events("d1"), envelope(GW, "d1", 3, False, encode_event_body([Event("online", T0 + 5)]))
                ),
                message(TOPICS.device_status("d1"), encode_status(Status(True, T0 + 7, "up"))),
            ]
        )
        assert len(tsdb.requests) == 1 and len(tsdb.requests[0]) == 2  # one request, numbers only
        s = ing.stats
        assert (s.messages, s.batches, s.data_messages, s.event_messages, s.status_messages) == (6, 1, 2, 1, 1)
        assert (s.duplicates, s.dead_letters, s.samples_ingested, s.tsdb_skipped_strings) == (1, 1, 3, 1)
        assert ing.ledger.dead_letters()[0]["reason"].startswith("not JSON")

        # Redelivered after being recorded: dropped before the TSDB write.
        ing.handle_batch([data("d1", 1, Sample("t", 1.0, T0 + 1)), data("d2", 2, Sample("t", 2.0, T0 + 2))])
        assert len(tsdb.requests) == 1
        assert ing.stats.duplicates == 3 and ing.ledger.total_samples() == 3
    finally:
        ing.ledger.close()


def test_tsdb_refusal_dead_letters_only_the_refused_message(tmp_path: Path) -> None:
    tsdb = RecordingTsdb(poison="tag=poison")
    ing = make_ingester(tmp_path, tsdb)
    try:
        batch = [data("d1", seq, Sample("t", float(seq), T0 + seq)) for seq in range(1, 8)]
        batch.insert(5, data("d1", 100, Sample("poison", 1.0, T0 + 1)))
        ing.handle_batch(batch)
        written = sorted(line for request in tsdb.requests for line in request)
        assert written == sorted(f"sf,dev=d1,ent={ENT},gw={GW},q=good,tag=t v={float(s)} {T0 + s}" for s in range(1, 8))
        assert ing.stats.data_messages == 7 and ing.stats.dead_letters == 1
        [letter] = ing.ledger.dead_letters()
        assert letter["reason"].startswith("TSDB rejected the batch: HTTP 400")
        assert not ing.ledger.is_duplicate(ENT, GW, 100)  # refused: not recorded either
    finally:
        ing.ledger.close()


def test_ledger_refusal_dead_letters_only_the_refused_message(tmp_path: Path) -> None:
    """A statement the ledger refuses for what it holds (the database raises a constraint error, which
    SQLAlchemy wraps under the DB-API's class name) is not retried forever: halving the batch finds
    the message, it is dead-lettered with the reason, and the others are recorded once."""
    tsdb = RecordingTsdb()
    ing = make_ingester(tmp_path, tsdb)
    try:
        with ing.ledger.db.engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON device_stats WHEN NEW.dev = 'poison'"
                    " BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
                )
            )
        batch = [data("d1", seq, Sample("t", float(seq), T0 + seq)) for seq in range(1, 8)]
        batch.insert(3, data("poison", 100, Sample("t", 1.0, T0 + 1)))
        ing.handle_batch(batch)
        assert ing.stats.data_messages == 7 and ing.stats.dead_letters == 1 and ing.stats.errors == 0
        [letter] = ing.ledger.dead_letters()
        assert letter["reason"].startswith("ledger refused the message: IntegrityError:"), letter["reason"]
        assert "poison refused" in letter["reason"]
        assert ing.ledger.received_count() == 7 and not ing.ledger.is_duplicate(ENT, GW, 100)
    finally:
        ing.ledger.close()


def test_batch_bounds_follow_the_inflight_window(tmp_path: Path) -> None:
    def bounds(inflight: int, **kw: int) -> int:
        config = CloudConfig(
            mqtt=IngestMqttSection(url="mqtt://127.0.0.1:1", inflight=inflight),
            ledger=LedgerSection(url="sqlite:///:memory:"),
        )
        ing = Ingester(config, **kw)  # type: ignore[arg-type]
        ing.ledger.close()
        return ing.batch_messages

    assert bounds(100) == 50  # half the window: the next batch arrives while this one is written
    assert bounds(1000) == 500
    assert bounds(5000, batch_messages=2000) == 2000
    assert bounds(1) == 1
