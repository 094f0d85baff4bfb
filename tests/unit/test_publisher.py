"""Parts of the publisher without a broker: reconnect backoff with jitter, the status payload with the
backlog, what it does when the buffer cannot be written."""

from __future__ import annotations

import random
from pathlib import Path

from cloud_bridge.uplink.buffer import Buffer, Outgoing
from cloud_bridge.uplink.publisher import Publisher, reconnect_delay
from cloud_bridge.wire.codec import Status, Topics, decode_status, encode_status
from edge_config.models import MqttSection


def test_reconnect_delay_grows_caps_and_spreads() -> None:
    random.seed(3)
    first = [reconnect_delay(1) for _ in range(200)]
    assert min(first) >= 1 and max(first) <= 2
    tenth = [reconnect_delay(10) for _ in range(200)]
    assert all(42 <= d <= 78 for d in tenth), "capped at 60 s ± 30 %"
    assert len(set(tenth)) > 10, "jitter spreads gateways apart"


def test_gateway_status_carries_the_backlog() -> None:
    backlog = {"messages": 3, "bytes": 700, "samples": 300, "behind_ms": 5000, "dropped_messages": 0}
    payload = encode_status(Status(True, 1, version="0.1.0", backlog=backlog))
    back = decode_status(payload)
    assert back.backlog == backlog and back.version == "0.1.0" and back.online


def test_acks_the_buffer_cannot_record_are_kept_and_recorded_later(tmp_path: Path) -> None:
    """A full disk fails the delete of acknowledged messages: the publisher keeps going and records
    them once it can (real SQLite buffer; the failure is SQLite's own, from a trigger)."""
    buf = Buffer(tmp_path / "b.db")
    buf.enqueue([Outgoing("data", "t/a/data", "a", b'{"samples":[]}', samples=1) for _ in range(3)])
    ids = [r.id for r in buf.peek(10)]
    pub = Publisher(MqttSection(), Topics("sf/v1", "ent-1", "gw-1"), buf, version="test")
    buf._db.execute("CREATE TEMP TRIGGER no_room BEFORE DELETE ON outbox BEGIN SELECT RAISE(FAIL, 'disk full'); END")
    pub._acked_ids = ids[:2]
    pub._rejected = [(ids[2], "not authorised")]
    pub._flush_acks()  # does not raise
    assert buf.depth().messages == 3 and pub._acked_ids == ids[:2] and pub._rejected == [(ids[2], "not authorised")]
    buf._db.execute("DROP TRIGGER no_room")
    pub._flush_acks()
    assert buf.depth().messages == 0 and buf.dead_letter_count() == 1
    assert pub._acked_ids == [] and pub._rejected == []
