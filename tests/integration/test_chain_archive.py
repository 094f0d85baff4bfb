"""The chain archive on SQLite and on the machine's real PostgreSQL: real gateways (keys, buffers that
chain and seal), the ingester's own handling with trust enforced, then `Ingester.prune(force=True)`
moves the closed hours into `chain_archive`. The archived rows read back byte for byte, the audit finds
the archived hours intact as it found the live ones, and it still finds an archive blob edited on disk,
an archived message deleted, altered or inserted (the blob re-written with the archive's own encoder).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lz4.block
import pytest
from sqlalchemy import select, update

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ledger.activity import HOUR_MS, hour_of
from cloud_bridge.cloud.ledger.schema import chain_archive, chain_checkpoints, message_bodies
from cloud_bridge.cloud.trust import archive
from cloud_bridge.cloud.trust.audit import AuditReport, audit_period
from cloud_bridge.metrics.period import Period
from edge_config.models import CloudConfig
from edge_config.timing import now_ms
from gateway.bench.ledger_size import ENT, Workload, enrol, gateway_messages, handle_all

pytestmark = pytest.mark.integration

W = Workload(devices=4, hours=2, per_gateway=2, samples=3)


@pytest.fixture
def ingested(url: str, tmp_path: Path) -> Iterator[tuple[Ingester, Period]]:
    t0 = hour_of(now_ms()) - W.hours * HOUR_MS
    messages = [m for g in range(W.gateways) for m in gateway_messages(W, g, t0, tmp_path)]
    enrol(url, W, tmp_path)
    ing = Ingester(CloudConfig.model_validate({"mqtt": {"url": "mqtt://127.0.0.1:1"}, "ledger": {"url": url}}))
    try:
        handle_all(ing, messages)
        assert ing.ledger.received_count() == W.devices * W.hours * 60
        yield ing, Period(t0, t0 + W.hours * HOUR_MS, t0 + W.hours * HOUR_MS, "Asia/Shanghai")
    finally:
        ing.ledger.close()


def _live(ing: Ingester) -> tuple[dict[tuple[str, int], dict[str, Any]], dict[tuple[str, int], dict[str, Any]]]:
    cps = {(r["gw"], int(r["last_seq"])): r for r in ing.ledger.db.rows(select(chain_checkpoints))}
    bodies = {(r["gw"], int(r["seq"])): r for r in ing.ledger.db.rows(select(message_bodies))}
    return cps, bodies


def _kinds(report: AuditReport) -> set[tuple[str, str, int | None]]:
    return {(f.kind, f.gw, f.seq) for f in report.findings}


def test_archived_hours_read_back_as_they_were_and_audit_the_same(ingested: tuple[Ingester, Period]) -> None:
    ing, period = ingested
    db = ing.ledger.db
    cps_before, bodies_before = _live(ing)
    audited = audit_period(db, ENT, period)
    assert audited.intact, audited.findings
    ing.prune(force=True)
    cps_live, bodies_live = _live(ing)
    parts = db.rows(select(chain_archive))
    assert parts and all(p["checkpoints"] > 0 for p in parts)
    assert {hour_of(int(r["ts"])) for r in cps_live.values()} <= {hour_of(now_ms())}, "only the current hour stays live"
    assert len(bodies_live) < len(bodies_before) / 50
    # byte for byte: every archived row is the live row it was
    cps_back, bodies_back = {}, {}
    for p in parts:
        cps, bodies = archive.decode(ENT, p["gw"], bytes(p["data"]))
        cps_back.update({(r["gw"], r["last_seq"]): r for r in cps})
        bodies_back.update({(r["gw"], r["seq"]): r for r in bodies})
    assert set(cps_back) | set(cps_live) == set(cps_before) and not set(cps_back) & set(cps_live)
    assert set(bodies_back) | set(bodies_live) == set(bodies_before)
    for key, r in cps_back.items():
        old = cps_before[key]
        assert {k: bytes(v) if isinstance(v, memoryview) else v for k, v in old.items()} == r
    for key, r in bodies_back.items():
        old = bodies_before[key]
        assert lz4.block.decompress(bytes(r["body"])) == lz4.block.decompress(bytes(old["body"]))
        assert (r["ts_min"], r["ts_max"], r["horizon_ms"]) == (old["ts_min"], old["ts_max"], old["horizon_ms"])
    # the audit sees no difference
    again = audit_period(db, ENT, period)
    assert again.intact, again.findings
    assert again.gateways == audited.gateways and again.evidence_rows_checked == audited.evidence_rows_checked
    ing.prune(force=True)  # nothing more to archive: no new part
    assert len(db.rows(select(chain_archive))) == len(parts)


def _rewrite(ing: Ingester, part: dict[str, Any], change: Any) -> None:
    """Re-write an archive blob with the archive's own encoder after `change(checkpoints, bodies)`."""
    cps, bodies = archive.decode(ENT, part["gw"], bytes(part["data"]))
    cps, bodies = change(cps, bodies)
    blob = archive.encode(cps[0]["topic"], cps, bodies)
    ca = chain_archive.c
    ing.ledger.db.execute(
        update(chain_archive)
        .where(ca.gw == part["gw"], ca.hour == part["hour"], ca.part == part["part"])
        .values(data=blob)
    )


def test_the_audit_finds_an_archived_hour_tampered_with(ingested: tuple[Ingester, Period]) -> None:
    ing, period = ingested
    db = ing.ledger.db
    ing.prune(force=True)
    part = db.rows(select(chain_archive).order_by(chain_archive.c.gw, chain_archive.c.hour))[0]
    gw, original = part["gw"], bytes(part["data"])
    _, bodies = archive.decode(ENT, gw, original)
    victim = int(bodies[len(bodies) // 2]["seq"])
    ca = chain_archive.c
    where = (ca.gw == gw, ca.hour == part["hour"], ca.part == part["part"])

    # a byte of the blob changed on disk: it does not read, and what it held is not proven
    edited = bytearray(original)
    edited[len(edited) // 2] ^= 0x01
    db.execute(update(chain_archive).where(*where).values(data=bytes(edited)))
    report = audit_period(db, ENT, period)
    assert not report.intact
    assert any(f.kind == "archive_damaged" and f.gw == gw for f in report.findings)
    db.execute(update(chain_archive).where(*where).values(data=original))
    assert audit_period(db, ENT, period).intact, "restored"

    # an archived message deleted
    _rewrite(ing, part, lambda c, b: (c, [x for x in b if x["seq"] != victim]))
    report = audit_period(db, ENT, period)
    assert not report.intact and ("missing_message", gw, victim) in _kinds(report), report.findings
    assert any(f.table == "device_activity" for f in report.findings), "its samples are still counted: found"
    db.execute(update(chain_archive).where(*where).values(data=original))

    # an archived message altered: a value changed in its body
    def alter(c: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        out = []
        for x in b:
            if x["seq"] == victim:
                body = lz4.block.decompress(x["body"]).replace(b'"v":', b'"v":9', 1)
                x = {**x, "body": lz4.block.compress(body)}
            out.append(x)
        return c, out

    _rewrite(ing, part, alter)
    report = audit_period(db, ENT, period)
    assert not report.intact
    assert {k for k, g, _ in _kinds(report) if g == gw} & {"altered_message", "checkpoint_signature"}, report.findings
    db.execute(update(chain_archive).where(*where).values(data=original))

    # a message inserted: a body no checkpoint signs
    fake = {**bodies[-1], "seq": 10_000}
    _rewrite(ing, part, lambda c, b: (c, [*b, fake]))
    report = audit_period(db, ENT, period)
    assert not report.intact and ("unproven_message", gw, 10_000) in _kinds(report), report.findings
    db.execute(update(chain_archive).where(*where).values(data=original))
    assert audit_period(db, ENT, period).intact


def test_messages_after_their_checkpoint_was_archived_are_proven_and_archived_later(url: str, tmp_path: Path) -> None:
    """A gateway's checkpoint got through, its messages did not (the link broke); they come after the
    hour was archived: proven by the archived checkpoint, recorded, then archived as a later part."""
    t0 = hour_of(now_ms()) - W.hours * HOUR_MS
    messages = [m for g in range(W.gateways) for m in gateway_messages(W, g, t0, tmp_path)]
    first_cp = next(i for i, (topic, _) in enumerate(messages) if topic.endswith("/checkpoint"))
    end = next(i for i in range(first_cp + 1, len(messages)) if messages[i][0].endswith("/checkpoint"))
    withheld = messages[first_cp + 1 : end]
    enrol(url, W, tmp_path)
    ing = Ingester(CloudConfig.model_validate({"mqtt": {"url": "mqtt://127.0.0.1:1"}, "ledger": {"url": url}}))
    try:
        handle_all(ing, messages[: first_cp + 1] + messages[end:])
        total = W.devices * W.hours * 60
        assert ing.ledger.received_count() == total - len(withheld)
        ing.prune(force=True)
        assert not ing.ledger.db.rows(select(chain_checkpoints).where(chain_checkpoints.c.last_seq == len(withheld)))
        handle_all(ing, withheld)
        assert ing.ledger.received_count() == total, "proven by the archived checkpoint"
        assert ing.stats.refused == 0 and not ing.ledger.dead_letter_count()
        period = Period(t0, t0 + W.hours * HOUR_MS, t0 + W.hours * HOUR_MS, "Asia/Shanghai")
        assert audit_period(ing.ledger.db, ENT, period).intact
        ing.prune(force=True)
        parts = ing.ledger.db.rows(select(chain_archive).where(chain_archive.c.part > 0))
        assert [p["messages"] for p in parts] == [len(withheld)], "the late bodies: a part of their own"
        report = audit_period(ing.ledger.db, ENT, period)
        assert report.intact, report.findings
    finally:
        ing.ledger.close()
