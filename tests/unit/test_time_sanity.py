"""Time sanity on both sides (#11 item 7): a clock that steps back keeps the edge's events in order;
timestamps from the future are flagged and counted, and never move "last seen" nor prune history — in
the edge's OEE history (real SQLite) and at the ingester (real SQLite ledger)."""

from __future__ import annotations

from pathlib import Path

import paho.mqtt.client as mqtt

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.wire.codec import (
    Event,
    Sample,
    Status,
    Topics,
    encode_data_body,
    encode_event_body,
    encode_status,
    envelope,
)
from edge_config.models import CloudConfig, IngestMqttSection, LedgerSection, TrustSection
from edge_config.timing import Clock, now_ms
from gateway.oee.history import OeeHistory
from gateway.oee.tracker import DeviceTracker
from tests.unit.test_oee_tracker import TOPICS, Sink, config, scan

DAY = 86_400_000


def test_the_clock_never_goes_back_and_meets_the_wall_clock_again() -> None:
    wall, mono = [1_800_000_000_000 * 1_000_000], [0]
    clock = Clock(lambda: wall[0], lambda: mono[0])
    seen = []
    for step in range(30):
        mono[0] += 1_000_000_000
        wall[0] += 1_000_000_000
        if step == 5:
            wall[0] -= 10_000_000_000  # the wall clock steps back 10 s
        seen.append(clock.now_ms())
    assert seen == sorted(seen), "in order"
    assert clock.stepped_back == 1
    assert seen[-1] == wall[0] // 1_000_000, "after twice the step it is the wall clock again"


def test_a_reading_from_the_future_leaves_the_edge_history_intact(tmp_path: Path) -> None:
    history = OeeHistory(tmp_path / "oee_history.db", retention_s=744 * 3600)
    now = now_ms()
    for days in (20, 10, 1):  # three weeks of history
        history.record_state("press-01", now - days * DAY, "running")
    history.touch(now - DAY, force=True)
    sink = Sink()
    tracker = DeviceTracker(config().devices[0], TOPICS, sink, history, max_future_skew_s=300)
    tracker.on_online(True, now - 1000, "connected")
    tracker.on_readings(scan(now + 40 * DAY, state=2))  # an OPC UA source clock 40 days ahead
    history.touch(now + 40 * DAY, force=True)  # even told so directly
    assert tracker.future_scans == 1
    assert tracker.last_scan_ts <= now_ms(), "taken at the gateway's time"
    alive = history.last_alive()
    assert alive is not None and alive <= now_ms()
    states = history.window("press-01", now - 30 * DAY, now + DAY).states
    assert [ts for ts, _ in states][:3] == [now - d * DAY for d in (20, 10, 1)], "nothing pruned"
    assert all(ts <= now_ms() for kind, ts, _, _ in sink.events()), "no event stamped in the future"
    history.close()


def test_samples_events_and_statuses_from_the_future_are_flagged_at_the_ingester(tmp_path: Path) -> None:
    ing = Ingester(
        CloudConfig(
            mqtt=IngestMqttSection(url="mqtt://127.0.0.1:1", inflight=100),
            ledger=LedgerSection(url=f"sqlite:///{tmp_path}/ledger.db"),
            trust=TrustSection(mode="off", max_future_skew=300),
        )
    )
    topics = Topics("sf/v1", "ent-1", "gw-1")
    now = now_ms()
    good = Sample("speed", 1.0, now - 1000)
    ahead = Sample("speed", 2.0, now + 40 * DAY)

    def msg(topic: str, payload: bytes) -> mqtt.MQTTMessage:
        m = mqtt.MQTTMessage(topic=topic.encode())
        m.payload = payload
        return m

    try:
        ing.handle_batch(
            [
                msg(topics.data("d1"), envelope("gw-1", "d1", 1, False, encode_data_body([good, ahead]))),
                msg(
                    topics.events("d1"),
                    envelope("gw-1", "d1", 2, False, encode_event_body([Event("online", now + 40 * DAY, "x")])),
                ),
                msg(topics.device_status("d1"), encode_status(Status(True, now + 40 * DAY, "connected"))),
            ]
        )
        [dev] = ing.ledger.devices()
        assert dev["last_seen"] == good.ts and dev["first_seen"] == good.ts, "last seen never moves ahead"
        assert dev["status_ts"] is None, "a status from the future is not kept"
        assert ing.ledger.events() == []
        stats = ing.stats
        assert (stats.future_samples, stats.future_events) == (1, 1)
        assert ing.ledger.received_count() == 2, "both messages received once"
    finally:
        ing.ledger.close()
