"""Wire additions for OEE and evidence: `counts` on events, `snapshot` events, the retained `meta` message."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_bridge.wire.codec import (
    DeviceMeta,
    Event,
    OeeMeta,
    TagMeta,
    TopicInfo,
    Topics,
    WireError,
    decode_events,
    decode_meta,
    encode_event_body,
    encode_meta,
    envelope,
    parse_topic,
)


def events_payload(events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"v": 1, "gw": "gw-1", "dev": "d", "seq": 3, "hist": False, "events": events}).encode()


def test_state_and_snapshot_events_with_counts_round_trip() -> None:
    events = (
        Event("online", 1, "responding"),
        Event("state", 2, "", "running", {"total": 65_530, "reject": 3}),
        Event("snapshot", 3, "", "running", {"total": 4, "reject": 3, "readings": 120, "good_readings": 118}),
        Event("snapshot", 4, "", None, {"readings": 10, "good_readings": 10}),  # a device without OEE
        Event("state", 5, "", "unknown", {"total": 1.5}),
    )
    msg = decode_events(envelope("gw-1", "d", 7, False, encode_event_body(events)))
    assert msg.events == events


def test_old_events_still_decode_without_counts() -> None:
    [e] = decode_events(events_payload([{"kind": "state", "ts": 1, "reason": "", "state": "fault"}])).events
    assert e.counts is None and e.state == "fault"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"kind": "snapshot", "ts": 1}, "a snapshot event needs 'counts'"),
        ({"kind": "state", "ts": 1}, "state event: 'state' must be one of"),
        ({"kind": "state", "ts": 1, "state": "sleeping"}, "state event: 'state' must be one of"),
        ({"kind": "snapshot", "ts": 1, "state": "x", "counts": {"total": 1}}, "snapshot event: 'state'"),
        ({"kind": "state", "ts": 1, "state": "running", "counts": {"pieces": 1}}, "'counts' must map"),
        ({"kind": "state", "ts": 1, "state": "running", "counts": {"total": True}}, "'counts' must map"),
        ({"kind": "state", "ts": 1, "state": "running", "counts": {"total": "5"}}, "'counts' must map"),
        ({"kind": "state", "ts": 1, "state": "running", "counts": [1]}, "'counts' must map"),
        ({"kind": "reboot", "ts": 1}, "unknown event kind"),
    ],
)
def test_bad_events_are_refused(event: dict[str, Any], reason: str) -> None:
    with pytest.raises(WireError, match=reason.replace("(", r"\(").replace("'", ".")):
        decode_events(events_payload([event]))


def test_infinite_count_is_not_json_we_send() -> None:
    with pytest.raises(WireError):
        decode_events(
            b'{"v":1,"gw":"g","dev":"d","seq":1,"events":[{"kind":"snapshot","ts":1,"counts":{"total":Infinity}}]}'
        )


META = DeviceMeta(
    gw="gw-1",
    dev="press-01",
    ts=1_700_000_000_000,
    name="冲压机 1#",
    type="press",
    line="L1",
    production=True,
    driver="modbus_tcp",
    poll_interval_s=1.0,
    tags=(
        TagMeta("run_state", None, "equipment", "uint16", 1.0),
        TagMeta("total", "pcs", "production", "uint32", 1.0),
        TagMeta("temp", "°C", None, "float32", None),
    ),
    oee=OeeMeta("run_state", "total", None, "rejects", 1.5, 4294967295.0, 1.0, 90.0, "availability"),
    config_hash="ab" * 32,
    version="0.1.0",
)


def test_meta_round_trip_and_topic() -> None:
    assert decode_meta(encode_meta(META)) == META
    bare = DeviceMeta("gw-1", "m", 5)
    assert decode_meta(encode_meta(bare)) == bare
    t = Topics("sf/v1", "ent-1", "gw-1")
    assert t.meta("press-01") == "sf/v1/ent-1/gw-1/press-01/meta"
    assert parse_topic(t.meta("press-01"), "sf/v1") == TopicInfo("ent-1", "gw-1", "press-01", "meta")
    with pytest.raises(WireError):
        parse_topic("sf/v1/ent-1/gw-1/meta", "sf/v1")  # a gateway has no meta of its own


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": 2}, "unsupported wire version"),
        ({"gw": "网关"}, "'gw' must be an ASCII slug"),
        ({"production": "yes"}, "'production' must be a boolean"),
        ({"config_hash": "abc"}, "'config_hash' must be a SHA-256"),
        ({"tags": [{"name": "x", "domain": "finance"}]}, "unknown domain"),
        ({"tags": [{"name": ""}]}, "tag 'name' must be"),
        ({"tags": {"x": 1}}, "'tags' must be a list"),
        ({"oee": {"state_tag": "s", "micro_stop_loss": "speed"}}, "'micro_stop_loss'"),
        ({"oee": {"state_tag": "s", "ideal_cycle_time_s": 0}}, "'ideal_cycle_time_s' must be a positive number"),
        ({"ts": -1}, "'ts' must be a non-negative integer"),
    ],
)
def test_bad_meta_is_refused(change: dict[str, Any], reason: str) -> None:
    obj = json.loads(encode_meta(META)) | change
    with pytest.raises(WireError, match=reason.replace("(", r"\(")):
        decode_meta(json.dumps(obj).encode())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "v": st.sampled_from([1, 2]) | json_values,
            "gw": st.sampled_from(["gw-1", ""]) | json_values,
            "dev": st.sampled_from(["d"]) | json_values,
            "ts": st.integers(-1, 5) | json_values,
            "production": json_values,
            "poll_interval_s": json_values,
            "tags": st.lists(st.dictionaries(st.sampled_from(["name", "unit", "domain", "interval_s"]), json_values))
            | json_values,
            "oee": st.dictionaries(
                st.sampled_from(["state_tag", "counter_max", "resolution", "micro_stop_s"]), json_values
            )
            | json_values,
            "config_hash": json_values,
        },
    )
)
def test_any_meta_decodes_or_raises_wire_error(obj: dict[str, Any]) -> None:
    with contextlib.suppress(WireError):
        decode_meta(json.dumps(obj).encode())
