"""Hostile payloads that break the wire contract in ways a JSON reader lets through: integers of thousands of
digits (Python's int parser refuses more than 4,300), integers no float holds, timestamps before 2000, texts
without bound, control characters in names that become TSDB labels, a sample count hidden by a JSON escape,
a signed checkpoint that does not parse. Each one is a dead letter with a reason (no traceback in the log),
and nothing it does stops the ingester for the other gateways. The careful codec and the fast decoder
answer alike (`test_wire_fast_decode.py` holds them to one reference on generated payloads too)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ledger import schema
from cloud_bridge.cloud.trust.registry import Registry
from cloud_bridge.uplink.identity import Identity, load_or_create_identity
from cloud_bridge.wire.codec import (
    EARLIEST_MS,
    Event,
    Sample,
    Status,
    Topics,
    WireError,
    decode_data,
    decode_events,
    decode_meta,
    decode_status,
    encode_data_body,
    encode_event_body,
    encode_status,
    envelope,
)
from cloud_bridge.wire.fastdecode import decode as msgspec_decode
from cloud_bridge.wire.fastdecode import decode_data as decode_data_fast
from cloud_bridge.wire.signing import (
    GENESIS,
    Checkpoint,
    SignatureError,
    chain_hash,
    chained_payload,
    chained_prefix,
    decode_checkpoint,
    encode_checkpoint,
    seal,
)
from edge_config.models import CloudConfig, IngestMqttSection, LedgerSection, LimitsSection, TrustSection

ENT, GW = "ent-1", "gw-1"
TOPICS = Topics("sf/v1", ENT, GW)
T0 = 1_700_000_000_000
BIG = "1" * 5000  # beyond Python's 4,300-digit limit for int()
WIDE = "9" * 400  # parses, but no float holds it
HEAD = '{"v":1,"gw":"gw-1","dev":"d1","seq":%s,"samples":[{"tag":"t","v":%s,"ts":%s}],"hist":false}'


def data_payload(seq: str = "9", v: str = "1", ts: str = str(T0)) -> bytes:
    return (HEAD % (seq, v, ts)).encode()


def events_payload(event: str) -> bytes:
    return (f'{{"v":1,"gw":"gw-1","dev":"d1","seq":9,"events":[{event}],"hist":false}}').encode()


def meta_payload(extra: str = "", ts: str = str(T0)) -> bytes:
    return (f'{{"v":1,"gw":"gw-1","dev":"d1","ts":{ts}{extra}}}').encode()


def status_payload(ts: str = str(T0), extra: str = "") -> bytes:
    return (f'{{"online":true,"ts":{ts}{extra}}}').encode()


def cloud_data(payload: bytes) -> Any:
    """Both of the cloud's data decoders: the same answer, or the same WireError."""
    answers: list[Any] = []
    for decode in (decode_data_fast, lambda p: decode_data(p, earliest_ms=EARLIEST_MS)):
        try:
            answers.append(decode(payload))
        except WireError as e:
            answers.append(("WireError", str(e)))
    assert answers[0] == answers[1], payload[:200]
    return answers[0]


def refused(answer: Any) -> str:
    assert isinstance(answer, tuple) and answer[0] == "WireError", answer
    return str(answer[1])


def raises(decode: Callable[..., Any], payload: bytes) -> str:
    with pytest.raises(WireError) as e:
        decode(payload, earliest_ms=EARLIEST_MS)
    return str(e.value)


# ---------------------------------------------------------------- the codec


def test_oversized_integers_are_wire_errors_not_crashes() -> None:
    for payload in (data_payload(seq=BIG), data_payload(v=BIG), data_payload(ts=BIG)):
        assert refused(cloud_data(payload)).startswith("not JSON")
    assert raises(decode_status, status_payload(ts=BIG)).startswith("not JSON")
    assert raises(decode_meta, meta_payload(ts=BIG)).startswith("not JSON")
    snapshot = '{"kind":"snapshot","ts":%d,"counts":{"total":%s}}'
    assert "'counts'" in raises(decode_events, events_payload(snapshot % (T0, WIDE)))
    assert "'poll_interval_s'" in raises(decode_meta, meta_payload(f',"poll_interval_s":{WIDE}'))
    assert "'counter_max'" in raises(decode_meta, meta_payload(f',"oee":{{"state_tag":"s","counter_max":-{WIDE}}}'))
    assert "'backlog'" in raises(decode_status, status_payload(extra=f',"backlog":{{"depth":{WIDE}}}'))
    # the largest integer a float takes is still a number
    ok = decode_events(events_payload(snapshot % (T0, str(int(1.7e308)))), earliest_ms=EARLIEST_MS)
    assert ok.events[0].counts == {"total": int(1.7e308)}


def test_timestamps_before_2000_are_refused_by_the_clouds_decoders() -> None:
    for ts in (0, 1, EARLIEST_MS - 1):
        assert "'ts' must be integer milliseconds from" in refused(cloud_data(data_payload(ts=str(ts))))
        assert msgspec_decode(data_payload(ts=str(ts))) is None
        assert "'ts'" in raises(decode_events, events_payload(f'{{"kind":"online","ts":{ts}}}'))
        assert "'ts'" in raises(decode_status, status_payload(ts=str(ts)))
        assert "'ts'" in raises(decode_meta, meta_payload(ts=str(ts)))
    at_floor = cloud_data(data_payload(ts=str(EARLIEST_MS)))
    assert at_floor.samples[0].ts == EARLIEST_MS and msgspec_decode(data_payload(ts=str(EARLIEST_MS))) is not None
    assert decode_status(status_payload(ts=str(EARLIEST_MS)), earliest_ms=EARLIEST_MS).ts == EARLIEST_MS
    assert decode_data(data_payload(ts="0")).samples[0].ts == 0, "without the floor (tools, the edge's tests)"


def test_units_event_states_and_versions_are_bounded() -> None:
    big = "S" * 500_000
    body = encode_data_body([Sample("speed", 1.0, T0)], {"speed": "U" * 500_000})
    assert "at most 128" in refused(cloud_data(envelope(GW, "d1", 1, False, body)))
    body = encode_data_body([Sample("speed", 1.0, T0)], {"x" * 129: "rpm"})
    assert "at most 128" in refused(cloud_data(envelope(GW, "d1", 1, False, body)))
    body = encode_data_body([Sample("speed", 1.0, T0)], {"speed": "r" * 128})
    assert cloud_data(envelope(GW, "d1", 1, False, body)).units == {"speed": "r" * 128}
    for kind in ("online", "offline", "snapshot"):
        counts: dict[str, int | float] | None = {"total": 1} if kind == "snapshot" else None
        payload = envelope(GW, "d1", 1, False, encode_event_body([Event(kind, T0, "r", state=big, counts=counts)]))
        assert "'state' is at most 128" in raises(decode_events, payload)
    assert "'version'" in raises(decode_status, encode_status(Status(True, T0, version="V" * 500_000)))
    assert decode_status(encode_status(Status(True, T0, version="V" * 128)), earliest_ms=EARLIEST_MS).version


@pytest.mark.parametrize("char", ["\n", "\r", "\t", "\x1f", "\x7f"], ids=["LF", "CR", "TAB", "US", "DEL"])
def test_control_characters_in_tag_names_and_units_are_refused(char: str) -> None:
    tag = f't"q{char}'
    payload = envelope(GW, "d1", 1, False, encode_data_body([Sample(tag, 2.0, T0)]))
    assert "control character" in refused(cloud_data(payload))
    with pytest.raises(WireError, match="control character"):
        decode_data(payload)  # the edge's reading (no timestamp floor) too
    bare = envelope(GW, "d1", 1, False, encode_data_body([Sample(f"t{char}", 2.0, T0)]))  # DEL: raw, no escape
    assert "control character" in refused(cloud_data(bare))
    for units in ({"t": f"r{char}pm"}, {f"t{char}": "rpm"}):
        payload = envelope(GW, "d1", 1, False, encode_data_body([Sample("t", 2.0, T0)], units))
        assert "control character" in refused(cloud_data(payload))
    meta = meta_payload(
        ',"tags":[{{"name":"a{}b"}}]'.format(char.encode("unicode_escape").decode().replace("\\x", "\\u00"))
    )
    assert "control character" in raises(decode_meta, meta)
    # the quote and other printable characters are fine (line protocol escapes them)
    ok = envelope(GW, "d1", 1, False, encode_data_body([Sample('a b,c=d\\"', 2.0, T0)]))
    assert cloud_data(ok).samples[0].tag == 'a b,c=d\\"'


def test_a_malformed_checkpoint_is_a_signature_error() -> None:
    with pytest.raises(SignatureError, match="not JSON"):
        decode_checkpoint((f'{{"v":1,"ent":"ent-1","gw":"gw-1","ts":{BIG},"from":1,"to":1}}').encode())


# ---------------------------------------------------------------- the ingester


def ingester(tmp_path: Path, *, trust: Literal["enforce", "off"] = "off", **limits: object) -> Ingester:
    return Ingester(
        CloudConfig(
            mqtt=IngestMqttSection(url="mqtt://127.0.0.1:1", inflight=100),
            ledger=LedgerSection(url=f"sqlite:///{tmp_path}/ledger.db"),
            trust=TrustSection(mode=trust, proof_timeout=600),
            limits=LimitsSection.model_validate(limits),
        ),
        retry_initial=0.01,
        retry_max=0.05,
    )


def message(topic: str, payload: bytes) -> mqtt.MQTTMessage:
    m = mqtt.MQTTMessage(topic=topic.encode())
    m.payload = payload
    return m


@pytest.fixture
def ing(tmp_path: Path) -> Iterator[Ingester]:
    i = ingester(tmp_path)
    yield i
    i.ledger.close()


def handle_within(ing: Ingester, messages: list[mqtt.MQTTMessage], timeout: float = 30) -> None:
    """handle_batch, failing (not hanging) if the batch is retried for ever."""
    worker = threading.Thread(target=ing.handle_batch, args=(messages,), daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        ing._abort.set()  # its retries give up (_Stopped)
        worker.join(10)
        pytest.fail("the batch was still being retried: one message held up every other")


def test_the_ingester_dead_letters_hostile_numbers_with_a_reason_and_no_traceback(
    ing: Ingester, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    dev = "sf/v1/ent-1/gw-1/d1/"
    hostile = [
        message(dev + "data", data_payload(seq=BIG)),
        message(dev + "data", data_payload(v=BIG)),
        message(dev + "data", data_payload(ts=BIG)),
        message(TOPICS.status, status_payload(ts=BIG)),
        message(dev + "meta", meta_payload(ts=BIG)),
        message(dev + "events", events_payload(f'{{"kind":"snapshot","ts":{T0},"counts":{{"total":{WIDE}}}}}')),
        message(dev + "meta", meta_payload(f',"poll_interval_s":{WIDE}')),
        message(dev + "data", data_payload(ts="0")),  # VictoriaMetrics would take 0 for "now"
        message(dev + "events", events_payload('{"kind":"online","ts":0}')),
        message(TOPICS.status, status_payload(ts="0")),
        message(dev + "meta", meta_payload(ts="0")),
    ]
    good = message(dev + "data", data_payload(seq="1"))
    handle_within(ing, [*hostile, good])
    letters = [r["reason"] for r in ing.ledger.dead_letters()]
    assert len(letters) == len(hostile), letters
    assert not [r for r in letters if r.startswith("internal")], letters
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no traceback for a wire-contract breach"
    assert ing.ledger.received_count() == 1 and ing.stats.errors == 0


def test_texts_without_bound_and_control_characters_are_dead_letters(ing: Ingester) -> None:
    big = "S" * 500_000
    events = encode_event_body([Event("online", T0, "boot", state=big)])
    units = encode_data_body([Sample("speed", 1.0, T0)], {"speed": "U" * 500_000})
    tab = encode_data_body([Sample("t\tq", 1.0, T0)])
    handle_within(
        ing,
        [
            message(TOPICS.events("d1"), envelope(GW, "d1", 1, False, events)),
            message(TOPICS.data("d1"), envelope(GW, "d1", 2, False, units)),
            message(TOPICS.data("d1"), envelope(GW, "d1", 3, False, tab)),
            message(TOPICS.status, encode_status(Status(True, T0, version="V" * 500_000))),
        ],
    )
    assert ing.ledger.received_count() == 0 and len(ing.ledger.dead_letters()) == 4
    assert ing.ledger.events() == [] and ing.ledger.gateways() == []


def test_a_sample_count_hidden_by_an_escaped_key_is_still_bounded(tmp_path: Path) -> None:
    """limits.max_samples is counted on the raw bytes before parsing (`"tag"`); a key spelt `"t\\u0061g"` is
    the same key to JSON. The decoded count is held to the limit too."""
    ing = ingester(tmp_path, max_samples=50)
    try:
        samples = ",".join(f'{{"t\\u0061g":"t{i}","v":1,"ts":{T0}}}' for i in range(60))
        payload = (f'{{"v":1,"gw":"gw-1","dev":"d1","seq":1,"samples":[{samples}],"hist":false}}').encode()
        assert payload.count(b'"tag"') == 0 and len(decode_data(payload).samples) == 60
        handle_within(ing, [message(TOPICS.data("d1"), payload)])
        [letter] = ing.ledger.dead_letters()
        assert "limits.max_samples" in letter["reason"] and ing.ledger.received_count() == 0
    finally:
        ing.ledger.close()


# ---------------------------------------------------------------- the trust gate (a registered gateway)


class Gateway:
    """A registered gateway that chains and signs as the real one does (cloud_bridge/wire/signing.py)."""

    def __init__(self, ident: Identity, gw: str = GW) -> None:
        self.ident, self.topics = ident, Topics("sf/v1", ENT, gw)
        self.seq, self.prev = 0, GENESIS
        self.hashes: list[bytes] = []

    def data(self, value: float) -> mqtt.MQTTMessage:
        self.seq += 1
        body = encode_data_body([Sample("speed", value, T0 + self.seq)])
        prefix = chained_prefix(ENT, self.topics.gateway_id, "d1", self.seq, self.prev, body)
        self.prev = chain_hash(prefix)
        self.hashes.append(self.prev)
        return message(self.topics.data("d1"), chained_payload(prefix, False))

    def checkpoint(self) -> mqtt.MQTTMessage:
        c = Checkpoint(ENT, self.topics.gateway_id, T0, 1, self.seq, GENESIS, tuple(self.hashes), "k")
        return self.sealed(self.topics.checkpoint, encode_checkpoint(c))

    def sealed(self, topic: str, payload: bytes) -> mqtt.MQTTMessage:
        return message(topic, seal(self.ident.key, topic, payload))


def registered(tmp_path: Path, ing: Ingester, gw: str) -> Gateway:
    ident = load_or_create_identity(tmp_path / gw)
    Registry(ing.ledger.db).add(ENT, gw, ident.public_key)
    return Gateway(ident, gw)


def recorded(ing: Ingester, gw: str) -> list[int]:
    r = schema.received_seqs.c
    rows = ing.ledger.db.rows(select(r.first_seq, r.last_seq).where(r.ent == ENT, r.gw == gw))
    return sorted(s for x in rows for s in range(int(x["first_seq"]), int(x["last_seq"]) + 1))


def test_a_signed_checkpoint_with_a_huge_integer_is_refused_and_the_others_go_on(tmp_path: Path) -> None:
    ing = ingester(tmp_path, trust="enforce")
    try:
        rogue, good = registered(tmp_path, ing, "gw-rogue"), registered(tmp_path, ing, "gw-good")
        hostile = (f'{{"v":1,"ent":"ent-1","gw":"gw-rogue","ts":{BIG},"from":1,"to":1}}').encode()
        msgs = [good.data(1.0), good.data(2.0)]
        handle_within(ing, [rogue.sealed(rogue.topics.checkpoint, hostile), good.checkpoint(), *msgs])
        assert recorded(ing, "gw-good") == [1, 2]
        [letter] = ing.ledger.dead_letters()
        assert letter["reason"].startswith("checkpoint: not JSON") and letter["topic"] == rogue.topics.checkpoint
        counts = {(x["gw"], x["what"]): x["count"] for x in ing.trust.counts(ENT)}  # type: ignore[union-attr]
        assert counts == {("gw-rogue", "refused:signature"): 1}
    finally:
        ing.ledger.close()


def test_a_check_that_fails_for_one_message_dead_letters_it_and_an_outage_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the trust checks, an error that is not the ledger being down (a bug a message trips) must not be
    retried for ever with the batch: that message is a dead letter, the others are recorded. The ledger
    down (OperationalError) is retried until it answers."""
    ing = ingester(tmp_path, trust="enforce")
    try:
        gate = ing.trust
        assert gate is not None
        odd, good = registered(tmp_path, ing, "gw-odd"), registered(tmp_path, ing, "gw-good")
        check_sealed, down = gate.check_sealed, [2]

        def flaky(ent: str, gw: str, topic: str, payload: bytes) -> Any:
            if gw == "gw-odd":
                raise KeyError("a bug this message trips")
            if down[0]:
                down[0] -= 1
                raise OperationalError("SELECT", {}, Exception("database is locked"))
            return check_sealed(ent, gw, topic, payload)

        monkeypatch.setattr(gate, "check_sealed", flaky)
        msgs = [good.data(1.0)]
        status = odd.sealed(odd.topics.status, encode_status(Status(True, T0, version="1")))
        handle_within(ing, [status, good.checkpoint(), *msgs])
        assert recorded(ing, "gw-good") == [1]
        [letter] = ing.ledger.dead_letters()
        assert letter["topic"] == odd.topics.status and letter["reason"].startswith("internal: KeyError")
        assert ing.stats.errors == 2, "the ledger's two failures were retried"
        assert ing.trust.counts(ENT) == [], "not a trust refusal"  # type: ignore[union-attr]
    finally:
        ing.ledger.close()


def test_the_2000_floor_is_one_instant_everywhere() -> None:
    from cloud_bridge.metrics import period
    from cloud_bridge.wire import codec
    from edge_config import timing

    # three layers that may not import each other hold it: the wire, the pure metrics, the edge's drivers
    assert codec.EARLIEST_MS == period.EARLIEST_MS == timing.EARLIEST_MS == 946_684_800_000
