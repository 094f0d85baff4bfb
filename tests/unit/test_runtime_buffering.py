"""The runtime's writes into the buffer: group commit, and what happens when the buffer refuses (a real
SQLite buffer made to refuse inserts with a trigger): data counted as lost on its device, events held and
written first, in order, with their own time, once the buffer takes writes again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from cloud_bridge.uplink.buffer import Buffer, Outgoing
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire.codec import Topics
from drivers import make_driver
from edge_config.models import GatewayConfig
from gateway.runtime import Runtime


def runtime(tmp: Path) -> Runtime:
    cfg = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw", "enterprise_id": "ent", "data_dir": str(tmp)},
            "devices": [{"id": "d1", "driver": "modbus_tcp", "connection": {"host": "127.0.0.1", "port": 1},
                         "tags": [{"name": "t", "address": "40001"}]}],
        }
    )  # fmt: skip
    buf = Buffer(tmp / "buffer.db")
    topics = Topics("sf/v1", cfg.gateway.enterprise_id, cfg.gateway.id)
    return Runtime(cfg, buf, Publisher(cfg.mqtt, topics, buf, version="t"), make_driver)


def data(n: int) -> Outgoing:
    return Outgoing("data", "sf/v1/ent/gw/d1/data", "d1", b'{"samples":[]}', samples=n)


def event(ts: int) -> Outgoing:
    return Outgoing("events", "sf/v1/ent/gw/d1/events", "d1", json.dumps({"events": [{"ts": ts}]}).encode())


async def test_what_is_handed_over_together_is_committed_once(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    rt._enqueue([data(3)])
    rt._enqueue([event(1)])
    assert rt.buffer.depth().messages == 0, "not yet: the group commit waits commit_delay"
    await asyncio.sleep(rt.commit_delay * 3)
    assert [r.seq for r in rt.buffer.peek(10)] == [1, 2]


async def test_refused_data_is_counted_and_events_are_held_then_written_first(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    state = rt.devices["d1"]
    state.samples_buffered = 5  # as the channel counts them when it hands them over
    db = rt.buffer._db
    db.execute("CREATE TEMP TRIGGER full BEFORE INSERT ON outbox BEGIN SELECT RAISE(FAIL, 'disk full'); END")
    rt._enqueue([data(5), event(100)])
    await asyncio.sleep(rt.commit_delay * 3)
    assert (state.samples_lost, state.samples_buffered) == (5, 0)
    assert rt.events_held == 1 and rt.buffer.depth().messages == 0
    rt._enqueue([event(200)])
    await asyncio.sleep(rt.commit_delay * 3)
    assert rt.events_held == 2, "still refused: both held, in order"
    db.execute("DROP TRIGGER full")
    rt._enqueue([data(2)])
    await asyncio.sleep(rt.commit_delay * 3)
    rows = rt.buffer.peek(10)
    assert [r.kind for r in rows] == ["events", "events", "data"]
    assert [json.loads(r.body)["events"][0]["ts"] for r in rows[:2]] == [100, 200], "their own time, in order"
    assert rt.events_held == 0 and rt.events_lost == 0
