"""The store-and-forward buffer: every message that leaves the gateway waits here until the broker acks it.

SQLite in WAL mode, one row per outgoing MQTT message (a scan's batch of samples is one row,
never one row per sample), the body zlib-compressed. Data and event messages get the gateway's
`seq` when they are written; the counter lives in the same database and transaction, so it
survives restarts and never repeats. Rows are deleted only when the broker acknowledges them.

Durability (the fsync trade-off): `synchronous=FULL`, the default, fsyncs the WAL at every
commit, so a committed row survives a power cut; it costs one fsync per enqueue (the runtime
writes one transaction per scan, not per sample). `NORMAL` survives a killed process but may
lose the last commits on power loss.

Bounds: past `max_bytes` of stored bodies the oldest messages are dropped (drop-oldest), and the
drop is counted in messages and samples (persisted, reported by the API and the status topic),
never silent.

Corruption: if the file cannot be opened or fails SQLite's quick check, it is moved aside as
`buffer.db.corrupt-<time>` with an error in the log and a fresh buffer is started, so collection
goes on. The seq counter then restarts from a high-water mark kept in a separate small file
(`seq.hwm`, reserved in blocks), so a seq is never used twice even after losing the database.

The hash chain (with a `Chain`, which the agent always gives): in the transaction that assigns a
message its seq, the buffer also computes its chain hash over the signed part of its payload (ent,
gw, dev, seq, the previous message's hash, the body; `hist` outside, see `cloud_bridge.wire.signing`)
and keeps both hashes with the row, so a replay sends the very same bytes. Every `Chain.every`
messages, or once the oldest unsealed one is `Chain.interval_ms` old, `seal_if_due` writes a signed
checkpoint listing their hashes; a message is handed to the publisher only once sealed, and the
publisher sends each checkpoint before the messages it covers. Statuses and metadata (no seq) are
signed one by one when buffered. Checkpoints are never dropped when the buffer is full.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cloud_bridge.uplink.localdb import open_local_db
from cloud_bridge.wire.ed25519 import SigningKey
from cloud_bridge.wire.signing import (
    GENESIS,
    MAX_CHECKPOINT,
    Checkpoint,
    chain_hash,
    chained_prefix,
    encode_checkpoint,
    fingerprint,
    seal,
)
from edge_config import timing

log = logging.getLogger(__name__)

Kind = Literal["data", "events", "status", "checkpoint"]
SEQ_BLOCK = 100_000  # seqs reserved in the high-water-mark file at a time

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    dev TEXT NOT NULL,
    seq INTEGER,
    body BLOB NOT NULL,
    size INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    dev TEXT NOT NULL,
    seq INTEGER,
    body BLOB NOT NULL,
    samples INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    failed_ms INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 1);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped_messages', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped_samples', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('quarantined', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dead_letters_dropped', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('sealed_to', 0);
CREATE TABLE IF NOT EXISTS unsealed (seq INTEGER PRIMARY KEY, h BLOB NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chain (k TEXT PRIMARY KEY, v BLOB NOT NULL);
"""
# columns added with the hash chain (a buffer made before it gets them on open)
_CHAIN_COLUMNS = {"outbox": ("prev", "h"), "dead_letters": ("prev", "h")}


@dataclass(frozen=True, slots=True)
class Chain:
    """Who the gateway is on the wire, and how often it seals its hash chain."""

    ent: str
    gw: str
    key: SigningKey
    checkpoint_topic: str
    every: int = 500  # messages per checkpoint at most
    interval_ms: int = 1000  # the oldest unsealed message waits at most this long for its checkpoint
    min_batch: int = 50  # sealed at once, without waiting for the interval, when the link has room for them

    def __repr__(self) -> str:  # never the key
        return f"Chain({self.ent}/{self.gw}, every={self.every}, interval_ms={self.interval_ms})"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What the caller hands the buffer: one MQTT message to be."""

    kind: Kind
    topic: str
    dev: str
    body: bytes
    retain: bool = False
    samples: int = 0


@dataclass(frozen=True, slots=True)
class Pending:
    """A buffered message waiting for its PUBACK."""

    id: int
    kind: Kind
    topic: str
    dev: str
    seq: int | None
    body: bytes
    retain: bool
    samples: int
    created_ms: int
    prev: bytes | None = None  # chain hash of the previous message (chained messages only)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message moved out of the queue, with why (`edgegw buffer dead-letters` lists and replays them)."""

    id: int
    kind: str
    topic: str
    dev: str
    seq: int | None
    samples: int
    bytes: int
    created_ms: int
    failed_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class Depth:
    messages: int
    bytes: int  # stored (compressed) bytes
    oldest_ms: int | None  # created_ms of the oldest unsent message
    samples: int = 0
    dropped_messages: int = 0
    dropped_samples: int = 0
    dead_letters: int = 0  # messages moved aside (refused for good by the broker, or damaged)
    dead_letter_bytes: int = 0
    quarantined: int = 0  # rows found damaged (unreadable) and moved to the dead letters

    def behind_ms(self, now_ms: int) -> int:
        return max(0, now_ms - self.oldest_ms) if self.oldest_ms is not None else 0


class Buffer:
    """Durable FIFO of outgoing messages with a persistent per-gateway sequence counter."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        max_bytes: int = 1 << 30,
        compress: bool = True,
        chain: Chain | None = None,
    ) -> None:
        self.path = Path(path)
        self.chain = chain
        self.max_bytes = max_bytes
        self.synchronous = synchronous
        self.compress = compress
        self._hwm_path = self.path.with_name(self.path.name + ".seq.hwm")
        self._lock = threading.Lock()
        opened = open_local_db(self.path, _SCHEMA, synchronous=synchronous, what="store-and-forward buffer")
        self._db = opened.db
        self.corrupt_file = opened.moved_aside
        self._stored_bytes = self._sum_bytes()
        self._hwm = self._read_hwm()
        if opened.created and self._hwm > 1:
            # A new database where a buffer lived before (lost or corrupt): never reuse a seq.
            self._db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (self._hwm,))
        if self._meta("next_seq") >= self._hwm:
            self._reserve(self._meta("next_seq"))
        self._add_chain_columns()
        self.checkpoint_serial = 0  # checkpoints written by this process (the publisher looks when it grows)
        self._first_unsealed_id: int | None = None  # outbox id of the oldest unsealed message, once looked up
        self._head = self._chain_value("head", GENESIS)
        n, since = self._db.execute("SELECT COUNT(*), MIN(created_ms) FROM unsealed").fetchone()
        self._unsealed, self._unsealed_since = int(n), int(since or 0)

    def _add_chain_columns(self) -> None:
        for table, columns in _CHAIN_COLUMNS.items():
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            for col in columns:
                if col not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {col} BLOB")
        self._db.execute("CREATE INDEX IF NOT EXISTS outbox_seq ON outbox (seq)")

    def _chain_value(self, key: str, default: bytes) -> bytes:
        row = self._db.execute("SELECT v FROM chain WHERE k=?", (key,)).fetchone()
        return bytes(row[0]) if row else default

    # ------------------------------------------------------------ seq high-water mark

    def _read_hwm(self) -> int:
        try:
            return int(self._hwm_path.read_text().strip() or 1)
        except (OSError, ValueError):
            return 1

    def _reserve(self, next_seq: int) -> None:
        """Write a new high-water mark above `next_seq`, durably, before seqs up to it are used."""
        self._hwm = next_seq + SEQ_BLOCK
        tmp = self._hwm_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(str(self._hwm))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._hwm_path)

    def _meta(self, key: str) -> int:
        (value,) = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return int(value)

    def _sum_bytes(self) -> int:
        """Stored bytes: the queue and the dead letters (both count toward `max_bytes`)."""
        (n,) = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()
        (d,) = self._db.execute("SELECT COALESCE(SUM(length(body)), 0) FROM dead_letters").fetchone()
        return int(n) + int(d)

    # ------------------------------------------------------------ writing

    def _begin(self) -> sqlite3.Connection:
        """Start a write transaction (the caller holds the lock and calls `_rollback` on any error)."""
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def _rollback(self) -> None:
        """Undo a failed write (disk full, I/O error) so the connection never stays inside a transaction;
        SQLite may have rolled back already."""
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def enqueue(self, messages: list[Outgoing], now_ms: int | None = None) -> list[int | None]:
        """Write messages in one transaction; return the seq given to each (None for status)."""
        now = now_ms if now_ms is not None else timing.now_ms()
        seqs: list[int | None] = []
        rows = []
        added = 0
        chain = self.chain
        unsealed: list[tuple[int, bytes, int]] = []
        with self._lock:
            head = self._head
            try:
                db = self._begin()
                next_seq = self._meta("next_seq")
                for m in messages:
                    seq = None
                    raw = m.body
                    prev = h = None
                    if m.kind != "status":
                        seq = next_seq
                        next_seq += 1
                        if chain is not None:
                            prev, h = head, chain_hash(chained_prefix(chain.ent, chain.gw, m.dev, seq, head, raw))
                            head = h
                            unsealed.append((seq, h, now))
                    elif chain is not None:
                        raw = seal(chain.key, m.topic, raw)
                    seqs.append(seq)
                    body = zlib.compress(raw, 1) if self.compress else raw
                    added += len(body)
                    rows.append((m.kind, m.topic, m.dev, seq, body, len(body), int(m.retain), m.samples, now, prev, h))
                if next_seq >= self._hwm:
                    self._reserve(next_seq)
                db.executemany(
                    "INSERT INTO outbox (kind, topic, dev, seq, body, size, retain, samples, created_ms, prev, h)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (next_seq,))
                if unsealed:
                    db.executemany("INSERT OR REPLACE INTO unsealed (seq, h, created_ms) VALUES (?, ?, ?)", unsealed)
                    db.execute("INSERT OR REPLACE INTO chain (k, v) VALUES ('head', ?)", (head,))
                if self._stored_bytes + added > self.max_bytes:
                    added -= self._drop_oldest(self._stored_bytes + added - self.max_bytes)
                sealed = False
                if chain is not None and self._unsealed + len(unsealed) >= chain.every:
                    added += self._seal(db, now)
                    sealed = True
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                self._stored_bytes = self._sum_bytes()
                raise
            self._stored_bytes += added
            self._head = head
            if sealed:
                self._unsealed = 0
                self._first_unsealed_id = None
            elif unsealed:
                if not self._unsealed:
                    self._unsealed_since = now
                self._unsealed += len(unsealed)
        return seqs

    # ------------------------------------------------------------ the hash chain's checkpoints

    def seal_if_due(self, now_ms: int | None = None, *, force: bool = False, room: bool = False) -> bool:
        """Write a signed checkpoint for the unsealed messages when `Chain.every` of them wait, or the
        oldest has waited `Chain.interval_ms`, or (`room`: the link could take them now) at least
        `Chain.min_batch` wait; at once with `force`. True if one was written."""
        chain = self.chain
        if chain is None or not self._unsealed:
            return False
        now = now_ms if now_ms is not None else timing.now_ms()
        due = (
            force
            or self._unsealed >= chain.every
            or (room and self._unsealed >= chain.min_batch)
            or now - self._unsealed_since >= chain.interval_ms
        )
        if not due:
            return False
        with self._lock:
            try:
                db = self._begin()
                added = self._seal(db, now)
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._stored_bytes += added
            self._unsealed = 0
            self._first_unsealed_id = None
        return True

    def _seal(self, db: sqlite3.Connection, now: int) -> int:
        """Inside the open transaction: checkpoints over every unsealed message (contiguous runs of at
        most MAX_CHECKPOINT); returns the bytes added."""
        chain = self.chain
        assert chain is not None
        rows = db.execute("SELECT seq, h FROM unsealed ORDER BY seq").fetchall()
        if not rows:
            return 0
        prev = self._chain_value("sealed_head", GENESIS)
        fp = fingerprint(chain.key)
        added = 0
        runs: list[list[tuple[int, bytes]]] = [[]]
        for seq, h in rows:
            run = runs[-1]
            if run and (seq != run[-1][0] + 1 or len(run) >= MAX_CHECKPOINT):
                runs.append(run := [])
            run.append((int(seq), bytes(h)))
        for run in runs:
            c = Checkpoint(chain.ent, chain.gw, now, run[0][0], run[-1][0], prev, tuple(h for _, h in run), fp)
            payload = seal(chain.key, chain.checkpoint_topic, encode_checkpoint(c))
            body = zlib.compress(payload, 1) if self.compress else payload
            db.execute(
                "INSERT INTO outbox (kind, topic, dev, seq, body, size, retain, samples, created_ms)"
                " VALUES ('checkpoint', ?, '', NULL, ?, ?, 0, 0, ?)",
                (chain.checkpoint_topic, body, len(body), now),
            )
            added += len(body)
            prev = c.head
            self.checkpoint_serial += 1
        last = runs[-1][-1][0]
        db.execute("DELETE FROM unsealed WHERE seq <= ?", (last,))
        db.execute("UPDATE meta SET value=? WHERE key='sealed_to'", (last,))
        db.execute("INSERT OR REPLACE INTO chain (k, v) VALUES ('sealed_head', ?)", (prev,))
        return added

    @property
    def unsealed(self) -> int:
        """Chained messages waiting for their checkpoint."""
        return self._unsealed

    def checkpoints(self) -> list[Pending]:
        """Checkpoints waiting for their PUBACK, oldest first (the publisher sends them before the
        messages they cover)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, topic, dev, seq, body, retain, samples, created_ms FROM outbox"
                " WHERE kind='checkpoint' ORDER BY id"
            ).fetchall()
        out = []
        for r in rows:
            body = zlib.decompress(r[5]) if self.compress else bytes(r[5])
            out.append(Pending(r[0], r[1], r[2], r[3], r[4], body, bool(r[6]), r[7], r[8]))
        return out

    def _drop_oldest(self, excess: int) -> int:
        """Free `excess` bytes inside the open transaction: the oldest dead letters first (they wait for a
        person, not for the broker), then the oldest queued messages; both counted."""
        freed = 0
        dead_ids = []
        for row_id, size in self._db.execute("SELECT id, length(body) FROM dead_letters ORDER BY id"):
            if freed >= excess:
                break
            dead_ids.append((row_id,))
            freed += size
        if dead_ids:
            self._db.executemany("DELETE FROM dead_letters WHERE id=?", dead_ids)
            self._db.execute("UPDATE meta SET value=value+? WHERE key='dead_letters_dropped'", (len(dead_ids),))
            log.warning("buffer full (%d bytes): dropped the oldest %d dead letters", self.max_bytes, len(dead_ids))
        excess -= freed
        msgs = samples = 0
        ids = []
        queued = 0
        for row_id, size, n in self._db.execute(
            "SELECT id, size, samples FROM outbox WHERE kind != 'checkpoint' ORDER BY id"
        ):
            if queued >= excess:
                break
            queued += size
            ids.append((row_id,))
            freed += size
            msgs += 1
            samples += n
        if not ids:
            return freed
        self._db.executemany("DELETE FROM outbox WHERE id=?", ids)
        self._db.execute("UPDATE meta SET value=value+? WHERE key='dropped_messages'", (msgs,))
        self._db.execute("UPDATE meta SET value=value+? WHERE key='dropped_samples'", (samples,))
        log.warning(
            "buffer full (%d bytes): dropped the oldest %d messages (%d samples)", self.max_bytes, msgs, samples
        )
        return freed

    # ------------------------------------------------------------ reading

    def peek(self, limit: int, after_id: int = 0) -> list[Pending]:
        """The oldest `limit` messages with id above `after_id`, in order, bodies decompressed."""
        with self._lock:
            below = 1 << 62
            if self.chain is not None and self._unsealed:  # nothing from the first unsealed message on
                if self._first_unsealed_id is None:  # rows added later have higher ids: kept until sealed
                    (first,) = self._db.execute(
                        "SELECT MIN(id) FROM outbox WHERE seq > (SELECT value FROM meta WHERE key='sealed_to')"
                    ).fetchone()
                    self._first_unsealed_id = int(first) if first is not None else None
                if self._first_unsealed_id is not None:
                    below = self._first_unsealed_id
            rows = self._db.execute(
                "SELECT id, kind, topic, dev, seq, body, retain, samples, created_ms, prev FROM outbox"
                " WHERE id > ? AND id < ? AND kind != 'checkpoint' ORDER BY id LIMIT ?",
                (after_id, below, limit),
            ).fetchall()
        out = []
        damaged: list[tuple[int, str]] = []
        for r in rows:
            try:
                body = zlib.decompress(r[5]) if self.compress else bytes(r[5])
            except (zlib.error, TypeError) as e:
                damaged.append((r[0], f"damaged: the stored body cannot be read ({e})"))
                continue
            prev = bytes(r[9]) if r[9] is not None else None
            out.append(Pending(r[0], r[1], r[2], r[3], r[4], body, bool(r[6]), r[7], r[8], prev))
        for row_id, reason in damaged:  # quarantined with the reason, counted; the drain goes on
            log.error("buffer row %d is %s: quarantined", row_id, reason)
            self.dead_letter([row_id], reason, quarantine=True)
        return out

    def ack(self, ids: list[int]) -> None:
        """Delete messages the broker has acknowledged. The delete is committed without an fsync of its own:
        a delete a power cut takes back only sends those messages again (consumers dedupe on seq), and the
        next scan's commit syncs the WAL with it; half the fsyncs of a steady gateway."""
        if not ids:
            return
        freed = 0
        with self._lock:
            try:
                if self.synchronous == "FULL":
                    self._db.execute("PRAGMA synchronous=NORMAL")
                db = self._begin()
                for i in range(0, len(ids), 500):
                    chunk = ids[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    (n,) = db.execute(
                        f"SELECT COALESCE(SUM(size), 0) FROM outbox WHERE id IN ({marks})", chunk
                    ).fetchone()
                    db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
                    freed += int(n)
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            finally:
                if self.synchronous == "FULL":
                    self._db.execute("PRAGMA synchronous=FULL")
            self._stored_bytes -= freed

    def dead_letter(self, ids: list[int], reason: str, *, quarantine: bool = False) -> None:
        """Move messages the broker will never accept (e.g. not authorised for the topic), or rows found
        damaged (`quarantine`), out of the queue, kept with the reason for a person to look at."""
        if not ids:
            return
        now = timing.now_ms()
        with self._lock:
            freed = 0
            try:
                db = self._begin()
                for i in ids:
                    row = db.execute(
                        "SELECT id, kind, topic, dev, seq, body, samples, created_ms, size, prev, h FROM outbox"
                        " WHERE id=?",
                        (i,),
                    ).fetchone()
                    if row is None:
                        continue
                    db.execute(
                        "INSERT OR REPLACE INTO dead_letters"
                        " (id, kind, topic, dev, seq, body, samples, created_ms, failed_ms, reason, prev, h)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (*row[:8], now, reason, row[9], row[10]),
                    )
                    db.execute("DELETE FROM outbox WHERE id=?", (i,))
                    freed += int(row[8]) - len(row[5])
                    if quarantine:
                        db.execute("UPDATE meta SET value=value+1 WHERE key='quarantined'")
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._stored_bytes -= freed

    def dead_letter_count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
        return int(n)

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """The dead letters, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, topic, dev, seq, samples, length(body), created_ms, failed_ms, reason"
                " FROM dead_letters ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(*r) for r in rows]

    def replay_dead_letters(self, ids: list[int] | None = None) -> int:
        """Put dead letters (all, or these ids) back in the queue, with their seq and time: the publisher
        sends them again (consumers dedupe on seq). Returns how many went back."""
        with self._lock:
            try:
                db = self._begin()
                where, params = ("", ()) if ids is None else (f" WHERE id IN ({','.join('?' * len(ids))})", tuple(ids))
                rows = db.execute(
                    "SELECT id, kind, topic, dev, seq, body, samples, created_ms, prev, h FROM dead_letters"
                    + where
                    + " ORDER BY id",
                    params,
                ).fetchall()
                for r in rows:
                    db.execute(
                        "INSERT INTO outbox (kind, topic, dev, seq, body, size, retain, samples, created_ms, prev, h)"
                        " VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
                        (r[1], r[2], r[3], r[4], r[5], len(r[5]), r[6], r[7], r[8], r[9]),
                    )
                    db.execute("DELETE FROM dead_letters WHERE id=?", (r[0],))
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return len(rows)

    def depth(self) -> Depth:
        with self._lock:
            n, size, oldest, samples = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(created_ms), COALESCE(SUM(samples), 0) FROM outbox"
            ).fetchone()
            dead, dead_bytes = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM dead_letters"
            ).fetchone()
            dropped_m, dropped_s = self._meta("dropped_messages"), self._meta("dropped_samples")
            quarantined = self._meta("quarantined")
        return Depth(n, size, oldest, samples, dropped_m, dropped_s, dead, dead_bytes, quarantined)

    def next_seq(self) -> int:
        with self._lock:
            return self._meta("next_seq")

    def close(self) -> None:
        with self._lock:
            self._db.close()
