"""A device's channel: what reaches the buffer, and what happens when the buffer refuses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_bridge.uplink.buffer import Buffer as SqliteBuffer
from cloud_bridge.uplink.buffer import Outgoing
from cloud_bridge.wire.codec import Sample, Topics, decode_data, decode_status, envelope
from drivers.base import Reading
from gateway.channel import DeviceChannel, DeviceState
from gateway.normalize import Normalizer, TagSpec
from tests.unit.test_buffer import fill_up

TOPICS = Topics("sf/v1", "ent-1", "gw-1")


class Buffer:
    """Takes messages, or refuses them as a full disk does while `full` is set."""

    def __init__(self) -> None:
        self.messages: list[Outgoing] = []
        self.full = False

    def __call__(self, messages: list[Outgoing]) -> None:
        if self.full:
            raise OSError(28, "database or disk is full")
        self.messages.extend(messages)

    def samples(self) -> list[Sample]:
        return [
            s
            for m in self.messages
            if m.kind == "data"
            for s in decode_data(envelope("gw-1", m.dev, 1, False, m.body)).samples
        ]


def channel(buffer: Buffer) -> DeviceChannel:
    normalizer = Normalizer([TagSpec("power", "float32", unit="kW"), TagSpec("count", "uint32")])
    return DeviceChannel(DeviceState("meter-1", "电表 1#", "modbus_tcp"), TOPICS, normalizer, buffer)


def test_a_nan_from_the_device_goes_out_as_a_bad_sample() -> None:
    buf = Buffer()
    ch = channel(buf)
    assert ch.emit([Reading("power", float("nan"), 1000), Reading("count", 7, 1000)]) == 2
    assert buf.samples() == [Sample("power", 0, 1000, "bad"), Sample("count", 7, 1000, "good")]


def test_a_refusing_buffer_loses_the_scan_counted_and_the_next_scan_goes_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    buf = Buffer()
    ch = channel(buf)
    ch.set_online(True, "responding")
    buf.full = True
    assert ch.emit([Reading("power", 1.5, 1000), Reading("count", 1, 1000)]) == 0
    assert ch.emit([Reading("power", 2.5, 2000), Reading("count", 2, 2000)]) == 0
    ch.set_online(False, "timeout")  # the offline report is lost too, and nothing raises
    assert "the buffer refused 1 message(s), their data is lost: [Errno 28] database or disk is full" in caplog.text
    assert caplog.text.count("the buffer refused") == 1  # once a minute, not once a scan
    buf.full = False
    ch.set_online(True, "responding")
    assert ch.emit([Reading("power", 3.5, 3000), Reading("count", 3, 3000)]) == 2
    s = ch.state
    assert (s.samples_read, s.samples_lost, s.samples_buffered) == (6, 4, 2)
    assert buf.samples() == [Sample("power", 3.5, 3000), Sample("count", 3, 3000)]


def test_with_the_real_buffer_on_a_full_disk(tmp_path: Path) -> None:
    """The real SQLite buffer, made full: each refused scan is counted lost, nothing raises, and the
    first scan after room is made goes in with the next seq."""
    buf = SqliteBuffer(tmp_path / "buffer.db", compress=False)
    normalizer = Normalizer([TagSpec("blob", "string"), TagSpec("count", "uint32")])
    ch = DeviceChannel(DeviceState("meter-1", "电表 1#", "modbus_tcp"), TOPICS, normalizer, buf.enqueue)
    ch.set_online(True, "responding")
    fill_up(buf)
    lost = 0
    for i in range(200):  # large scans until the database is full
        lost += 0 if ch.emit([Reading("blob", f"{i:04d}" * 1000, i), Reading("count", i, i)]) else 2
    assert lost > 0 and ch.state.samples_lost == lost
    assert ch.state.samples_buffered + lost == 400
    buf._db.execute("PRAGMA max_page_count = 1073741823")
    assert ch.emit([Reading("count", 999, 1000)]) == 1
    seqs = [r.seq for r in buf.peek(10_000) if r.seq is not None]
    assert seqs == list(range(1, len(seqs) + 1))


def test_a_device_that_stays_offline_for_another_reason_has_its_reason_and_status_follow() -> None:
    """The reason was frozen at the first failure (garbled answers, then silence: still "garbled");
    now it follows at once, and the retained status is sent again at most every REASON_EVERY seconds,
    with the time the device went offline; the offline event is not repeated."""
    import gateway.channel

    REASON_EVERY = getattr(gateway.channel, "REASON_EVERY", 10.0)
    buf = Buffer()
    ch = channel(buf)
    now = [1000.0]
    ch.clock = lambda: now[0]
    ch.set_online(False, "garbled answer from unit 1: malformed answer to function 3")
    assert [m.kind for m in buf.messages] == ["events", "status"]
    went_offline = decode_status(buf.messages[1].body).ts

    def statuses() -> list[tuple[bool, int, str]]:
        return [(s.online, s.ts, s.reason) for m in buf.messages if m.kind == "status" for s in [decode_status(m.body)]]

    now[0] += 5
    ch.set_online(False, "no response from unit 1 within 0.5s")
    assert ch.state.reason == "no response from unit 1 within 0.5s"  # the API has it at once
    assert len(buf.messages) == 2  # the status not yet: one every REASON_EVERY at most
    now[0] += REASON_EVERY - 5
    ch.set_online(False, "no response from unit 1 within 0.5s")
    assert [m.kind for m in buf.messages] == ["events", "status", "status"]  # no second offline event
    assert buf.messages[2].retain
    assert statuses()[-1] == (False, went_offline, "no response from unit 1 within 0.5s")
    for _ in range(3):  # the same reason: nothing more
        now[0] += REASON_EVERY
        ch.set_online(False, "no response from unit 1 within 0.5s")
    assert len(buf.messages) == 3
    for i in range(5):  # a reason that changes on every probe: at most one status per REASON_EVERY
        now[0] += 1
        ch.set_online(False, f"garbled answer {i}")
    assert len(buf.messages) == 4 and ch.state.reason == "garbled answer 4"
    ch.set_online(True, "responding")
    assert [m.kind for m in buf.messages[4:]] == ["events", "status"]
    assert statuses()[-1][::2] == (True, "responding")
