"""The same ledger checks on SQLite and on the machine's real PostgreSQL (skipped, with the reason,
where none answers): values that look like SQL placeholders are only data, the tables declared in
schema.py come out with the first release's columns, and a database that release made keeps working.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from cloud_bridge.cloud.ledger.schema import received_seqs
from cloud_bridge.cloud.ledger.sqldb import Database
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.cloud.ledger.writer import Ledger
from cloud_bridge.wire.codec import DataMessage, DeviceMeta, Event, EventMessage, Sample, Status

pytestmark = pytest.mark.integration

# Placeholders of every style either driver knows (qmark, format, pyformat, named), and a quote.
TRICKY = "what? 100%s :x %(y)s $1 it's"


def test_values_that_look_like_placeholders_round_trip(url: str) -> None:
    ledger, store = Ledger(url), EvidenceStore(url)
    try:
        data = DataMessage("gw-1", "dev-1", 1, False, (Sample(TRICKY, TRICKY, 1_000),), {TRICKY: TRICKY})
        assert ledger.record_batch([(TRICKY, data)]) == [True]
        assert ledger.record_batch([(TRICKY, data)]) == [False]  # the claim matched the same key
        assert ledger.recorded([(TRICKY, "gw-1", 1), (TRICKY, "gw-1", 2)]) == {(TRICKY, "gw-1", 1)}
        [tag] = ledger.tag_stats("dev-1", ent=TRICKY)
        assert (tag["tag"], tag["unit"], tag["last_value_text"]) == (TRICKY, TRICKY, TRICKY)

        events = EventMessage("gw-1", "dev-1", 2, False, (Event("offline", 2_000, TRICKY, TRICKY),))
        assert ledger.record_events(TRICKY, events)
        [event] = ledger.events("dev-1", ent=TRICKY, gw="gw-1")
        assert (event["reason"], event["state"]) == (TRICKY, TRICKY)

        ledger.record_status(TRICKY, "gw-1", "dev-1", Status(False, 3_000, TRICKY))
        [dev] = ledger.devices()
        assert (dev["ent"], dev["reason"], dev["online"]) == (TRICKY, TRICKY, False)

        ledger.dead_letter(TRICKY, TRICKY.encode(), TRICKY)
        [letter] = ledger.dead_letters()
        assert (letter["topic"], letter["payload"], letter["reason"]) == (TRICKY, TRICKY.encode(), TRICKY)

        sheet = f'id,name\nm-1,"{TRICKY}"\n'.encode()
        store.import_equipment(TRICKY, sheet, f"{TRICKY}.csv")
        [item] = store.equipment(TRICKY)
        assert item.name == TRICKY
        imported = store.equipment_import(TRICKY)
        assert imported is not None and imported["source"] == f"{TRICKY}.csv"
        assert store.knows(TRICKY) and TRICKY in store.enterprises()
        assert store.event_log(TRICKY, 0, 10_000)[0]["reason"] == TRICKY
    finally:
        ledger.close()
        store.close()


# What the first release's hand-written DDL made, table by table: (column, type family, nullable);
# primary keys and indexes below. The tables of schema.py must come out the same.
# `received` (a row per message) and `device_activity` (per 10 s slot) are turned into `received_seqs` and
# `device_hours` at start-up (#14: the ledger's size), see the test of a first-release database below.
COLUMNS: dict[str, list[tuple[str, str, bool]]] = {
    "device_events": [("ent", "text", False), ("gw", "text", False), ("dev", "text", False), ("ts", "int", False),
                      ("kind", "text", False), ("reason", "text", False), ("state", "text", True)],
    "device_status": [("ent", "text", False), ("gw", "text", False), ("dev", "text", False),
                      ("online", "bool", False), ("ts", "int", False), ("reason", "text", False),
                      ("version", "text", True)],
    "device_stats": [("ent", "text", False), ("gw", "text", False), ("dev", "text", False),
                     ("first_seen", "int", False), ("last_seen", "int", False), ("samples", "int", False),
                     ("good_samples", "int", False)],
    "tag_stats": [("ent", "text", False), ("gw", "text", False), ("dev", "text", False), ("tag", "text", False),
                  ("unit", "text", True), ("samples", "int", False), ("last_ts", "int", False),
                  ("last_value_text", "text", False)],
    "dead_letters": [("id", "int", False), ("received_ms", "int", False), ("topic", "text", False),
                     ("payload", "bytes", False), ("reason", "text", False)],
    "device_counts": [("ent", "text", False), ("gw", "text", False), ("dev", "text", False), ("ts", "int", False),
                      ("kind", "text", False), ("state", "text", True), ("total", "float", True),
                      ("good", "float", True), ("reject", "float", True), ("readings", "float", True),
                      ("good_readings", "float", True)],
    "device_meta": [("ent", "text", False), ("gw", "text", False), ("dev", "text", False), ("ts", "int", False),
                    ("config_hash", "text", False), ("body", "text", False)],
    "meta_log": [("ent", "text", False), ("gw", "text", False), ("dev", "text", False), ("ts", "int", False),
                 ("config_hash", "text", False), ("version", "text", False)],
    "equipment": [("ent", "text", False), ("id", "text", False), ("name", "text", False), ("type", "text", False),
                  ("line", "text", False), ("key_process", "bool", False), ("digitized", "bool", False),
                  ("gateway", "text", False), ("device", "text", False), ("row_no", "int", False)],
    "equipment_imports": [("id", "int", False), ("ent", "text", False), ("imported_ms", "int", False),
                          ("source", "text", False), ("sha256", "text", False), ("row_count", "int", False)],
    # added since: the equipment sheets as imported (an evidence pack holds the one it counted against)
    "equipment_files": [("ent", "text", False), ("sha256", "text", False), ("source", "text", False),
                        ("data", "bytes", False), ("imported_ms", "int", False)],
    # added since: what was received as seq ranges, activity per device-hour (#14)
    "received_seqs": [("ent", "text", False), ("gw", "text", False), ("first_seq", "int", False),
                      ("last_seq", "int", False)],
    "device_hours": [("ent", "text", False), ("gw", "text", False), ("dev", "text", False), ("hour", "int", False),
                     ("samples", "int", False), ("good_samples", "int", False), ("first_ts", "int", False),
                     ("last_ts", "int", False), ("minutes", "int", False)],
}  # fmt: skip
PRIMARY_KEYS = {
    "received_seqs": ["ent", "gw", "first_seq"],
    "device_hours": ["ent", "gw", "dev", "hour"],
    "device_events": [],
    "device_status": ["ent", "gw", "dev"],
    "device_stats": ["ent", "gw", "dev"],
    "tag_stats": ["ent", "gw", "dev", "tag"],
    "dead_letters": ["id"],
    "device_counts": [],
    "device_meta": ["ent", "gw", "dev"],
    "meta_log": ["ent", "gw", "dev", "ts"],
    "equipment": ["ent", "id"],
    "equipment_imports": ["id"],
    "equipment_files": ["ent", "sha256"],
}
INDEXES = {
    "device_events": {"device_events_dev_ts": ["ent", "gw", "dev", "ts"]},
    "device_hours": {"device_hours_ent_hour": ["ent", "hour"]},
    "device_counts": {"device_counts_dev_ts": ["ent", "gw", "dev", "ts"]},
}
_FAMILIES = {
    "text": sa.String,
    "int": sa.Integer,  # BigInteger and SmallInteger too
    "float": sa.Float,  # REAL, DOUBLE, DOUBLE PRECISION
    "bytes": sa.LargeBinary,
    "bool": sa.Boolean,
}


def _described(url: str) -> dict[str, tuple[list[tuple[str, str, bool]], list[str], dict[str, list[str]]]]:
    """Each table as the database describes it: columns, primary key, indexes."""
    db = Database(url)
    try:
        inspector = sa.inspect(db.engine)
        out = {}
        for table in inspector.get_table_names():
            columns = [
                (c["name"], next(f for f, t in _FAMILIES.items() if isinstance(c["type"], t)), c["nullable"])
                for c in inspector.get_columns(table)
            ]
            key = inspector.get_pk_constraint(table)["constrained_columns"]
            indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(table) if i["name"]}
            out[table] = (columns, key, indexes)
        return out
    finally:
        db.close()


def test_the_schema_has_the_first_releases_columns(url: str) -> None:
    Ledger(url).close()
    EvidenceStore(url).close()
    described = _described(url)
    assert set(COLUMNS) <= set(described), "every table of the first release (later ones are added beside them)"
    for table in COLUMNS:
        columns, key, indexes = described[table]
        assert columns == COLUMNS[table], table
        assert key == PRIMARY_KEYS[table], table
        assert indexes == INDEXES.get(table, {}), table


# The first release's DDL, as it ran on each database (it translated three type names for PostgreSQL).
OLD_TYPES = {
    "sqlite": {"id": "INTEGER PRIMARY KEY", "blob": "BLOB", "real": "REAL", "x": "X'78'"},
    "postgresql": {
        "id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "blob": "BYTEA",
        "real": "DOUBLE PRECISION",
        "x": "'\\x78'",
    },
}
OLD_DDL = """
CREATE TABLE received (ent TEXT NOT NULL, gw TEXT NOT NULL, seq BIGINT NOT NULL, dev TEXT NOT NULL,
    kind TEXT NOT NULL, received_ms BIGINT NOT NULL, PRIMARY KEY (ent, gw, seq));
CREATE TABLE device_events (ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, ts BIGINT NOT NULL,
    kind TEXT NOT NULL, reason TEXT NOT NULL, state TEXT);
CREATE INDEX device_events_dev_ts ON device_events (ent, gw, dev, ts);
CREATE TABLE device_status (ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, online BOOLEAN NOT NULL,
    ts BIGINT NOT NULL, reason TEXT NOT NULL, version TEXT, PRIMARY KEY (ent, gw, dev));
CREATE TABLE device_stats (ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL, samples BIGINT NOT NULL, good_samples BIGINT NOT NULL, PRIMARY KEY (ent, gw, dev));
CREATE TABLE tag_stats (ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, tag TEXT NOT NULL, unit TEXT,
    samples BIGINT NOT NULL, last_ts BIGINT NOT NULL, last_value_text TEXT NOT NULL, PRIMARY KEY (ent, gw, dev, tag));
CREATE TABLE dead_letters (id {id}, received_ms BIGINT NOT NULL, topic TEXT NOT NULL, payload {blob} NOT NULL,
    reason TEXT NOT NULL);
CREATE TABLE device_activity (ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, slot BIGINT NOT NULL,
    samples BIGINT NOT NULL, good_samples BIGINT NOT NULL, first_ts BIGINT NOT NULL, last_ts BIGINT NOT NULL,
    PRIMARY KEY (ent, gw, dev, slot));
CREATE INDEX device_activity_ent_slot ON device_activity (ent, slot);
CREATE TABLE device_counts (ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, ts BIGINT NOT NULL,
    kind TEXT NOT NULL, state TEXT, total {real}, good {real}, reject {real}, readings {real}, good_readings {real});
CREATE INDEX device_counts_dev_ts ON device_counts (ent, gw, dev, ts);
CREATE TABLE device_meta (ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, ts BIGINT NOT NULL,
    config_hash TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (ent, gw, dev));
CREATE TABLE meta_log (ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, ts BIGINT NOT NULL,
    config_hash TEXT NOT NULL, version TEXT NOT NULL, PRIMARY KEY (ent, gw, dev, ts));
CREATE TABLE equipment (ent TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
    line TEXT NOT NULL, key_process BOOLEAN NOT NULL, digitized BOOLEAN NOT NULL, gateway TEXT NOT NULL,
    device TEXT NOT NULL, row_no INTEGER NOT NULL, PRIMARY KEY (ent, id));
CREATE TABLE equipment_imports (id {id}, ent TEXT NOT NULL, imported_ms BIGINT NOT NULL, source TEXT NOT NULL,
    sha256 TEXT NOT NULL, row_count INTEGER NOT NULL);
INSERT INTO received VALUES ('ent-1', 'gw-1', 1, 'dev-1', 'data', 5);
INSERT INTO received VALUES ('ent-1', 'gw-1', 5, 'dev-1', 'data', 5);
INSERT INTO received VALUES ('ent-1', 'gw-1', 6, 'dev-1', 'events', 5);
INSERT INTO received VALUES ('ent-1', 'gw-1', 7, 'dev-1', 'data', 5);
INSERT INTO received VALUES ('ent-1', 'gw-2', 3, 'dev-1', 'data', 5);
INSERT INTO device_activity VALUES ('ent-1', 'gw-1', 'dev-1', 3600000, 2, 1, 3600500, 3609000);
INSERT INTO device_activity VALUES ('ent-1', 'gw-1', 'dev-1', 3610000, 1, 1, 3611000, 3611000);
INSERT INTO device_activity VALUES ('ent-1', 'gw-1', 'dev-1', 3720000, 3, 3, 3720000, 3729999);
INSERT INTO device_activity VALUES ('ent-1', 'gw-1', 'dev-1', 7200000, 1, 0, 7205000, 7205000);
INSERT INTO device_stats VALUES ('ent-1', 'gw-1', 'dev-1', 1000, 1000, 1, 1);
INSERT INTO device_status VALUES ('ent-1', 'gw-1', 'dev-1', TRUE, 900, 'responding', NULL);
INSERT INTO dead_letters (received_ms, topic, payload, reason) VALUES (1, 'old', {x}, 'old');
INSERT INTO equipment_imports (ent, imported_ms, source, sha256, row_count) VALUES ('ent-1', 1, 'old.csv', 'aa', 0);
"""


def test_a_database_the_first_release_made_keeps_working(url: str) -> None:
    db = Database(url)
    try:
        with db.transaction() as conn:
            for stmt in OLD_DDL.format(**OLD_TYPES[db.dialect]).split(";"):
                if stmt.strip():
                    conn.execute(sa.text(stmt))
    finally:
        db.close()
    store = EvidenceStore(url)  # reading first: the tables the ledger migrates are read the same way
    before = store.activity_hours("ent-1", 0, 10_800_000)
    ledger = Ledger(url)
    try:
        # the messages of the first release: seq ranges now, the old tables gone
        assert ledger.received_count() == 5
        keys = [("ent-1", "gw-1", s) for s in range(9)] + [("ent-1", "gw-2", s) for s in range(5)]
        assert ledger.recorded(keys) == {("ent-1", "gw-1", s) for s in (1, 5, 6, 7)} | {("ent-1", "gw-2", 3)}
        assert not {"received", "device_activity"} & set(sa.inspect(ledger.db.engine).get_table_names())
        # its activity: per hour, what the evidence read from the slots
        hours = store.activity_hours("ent-1", 0, 10_800_000)
        assert hours == [
            {"gw": "gw-1", "dev": "dev-1", "hour": 3_600_000, "samples": 6, "good_samples": 5,
             "first_ts": 3_600_500, "last_ts": 3_729_999},
            {"gw": "gw-1", "dev": "dev-1", "hour": 7_200_000, "samples": 1, "good_samples": 0,
             "first_ts": 7_205_000, "last_ts": 7_205_000},
        ]  # fmt: skip
        assert before == [], "before the migration the store reads the new table only"
        Ledger(url).close()  # a second start changes nothing
        assert ledger.received_count() == 5 and store.activity_hours("ent-1", 0, 10_800_000) == hours
        msg = DataMessage("gw-1", "dev-1", 2, False, (Sample("t", 1.5, 2_000),), {"t": "kW"})
        assert ledger.record_batch([("ent-1", msg), ("ent-1", msg)]) == [True, False]
        [dev] = ledger.devices()
        assert (dev["samples"], dev["last_seen"], dev["online"], dev["reason"]) == (2, 2_000, True, "responding")
        ledger.dead_letter("new", b"\x00\xff", "new")
        assert [d["topic"] for d in ledger.dead_letters()] == ["new", "old"]  # numbered after the old one
        state = Event("state", 3_000, "", "running", {"total": 5, "good": 4})
        assert ledger.record_events("ent-1", EventMessage("gw-1", "dev-1", 3, False, (state,)))
        [row] = store.count_rows("ent-1", "gw-1", "dev-1", 0, 10_000)
        assert (row.state, row.total, row.good, row.reject) == ("running", 5.0, 4.0, None)
        meta = DeviceMeta("gw-1", "dev-1", 4_000, name="Loom", config_hash="h1", version="0.1.0")
        ledger.record_meta("ent-1", meta)
        assert [h["config_hash"] for h in store.config_hashes("ent-1", 0, 10_000)] == ["h1"]
        store.import_equipment("ent-1", b"id,name\nm-1,Loom\n", "new.csv")
        imported = store.equipment_import("ent-1")
        assert imported is not None and imported["source"] == "new.csv"
    finally:
        ledger.close()
        store.close()


def _data(seq: int, gw: str = "gw-1") -> DataMessage:
    return DataMessage(gw, "dev-1", seq, False, (Sample("t", float(seq), 1_000 + seq),), {})


def test_each_message_is_claimed_once(url: str) -> None:
    ledger = Ledger(url)
    try:
        assert ledger.record_batch([("e", _data(1)), ("e", _data(1)), ("e", _data(2))]) == [True, False, True]
        assert ledger.record_batch([("e", _data(2)), ("e", _data(3)), ("e2", _data(1))]) == [False, True, True]
        assert ledger.record_data("e", _data(3)) is False and ledger.record_data("e", _data(4)) is True
        assert ledger.received_count() == 5 and ledger.total_samples() == 5
        assert ledger.record_batch([("e", _data(s)) for s in (10, 8, 9, 8)]) == [True, True, True, False]
        r = received_seqs.c
        rows = ledger.db.rows(select(r.first_seq, r.last_seq).where(r.ent == "e").order_by(r.first_seq))
        assert [(x["first_seq"], x["last_seq"]) for x in rows] == [(1, 4), (8, 10)], "contiguous seqs: one row"
    finally:
        ledger.close()


@pytest.mark.parametrize(("gateways", "seqs"), [(2, 300), (40, 30)])
def test_concurrent_ledgers_claim_each_message_once(url: str, gateways: int, seqs: int) -> None:
    """Two ingesters' ledgers race on overlapping batches of two gateways, in opposite orders and with
    gaps: every message counts once, claimed by exactly one of them. With 40 gateways a batch holds a
    message or two of each (the live city): both take the gateways' locks in one order, so neither deadlocks."""
    ledgers = [Ledger(url), Ledger(url)]
    won: list[list[tuple[str, int]]] = [[], []]
    keys = [(f"gw-{g + 1}", seq) for seq in range(seqs) for g in range(gateways) if seq % 7 != 3 or g == 0]

    def run(i: int) -> None:
        order = keys if i == 0 else list(reversed(keys))
        for start in range(0, len(order), 50):
            batch = [("e", _data(seq, gw)) for gw, seq in order[start : start + 50]]
            won[i] += [
                k for k, new in zip(order[start : start + 50], ledgers[i].record_batch(batch), strict=True) if new
            ]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(won[0] + won[1]) == sorted(keys), "each message once, by one of the two"
        assert ledgers[0].received_count() == len(keys) and ledgers[1].total_samples() == len(keys)
        assert ledgers[1].recorded(("e", gw, seq) for gw, seq in keys) == {("e", gw, seq) for gw, seq in keys}
    finally:
        for led in ledgers:
            led.close()


def test_a_batch_with_copies_adds_the_new_messages_only(url: str) -> None:
    """The batch's additions are computed before the transaction as if every message were new; when the
    claim finds copies already recorded (another ingester took them meanwhile), they are computed again for
    the new ones: statistics, proofs and the samples beyond the horizon (flagged) count the new messages
    only."""
    ledger = Ledger(url)

    def m(seq: int, *stamps: int) -> DataMessage:
        return DataMessage("gw-1", "dev-1", seq, False, tuple(Sample("t", float(ts), ts) for ts in stamps), {})

    horizon = 10_000
    try:
        flags: dict[tuple[str, str, str], int] = {}
        assert ledger.record_batch([("e", m(1, 1_000, 20_000))], horizon_ms=horizon, flags=flags) == [True]
        assert flags == {("e", "gw-1", "future:samples"): 1}
        flags.clear()
        proofs = {("e", "gw-1", s): (bytes(32), b"signed %d" % s) for s in (1, 2, 3)}
        got = ledger.record_batch(
            [("e", m(1, 1_000, 20_000)), ("e", m(2, 2_000, 30_000, 40_000)), ("e", m(3, 3_000))],
            proofs=proofs,
            horizon_ms=horizon,
            flags=flags,
        )
        assert got == [False, True, True]
        assert flags == {("e", "gw-1", "future:samples"): 2}, "seq 2's two, not seq 1's again"
        assert ledger.total_samples() == 3, "1,000 (seq 1), 2,000 (seq 2), 3,000 (seq 3): the future ones left out"
        [tag] = ledger.tag_stats("dev-1", ent="e")
        assert (tag["samples"], tag["last_ts"]) == (3, 3_000)
        bodies = ledger.db.rows(sa.text("SELECT seq FROM message_bodies ORDER BY seq"))
        assert [r["seq"] for r in bodies] == [2, 3], "the proofs of the new messages only"
        assert ledger.received_count() == 3
    finally:
        ledger.close()
