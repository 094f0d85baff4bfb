"""The evidence ledger on a temporary SQLite file: dedupe, statistics, events, status, dead letters."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import lz4.block
import msgspec
import pytest
import sqlalchemy as sa
from sqlalchemy import event, text

from cloud_bridge.cloud.ledger.sqldb import Database, engine_url
from cloud_bridge.cloud.ledger.writer import Ledger
from cloud_bridge.wire.codec import DataMessage, Event, EventMessage, Sample, Status


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path}/sub/dir/ledger.db")
    yield led
    led.close()


def data(seq: int, samples: list[Sample], dev: str = "loom-01", gw: str = "gw-1", **units: str) -> DataMessage:
    return DataMessage(gw, dev, seq, False, tuple(samples), dict(units))


MSG = data(
    1,
    [
        Sample("speed", 10.0, 1000),
        Sample("speed", 12.5, 3000),
        Sample("speed", 11.0, 2000, "uncertain"),
        Sample("recipe", "A-12", 1500),
        Sample("door", True, 500, "bad"),
    ],
    speed="rpm",
)


def test_creates_parent_dirs_and_wal(tmp_path: Path) -> None:
    led = Ledger(f"sqlite:///{tmp_path}/a/b/l.db")
    try:
        assert (tmp_path / "a" / "b" / "l.db").exists()
        assert led.db.scalar(text("PRAGMA journal_mode")) == "wal"
        assert led.db.scalar(text("PRAGMA synchronous")) == 2  # FULL
        assert led.db.scalar(text("PRAGMA busy_timeout")) == 30_000
    finally:
        led.close()


@pytest.mark.parametrize("url", ["mysql://x", "sqlite://", "sqlite:/x.db", "not a url", "postgresql+asyncpg://h/db"])
def test_rejects_unknown_url(url: str) -> None:
    with pytest.raises(ValueError):
        Ledger(url)


def test_postgresql_urls_run_on_psycopg_and_never_show_the_password() -> None:
    for url in ("postgresql://u:s3cret@db:5433/edgegw", "postgres://u:s3cret@db:5433/edgegw"):
        assert engine_url(url).render_as_string(hide_password=False) == "postgresql+psycopg://u:s3cret@db:5433/edgegw"
    db = Database("postgresql://u:s3cret@127.0.0.1:1/edgegw")  # connects only when used
    try:
        assert "s3cret" not in repr(db) and "s3cret" not in repr(db.engine)
        assert repr(db) == "Database('postgresql+psycopg://u:***@127.0.0.1:1/edgegw')"
    finally:
        db.close()


def test_in_memory_ledger_is_one_database_shared_by_threads() -> None:
    led = Ledger("sqlite:///:memory:")
    try:
        threads = [
            threading.Thread(
                target=lambda i=i: [led.record_data("e", data(i * 100 + s, MSG.samples)) for s in range(50)]
            )
            for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert led.received_count() == 200 and led.total_samples() == 1000
    finally:
        led.close()


def test_record_data_stats(ledger: Ledger) -> None:
    assert not ledger.is_duplicate("ent-1", "gw-1", 1)
    assert ledger.record_data("ent-1", MSG)
    assert ledger.is_duplicate("ent-1", "gw-1", 1)
    assert ledger.total_samples() == 5
    [dev] = ledger.devices()
    assert dev["ent"] == "ent-1" and dev["gw"] == "gw-1" and dev["dev"] == "loom-01"
    assert (dev["first_seen"], dev["last_seen"], dev["samples"], dev["good_samples"]) == (500, 3000, 5, 3)
    assert dev["online"] is None  # no status yet
    tags = {t["tag"]: t for t in ledger.tag_stats("loom-01")}
    assert set(tags) == {"speed", "recipe", "door"}
    assert (tags["speed"]["unit"], tags["speed"]["samples"]) == ("rpm", 3)
    assert (tags["speed"]["last_ts"], tags["speed"]["last_value_text"]) == (
        3000,
        "12.5",
    )  # latest ts, not last in list
    assert (tags["recipe"]["unit"], tags["recipe"]["last_value_text"]) == (None, "A-12")
    assert tags["door"]["last_value_text"] == "true"


def test_tag_statistics_pending_from_the_previous_version_fold_alike(tmp_path: Path) -> None:
    """A ledger upgraded with statistics still pending: a body the previous writer wrote (`json.dumps`, here
    with non-ASCII text as it wrote it) folds to what the same batch folds to when written now."""
    batch = data(1, [*MSG.samples, Sample("温度", "高 \u00b0C", 2500)], 温度="°C", speed="rpm")
    folded = []
    for old in (False, True):
        led = Ledger(f"sqlite:///{tmp_path}/{old}.db")
        assert led.record_data("ent-1", batch)
        if old:
            with led.db.engine.begin() as conn:
                [(pid, body)] = conn.execute(text("SELECT id, body FROM tag_stats_pending")).all()
                rows = msgspec.json.decode(lz4.block.decompress(body))
                written = json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode()
                conn.execute(
                    text("UPDATE tag_stats_pending SET body = :b WHERE id = :i"),
                    {"b": lz4.block.compress(written), "i": pid},
                )
        folded.append(led.tag_stats("loom-01"))
        led.close()
    assert folded[0] == folded[1] and len(folded[0]) == 4
    assert {t["tag"]: (t["unit"], t["last_value_text"]) for t in folded[0]}["温度"] == ("°C", "高 °C")


def test_duplicate_changes_nothing(ledger: Ledger) -> None:
    assert ledger.record_data("ent-1", MSG)
    before = (ledger.devices(), ledger.tag_stats("loom-01"), ledger.total_samples(), ledger.received_count())
    # Same (gw, seq) with other content: still a duplicate, nothing counted.
    again = data(1, [Sample("speed", 99.0, 9000)])
    assert not ledger.record_data("ent-1", again)
    assert not ledger.record_data("ent-1", MSG)
    assert not ledger.record_events("ent-1", EventMessage("gw-1", "loom-01", 1, False, (Event("online", 1),)))
    after = (ledger.devices(), ledger.tag_stats("loom-01"), ledger.total_samples(), ledger.received_count())
    assert after == before
    assert ledger.events() == []


def test_seq_is_per_gateway_and_enterprise(ledger: Ledger) -> None:
    assert ledger.record_data("ent-1", MSG)
    assert ledger.record_data("ent-1", data(1, [Sample("speed", 1.0, 1)], gw="gw-2"))
    assert ledger.record_data("ent-2", MSG)  # same gateway id in another enterprise
    assert ledger.total_samples() == 11
    assert len(ledger.devices()) == 3


def test_stats_accumulate_across_messages(ledger: Ledger) -> None:
    assert ledger.record_data("e", MSG)
    # A replayed (hist) older batch: counts add up, the latest value stays the newest one.
    old = DataMessage("gw-1", "loom-01", 2, True, (Sample("speed", 1.0, 100), Sample("speed", 2.0, 200)), {})
    assert ledger.record_data("e", old)
    [dev] = ledger.devices()
    assert (dev["first_seen"], dev["last_seen"], dev["samples"], dev["good_samples"]) == (100, 3000, 7, 5)
    speed = next(t for t in ledger.tag_stats("loom-01") if t["tag"] == "speed")
    assert (speed["samples"], speed["last_ts"], speed["last_value_text"], speed["unit"]) == (
        5,
        3000,
        "12.5",
        "rpm",
    )


def test_events(ledger: Ledger) -> None:
    msg = EventMessage(
        "gw-1", "loom-01", 5, False, (Event("online", 10, "connected"), Event("state", 20, "", "running"))
    )
    assert ledger.record_events("e", msg)
    assert ledger.record_events("e", EventMessage("gw-1", "oven-1", 6, False, (Event("offline", 15, "timeout"),)))
    assert [(e["dev"], e["kind"], e["ts"]) for e in ledger.events()] == [
        ("loom-01", "online", 10),
        ("oven-1", "offline", 15),
        ("loom-01", "state", 20),
    ]
    [state] = [e for e in ledger.events("loom-01") if e["kind"] == "state"]
    assert state == dict(ent="e", gw="gw-1", dev="loom-01", ts=20, kind="state", reason="", state="running")
    assert ledger.events("nope") == []
    assert ledger.events("loom-01", ent="other") == []
    assert ledger.is_duplicate("e", "gw-1", 5)


def test_status_keeps_latest(ledger: Ledger) -> None:
    ledger.record_status("e", "gw-1", "loom-01", Status(True, 100, "connected"))
    ledger.record_status("e", "gw-1", "loom-01", Status(False, 50, "stale"))  # older: ignored
    ledger.record_status("e", "gw-1", None, Status(True, 10, version="0.1.0"))
    [dev] = ledger.devices()
    assert (dev["dev"], dev["online"], dev["status_ts"], dev["reason"], dev["samples"]) == (
        "loom-01", True, 100, "connected", 0
    )  # fmt: skip
    ledger.record_status("e", "gw-1", "loom-01", Status(False, 200, "timeout"))
    [dev] = ledger.devices()
    assert (dev["online"], dev["status_ts"], dev["reason"]) == (False, 200, "timeout")
    assert ledger.gateways() == [{"ent": "e", "gw": "gw-1", "online": True, "ts": 10, "version": "0.1.0"}]


def test_dead_letters(ledger: Ledger) -> None:
    assert ledger.dead_letter_count() == 0
    ledger.dead_letter("sf/v1/e/g/d/data", b"\xff not json", "not JSON")
    ledger.dead_letter("bad/topic", b"{}", "topic")
    assert ledger.dead_letter_count() == 2
    newest, oldest = ledger.dead_letters()
    assert (oldest["topic"], oldest["payload"], oldest["reason"]) == (
        "sf/v1/e/g/d/data",
        b"\xff not json",
        "not JSON",
    )
    assert newest["topic"] == "bad/topic"


def test_survives_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/l.db"
    led = Ledger(url)
    assert led.record_data("e", MSG)
    led.close()
    led = Ledger(url)
    try:
        assert led.is_duplicate("e", "gw-1", 1)
        assert not led.record_data("e", MSG)
        assert led.total_samples() == 5
    finally:
        led.close()


def test_concurrent_ledgers_count_each_message_once(tmp_path: Path) -> None:
    # Two connections to one file (as two ingesters would have) race on the same messages.
    url = f"sqlite:///{tmp_path}/l.db"
    ledgers = [Ledger(url), Ledger(url)]
    wins = [0, 0]

    def run(i: int) -> None:
        for seq in range(200):
            if ledgers[i].record_data("e", data(seq, [Sample("t", seq, seq)])):
                wins[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sum(wins) == 200
        assert ledgers[0].total_samples() == 200
        assert ledgers[1].received_count() == 200
    finally:
        for led in ledgers:
            led.close()


def test_a_gateways_last_will_marks_it_offline_although_its_ts_is_older(tmp_path: Path) -> None:
    from cloud_bridge.wire.codec import Status

    led = Ledger(f"sqlite:///{tmp_path}/l.db")
    try:
        led.record_status("e", "gw", None, Status(True, 1_000, version="0.1.0"))  # birth at connect
        led.record_status("e", "gw", None, Status(True, 61_000, version="0.1.0"))  # periodic status
        led.record_status("e", "gw", None, Status(False, 1_000, version="0.1.0"))  # the will, fixed at connect
        [gw] = led.gateways()
        assert gw["online"] is False and gw["ts"] == 61_000, "offline since it was last known alive"
        led.record_status("e", "gw", "dev", Status(True, 5_000, "responding"))
        led.record_status("e", "gw", "dev", Status(False, 4_000, "late, older"))  # device statuses: newest wins
        assert led.devices()[0]["online"] is True
    finally:
        led.close()


@pytest.mark.parametrize("name", ["x.db", ":memory:"])
def test_a_commit_that_fails_is_rolled_back_and_the_database_keeps_working(tmp_path: Path, name: str) -> None:
    """SQLite keeps a transaction open when its COMMIT fails (here a deferred foreign key; a full disk
    does the same): the write must be undone, not left holding the write lock over every later write,
    and what was committed before stays (in memory too, where the connection is the database)."""
    db = Database(f"sqlite:///{name if name == ':memory:' else tmp_path / name}", busy_timeout=2)
    event.listen(db.engine, "connect", lambda conn, _: conn.execute("PRAGMA foreign_keys=ON"))
    md = sa.MetaData()
    parent = sa.Table("parent", md, sa.Column("id", sa.Integer, primary_key=True))
    child = sa.Table(
        "child",
        md,
        sa.Column("id", sa.Integer),
        sa.Column("p", sa.Integer, sa.ForeignKey("parent.id", deferrable=True, initially="DEFERRED")),
    )
    db.create(md)
    try:
        db.execute(parent.insert(), {"id": 1})
        with pytest.raises(sa.exc.IntegrityError), db.transaction() as conn:
            conn.execute(child.insert(), {"id": 1, "p": 42})  # no parent 42: refused at COMMIT
        with db.transaction() as conn:  # would wait for the write lock, then fail, were it still held
            conn.execute(parent.insert(), {"id": 42})
            conn.execute(child.insert(), {"id": 2, "p": 42})
        assert db.rows(sa.select(child.c.id)) == [{"id": 2}]
        assert db.rows(sa.select(parent.c.id).order_by(parent.c.id)) == [{"id": 1}, {"id": 42}]
    finally:
        db.close()
