"""The chain archive: closed gateway-hours of checkpoints and message bodies, one LZMA blob each.

Live, a gateway's signed checkpoints sit in `chain_checkpoints` and the signed part of each recorded
message in `message_bodies` (LZ4, one row per message): what the audit re-derives the evidence from.
Once an hour of a gateway is closed (its checkpoints' hour ended and they were received `grace` ago),
`archive_closed` moves the hour's checkpoints and the bodies of the seqs they sign into one row of
`chain_archive` and deletes them from the live tables, in one transaction per gateway-hour. Bodies that
come after their checkpoint was archived are archived later as another part of the same hour.

What is elided, because the blob's own content gives it back byte for byte (checked when writing: a
field is elided only where putting it back gives the very bytes):
- a body's `prev` (the chain hash of the gateway's previous message) where that message is in the blob;
- a checkpoint's `hashes` where every message it signs is in the blob, and its `prev` where the
  message before its first is.
The rest is kept verbatim (signatures, values, timestamps), so `load` gives back the rows as they were
and the audit verifies them as live rows: a body edited, inserted or deleted inside a blob breaks the
chain hashes or the signature of its checkpoint, and a blob that does not read is a finding of its own.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import lzma
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lz4.block
from sqlalchemy import ColumnElement, Connection, and_, delete, func, or_, select

from cloud_bridge.cloud.ledger.activity import HOUR_MS, hour_of
from cloud_bridge.cloud.ledger.schema import chain_archive, chain_checkpoints, message_bodies
from cloud_bridge.cloud.ledger.sqldb import Database
from cloud_bridge.wire.signing import SignatureError, decode_checkpoint

FORMAT = 1
GRACE_MS = 2 * HOUR_MS  # a checkpoint is archived once received this long ago (and its hour is over)
_BASE64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
_ARCHIVE_LOCK = 0x6564676561  # any number, the same in every process
_PREV = b',"prev":"'
_HASHES = b',"hashes":"'
_SIG = b',"sig":"'


@dataclass(slots=True)
class Loaded:
    """Rows given back by archive blobs, shaped as the live tables' rows."""

    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[tuple[str, int, str]] = field(default_factory=list)  # (gw, first seq, why)


@dataclass(frozen=True, slots=True)
class Archived:
    parts: int
    checkpoints: int
    messages: int


# ---------------------------------------------------------------- eliding and restoring (pure)


def _field(data: bytes, mark: bytes) -> tuple[int, int] | None:
    """Start and end of the value of the first `mark` field (a JSON string) in `data`."""
    i = data.find(mark)
    if i < 0:
        return None
    start = i + len(mark)
    end = data.find(b'"', start)
    return None if end < 0 else (start, end)


def _set_field(data: bytes, mark: bytes, value: bytes) -> bytes | None:
    span = _field(data, mark)
    return None if span is None else data[: span[0]] + value + data[span[1] :]


def _restore_bodies(bodies: dict[int, bytes], elided: set[int]) -> dict[int, bytes]:
    """Bodies with each elided `prev` put back from the body before it (in seq order); one whose
    previous body is not there keeps the empty `prev` (its hash then matches nothing)."""
    out: dict[int, bytes] = {}
    for seq in sorted(bodies):
        body = bodies[seq]
        if seq in elided and (seq - 1) in out:
            body = _set_field(body, _PREV, hashlib.sha256(out[seq - 1]).hexdigest().encode()) or body
        out[seq] = body
    return out


def _restore_checkpoint(payload: bytes, first: int, last: int, flags: str, bodies: dict[int, bytes]) -> bytes:
    """A checkpoint payload with its elided fields put back from the (restored) bodies; left empty
    where a body they come from is not there (the signature then fails)."""
    if "h" in flags and all(s in bodies for s in range(first, last + 1)):
        digests = b"".join(hashlib.sha256(bodies[s]).digest() for s in range(first, last + 1))
        payload = _set_field(payload, _HASHES, base64.b64encode(digests)) or payload
    if "p" in flags and (first - 1) in bodies:
        payload = _set_field(payload, _PREV, hashlib.sha256(bodies[first - 1]).hexdigest().encode()) or payload
    return payload


def _restore(payload: bytes, sig: bytes, first: int, last: int, flags: str, bodies: dict[int, bytes]) -> bytes:
    """A stored checkpoint payload made whole: its signature (flag s) and what `_restore_checkpoint` puts back."""
    if "s" in flags:
        payload = _set_field(payload, _SIG, base64.b64encode(sig)) or payload
    return _restore_checkpoint(payload, first, last, flags, bodies)


def encode(topic: str, checkpoints: Sequence[dict[str, Any]], bodies: Sequence[dict[str, Any]]) -> bytes:
    """One archive blob of live rows (checkpoints as in `chain_checkpoints`, bodies as in `message_bodies`)."""
    raw = {int(b["seq"]): bytes(lz4.block.decompress(bytes(b["body"]))) for b in bodies}
    stored = dict(raw)
    elided: set[int] = set()
    for seq, body in raw.items():
        if seq - 1 in raw:
            cut = _set_field(body, _PREV, b"")
            if cut is not None and _restore_bodies({seq - 1: raw[seq - 1], seq: cut}, {seq})[seq] == body:
                stored[seq], elided = cut, elided | {seq}
    cps: list[dict[str, Any]] = []
    payloads = []
    sigs: list[bytes] = []
    for c in checkpoints:
        payload, first, last = bytes(c["payload"]), int(c["first_seq"]), int(c["last_seq"])
        flags = ""
        for flag, mark in (("h", _HASHES), ("p", _PREV)):
            cut = _set_field(payload, mark, b"")
            if cut is not None and _restore_checkpoint(cut, first, last, flag, raw) == payload:
                payload, flags = cut, flags + flag
        sig, sig_raw = _field(payload, _SIG), b""
        if sig is not None:  # the signature as its 64 bytes rather than base64 text
            value = payload[sig[0] : sig[1]]
            sig_raw = base64.b64decode(value, validate=True) if _BASE64.fullmatch(value) else b""
            if len(sig_raw) == 64 and base64.b64encode(sig_raw) == value:
                payload, flags = payload[: sig[0]] + payload[sig[1] :], flags + "s"
        if _restore(payload, sig_raw if "s" in flags else b"", first, last, flags, raw) != bytes(c["payload"]):
            payload, flags = bytes(c["payload"]), ""  # kept whole: what it elides does not come back the same
        if "s" in flags:
            sigs.append(sig_raw)
        cps.append({"first": first, "last": last, "topic": c["topic"], "received_ms": int(c["received_ms"]),
                    "flags": flags, "n": len(payload)})  # fmt: skip
        payloads.append(payload)
    msgs = sorted(bodies, key=lambda b: int(b["seq"]))
    seqs = [int(b["seq"]) for b in msgs]
    # column by column, numbers as differences from the one before: what LZMA packs best
    header = {
        "v": FORMAT,
        "topic": topic,
        "checkpoints": {
            "first": _deltas([c["first"] for c in cps]),
            "span": [c["last"] - c["first"] for c in cps],
            "received_ms": _deltas([c["received_ms"] for c in cps]),
            "flags": [c["flags"] for c in cps],
            "n": [c["n"] for c in cps],
            "topics": {str(i): c["topic"] for i, c in enumerate(cps) if c["topic"] != topic},
        },
        "messages": {
            "seq": _deltas(seqs),
            "ts_min": _deltas([int(b["ts_min"]) for b in msgs]),
            "ts_span": [int(b["ts_max"]) - int(b["ts_min"]) for b in msgs],
            "horizon_ms": _deltas([int(b["horizon_ms"]) for b in msgs]),
            "prev": [int(s in elided) for s in seqs],
            "n": [len(stored[s]) for s in seqs],
        },
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    data = b"".join([text, b"\n", *sigs, *payloads, *(stored[s] for s in seqs)])
    return lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)


def _deltas(values: Sequence[int]) -> list[int]:
    return [v - (values[i - 1] if i else 0) for i, v in enumerate(values)]


def _sums(deltas: Sequence[int]) -> list[int]:
    return list(itertools.accumulate(int(d) for d in deltas))


def decode(ent: str, gw: str, blob: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows an archive blob holds: (checkpoint rows, body rows), shaped as the live tables'.
    ValueError when the blob does not read."""
    try:
        data = lzma.decompress(blob)
        nl = data.index(b"\n")
        header = json.loads(data[:nl])
        if header.get("v") != FORMAT:
            raise ValueError(f"archive format {header.get('v')!r}")
        hc, hm = header["checkpoints"], header["messages"]
        firsts, seqs = _sums(hc["first"]), _sums(hm["seq"])
        pos = nl + 1
        sigs = []
        for flags in hc["flags"]:
            if "s" in str(flags):
                sigs.append(data[pos : pos + 64])
                pos += 64
        payloads = []
        for n in hc["n"]:
            payloads.append(data[pos : pos + int(n)])
            pos += int(n)
        stored: dict[int, bytes] = {}
        for seq, n in zip(seqs, hm["n"], strict=True):
            stored[seq] = data[pos : pos + int(n)]
            pos += int(n)
        if pos != len(data):
            raise ValueError("the blob's length is not what its header says")
        bodies = _restore_bodies(stored, {s for s, p in zip(seqs, hm["prev"], strict=True) if p})
        ts_min, horizon = _sums(hm["ts_min"]), _sums(hm["horizon_ms"])
        body_rows = [
            {"ent": ent, "gw": gw, "seq": s, "body": lz4.block.compress(bodies[s]), "ts_min": ts_min[i],
             "ts_max": ts_min[i] + int(hm["ts_span"][i]), "horizon_ms": horizon[i]}
            for i, s in enumerate(seqs)
        ]  # fmt: skip
        received = _sums(hc["received_ms"])
        cp_rows = []
        for i, payload in enumerate(payloads):
            first, last = firsts[i], firsts[i] + int(hc["span"][i])
            flags = str(hc["flags"][i])
            full = _restore(payload, sigs.pop(0) if "s" in flags else b"", first, last, flags, bodies)
            topic = hc["topics"].get(str(i), header["topic"])
            cp_rows.append(_checkpoint_row(ent, gw, first, last, topic, full, received[i]))
    except (lzma.LZMAError, ValueError, KeyError, TypeError, IndexError) as e:
        raise ValueError(f"the archive blob does not read ({e})") from None
    return cp_rows, body_rows


def _checkpoint_row(
    ent: str, gw: str, first: int, last: int, topic: str, payload: bytes, received_ms: int
) -> dict[str, Any]:
    try:
        cp = decode_checkpoint(payload)
        ts, prev, hashes, key = cp.ts, cp.prev, b"".join(cp.hashes), cp.key
    except SignatureError:  # the audit's own check of the payload reports it
        ts, prev, hashes, key = 0, b"", b"", ""
    return {"ent": ent, "gw": gw, "first_seq": first, "last_seq": last, "ts": ts, "prev": prev, "hashes": hashes,
            "key": key, "topic": topic, "payload": payload, "received_ms": received_ms}  # fmt: skip


# ---------------------------------------------------------------- the database


def archive_closed(db: Database, now_ms: int, *, grace_ms: int = GRACE_MS) -> Archived:
    """Archive every closed gateway-hour (see the module docstring); `grace_ms` 0 archives every hour
    before the current one. Returns what was archived."""
    cc, mb, ca = chain_checkpoints.c, message_bodies.c, chain_archive.c
    cutoff = now_ms - grace_ms
    hours = sorted(
        {
            (r["ent"], r["gw"], hour_of(int(r["ts"])))
            for r in db.rows(select(cc.ent, cc.gw, cc.ts).where(cc.received_ms <= cutoff, cc.ts < hour_of(cutoff)))
        }
    )
    parts = checkpoints = messages = 0
    for ent, gw, hour in hours:
        with db.transaction() as conn:
            _lock(conn)
            cps = [
                dict(r)
                for r in conn.execute(
                    select(chain_checkpoints)
                    .where(cc.ent == ent, cc.gw == gw, cc.ts >= hour, cc.ts < hour + HOUR_MS, cc.received_ms <= cutoff)
                    .order_by(cc.last_seq)
                ).mappings()
            ]
            if not cps:
                continue
            span = and_(mb.seq >= min(int(c["first_seq"]) for c in cps), mb.seq <= max(int(c["last_seq"]) for c in cps))
            signed = {s for c in cps for s in range(int(c["first_seq"]), int(c["last_seq"]) + 1)}
            bodies = [b for b in _bodies(conn, ent, gw, [span]) if int(b["seq"]) in signed]
            _write(conn, ent, gw, hour, cps, bodies, now_ms)
            for c in cps:
                conn.execute(
                    delete(chain_checkpoints).where(cc.ent == ent, cc.gw == gw, cc.last_seq == int(c["last_seq"]))
                )
            parts, checkpoints, messages = parts + 1, checkpoints + len(cps), messages + len(bodies)
    # bodies that came after their checkpoint was archived: another part of the same hour
    late = db.rows(
        select(ca.ent, ca.gw, ca.hour, mb.seq)
        .join_from(
            message_bodies,
            chain_archive,
            and_(ca.ent == mb.ent, ca.gw == mb.gw, ca.first_seq <= mb.seq, ca.last_seq >= mb.seq),
        )
        .where(ca.checkpoints > 0)
    )
    by_part: dict[tuple[str, str, int], list[int]] = {}
    for r in late:
        by_part.setdefault((r["ent"], r["gw"], int(r["hour"])), []).append(int(r["seq"]))
    for (ent, gw, hour), seqs in sorted(by_part.items()):
        with db.transaction() as conn:
            _lock(conn)
            bodies = _bodies(conn, ent, gw, [mb.seq.in_(seqs)])
            if bodies:
                _write(conn, ent, gw, hour, [], bodies, now_ms)
                parts, messages = parts + 1, messages + len(bodies)
    return Archived(parts, checkpoints, messages)


def _lock(conn: Connection) -> None:
    """Ingesters archive one at a time (PostgreSQL; SQLite's write lock does it there)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_ARCHIVE_LOCK)))


def _bodies(conn: Connection, ent: str, gw: str, conditions: list[ColumnElement[bool]]) -> list[dict[str, Any]]:
    mb = message_bodies.c
    return [
        dict(r)
        for r in conn.execute(
            select(message_bodies).where(mb.ent == ent, mb.gw == gw, or_(*conditions)).order_by(mb.seq)
        ).mappings()
    ]


def _write(
    conn: Connection,
    ent: str,
    gw: str,
    hour: int,
    cps: list[dict[str, Any]],
    bodies: list[dict[str, Any]],
    now_ms: int,
) -> None:
    mb = message_bodies.c
    topic = str(cps[0]["topic"]) if cps else ""
    seqs = [int(b["seq"]) for b in bodies] + [s for c in cps for s in (int(c["first_seq"]), int(c["last_seq"]))]
    stamps = [int(b["ts_min"]) for b in bodies] + [int(b["ts_max"]) for b in bodies] or [hour]
    ca = chain_archive.c
    part = conn.execute(select(func.count()).where(ca.ent == ent, ca.gw == gw, ca.hour == hour)).scalar() or 0
    conn.execute(
        chain_archive.insert(),
        {"ent": ent, "gw": gw, "hour": hour, "part": part, "first_seq": min(seqs), "last_seq": max(seqs),
         "checkpoints": len(cps), "messages": len(bodies), "ts_min": min(stamps), "ts_max": max(stamps),
         "data": encode(topic, cps, bodies), "archived_ms": now_ms},
    )  # fmt: skip
    if bodies:
        conn.execute(
            delete(message_bodies).where(mb.ent == ent, mb.gw == gw, mb.seq.in_([int(b["seq"]) for b in bodies]))
        )


def load(db: Database, ent: str, condition: ColumnElement[bool]) -> Loaded:
    """The rows of the archive blobs of `ent` that match `condition` (on `chain_archive`'s columns)."""
    ca = chain_archive.c
    out = Loaded()
    for r in db.rows(
        select(ca.gw, ca.first_seq, ca.data).where(ca.ent == ent, condition).order_by(ca.gw, ca.first_seq)
    ):
        try:
            cps, bodies = decode(ent, r["gw"], bytes(r["data"]))
        except ValueError as e:
            out.damaged.append((r["gw"], int(r["first_seq"]), str(e)))
            continue
        out.checkpoints += cps
        out.bodies += bodies
    return out


def gateways_covering(
    db: Database, missing: dict[tuple[str, str], list[int]], per_query: int = 200
) -> dict[tuple[str, str], list[int]]:
    """Those of `missing` (gateway → seqs without a live checkpoint) whose seqs an archived hour may sign: one
    query per `per_query` gateways, reading no blob."""
    ca = chain_archive.c
    items = list(missing.items())
    hit: dict[tuple[str, str], list[int]] = {}
    for i in range(0, len(items), per_query):
        cover = [
            and_(ca.ent == ent, ca.gw == gw, ca.checkpoints > 0, ca.first_seq <= max(seqs), ca.last_seq >= min(seqs))
            for (ent, gw), seqs in items[i : i + per_query]
        ]
        for r in db.rows(select(ca.ent, ca.gw).where(or_(*cover)).distinct()):
            hit[(r["ent"], r["gw"])] = missing[(r["ent"], r["gw"])]
    return hit


def checkpoints_covering(db: Database, ent: str, gw: str, lo: int, hi: int) -> list[dict[str, Any]]:
    """The archived checkpoints of a gateway that sign a seq in [lo, hi], as `chain_checkpoints` rows
    (for a message that comes after its checkpoint was archived); those that do not read are left out."""
    ca = chain_archive.c
    cover = and_(ca.gw == gw, ca.checkpoints > 0, ca.first_seq <= hi, ca.last_seq >= lo)
    return [
        r
        for r in load(db, ent, cover).checkpoints
        if r["first_seq"] <= hi
        and r["last_seq"] >= lo
        and len(r["hashes"]) == 32 * (r["last_seq"] - r["first_seq"] + 1)
    ]
