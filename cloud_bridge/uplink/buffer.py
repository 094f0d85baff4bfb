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
from edge_config import timing

log = logging.getLogger(__name__)

Kind = Literal["data", "events", "status"]
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
"""


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
    ) -> None:
        self.path = Path(path)
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
        with self._lock:
            try:
                db = self._begin()
                next_seq = self._meta("next_seq")
                for m in messages:
                    seq = None
                    if m.kind != "status":
                        seq = next_seq
                        next_seq += 1
                    seqs.append(seq)
                    body = zlib.compress(m.body, 1) if self.compress else m.body
                    added += len(body)
                    rows.append((m.kind, m.topic, m.dev, seq, body, len(body), int(m.retain), m.samples, now))
                if next_seq >= self._hwm:
                    self._reserve(next_seq)
                db.executemany(
                    "INSERT INTO outbox (kind, topic, dev, seq, body, size, retain, samples, created_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (next_seq,))
                if self._stored_bytes + added > self.max_bytes:
                    added -= self._drop_oldest(self._stored_bytes + added - self.max_bytes)
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                self._stored_bytes = self._sum_bytes()
                raise
            self._stored_bytes += added
        return seqs

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
        for row_id, size, n in self._db.execute("SELECT id, size, samples FROM outbox ORDER BY id"):
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
            rows = self._db.execute(
                "SELECT id, kind, topic, dev, seq, body, retain, samples, created_ms FROM outbox"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        out = []
        damaged: list[tuple[int, str]] = []
        for r in rows:
            try:
                body = zlib.decompress(r[5]) if self.compress else bytes(r[5])
            except (zlib.error, TypeError) as e:
                damaged.append((r[0], f"damaged: the stored body cannot be read ({e})"))
                continue
            out.append(Pending(r[0], r[1], r[2], r[3], r[4], body, bool(r[6]), r[7], r[8]))
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
                        "SELECT id, kind, topic, dev, seq, body, samples, created_ms, size FROM outbox WHERE id=?", (i,)
                    ).fetchone()
                    if row is None:
                        continue
                    db.execute(
                        "INSERT OR REPLACE INTO dead_letters"
                        " (id, kind, topic, dev, seq, body, samples, created_ms, failed_ms, reason)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (*row[:8], now, reason),
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
                    "SELECT id, kind, topic, dev, seq, body, samples, created_ms FROM dead_letters"
                    + where
                    + " ORDER BY id",
                    params,
                ).fetchall()
                for r in rows:
                    db.execute(
                        "INSERT INTO outbox (kind, topic, dev, seq, body, size, retain, samples, created_ms)"
                        " VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                        (r[1], r[2], r[3], r[4], r[5], len(r[5]), r[6], r[7]),
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
