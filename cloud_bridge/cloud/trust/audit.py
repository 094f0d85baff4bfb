"""`edgegw evidence audit`: is what the ledger holds for an enterprise and period what its gateways sent?

The proof is the gateways' own: their signed checkpoints (`chain_checkpoints`, each listing the chain
hash of every message it covers) and the signed part of every recorded message (`message_bodies`). The
audit, with no trust in the database beyond the registry's public keys:

1. verifies every checkpoint of the period (± an hour) with the key that signed it, checks the row's
   columns against its signed payload, and that consecutive checkpoints join (seq ranges contiguous,
   each one's `prev` the previous one's head): a removed or edited checkpoint is found;
2. checks each message the checkpoints sign: its body is there (else *missing*: deleted, or never
   received) and hashes to the signed hash (else *altered*); a body no checkpoint signs is *unproven*
   (inserted);
3. re-derives from the verified bodies the evidence rows of the period (device events, OEE state
   changes and counter snapshots, data activity per device and hour, over the whole hours the period
   touches) as the ingester wrote them, and compares them with the tables: a row added, removed or
   changed is found.

Closed gateway-hours moved into `chain_archive` (trust/archive.py) are read back as the rows they were:
the audit sees no difference between an archived hour and a live one, and an archive blob that does not
read is a finding of its own.

What it does not cover (listed in every report): the latest device metadata and statuses (retained
messages, signed on the wire but not kept as signed payloads), and the newest checkpoints of a gateway
removed together with their messages (nothing signed after them shows the gap; the evaluator's copy of
an earlier report's chain heads does).

`audit_period(store_or_db, ent, period)` is importable without side effects; the pack exporter calls it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal, Protocol

import lz4.block
from pydantic import BaseModel, Field
from sqlalchemy import and_, or_, select

from cloud_bridge.cloud.ledger.activity import HOUR_MS, hour_of, minute_bit
from cloud_bridge.cloud.ledger.schema import (
    TRUST_TABLES,
    chain_archive,
    chain_checkpoints,
    device_counts,
    device_events,
    device_hours,
    message_bodies,
    metadata,
)
from cloud_bridge.cloud.ledger.sqldb import Database
from cloud_bridge.cloud.trust import archive
from cloud_bridge.cloud.trust.registry import Registry
from cloud_bridge.wire.codec import DataMessage, EventMessage, WireError, decode_data, decode_events
from cloud_bridge.wire.fastdecode import decode as fast_decode
from cloud_bridge.wire.signing import GENESIS, Checkpoint, SignatureError, decode_checkpoint, verify_sealed

MARGIN_MS = 3_600_000  # checkpoints sealed up to an hour outside the period are read too
_COUNT_COLUMNS = ("total", "good", "reject", "readings", "good_readings")

FindingKind = Literal[
    "checkpoint_signature",
    "checkpoint_altered",
    "checkpoint_missing",
    "chain_restarted",
    "missing_message",
    "altered_message",
    "unproven_message",
    "evidence_inserted",
    "evidence_deleted",
    "evidence_altered",
    "archive_damaged",
]
# kinds that do not by themselves mean the ledger was tampered with
INFORMATIONAL: frozenset[str] = frozenset({"chain_restarted"})


class PeriodLike(Protocol):
    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


class HasDb(Protocol):
    db: Database


class AuditFinding(BaseModel):
    kind: FindingKind
    gw: str
    seq: int | None = None
    table: str | None = None
    detail: str


class GatewayAudit(BaseModel):
    gw: str
    checkpoints: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: str | None = Field(None, description="chain hash of the last signed message (hex): note it to compare later")
    signed_messages: int = 0
    verified_messages: int = 0
    keys: list[str] = Field(default_factory=list, description="fingerprints of the keys that signed")


class AuditReport(BaseModel):
    enterprise: str
    from_ms: int
    to_ms: int
    intact: bool = Field(description="no finding other than informational ones")
    gateways: list[GatewayAudit]
    evidence_rows_checked: int
    findings: list[AuditFinding]
    not_covered: list[str]


NOT_COVERED = [
    "device metadata and statuses (retained messages: signed on the wire, not kept as signed payloads)",
    "a gateway's newest checkpoints removed together with their messages (compare the chain heads with an "
    "earlier report)",
    "device_stats and tag_stats (running totals; the period's evidence reads the activity hours)",
]


def audit_period(store_or_db: HasDb | Database, ent: str, period: PeriodLike) -> AuditReport:
    """Audit one enterprise for [period.start, period.end) (see the module docstring)."""
    db = store_or_db if isinstance(store_or_db, Database) else store_or_db.db
    db.create(metadata, TRUST_TABLES)
    registry = Registry(db)
    findings: list[AuditFinding] = []
    start, end = period.start, period.end

    # 1. checkpoints
    cc, ca = chain_checkpoints.c, chain_archive.c
    lo, hi = start - MARGIN_MS, end + MARGIN_MS
    rows = db.rows(select(chain_checkpoints).where(cc.ent == ent, cc.ts >= lo, cc.ts < hi))
    archived = archive.load(db, ent, and_(ca.hour >= hour_of(lo), ca.hour < hi))
    rows += [r for r in archived.checkpoints if lo <= r["ts"] < hi]
    rows.sort(key=lambda r: (r["gw"], int(r["last_seq"])))
    findings += _damaged(archived)
    per_gw: dict[str, list[Checkpoint]] = {}
    gateways: dict[str, GatewayAudit] = {}
    for r in rows:
        gw = r["gw"]
        g = gateways.setdefault(gw, GatewayAudit(gw=gw))
        c = _verified_checkpoint(registry, r, findings)
        if c is None:
            continue
        per_gw.setdefault(gw, []).append(c)
        g.checkpoints += 1
        if c.key not in g.keys:
            g.keys.append(c.key)
    for gw, cps in per_gw.items():
        g = gateways[gw]
        g.first_seq, g.last_seq, g.head = cps[0].first, cps[-1].last, cps[-1].head.hex()
        for a, nxt in itertools.pairwise(cps):
            if nxt.prev == GENESIS and nxt.first > a.last:
                findings.append(
                    AuditFinding(
                        kind="chain_restarted",
                        gw=gw,
                        seq=nxt.first,
                        detail=f"the chain starts again at seq {nxt.first} (the gateway's buffer was replaced)",
                    )
                )
            elif nxt.first != a.last + 1 or nxt.prev != a.head:
                findings.append(
                    AuditFinding(
                        kind="checkpoint_missing",
                        gw=gw,
                        seq=a.last + 1,
                        detail=f"no checkpoint joins seq {a.last} to seq {nxt.first}",
                    )
                )

    # 2. messages: signed ones and those of the period
    window = (hour_of(start), -(-end // HOUR_MS) * HOUR_MS)  # the activity rows are whole hours
    bodies = _bodies(db, ent, window, per_gw, findings)
    signed: dict[tuple[str, int], bytes] = {}
    for gw, cps in per_gw.items():
        for c in cps:
            for i, digest in enumerate(c.hashes):
                signed[(gw, c.first + i)] = digest
                gateways[gw].signed_messages += 1
    verified: list[tuple[dict[str, Any], DataMessage | EventMessage]] = []
    for key, b in sorted(bodies.items()):
        gw, seq = key
        body = _inflate(bytes(b["body"]))
        h: bytes | None = signed.get(key)
        if h is None:
            h = _signed_elsewhere(db, ent, gw, seq)
        if h is None:
            findings.append(
                AuditFinding(kind="unproven_message", gw=gw, seq=seq, detail="recorded, but no checkpoint signs it")
            )
            continue
        if body is None or hashlib.sha256(body).digest() != h:
            findings.append(
                AuditFinding(kind="altered_message", gw=gw, seq=seq, detail="its body is not what the gateway signed")
            )
            continue
        msg = _decode(body)
        if msg is None:
            findings.append(AuditFinding(kind="altered_message", gw=gw, seq=seq, detail="its body cannot be read"))
            continue
        if gw in gateways:
            gateways[gw].verified_messages += 1
        verified.append((b, msg))
    for key in sorted(set(signed) - set(bodies)):
        findings.append(
            AuditFinding(
                kind="missing_message",
                gw=key[0],
                seq=key[1],
                detail="signed by the gateway, not in the ledger (deleted, or never received)",
            )
        )

    # 3. evidence rows of the period against what the verified bodies give
    expected = _derive(verified, start, end, window)
    actual = _actual(db, ent, start, end, window)
    checked = sum(sum(c.values()) for c in actual.values())
    for table in ("device_events", "device_counts", "device_activity"):
        findings += _compare(table, expected[table], actual[table])
    return AuditReport(
        enterprise=ent,
        from_ms=start,
        to_ms=end,
        intact=not any(f.kind not in INFORMATIONAL for f in findings),
        gateways=[gateways[g] for g in sorted(gateways)],
        evidence_rows_checked=checked,
        findings=findings,
        not_covered=NOT_COVERED,
    )


# ---------------------------------------------------------------- checkpoints


def _verified_checkpoint(registry: Registry, r: dict[str, Any], findings: list[AuditFinding]) -> Checkpoint | None:
    ent, gw, payload = r["ent"], r["gw"], bytes(r["payload"])
    try:
        c = decode_checkpoint(payload)
        rec = registry.key_by_fingerprint(ent, gw, c.key)
        if rec is None:
            raise SignatureError(f"signed by key {c.key[:16]}…, which {ent}/{gw} was never registered with")
        verify_sealed(registry.public_key(rec), r["topic"], payload)
        if rec.revoked_ms is not None and int(r["received_ms"]) > rec.revoked_ms:
            raise SignatureError(f"received after the key was {rec.status}")
    except SignatureError as e:
        findings.append(
            AuditFinding(kind="checkpoint_signature", gw=gw, seq=int(r["last_seq"]), detail=f"checkpoint: {e}")
        )
        return None
    stored = (int(r["first_seq"]), int(r["last_seq"]), int(r["ts"]), bytes(r["prev"]), bytes(r["hashes"]))
    if stored != (c.first, c.last, c.ts, c.prev, b"".join(c.hashes)) or (c.ent, c.gw) != (ent, gw):
        findings.append(
            AuditFinding(
                kind="checkpoint_altered",
                gw=gw,
                seq=c.last,
                detail="the checkpoint's columns differ from its signed payload (the payload is taken)",
            )
        )
    return c


def _signed_elsewhere(db: Database, ent: str, gw: str, seq: int) -> bytes | None:
    """The signed hash of a message whose checkpoint lies outside the period's window (verified)."""
    cc, ca = chain_checkpoints.c, chain_archive.c
    rows = db.rows(select(chain_checkpoints).where(cc.ent == ent, cc.gw == gw, cc.first_seq <= seq, cc.last_seq >= seq))
    cover = and_(ca.gw == gw, ca.first_seq <= seq, ca.last_seq >= seq, ca.checkpoints > 0)
    rows += [r for r in archive.load(db, ent, cover).checkpoints if r["first_seq"] <= seq <= r["last_seq"]]
    for r in rows:
        c = _verified_checkpoint(Registry(db), r, [])
        if c is not None:
            return c.hash_of(seq)
    return None


# ---------------------------------------------------------------- messages


def _bodies(
    db: Database,
    ent: str,
    window: tuple[int, int],
    per_gw: dict[str, list[Checkpoint]],
    findings: list[AuditFinding],
) -> dict[tuple[str, int], dict[str, Any]]:
    """The bodies, live or archived, with data in `window` or signed by the checkpoints read."""
    start, end = window
    spans = {gw: (cps[0].first, cps[-1].last) for gw, cps in per_gw.items()}
    mb, ca = message_bodies.c, chain_archive.c
    conditions = [and_(mb.ts_max >= start, mb.ts_min < end)]
    in_archive = [and_(ca.ts_max >= start, ca.ts_min < end)]
    for gw, (first, last) in spans.items():
        conditions.append(and_(mb.gw == gw, mb.seq >= first, mb.seq <= last))
        in_archive.append(and_(ca.gw == gw, ca.last_seq >= first, ca.first_seq <= last))
    rows = db.rows(select(message_bodies).where(mb.ent == ent, or_(*conditions)))
    archived = archive.load(db, ent, or_(*in_archive))
    findings += _damaged(archived)
    for r in archived.bodies:
        span = spans.get(r["gw"])
        if (r["ts_max"] >= start and r["ts_min"] < end) or (span is not None and span[0] <= r["seq"] <= span[1]):
            rows.append(r)
    return {(r["gw"], int(r["seq"])): r for r in rows}


def _damaged(loaded: archive.Loaded) -> list[AuditFinding]:
    return [
        AuditFinding(kind="archive_damaged", gw=gw, seq=seq, detail=f"archived part from seq {seq}: {why}")
        for gw, seq, why in loaded.damaged
    ]


def _inflate(stored: bytes) -> bytes | None:
    try:
        return bytes(lz4.block.decompress(stored))
    except (lz4.block.LZ4BlockError, ValueError):  # damaged, or not ours
        return None


def _decode(body: bytes) -> DataMessage | EventMessage | None:
    """A recorded body, read as the rules it was recorded under took it: without the ingester's timestamp
    floor (EARLIEST_MS), which came later (a body an older ingester recorded still reads)."""
    payload = body + b',"hist":false}'
    try:
        if b'"samples":' in body:
            return fast_decode(payload) or decode_data(payload)
        return decode_events(payload)
    except WireError:
        return None


# ---------------------------------------------------------------- evidence rows


Row = tuple[Any, ...]


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _derive(
    verified: Iterable[tuple[dict[str, Any], DataMessage | EventMessage]],
    start: int,
    end: int,
    hours_in: tuple[int, int],
) -> dict[str, Counter[Row]]:
    """The rows the ingester writes for these messages, inside the period (its horizon applied); the
    activity rows of the whole hours in `hours_in`."""
    events: Counter[Row] = Counter()
    counts: Counter[Row] = Counter()
    hours: dict[tuple[str, str, int], list[int]] = {}
    for b, msg in verified:
        horizon = int(b["horizon_ms"])
        if isinstance(msg, EventMessage):
            for e in msg.events:
                if e.ts > horizon or not start <= e.ts < end:
                    continue
                events[(msg.gw, msg.dev, e.ts, e.kind, e.reason, e.state)] += 1
                if e.kind in ("state", "snapshot") or e.counts is not None:
                    c = e.counts or {}
                    counts[(msg.gw, msg.dev, e.ts, e.kind, e.state, *(_num(c.get(k)) for k in _COUNT_COLUMNS))] += 1
        else:
            for s in msg.samples:
                if s.ts > horizon:
                    continue
                hour = hour_of(s.ts)
                if not hours_in[0] <= hour < hours_in[1]:
                    continue
                acc = hours.setdefault((msg.gw, msg.dev, hour), [0, 0, s.ts, s.ts, 0])
                acc[0] += 1
                acc[1] += 1 if s.q == "good" else 0
                acc[2] = min(acc[2], s.ts)
                acc[3] = max(acc[3], s.ts)
                acc[4] |= minute_bit(s.ts)
    activity: Counter[Row] = Counter((gw, dev, hour, *v) for (gw, dev, hour), v in hours.items())
    return {"device_events": events, "device_counts": counts, "device_activity": activity}


def _actual(db: Database, ent: str, start: int, end: int, window: tuple[int, int]) -> dict[str, Counter[Row]]:
    e, c, a = device_events.c, device_counts.c, device_hours.c
    events = Counter(
        (r["gw"], r["dev"], int(r["ts"]), r["kind"], r["reason"], r["state"])
        for r in db.rows(select(device_events).where(e.ent == ent, e.ts >= start, e.ts < end))
    )
    counts = Counter(
        (r["gw"], r["dev"], int(r["ts"]), r["kind"], r["state"], *(_num(r[k]) for k in _COUNT_COLUMNS))
        for r in db.rows(select(device_counts).where(c.ent == ent, c.ts >= start, c.ts < end))
    )
    activity = Counter(
        (
            r["gw"],
            r["dev"],
            int(r["hour"]),
            int(r["samples"]),
            int(r["good_samples"]),
            int(r["first_ts"]),
            int(r["last_ts"]),
            int(r["minutes"]),
        )
        for r in db.rows(select(device_hours).where(a.ent == ent, a.hour >= window[0], a.hour < window[1]))
    )
    return {"device_events": events, "device_counts": counts, "device_activity": activity}


def _compare(table: str, expected: Counter[Row], actual: Counter[Row]) -> list[AuditFinding]:
    """Rows added, removed or changed; a changed row is one whose identity (gateway, device, time or
    hour) is on both sides with different values."""
    extra, missing = actual - expected, expected - actual
    ident = 3  # gw, dev, ts | gw, dev, hour
    missing_ids = Counter(r[:ident] for r in missing.elements())
    out: list[AuditFinding] = []
    for row in sorted(extra.elements(), key=repr):
        key = row[:ident]
        if missing_ids[key] > 0:
            missing_ids[key] -= 1
            out.append(AuditFinding(kind="evidence_altered", gw=row[0], table=table, detail=f"changed: {row}"))
        else:
            out.append(
                AuditFinding(
                    kind="evidence_inserted", gw=row[0], table=table, detail=f"not from a signed message: {row}"
                )
            )
    for key, n in sorted(missing_ids.items(), key=repr):
        for _ in range(n):
            out.append(AuditFinding(kind="evidence_deleted", gw=key[0], table=table, detail=f"missing: {key}"))
    return out
