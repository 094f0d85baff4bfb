"""The ledger's SQLite bulk writes through the driver's executemany of row tuples (`_driver_plan`) against
SQLAlchemy's executemany of a dict per row, the reference: the same tables after the same batches."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import delete, select

from cloud_bridge.cloud.ledger import writer
from cloud_bridge.cloud.ledger.schema import metadata, received_seqs
from cloud_bridge.cloud.ledger.writer import Ledger, _driver_plan
from cloud_bridge.wire.codec import DataMessage, Sample

TABLES = ("received_seqs", "device_stats", "device_hours", "tag_stats", "message_bodies", "tag_stats_pending")


def batches(seed: int) -> list[list[tuple[str, DataMessage]]]:
    """Batches of data messages from 3 gateways: seqs out of order and repeated (claims merge ranges, and
    duplicates are skipped), devices and tags seen again (upserts), hours crossed, non-ASCII tags."""
    rnd = random.Random(seed)
    out = []
    for b in range(6):
        batch = []
        for _ in range(40):
            gw, dev = f"gw-{rnd.randrange(3)}", f"dev-{rnd.randrange(4)}"
            ts = 1_764_900_000_000 + rnd.randrange(3 * 3_600_000)
            samples = tuple(
                Sample(rnd.choice(["speed", "温度", "door"]), rnd.choice([1.5, 2, True, "A-1"]), ts + i, "good")
                for i in range(rnd.randrange(1, 5))
            )
            batch.append(
                ("ent-1", DataMessage(gw, dev, rnd.randrange(1, 120 + 20 * b), False, samples, {"speed": "rpm"}))
            )
        out.append(batch)
    return out


def contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: sorted(tuple(r) for r in conn.execute(select(metadata.tables[name])))  # type: ignore[misc]
                for name in TABLES
            }
    finally:
        engine.dispose()


def record(url: str, seed: int) -> None:
    led = Ledger(url)
    try:
        for batch in batches(seed):
            proofs = {(ent, m.gw, m.seq): (bytes(32), f"signed {m.seq}".encode()) for ent, m in batch}
            led.record_batch(batch, proofs=proofs)
        led.tag_stats("dev-0")  # folds the pending statistics
        led.record_batch(batches(seed)[0], proofs={})  # all duplicates now
    finally:
        led.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_driver_executemany_writes_what_sqlalchemy_writes(tmp_path: Path, seed: int, monkeypatch: Any) -> None:
    record(f"sqlite:///{tmp_path}/driver.db", seed)
    with monkeypatch.context() as m:
        m.setattr(writer, "_driver_plan", lambda conn, stmt, columns: None)  # every write by SQLAlchemy
        record(f"sqlite:///{tmp_path}/reference.db", seed)
    got, expected = contents(f"sqlite:///{tmp_path}/driver.db"), contents(f"sqlite:///{tmp_path}/reference.db")
    assert got == expected
    assert all(expected[t] for t in TABLES if t != "tag_stats_pending")  # every bulk write had rows
    assert len(expected["message_bodies"]) > 100 and isinstance(expected["message_bodies"][0][3], bytes)


def test_the_plan_is_taken_for_the_bulk_writes_and_refused_where_it_would_bind_otherwise(tmp_path: Path) -> None:
    led = Ledger(f"sqlite:///{tmp_path}/l.db")
    try:
        writes = led._writes
        with led.db.engine.connect() as conn:
            columns = {
                writes.claim: ("ent", "gw", "first_seq", "last_seq"),
                writes.unclaim: ("ent", "gw", "first_seq"),
                writes.device_stats: tuple(c.name for c in metadata.tables["device_stats"].columns),
                writes.activity: tuple(c.name for c in metadata.tables["device_hours"].columns),
                writes.tag_stats: tuple(c.name for c in metadata.tables["tag_stats"].columns),
                writes.body: tuple(c.name for c in metadata.tables["message_bodies"].columns),
            }
            for stmt, cols in columns.items():
                plan = _driver_plan(conn, stmt, cols)
                assert plan is not None and plan.sql.count("?") >= len(cols) - 1, stmt
            # a statement binding a value of its own (the literal "x") is left to SQLAlchemy
            assert _driver_plan(conn, delete(received_seqs).where(received_seqs.c.ent == "x"), ("ent",)) is None
            assert _driver_plan(conn, writes.claim, ("ent", "gw", "first_seq")) is None  # a column not given
            before = len(writer._PLANS)
            for _ in range(3):
                assert _driver_plan(conn, writes.body, columns[writes.body]) is not None
            assert len(writer._PLANS) == before  # compiled once
    finally:
        led.close()


def test_a_fold_takes_batches_until_its_rows_reach_the_bound(tmp_path: Path, monkeypatch: Any) -> None:
    """Batches of many distinct rows are folded a few at a time (memory), batches that merge into few rows
    all at once (fewer statements); the statistics equal one fold of everything, every batch once."""
    monkeypatch.setattr(writer, "FOLD_CHUNK", 2)
    taken: list[int] = []
    fold = writer._fold

    def counting(conn: Any, bulk: Any, fallback: Any, limit: int) -> tuple[int, bool]:
        n, more = fold(conn, bulk, fallback, limit)
        taken.append(n)
        return n, more

    monkeypatch.setattr(writer, "_fold", counting)
    results = []
    for name, bound in (("bounded", 40), ("whole", 10**9)):
        monkeypatch.setattr(writer, "FOLD_ROWS", bound)
        led = Ledger(f"sqlite:///{tmp_path}/{name}.db")
        try:
            for seq in range(1, 31):  # 30 batches, each of 10 tags no other batch has
                samples = [Sample(f"t{seq}-{i}", float(i), 1_000 + seq) for i in range(10)]
                led.record_batch([("e", DataMessage("gw", "d", seq, False, tuple(samples), {}))])
            taken.clear()
            assert led.fold_tag_stats() == 30
            distinct = list(taken)
            for seq in range(31, 61):  # then 30 batches of the same 10 tags: they merge
                samples = [Sample(f"t1-{i}", float(seq), 1_000 + seq) for i in range(10)]
                led.record_batch([("e", DataMessage("gw", "d", seq, False, tuple(samples), {}))])
            taken.clear()
            assert led.fold_tag_stats() == 30
            results.append((distinct, list(taken), led.tag_stats("d")))
        finally:
            led.close()
    (distinct, same, stats), (_, _, whole) = results
    assert distinct == [4, 4, 4, 4, 4, 4, 4, 2]  # 40 rows merged: written, the rest in the next transaction
    assert same == [30]  # 10 rows however many batches
    assert stats == whole and len(stats) == 300
    assert {t["tag"]: (t["samples"], t["last_value_text"]) for t in stats}["t1-3"] == (31, "60.0")
