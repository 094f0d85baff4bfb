"""The wire codec: round trips, and every kind of malformed payload or topic raising WireError."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_bridge.wire.codec import (
    Event,
    Sample,
    Status,
    TopicInfo,
    Topics,
    WireError,
    decode_data,
    decode_events,
    decode_status,
    encode_data_body,
    encode_event_body,
    encode_status,
    envelope,
    parse_topic,
    wire_text,
)

SAMPLES = (
    Sample("speed", 1450.5, 1_700_000_000_000, "good"),
    Sample("run_state", 1, 1_700_000_000_001, "uncertain"),
    Sample("door_open", True, 1_700_000_000_002, "bad"),
    Sample("recipe", "白坯布 A-12", 1_700_000_000_003),
    Sample("counter", 2**62, 1_700_000_000_004),
)


def data_payload(**override: Any) -> bytes:
    obj: dict[str, Any] = {
        "v": 1,
        "gw": "gw-1",
        "dev": "loom-01",
        "seq": 7,
        "hist": False,
        "samples": [{"tag": "speed", "v": 1.5, "ts": 1000, "q": "good"}],
    }
    obj.update(override)
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("hist", [False, True])
def test_data_round_trip(hist: bool) -> None:
    units = {"speed": "rpm", "counter": "pcs"}
    msg = decode_data(envelope("gw-1", "loom-01", 42, hist, encode_data_body(SAMPLES, units)))
    assert (msg.gw, msg.dev, msg.seq, msg.hist) == ("gw-1", "loom-01", 42, hist)
    assert msg.samples == SAMPLES
    assert msg.units == units
    assert type(msg.samples[1].v) is int and type(msg.samples[2].v) is bool


def test_data_without_units() -> None:
    msg = decode_data(envelope("gw-1", "d", 0, False, encode_data_body(list(SAMPLES[:1]))))
    assert msg.units == {} and msg.seq == 0


VALUES = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(min_size=1), VALUES, st.integers(0, 2**62), st.sampled_from(["good", "bad", "uncertain"]))
    ),
    st.one_of(st.none(), st.dictionaries(st.text(min_size=1), st.text(), max_size=3)),
)
def test_the_data_body_is_exactly_what_json_dumps_gives(
    rows: list[tuple[str, Any, int, str]], units: dict[str, str] | None
) -> None:
    """encode_data_body writes JSON out by hand for speed: byte for byte what json.dumps makes."""
    samples = [Sample(*row) for row in rows]  # type: ignore[arg-type]
    body: dict[str, Any] = {"samples": [{"tag": s.tag, "v": s.v, "ts": s.ts, "q": s.q} for s in samples]}
    if units:
        body["units"] = units
    want = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    assert encode_data_body(samples, units) == want


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_value_is_refused_like_json_dumps_does(bad: float) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode_data_body([Sample("t", bad, 1)])


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("ABC\x00junk", "ABC"),
        ("a\ud800b", "a\ufffdb"),
        ("白坯布 A-12", "白坯布 A-12"),
        ("x" * 4096, "x" * 4096),
        ("x" * 4097, None),
    ],
)
def test_wire_text(raw: str, want: str | None) -> None:
    assert wire_text(raw) == want


def test_events_round_trip() -> None:
    events = (
        Event("online", 5, "connected"),
        Event("state", 6, "", "running"),
        Event("offline", 7, "timeout"),
    )
    msg = decode_events(envelope("gw-1", "loom-01", 9, True, encode_event_body(events)))
    assert (msg.gw, msg.dev, msg.seq, msg.hist) == ("gw-1", "loom-01", 9, True)
    assert msg.events == events


@pytest.mark.parametrize("status", [Status(True, 5, version="0.1.0"), Status(False, 6, reason="lwt"), Status(True, 7)])
def test_status_round_trip(status: Status) -> None:
    assert decode_status(encode_status(status)) == status


def test_topics_round_trip() -> None:
    t = Topics("sf/v1", "ent-1", "gw-1")
    assert parse_topic(t.status, "sf/v1") == TopicInfo("ent-1", "gw-1", None, "status")
    assert parse_topic(t.device_status("d1"), "sf/v1") == TopicInfo("ent-1", "gw-1", "d1", "status")
    assert parse_topic(t.data("d1"), "sf/v1").kind == "data"
    assert parse_topic(t.events("d1"), "sf/v1").kind == "events"


# ---------------------------------------------------------------- malformed payloads

SAMPLE = {"tag": "t", "v": 1, "ts": 1, "q": "good"}


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(
            b'{"v": 1, "gw": "g", "dev": "d", "seq": 1, "samples": [{"tag": "t", "v": NaN, "ts": 1}]}',
            id="nan",
        ),
        pytest.param(
            b'{"v": 1, "gw": "g", "dev": "d", "seq": 1, "samples": [{"tag": "t", "v": Infinity, "ts": 1}]}',
            id="inf",
        ),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deep-nesting"),
        pytest.param(data_payload(v=2), id="wrong-version"),
        pytest.param(data_payload(v=...), id="no-version"),
        pytest.param(data_payload(seq=-1), id="seq-negative"),
        pytest.param(data_payload(seq=True), id="seq-bool"),
        pytest.param(data_payload(seq=1.5), id="seq-float"),
        pytest.param(data_payload(seq="1"), id="seq-string"),
        pytest.param(data_payload(seq=...), id="seq-missing"),
        pytest.param(data_payload(hist="yes"), id="hist-not-bool"),
        pytest.param(data_payload(gw="bad gw"), id="gw-not-slug"),
        pytest.param(data_payload(dev=...), id="dev-missing"),
        pytest.param(data_payload(samples=[]), id="samples-empty"),
        pytest.param(data_payload(samples=...), id="samples-missing"),
        pytest.param(data_payload(samples={"tag": "t"}), id="samples-not-list"),
        pytest.param(data_payload(samples=[1]), id="sample-not-object"),
        pytest.param(data_payload(samples=[{**SAMPLE, "q": "ok"}]), id="bad-q"),
        pytest.param(data_payload(samples=[{**SAMPLE, "v": None}]), id="v-null"),
        pytest.param(data_payload(samples=[{**SAMPLE, "v": [1]}]), id="v-list"),
        pytest.param(data_payload(samples=[{**SAMPLE, "v": "x" * 5000}]), id="v-string-too-long"),
        pytest.param(data_payload(samples=[{**SAMPLE, "ts": -1}]), id="ts-negative"),
        pytest.param(data_payload(samples=[{**SAMPLE, "ts": 1.5}]), id="ts-float"),
        pytest.param(data_payload(samples=[{**SAMPLE, "tag": ""}]), id="tag-empty"),
        pytest.param(data_payload(samples=[{**SAMPLE, "tag": 5}]), id="tag-not-string"),
        pytest.param(data_payload(units=["rpm"]), id="units-not-object"),
        pytest.param(data_payload(units={"t": 1}), id="unit-not-string"),
    ],
)
def test_malformed_data_raises(payload: bytes) -> None:
    with pytest.raises(WireError):
        decode_data(payload)


def events_payload(events: Any) -> bytes:
    return json.dumps({"v": 1, "gw": "g", "dev": "d", "seq": 1, "events": events}).encode()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(events_payload([]), id="events-empty"),
        pytest.param(events_payload(None), id="events-missing"),
        pytest.param(events_payload([{"kind": "reboot", "ts": 1}]), id="unknown-kind"),
        pytest.param(events_payload([{"kind": "state", "ts": 1, "state": 3}]), id="state-not-string"),
        pytest.param(events_payload([{"kind": "online"}]), id="ts-missing"),
        pytest.param(events_payload(["online"]), id="event-not-object"),
        pytest.param(data_payload(), id="a-data-message"),
    ],
)
def test_malformed_events_raise(payload: bytes) -> None:
    with pytest.raises(WireError):
        decode_events(payload)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'{"online": "yes", "ts": 1}', id="online-not-bool"),
        pytest.param(b'{"online": true}', id="ts-missing"),
        pytest.param(b'{"online": true, "ts": 1, "version": 1}', id="version-not-string"),
        pytest.param(b'{"online": true, "ts": 1, "reason": null}', id="reason-null"),
        pytest.param(b"true", id="not-an-object"),
    ],
)
def test_malformed_status_raises(payload: bytes) -> None:
    with pytest.raises(WireError):
        decode_status(payload)


@pytest.mark.parametrize(
    "topic",
    [
        pytest.param("other/ent/gw/dev/data", id="other-prefix"),
        pytest.param("sf/v1/ent/gw/dev/values", id="unknown-kind"),
        pytest.param("sf/v1/ent/gw/data", id="data-without-device"),
        pytest.param("sf/v1/ent/gw/dev/x/data", id="too-deep"),
        pytest.param("sf/v1/ent/status", id="too-short"),
        pytest.param("sf/v1/ent/gw/de v/data", id="device-not-slug"),
        pytest.param("sf/v1/-ent/gw/dev/data", id="ent-not-slug"),
        pytest.param("sf/v1/ent//dev/data", id="empty-gateway"),
        pytest.param("sf/v1/ent/gw/设备/data", id="non-ascii"),
    ],
)
def test_bad_topic_raises(topic: str) -> None:
    with pytest.raises(WireError):
        parse_topic(topic, "sf/v1")


# ---------------------------------------------------------------- nothing but WireError

DECODERS = (decode_data, decode_events, decode_status)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    _containers,
    max_leaves=20,
)
# Objects shaped like envelopes, so decoding gets past the first checks often.
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 2, "1", None, True]),
        "gw": st.sampled_from(["gw-1", "", "a b", 3]),
        "dev": st.sampled_from(["d", "", None]),
        "seq": st.integers(-2, 2**70) | st.booleans() | st.floats(),
        "hist": st.booleans() | json_values,
        "samples": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "tag": st.text(max_size=5) | json_values,
                    "v": json_values,
                    "ts": st.integers(-1, 2**64) | json_values,
                    "q": st.sampled_from(["good", "bad", "uncertain", "ok", None]),
                },
            ),
            max_size=3,
        )
        | json_values,
        "units": st.dictionaries(st.text(max_size=5), st.text(max_size=5) | json_values, max_size=2) | json_values,
        "events": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "kind": st.sampled_from(["online", "offline", "state", "x"]),
                    "ts": st.integers(-1, 10),
                    "reason": json_values,
                    "state": json_values,
                },
            ),
            max_size=3,
        )
        | json_values,
        "online": json_values,
        "ts": st.integers(-1, 10) | json_values,
        "version": json_values,
        "reason": json_values,
    },
)


def _decode_all(payload: bytes) -> None:
    for decode in DECODERS:
        with contextlib.suppress(WireError):
            decode(payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_wire_error(payload: bytes) -> None:
    _decode_all(payload)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_decodes_or_raises_wire_error(value: Any) -> None:
    _decode_all(json.dumps(value).encode())


@settings(max_examples=500, deadline=None)
@given(envelopes)
def test_envelope_like_objects_decode_or_raise_wire_error(obj: dict[str, Any]) -> None:
    _decode_all(json.dumps(obj).encode())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_topics_parse_or_raise_wire_error(tail: str) -> None:
    with contextlib.suppress(WireError):
        parse_topic("sf/v1/" + tail, "sf/v1")


# ---------------------------------------------------------------- the ingester's handling: never a crash

# Strings with what JSON can carry but stores may not hold: NUL, lone surrogates, non-ASCII.
nasty_text = st.text(st.characters(codec=None, categories=None), max_size=8) | st.sampled_from(
    ["\x00", "\ud800", "a\udfffb", "温度", "x" * 200]
)
nasty_ints = st.integers(-1, 2**70) | st.sampled_from([2**63 - 1, 2**63, 2**64])


def _data_json(seq: Any, tag: Any, v: Any, ts: Any, units: Any) -> bytes:
    sample = {"tag": tag, "v": v, "ts": ts, "q": "good"}
    obj = {"v": 1, "gw": "gw-1", "dev": "d", "seq": seq, "hist": False, "samples": [sample], "units": units}
    return json.dumps(obj).encode()


# Topic and payload that agree (so the payload gets past the topic checks), with hostile fields.
coherent = st.one_of(
    st.tuples(
        st.just("sf/v1/ent/gw-1/d/data"),
        st.builds(
            _data_json,
            seq=nasty_ints,
            tag=nasty_text.filter(lambda t: 0 < len(t) <= 128),
            v=st.floats(allow_nan=False, allow_infinity=False) | nasty_ints | nasty_text | st.booleans(),
            ts=nasty_ints,
            units=st.dictionaries(nasty_text, nasty_text, max_size=2),
        ),
    ),
    st.tuples(
        st.just("sf/v1/ent/gw-1/d/events"),
        st.builds(
            lambda seq, ts, reason: json.dumps(
                {
                    "v": 1,
                    "gw": "gw-1",
                    "dev": "d",
                    "seq": seq,
                    "events": [{"kind": "online", "ts": ts, "reason": reason}],
                }
            ).encode(),
            nasty_ints,
            nasty_ints,
            nasty_text,
        ),
    ),
    st.tuples(
        st.sampled_from(["sf/v1/ent/gw-1/status", "sf/v1/ent/gw-1/d/status"]),
        st.builds(
            lambda ts, reason: json.dumps({"online": True, "ts": ts, "reason": reason}).encode(),
            nasty_ints,
            nasty_text,
        ),
    ),
)
fuzz_topics = st.one_of(
    st.sampled_from(["ent", "e n", "ent-1"]).flatmap(
        lambda ent: st.sampled_from(
            [
                f"sf/v1/{ent}/gw-1/d/data",
                f"sf/v1/{ent}/gw-1/d/events",
                f"sf/v1/{ent}/gw-1/d/status",
                f"sf/v1/{ent}/gw-1/status",
                f"sf/v1/{ent}/gw-1/d/meta",
                f"sf/v1/{ent}/gw-1/d/other",
            ]
        )
    ),
    st.text(max_size=40).map(lambda t: "sf/v1/" + t),
    st.text(max_size=40),
    st.binary(max_size=40),  # not UTF-8 at all
)
fuzz_payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    envelopes.map(lambda obj: json.dumps(obj).encode()),
)
fuzz_messages = st.lists(st.tuples(fuzz_topics, fuzz_payloads) | coherent, min_size=1, max_size=6)


def _fuzz_ingester() -> Any:
    from cloud_bridge.cloud.ingest.ingester import Ingester
    from edge_config.models import CloudConfig, IngestMqttSection, LedgerSection

    config = CloudConfig(
        mqtt=IngestMqttSection(url="mqtt://127.0.0.1:1"),  # never connected
        influx=None,  # ledger only
        ledger=LedgerSection(url="sqlite:///:memory:"),
    )
    return Ingester(config, retry_initial=0.001, retry_max=0.001)


def _mqtt_message(topic: str | bytes, payload: bytes) -> Any:
    import paho.mqtt.client as mqtt

    m = mqtt.MQTTMessage(topic=topic if isinstance(topic, bytes) else topic.encode("utf-8", "surrogatepass"))
    m.payload = payload
    return m


@settings(max_examples=400, deadline=None)
@given(fuzz_messages)
def test_ingester_handles_any_message_and_dead_letters_what_it_rejects(messages: list[tuple[Any, bytes]]) -> None:
    """Arbitrary topics and payloads through the ingester's handling (no MQTT, an in-memory ledger,
    no TSDB), one at a time and as one batch: nothing escapes, every message is either recorded, a
    duplicate, or dead-lettered with a reason, and no store error is ever retried."""
    one, batch = _fuzz_ingester(), _fuzz_ingester()
    try:
        for topic, payload in messages:
            before = one.stats
            one.handle(_mqtt_message(topic, payload))
            after = one.stats
            kept = sum(
                getattr(after, k) - getattr(before, k)
                for k in ("data_messages", "event_messages", "status_messages", "duplicates")
            )
            dead = after.dead_letters - before.dead_letters
            assert (after.messages - before.messages, kept + dead) == (1, 1)
            if dead:
                [letter] = one.ledger.dead_letters(1)
                assert letter["payload"] == payload
                assert letter["reason"] and not letter["reason"].startswith("internal")
        assert one.stats.errors == 0  # no store failure: hostile content is refused before the stores
        assert one.ledger.dead_letter_count() == one.stats.dead_letters

        batch.handle_batch([_mqtt_message(t, p) for t, p in messages])
        s = batch.stats
        assert (s.messages, s.batches, s.errors) == (len(messages), 1, 0)
        assert s.data_messages + s.event_messages + s.status_messages + s.duplicates + s.dead_letters == len(messages)
        assert batch.ledger.dead_letter_count() == s.dead_letters
        assert batch.ledger.total_samples() == s.samples_ingested == one.stats.samples_ingested
    finally:
        one.ledger.close()
        batch.ledger.close()


def test_the_64_bit_bound_is_inclusive_everywhere() -> None:
    """seq and timestamps up to 2**63 - 1 (a signed BIGINT) are accepted; one more is refused."""
    from cloud_bridge.wire.codec import INT64_MAX

    assert INT64_MAX == 2**63 - 1
    ok = envelope("gw-1", "dev-1", INT64_MAX, False, encode_data_body([Sample("t", 1, INT64_MAX)]))
    msg = decode_data(ok)
    assert msg.seq == INT64_MAX and msg.samples[0].ts == INT64_MAX
    for seq, ts in ((INT64_MAX + 1, 1), (1, INT64_MAX + 1)):
        with pytest.raises(WireError):
            decode_data(envelope("gw-1", "dev-1", seq, False, encode_data_body([Sample("t", 1, ts)])))
