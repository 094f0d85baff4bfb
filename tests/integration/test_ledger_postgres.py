"""The evidence ledger on a real PostgreSQL (the machine's own, 127.0.0.1:5432, database `test`).

Skipped, with the reason shown, where no PostgreSQL answers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from cloud_bridge.cloud.ledger.writer import Ledger
from cloud_bridge.wire.codec import DataMessage, Event, EventMessage, Sample, Status
from tests.servers import PG_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_ledger(pg_url: str) -> Iterator[Ledger]:
    ledger = Ledger(pg_url)
    try:
        yield ledger
    finally:
        ledger.close()


def msg(seq: int, n: int = 3, gw: str = "gw-1") -> DataMessage:
    return DataMessage(gw, "dev-1", seq, False, tuple(Sample("t", float(i), 1000 + i) for i in range(n)), {"t": "kW"})


def test_dedupe_stats_events_status_and_dead_letters(pg_ledger: Ledger) -> None:
    assert pg_ledger.record_data("ent-1", msg(1)) is True
    assert pg_ledger.record_data("ent-1", msg(1)) is False  # redelivery: no change
    assert pg_ledger.record_data("ent-2", msg(1)) is True  # same gw id in another enterprise
    assert pg_ledger.is_duplicate("ent-1", "gw-1", 1)
    assert pg_ledger.total_samples() == 6
    assert pg_ledger.received_count() == 2
    tags = pg_ledger.tag_stats("dev-1", ent="ent-1")
    assert tags[0]["unit"] == "kW" and tags[0]["samples"] == 3 and tags[0]["last_value_text"] == "2.0"
    assert pg_ledger.record_events("ent-1", EventMessage("gw-1", "dev-1", 2, False, (Event("online", 5, "ok"),)))
    assert [e["kind"] for e in pg_ledger.events("dev-1")] == ["online"]
    pg_ledger.record_status("ent-1", "gw-1", "dev-1", Status(True, 10, "responding"))
    pg_ledger.record_status("ent-1", "gw-1", "dev-1", Status(False, 5, "older"))  # older: ignored
    dev = next(d for d in pg_ledger.devices() if d["ent"] == "ent-1")
    assert dev["online"] is True and dev["reason"] == "responding" and dev["samples"] == 3
    pg_ledger.dead_letter("sf/v1/x", b"\x00\xffnot json", "not JSON")
    letters = pg_ledger.dead_letters()
    assert pg_ledger.dead_letter_count() == 1 and letters[0]["payload"] == b"\x00\xffnot json"


def _terminate(pid: int) -> None:
    """The server ends one backend, as a restart or an idle timeout would."""
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_ledger_reconnects_after_the_server_drops_an_idle_connection(pg_ledger: Ledger) -> None:
    assert pg_ledger.record_data("ent-1", msg(1))
    _terminate(pg_ledger.db.scalar(select(func.pg_backend_pid())))  # the pool's one connection
    assert pg_ledger.record_data("ent-1", msg(2)) is True  # checked before use, replaced
    assert pg_ledger.received_count() == 2


def test_a_connection_dropped_during_a_write_fails_it_whole_and_the_retry_reconnects(pg_ledger: Ledger) -> None:
    with pytest.raises(sa.exc.OperationalError), pg_ledger.db.transaction() as conn:
        assert pg_ledger._claim(conn, [{"ent": "ent-1", "gw": "gw-1", "seq": 7}]) == {("ent-1", "gw-1", 7)}
        _terminate(conn.execute(select(func.pg_backend_pid())).scalar_one())
        conn.execute(select(func.pg_backend_pid()))  # the ingester's retry starts here
    assert pg_ledger.received_count() == 0  # nothing of the broken transaction was kept
    assert pg_ledger.record_data("ent-1", msg(7)) is True
    assert pg_ledger.received_count() == 1


def test_a_claim_waits_for_a_concurrent_claim_of_the_same_gateway(pg_url: str) -> None:
    """Two ingesters on a shared subscription: the second claim of a gateway's seqs waits on the
    gateway's advisory lock until the first commits, then finds the seqs it took (exactly once)."""
    first, second = Ledger(pg_url), Ledger(pg_url)
    result: dict[str, list[bool]] = {}
    try:
        with first.db.transaction() as conn:
            claimed = first._claim(conn, [{"ent": "e", "gw": "gw-1", "seq": s} for s in (1, 2, 3)])
            assert claimed == {("e", "gw-1", s) for s in (1, 2, 3)}
            other = threading.Thread(
                target=lambda: result.update(r=second.record_batch([("e", msg(s)) for s in (2, 3, 4)]))
            )
            other.start()
            other.join(1.0)
            assert other.is_alive(), "the other claim of gw-1 waits for this transaction"
            assert second.record_batch([("e", msg(2, gw="gw-2"))]) == [True], "another gateway does not wait"
        other.join(30)
        assert result["r"] == [False, False, True], "2 and 3 were taken by the first; 4 is new"
        assert first.received_count() == 5 and first.total_samples() == 3 * 2
        assert first.recorded([("e", "gw-1", s) for s in range(6)]) == {("e", "gw-1", s) for s in (1, 2, 3, 4)}
    finally:
        first.close()
        second.close()


def test_batched_statistics_match_sqlite_one_by_one(pg_ledger: Ledger, tmp_path: Any) -> None:
    """The statistics of batches written with one `INSERT … SELECT unnest(…)` per table (PostgreSQL)
    equal SQLite's executemany of the same messages recorded one by one: counts add up across
    batches, the latest sample (the later one on equal timestamps) is the last value, a unit given later
    replaces an earlier one, strings and booleans kept as text, proofs kept per message."""

    def m(seq: int, dev: str, samples: list[tuple[str, object, int]], units: dict[str, str]) -> DataMessage:
        return DataMessage("gw-b", dev, seq, False, tuple(Sample(t, v, ts) for t, v, ts in samples), units)

    batches = [
        [
            m(1, "d1", [("a", 1.5, 100), ("b", True, 100), ("a", 2.5, 100)], {}),
            m(2, "d2", [("a", "run", 90)], {"a": "state"}),
            m(3, "d1", [("a", 0.5, 50), ("c", 7, 120)], {"a": "kW"}),
        ],
        [m(4, "d1", [("a", 9.0, 100), ("b", False, 99)], {}), m(2, "d2", [("a", "dup", 999)], {})],
        [m(5, "d2", [("z", 1.0, 10)], {"z": "m"})],
    ]
    sqlite = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        for batch in batches:
            proofs = {("ent-b", x.gw, x.seq): (b"h" * 32, memoryview(b"signed %d" % x.seq)) for x in batch}
            pg_ledger.record_batch([("ent-b", x) for x in batch], proofs=proofs)
            for x in batch:
                sqlite.record_batch([("ent-b", x)], proofs={k: v for k, v in proofs.items() if k[2] == x.seq})
        for dev in ("d1", "d2"):
            assert pg_ledger.tag_stats(dev, ent="ent-b") == sqlite.tag_stats(dev, ent="ent-b")
        assert [d for d in pg_ledger.devices() if d["ent"] == "ent-b"] == sqlite.devices()
        [a1] = [t for t in pg_ledger.tag_stats("d1", ent="ent-b") if t["tag"] == "a"]
        assert (a1["samples"], a1["last_value_text"], a1["unit"], a1["last_ts"]) == (4, "9.0", "kW", 100)
        rows = [(ent, gw, seq) for ent, gw, seq in _bodies(pg_ledger) if ent == "ent-b"]
        assert rows == [("ent-b", "gw-b", s) for s in (1, 2, 3, 4, 5)]
    finally:
        sqlite.close()


def test_batched_device_hours_and_forgotten_days_match_sqlite_one_by_one(pg_ledger: Ledger, tmp_path: Any) -> None:
    """device_hours written with one `unnest` upsert per batch (PostgreSQL) equal SQLite's, the messages
    recorded one by one: samples across hours and devices, minute masks, first and last timestamps; and
    the late data of a batch drops the same day summaries (one `DELETE … USING unnest` on PostgreSQL)."""
    from cloud_bridge.cloud.ledger.days import write_days
    from cloud_bridge.cloud.ledger.schema import device_days, device_hours

    hour = 3_600_000
    base = 1_700_000_000_000 - 1_700_000_000_000 % hour

    def m(seq: int, dev: str, stamps: list[int], q: str = "good") -> DataMessage:
        return DataMessage("gw-h", dev, seq, False, tuple(Sample(f"t{i}", 1.0, ts, q) for i, ts in enumerate(stamps)))

    batches = [
        [m(1, "d1", [base + 5, base + 61_000, base + hour + 1]), m(2, "d2", [base + 59 * 60_000 + 999], "bad")],
        [m(3, "d1", [base + 1, base + 2 * hour]), m(4, "d3", [base + 30 * 60_000])],
    ]
    sqlite = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        day = {"calendar": "c", "online_ms": 1, "online_planned_ms": 1, "planned_ms": 1, "online_end": True,
               "samples": 1, "good_samples": 1, "first_ts": None, "last_ts": None, "computed_ms": 1}  # fmt: skip
        for ledger in (pg_ledger, sqlite):
            rows = [
                {
                    "ent": "ent-h",
                    "gw": "gw-h",
                    "dev": d,
                    "day": base - 86_400_000 * k,
                    "day_end": base - 86_400_000 * (k - 1),
                }
                | day
                for d in ("d1", "d2", "d3", "d4")
                for k in (0, 1)
            ]
            write_days(ledger.db, rows)
        for batch in batches:
            pg_ledger.record_batch([("ent-h", x) for x in batch])
            for x in batch:
                sqlite.record_batch([("ent-h", x)])

        def hours(ledger: Ledger) -> list[dict[str, Any]]:
            c = device_hours.c
            return ledger.db.rows(select(device_hours).where(c.ent == "ent-h").order_by(c.dev, c.hour))

        def days(ledger: Ledger) -> list[tuple[str, int]]:
            c = device_days.c
            return [(r["dev"], r["day"]) for r in ledger.db.rows(select(c.dev, c.day).order_by(c.dev, c.day))]

        assert hours(pg_ledger) == hours(sqlite)
        assert len(hours(pg_ledger)) == 5  # d1: three hours; d2, d3: one each
        assert days(pg_ledger) == days(sqlite)
        yesterday = base - 86_400_000
        # d1..d3 got late data: their day holding it goes, the day before stays
        assert days(pg_ledger) == [
            ("d1", yesterday),
            ("d2", yesterday),
            ("d3", yesterday),
            ("d4", yesterday),
            ("d4", base),
        ]
    finally:
        sqlite.close()


@pytest.mark.parametrize(
    ("type_", "values"),
    [
        pytest.param(
            sa.Text(), ["a", "", "NULL", "null", 'q"uote', "back\\slash", "{x,y}", " sp ", "温度", "a,b"], id="text"
        ),
        pytest.param(sa.Text(), ["a", None, "", 'q"', None], id="text-with-null"),
        pytest.param(sa.Text(), ["plain", "also-plain"], id="text-plain"),
        pytest.param(sa.BigInteger(), [0, -1, 2**63 - 1, -(2**63), 42], id="bigint"),
        pytest.param(sa.BigInteger(), [1, None, 3], id="bigint-with-null"),
        pytest.param(sa.LargeBinary(), [b"", b'\x00\\"{},', bytes(range(256)), None], id="bytea"),
        pytest.param(sa.Double(), [1.5, -0.0, None], id="other-types-as-a-list"),
    ],
)
def test_array_parameters_round_trip(pg_ledger: Ledger, type_: Any, values: list[Any]) -> None:
    """What pg_array encodes, PostgreSQL reads back element for element (quotes, backslashes, braces,
    commas, spaces, the word NULL and real NULLs, empty strings, 64-bit bounds, any byte)."""
    from cloud_bridge.cloud.ledger.sqldb import pg_array

    array, encode = pg_array("p", type_)
    x = func.unnest(array).table_valued("v", with_ordinality="n").render_derived(name="x")
    with pg_ledger.db.transaction() as conn:
        got = [r[0] for r in conn.execute(select(x.c.v).order_by(x.c.n), {"p": encode(values)})]
    assert got == values


def _bodies(ledger: Ledger) -> list[tuple[str, str, int]]:
    from cloud_bridge.cloud.ledger.schema import message_bodies

    b = message_bodies.c
    return [(r["ent"], r["gw"], r["seq"]) for r in ledger.db.rows(select(b.ent, b.gw, b.seq).order_by(b.seq))]


def test_pending_tag_stats_fold_once_whoever_folds(pg_ledger: Ledger, pg_url: str) -> None:
    """The batches' tag statistics wait in tag_stats_pending (one row per batch, in the claiming
    transaction); a fold takes them out and adds them to tag_stats in one transaction, so two ingesters
    folding at once add each batch once: the second waits for the first and finds the rows gone."""
    import threading

    from cloud_bridge.cloud.ledger.schema import tag_stats_pending
    from cloud_bridge.cloud.ledger.writer import _fold

    for seq in range(1, 4):
        pg_ledger.record_batch([("ent-f", msg(seq, n=2, gw="gw-f"))])
    assert pg_ledger.db.scalar(select(func.count()).select_from(tag_stats_pending)) >= 3
    other = Ledger(pg_url)
    try:
        results: list[int] = []
        with pg_ledger.db.transaction() as conn:  # the first fold holds the pending rows, not committed
            first, _ = _fold(conn, pg_ledger._bulk.tag_stats, pg_ledger._writes.tag_stats, 200)
            waiting = threading.Thread(target=lambda: results.append(other.fold_tag_stats()))
            waiting.start()
            waiting.join(0.5)
            assert waiting.is_alive()  # blocked on the rows the first fold deletes
        waiting.join(10)
        assert first >= 3 and results == [0]
        [t] = other.tag_stats("dev-1", ent="ent-f")
        assert (t["samples"], t["last_value_text"], t["unit"]) == (6, "1.0", "kW")
    finally:
        other.close()


def test_series_counts_per_gateway_once_folded(pg_ledger: Ledger) -> None:
    def tags(gw: str, seq: int, names: list[str]) -> DataMessage:
        return DataMessage(gw, "dev-1", seq, False, tuple(Sample(t, 1.0, 1000 + seq) for t in names), {})

    pg_ledger.record_batch([("ent-1", tags("gw-1", 1, ["a", "b"])), ("ent-1", tags("gw-2", 1, ["a"]))])
    pg_ledger.record_batch([("ent-1", tags("gw-1", 2, ["b", "c"])), ("ent-2", tags("gw-1", 1, ["z"]))])
    wanted = [("ent-1", "gw-1"), ("ent-1", "gw-2"), ("ent-2", "gw-1"), ("ent-9", "gw-1")]
    assert pg_ledger.series_counts(wanted) == dict.fromkeys(wanted, 0), "pending statistics are not counted"
    pg_ledger.fold_tag_stats()
    many = [("ent-0", f"gw-{i}") for i in range(1200)]  # past one statement's 500
    counts = pg_ledger.series_counts([*wanted, *many])
    assert [counts[k] for k in wanted] == [3, 1, 1, 0] and sum(counts.values()) == 5 and len(counts) == 1204
    assert len(pg_ledger.series("ent-1", "gw-1")) == counts[("ent-1", "gw-1")]


def test_a_batch_claims_any_number_of_gateways_in_the_same_statements(pg_url: str) -> None:
    """A batch over 80 gateways runs as many statements as one over 2 (the locks, the ranges merged away and
    made, each one statement over arrays; a statement per gateway cost 100 ms a batch in the pilot city), and
    still takes every gateway's lock: a concurrent claim of the last one waits, one of another gateway not."""
    first, second = Ledger(pg_url), Ledger(pg_url)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    def batch(gateways: int, seqs: range) -> list[tuple[str, DataMessage]]:
        return [("e", msg(s, n=1, gw=f"gw-{g:02d}")) for s in seqs for g in range(gateways)]

    result: dict[str, list[bool]] = {}
    try:
        first.record_batch(batch(80, range(1, 3)))  # every gateway has a range to merge into
        sa.event.listen(first.db.engine, "before_cursor_execute", count)
        first.record_batch(batch(2, range(3, 5)))
        few = len(statements)
        statements.clear()
        assert first.record_batch(batch(80, range(5, 7))) == [True] * 160
        assert len(statements) == few, statements
        sa.event.remove(first.db.engine, "before_cursor_execute", count)

        with first.db.transaction() as conn:
            claimed = first._claim(conn, [{"ent": "e", "gw": f"gw-{g:02d}", "seq": 7} for g in range(80)])
            assert len(claimed) == 80
            other = threading.Thread(target=lambda: result.update(r=second.record_batch(batch(80, range(7, 9))[-1:])))
            other.start()
            other.join(1.0)
            assert other.is_alive(), "the claim of gw-79, the last of the 80 locks, waits for this transaction"
            assert second.record_batch([("e", msg(1, gw="gw-99"))]) == [True], "another gateway does not wait"
        other.join(30)
        assert result["r"] == [True], "seq 8 of gw-79 is new"
        assert first.received_count() == 80 * 2 + 2 * 2 + 80 * 2 + 80 + 1 + 1
    finally:
        first.close()
        second.close()
