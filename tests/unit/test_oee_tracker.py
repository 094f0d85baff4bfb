"""The edge's OEE tracker (channel observer) and its local history: state events with counts, snapshots,
offline handling, recovery after an unclean stop, metadata and the config hash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.metrics import CountPoint
from cloud_bridge.uplink.buffer import Outgoing
from cloud_bridge.wire.codec import Topics, decode_data, decode_events, decode_meta, envelope
from drivers.base import Changes, Reading, TagSet
from edge_config import load_text
from edge_config.models import GatewayConfig
from gateway.channel import DeviceChannel, DeviceState
from gateway.normalize import Normalizer, TagSpec
from gateway.oee.history import OeeHistory
from gateway.oee.tracker import DeviceTracker, StateMap, config_hash, device_meta, meta_messages
from simulators.scripted import scripted_device_config

TOPICS = Topics("sf/v1", "ent-1", "gw-1")
T = 1_700_000_000_000


def config(**history: Any) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-1", "enterprise_id": "ent-1"},
            "history": {"snapshot_interval": "10s", "local_interval": "5s", **history},
            "devices": [scripted_device_config("press-01", "127.0.0.1", 5020, ideal_cycle_time=0.5)],
        }
    )


class Sink:
    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    def __call__(self, messages: list[Outgoing]) -> None:
        self.messages.extend(messages)

    def events(self) -> list[tuple[str, int, str | None, dict[str, Any] | None]]:
        out = []
        for m in self.messages:
            if m.kind == "events":
                for e in decode_events(envelope("gw-1", m.dev, 1, False, m.body)).events:
                    out.append((e.kind, e.ts, e.state, e.counts))
        return out


def scan(ts: int, state: object = 1, total: int = 100, reject: int = 2, quality: str = "good") -> list[Reading]:
    return [
        Reading("run_state", state, ts, quality),  # type: ignore[arg-type]
        Reading("total_count", total, ts),
        Reading("reject_count", reject, ts),
        Reading("rate", 600, ts),
        Reading("energy_kwh", 1.5, ts),
    ]


@pytest.fixture
def history(tmp_path: Path) -> OeeHistory:
    h = OeeHistory(tmp_path / "oee_history.db")
    yield h  # type: ignore[misc]
    h.close()


def tracker(sink: Sink, history: OeeHistory | None) -> DeviceTracker:
    cfg = config()
    return DeviceTracker(cfg.devices[0], TOPICS, sink, history, snapshot_interval_s=10, local_interval_s=5)


def test_state_changes_carry_counts_and_snapshots_follow_the_clock(history: OeeHistory) -> None:
    sink = Sink()
    tr = tracker(sink, history)
    tr.on_online(True, T, "responding")
    tr.on_readings(scan(T - 5))  # read just before the online report: stamped at the online time
    tr.on_readings(scan(T + 1000, total=101))
    tr.on_readings(scan(T + 2000, state=2, total=101))
    tr.on_readings(scan(T + 10_000, state=2, total=101))
    ev = sink.events()
    assert ev[0] == ("state", T, "running", {"total": 100, "reject": 2})
    assert ev[1] == ("snapshot", T, "running", {"total": 100, "reject": 2, "readings": 5, "good_readings": 5})
    assert ev[2] == ("state", T + 2000, "fault", {"total": 101, "reject": 2})
    assert ev[3][0] == "snapshot" and ev[3][1] == T + 10_000 and ev[3][3]["readings"] == 20  # type: ignore[index]
    assert len(ev) == 4
    w = history.window("press-01", T, T + 20_000)
    assert w.states == [(T, "running"), (T + 2000, "fault")]
    assert w.online == [(T, True)]
    assert [c.total for c in w.counts] == [100, 101]  # at state changes, and every 5 s when they move
    assert tr.live_point() == CountPoint(T + 10_000, 101, None, 2)


def test_unmapped_or_bad_state_is_unknown() -> None:
    sink = Sink()
    tr = tracker(sink, None)
    tr.on_online(True, T, "ok")
    tr.on_readings(scan(T, state=9))
    tr.on_readings(scan(T + 1, state=1))
    tr.on_readings(scan(T + 2, state=None, quality="bad"))
    assert [e[2] for e in sink.events() if e[0] == "state"] == ["unknown", "running", "unknown"]


def test_offline_sends_the_last_counters_and_forgets_the_state(history: OeeHistory) -> None:
    sink = Sink()
    tr = tracker(sink, history)
    tr.on_online(True, T, "ok")
    tr.on_readings(scan(T, total=100))
    tr.on_readings(scan(T + 3000, total=130))
    tr.on_online(False, T + 4000, "timeout")
    tr.on_online(True, T + 9000, "ok")
    tr.on_readings(scan(T + 9000, total=180))
    ev = sink.events()
    assert ("snapshot", T + 3000, "running", {"total": 130, "reject": 2, "readings": 10, "good_readings": 10}) in ev
    assert ev[-1] == ("state", T + 9000, "running", {"total": 180, "reject": 2})  # state re-sent after reconnect
    assert history.window("press-01", T, T + 10_000).online == [(T, True), (T + 4000, False), (T + 9000, True)]


def test_recovery_reports_devices_offline_from_when_the_gateway_was_last_alive(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = OeeHistory(path)
    sink = Sink()
    tr = tracker(sink, h)
    tr.on_online(True, T, "ok")
    tr.on_readings(scan(T + 6000))  # alive marker written (every 5 s at most)
    h.close()  # power cut: no goodbye
    h2 = OeeHistory(path)
    sink2 = Sink()
    tr2 = tracker(sink2, h2)
    tr2.recover()
    assert sink2.events() == [("offline", T + 6000, None, None)]
    assert h2.open_devices() == {}
    tr2.recover()  # nothing left open: nothing more to say
    assert len(sink2.events()) == 1
    h2.close()


def test_final_snapshot_on_stop() -> None:
    sink = Sink()
    tr = tracker(sink, None)
    tr.on_online(True, T, "ok")
    tr.on_readings(scan(T, total=1))
    tr.on_readings(scan(T + 1000, total=7))
    tr.final_snapshot()
    tr.final_snapshot()  # once
    snaps = [e for e in sink.events() if e[0] == "snapshot"]
    assert [s[1] for s in snaps] == [T, T + 1000] and snaps[-1][3]["total"] == 7  # type: ignore[index]


def test_tracker_never_raises_into_the_poll_loop(history: OeeHistory) -> None:
    def broken(messages: list[Outgoing]) -> None:
        raise OSError("disk full")

    tr = DeviceTracker(config().devices[0], TOPICS, broken, history)
    tr.on_online(True, T, "ok")
    tr.on_readings(scan(T))
    tr.on_online(False, T + 1, "x")
    tr.final_snapshot()


def test_state_map() -> None:
    m = StateMap({"running": [1, True], "idle": ["IDLE"], "fault": [2.0]})
    assert (m(1), m(1.0), m(True), m("IDLE"), m(2), m(3), m("1")) == (
        "running",
        "running",
        "running",
        "idle",
        "fault",
        "unknown",
        "unknown",
    )
    assert StateMap({"running": [1]})(True) == "running"  # a bit tag mapped with 1/0


def test_metadata_message() -> None:
    cfg = config()
    [out] = meta_messages(cfg, TOPICS, ts=T, version="0.1.0")
    assert out.kind == "status" and out.retain and out.topic == "sf/v1/ent-1/gw-1/press-01/meta"
    meta = decode_meta(out.body)
    assert meta == device_meta(cfg.devices[0], gw="gw-1", ts=T, config_sha=config_hash(cfg), version="0.1.0")
    assert {t.name: t.domain for t in meta.tags}["reject_count"] == "quality"
    assert all(t.interval_s == 1.0 for t in meta.tags)
    assert meta.oee is not None
    assert (meta.oee.counter_max, meta.oee.reject_count_tag, meta.oee.ideal_cycle_time_s) == (
        65535,
        "reject_count",
        0.5,
    )


def test_config_hash_is_canonical_and_leaves_secrets_out() -> None:
    a = """\
gateway: {id: gw-1, enterprise_id: ent-1}
mqtt: {url: "mqtt://h:1883", password: secret}   # a comment
"""
    b = """\
mqtt:
  password: other
  url: mqtt://h:1883
gateway:
  enterprise_id: ent-1
  id: gw-1
"""
    ha, hb = config_hash(load_text(a, GatewayConfig)), config_hash(load_text(b, GatewayConfig))
    assert ha == hb and len(ha) == 64  # layout, comments, order and the password do not count
    assert config_hash(load_text(a.replace("gw-1", "gw-2"), GatewayConfig)) != ha


def test_history_prune_keeps_the_state_before_the_cutoff(history: OeeHistory) -> None:
    day = 86_400_000
    for i in range(5):
        history.record_state("d", T + i * day, "running" if i % 2 == 0 else "idle")
        history.record_counts("d", T + i * day, float(i), None, None)
    history.record_online("d", T, True, "ok")
    h = OeeHistory(history.path, retention_s=2 * 86_400)
    h.prune(T + 4 * day + 1)
    w = h.window("d", T + 3 * day, T + 5 * day)
    assert w.states == [(T + 2 * day, "running"), (T + 3 * day, "idle"), (T + 4 * day, "running")]
    assert w.online == [(T, True)]  # the last transition survives, however old
    assert [c.ts for c in w.counts] == [T + 3 * day, T + 4 * day]  # counts older than the retention go
    h.close()


def test_a_scan_reported_by_exception_counts_every_tag_read_and_snapshots_on_time() -> None:
    """Through the real DeviceChannel: unchanged tags still count as read, an unchanged state sends
    no state event, the snapshot follows the clock though nothing changed, and heartbeats go out."""
    sink = Sink()
    cfg = config()
    dev = cfg.devices[0]
    tr = DeviceTracker(dev, TOPICS, sink, None, snapshot_interval_s=10, local_interval_s=5)
    specs = [TagSpec(t.name, t.type, t.scale, t.offset, t.unit, t.deadband) for t in dev.tags]
    channel = DeviceChannel(DeviceState(dev.id, dev.name, dev.driver), TOPICS, Normalizer(specs, 4.0), sink, tr)
    names = [t.name for t in dev.tags]
    covered = [TagSet(names)]
    tr.on_online(True, T, "ok")
    first = scan(T)
    assert [r.tag for r in first] == names
    channel.emit_changes(Changes(first, T, read=len(names), covered=covered))
    for k in range(1, 13):  # 12 s of scans that change nothing; the reject counter is refused
        bad = [Reading("reject_count", None, T + 1000 * k, "bad", "exception 2")]
        channel.emit_changes(Changes(bad, T + 1000 * k, read=len(names), bad=1, covered=covered))
    assert channel.state.samples_read == 13 * len(names) and channel.state.bad_readings == 12
    ev = sink.events()
    assert [e[0] for e in ev] == ["state", "snapshot", "snapshot"]  # no second state event
    snap = ev[2][3]
    assert snap is not None and snap["readings"] == 11 * len(names)  # scans up to T+10 s
    assert snap["good_readings"] == 11 * len(names) - 10
    beats = [
        s.ts
        for m in sink.messages
        if m.kind == "data"
        for s in decode_data(envelope("gw-1", m.dev, 1, False, m.body)).samples
        if s.tag == "total_count"
    ]
    assert beats == [T, T + 3000, T + 6000, T + 9000, T + 12_000]  # heartbeat 4 s, gathered a quarter early


def test_the_config_hash_leaves_secrets_out_and_no_tag_can_hold_one() -> None:
    from edge_config.models import ModbusTag, OpcUaTag
    from gateway.oee.tracker import canonical_config, config_hash

    base = {
        "gateway": {"id": "gw", "enterprise_id": "e"},
        "mqtt": {"url": "mqtt://127.0.0.1:1883", "username": "u", "password": "s3cr3t-1"},
        "devices": [{"id": "d", "driver": "opcua",
                     "connection": {"endpoint": "opc.tcp://h:4840", "username": "op", "password": "op-s3cr3t"},
                     "tags": [{"name": "t", "node": "ns=2;s=T"}]}],
    }  # fmt: skip
    other = {**base, "mqtt": {**base["mqtt"], "password": "s3cr3t-2"}}  # type: ignore[dict-item]
    a, b = GatewayConfig.model_validate(base), GatewayConfig.model_validate(other)
    assert config_hash(a) == config_hash(b)
    assert b"s3cr3t" not in canonical_config(a) and b"op-s3cr3t" not in canonical_config(a)
    # canonical_config copies tag lists without looking for secrets in them: none may ever be one
    for model in (ModbusTag, OpcUaTag):
        assert not {"password", "token"} & set(model.model_fields), model
