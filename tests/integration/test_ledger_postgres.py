"""The evidence ledger on a real PostgreSQL (the machine's own, 127.0.0.1:5432, database `test`).

Skipped, with the reason shown, where no PostgreSQL answers.
"""

from __future__ import annotations

from collections.abc import Iterator

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
    claim = pg_ledger._writes.claim
    with pytest.raises(sa.exc.OperationalError), pg_ledger.db.transaction() as conn:
        row = {"ent": "ent-1", "gw": "gw-1", "seq": 7, "dev": "dev-1", "kind": "data", "received_ms": 0}
        assert conn.execute(claim, row).rowcount == 1
        _terminate(conn.execute(select(func.pg_backend_pid())).scalar_one())
        conn.execute(select(func.pg_backend_pid()))  # the ingester's retry starts here
    assert pg_ledger.received_count() == 0  # nothing of the broken transaction was kept
    assert pg_ledger.record_data("ent-1", msg(7)) is True
    assert pg_ledger.received_count() == 1
