"""The store-and-forward buffer: every message that leaves the gateway waits here until the broker acks it.

SQLite in WAL mode, one row per outgoing MQTT message (a scan's batch of samples is one row,
never one row per sample). Data and event messages get the gateway's `seq` when they are
written; the counter lives in the same database and transaction, so it survives restarts and
never repeats. Rows are deleted only when the broker acknowledges them (PUBACK).

Durability: `synchronous=FULL` by default, so a committed row survives power loss, at the cost
of one fsync per enqueue; `synchronous=NORMAL` survives a killed process but may lose the last
transactions on power loss.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["data", "events", "status"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    dev TEXT NOT NULL,
    seq INTEGER,
    body BLOB NOT NULL,
    retain INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 1);
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
class Depth:
    messages: int
    bytes: int
    oldest_ms: int | None  # created_ms of the oldest unsent message


class Buffer:
    """Durable FIFO of outgoing messages with a persistent per-gateway sequence counter."""

    def __init__(self, path: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(_SCHEMA)

    def enqueue(self, messages: list[Outgoing], now_ms: int | None = None) -> list[int | None]:
        """Write messages in one transaction; return the seq given to each (None for status)."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        seqs: list[int | None] = []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                (next_seq,) = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
                rows = []
                for m in messages:
                    seq = None
                    if m.kind != "status":
                        seq = next_seq
                        next_seq += 1
                    seqs.append(seq)
                    rows.append((m.kind, m.topic, m.dev, seq, m.body, int(m.retain), m.samples, now))
                db.executemany(
                    "INSERT INTO outbox (kind, topic, dev, seq, body, retain, samples, created_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (next_seq,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return seqs

    def peek(self, limit: int, after_id: int = 0) -> list[Pending]:
        """The oldest `limit` messages with id above `after_id`, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, topic, dev, seq, body, retain, samples, created_ms FROM outbox"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [Pending(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), bool(r[6]), r[7], r[8]) for r in rows]

    def ack(self, ids: list[int]) -> None:
        """Delete messages the broker has acknowledged."""
        if not ids:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in ids])
            self._db.execute("COMMIT")

    def depth(self) -> Depth:
        with self._lock:
            n, size, oldest = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0), MIN(created_ms) FROM outbox"
            ).fetchone()
        return Depth(n, size, oldest)

    def next_seq(self) -> int:
        with self._lock:
            (value,) = self._db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
        return int(value)

    def close(self) -> None:
        with self._lock:
            self._db.close()
