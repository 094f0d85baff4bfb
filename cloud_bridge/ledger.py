"""The evidence ledger: what was received from which gateway and device, kept in SQL.

SQLite (WAL) for now; the SQL is kept portable (ON CONFLICT upserts, CASE rather than scalar
MIN/MAX) so a PostgreSQL backend only needs another connection and placeholder style.

The row in `received` is the commit point of a message: `record_data` / `record_events` insert it
together with the statistics in one transaction, and do nothing when (ent, gw, seq) is already
there, so redeliveries and concurrent ingesters never count a message twice.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloud_bridge.wire import DataMessage, EventMessage, Status

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS received (
        ent TEXT NOT NULL, gw TEXT NOT NULL, seq BIGINT NOT NULL, dev TEXT NOT NULL, kind TEXT NOT NULL,
        received_ms BIGINT NOT NULL,
        PRIMARY KEY (ent, gw, seq))""",
    """CREATE TABLE IF NOT EXISTS device_events (
        ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, ts BIGINT NOT NULL, kind TEXT NOT NULL,
        reason TEXT NOT NULL, state TEXT)""",
    "CREATE INDEX IF NOT EXISTS device_events_dev_ts ON device_events (ent, gw, dev, ts)",
    """CREATE TABLE IF NOT EXISTS device_status (
        ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, online BOOLEAN NOT NULL, ts BIGINT NOT NULL,
        reason TEXT NOT NULL, version TEXT,
        PRIMARY KEY (ent, gw, dev))""",
    """CREATE TABLE IF NOT EXISTS device_stats (
        ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL, samples BIGINT NOT NULL, good_samples BIGINT NOT NULL,
        PRIMARY KEY (ent, gw, dev))""",
    """CREATE TABLE IF NOT EXISTS tag_stats (
        ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, tag TEXT NOT NULL, unit TEXT,
        samples BIGINT NOT NULL, last_ts BIGINT NOT NULL, last_value_text TEXT NOT NULL,
        PRIMARY KEY (ent, gw, dev, tag))""",
    # SQLite: INTEGER PRIMARY KEY numbers rows itself (PostgreSQL: BIGINT GENERATED ALWAYS AS IDENTITY).
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY, received_ms BIGINT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,
        reason TEXT NOT NULL)""",
)

_INSERT_RECEIVED = """INSERT INTO received (ent, gw, seq, dev, kind, received_ms) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (ent, gw, seq) DO NOTHING"""

_UPSERT_DEVICE_STATS = """INSERT INTO device_stats
        (ent, gw, dev, first_seen, last_seen, samples, good_samples)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (ent, gw, dev) DO UPDATE SET
        first_seen = CASE WHEN excluded.first_seen < device_stats.first_seen
                          THEN excluded.first_seen ELSE device_stats.first_seen END,
        last_seen = CASE WHEN excluded.last_seen > device_stats.last_seen
                         THEN excluded.last_seen ELSE device_stats.last_seen END,
        samples = device_stats.samples + excluded.samples,
        good_samples = device_stats.good_samples + excluded.good_samples"""

_UPSERT_TAG_STATS = """INSERT INTO tag_stats (ent, gw, dev, tag, unit, samples, last_ts, last_value_text)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (ent, gw, dev, tag) DO UPDATE SET
        unit = COALESCE(excluded.unit, tag_stats.unit),
        samples = tag_stats.samples + excluded.samples,
        last_value_text = CASE WHEN excluded.last_ts >= tag_stats.last_ts
                               THEN excluded.last_value_text ELSE tag_stats.last_value_text END,
        last_ts = CASE WHEN excluded.last_ts > tag_stats.last_ts
                       THEN excluded.last_ts ELSE tag_stats.last_ts END"""

_UPSERT_STATUS = """INSERT INTO device_status (ent, gw, dev, online, ts, reason, version)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (ent, gw, dev) DO UPDATE SET
        online = excluded.online, ts = excluded.ts, reason = excluded.reason, version = excluded.version
    WHERE excluded.ts >= device_status.ts"""

_INSERT_EVENT = """INSERT INTO device_events (ent, gw, dev, ts, kind, reason, state) VALUES (?, ?, ?, ?, ?, ?, ?)"""


def value_text(v: object) -> str:
    """A sample value as text, JSON style: true/false, 42, 1.5, strings as they are."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)  # int, or a finite float (the wire allows no others)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Ledger:
    """The evidence ledger behind one class; `url` is `sqlite:///path/ledger.db` (or `sqlite:///:memory:`)."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        if not url.startswith("sqlite:///"):
            raise ValueError(f"{url!r}: only sqlite:///path is supported so far")
        path = url[len("sqlite:///") :]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged message must survive a power cut
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in SCHEMA:
                    self._db.execute(stmt)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------ writing

    def _claim(self, ent: str, gw: str, seq: int, dev: str, kind: str) -> bool:
        """Insert the (ent, gw, seq) row inside the open transaction; False if it was already there."""
        cur = self._db.execute(_INSERT_RECEIVED, (ent, gw, seq, dev, kind, _now_ms()))
        return cur.rowcount == 1

    def _transaction(self, body: Any) -> bool:
        """Run body() in one write transaction; commit when it returns True, roll back otherwise."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                ok = bool(body())
                self._db.execute("COMMIT" if ok else "ROLLBACK")
                return ok
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def is_duplicate(self, ent: str, gw: str, seq: int) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM received WHERE ent = ? AND gw = ? AND seq = ?", (ent, gw, seq)
            ).fetchone()
        return row is not None

    def record_data(self, ent: str, msg: DataMessage) -> bool:
        """Record a data message and its statistics atomically; False (no change) if already recorded."""
        # Aggregate per tag in Python: one statement per tag, not per sample.
        tags: dict[str, list[Any]] = {}  # tag → [samples, last_ts, last_value]
        if not msg.samples:
            raise ValueError("a data message without samples")
        good = 0
        first = last = msg.samples[0].ts
        for s in msg.samples:
            if s.q == "good":
                good += 1
            first = min(first, s.ts)
            last = max(last, s.ts)
            t = tags.get(s.tag)
            if t is None:
                tags[s.tag] = [1, s.ts, s.v]
            else:
                t[0] += 1
                if s.ts >= t[1]:
                    t[1], t[2] = s.ts, s.v
        tag_rows = [
            (ent, msg.gw, msg.dev, tag, msg.units.get(tag), n, ts, value_text(v)) for tag, (n, ts, v) in tags.items()
        ]

        def body() -> bool:
            if not self._claim(ent, msg.gw, msg.seq, msg.dev, "data"):
                return False
            self._db.execute(_UPSERT_DEVICE_STATS, (ent, msg.gw, msg.dev, first, last, len(msg.samples), good))
            self._db.executemany(_UPSERT_TAG_STATS, tag_rows)
            return True

        return self._transaction(body)

    def record_events(self, ent: str, msg: EventMessage) -> bool:
        """Record an events message atomically; False (no change) if already recorded."""
        rows = [(ent, msg.gw, msg.dev, e.ts, e.kind, e.reason, e.state) for e in msg.events]

        def body() -> bool:
            if not self._claim(ent, msg.gw, msg.seq, msg.dev, "events"):
                return False
            self._db.executemany(_INSERT_EVENT, rows)
            return True

        return self._transaction(body)

    def record_status(self, ent: str, gw: str, dev: str | None, status: Status) -> None:
        """Keep the latest status of a device (or of the gateway itself when `dev` is None)."""
        row = (ent, gw, dev or "", status.online, status.ts, status.reason, status.version)
        with self._lock:
            self._db.execute(_UPSERT_STATUS, row)  # autocommit: one statement

    def dead_letter(self, topic: str, payload: bytes, reason: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO dead_letters (received_ms, topic, payload, reason) VALUES (?, ?, ?, ?)",
                (_now_ms(), topic, payload, reason),
            )

    # ------------------------------------------------------------ reading

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def devices(self) -> list[dict[str, Any]]:
        """Every device seen in data or status: ent, gw, dev, first_seen, last_seen, samples,
        good_samples (None/0 without data), online, status_ts, reason (None without status)."""
        merged: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in self._rows("SELECT * FROM device_stats"):
            merged[(r["ent"], r["gw"], r["dev"])] = {**r, "online": None, "status_ts": None, "reason": None}
        for r in self._rows("SELECT ent, gw, dev, online, ts, reason FROM device_status WHERE dev <> ''"):
            d = merged.setdefault(
                (r["ent"], r["gw"], r["dev"]),
                {
                    "ent": r["ent"],
                    "gw": r["gw"],
                    "dev": r["dev"],
                    "first_seen": None,
                    "last_seen": None,
                    "samples": 0,
                    "good_samples": 0,
                },
            )
            d.update(online=bool(r["online"]), status_ts=r["ts"], reason=r["reason"])
        return [merged[k] for k in sorted(merged)]

    def gateways(self) -> list[dict[str, Any]]:
        """Latest retained status of each gateway: ent, gw, online, ts, version."""
        rows = self._rows("SELECT ent, gw, online, ts, version FROM device_status WHERE dev = '' ORDER BY ent, gw")
        for r in rows:
            r["online"] = bool(r["online"])
        return rows

    def total_samples(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COALESCE(SUM(samples), 0) FROM device_stats").fetchone()
        return int(n)

    def received_count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM received").fetchone()
        return int(n)

    def dead_letter_count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
        return int(n)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT id, received_ms, topic, payload, reason FROM dead_letters ORDER BY id DESC LIMIT ?",
            (limit,),
        )

    def events(self, dev: str | None = None, *, ent: str | None = None, gw: str | None = None) -> list[dict[str, Any]]:
        """Device events (ent, gw, dev, ts, kind, reason, state) by time, optionally filtered."""
        where, params = _filters(ent=ent, gw=gw, dev=dev)
        return self._rows(f"SELECT * FROM device_events{where} ORDER BY ts, ent, gw, dev", params)

    def tag_stats(self, dev: str, *, ent: str | None = None, gw: str | None = None) -> list[dict[str, Any]]:
        """Per-tag statistics of a device: ent, gw, dev, tag, unit, samples, last_ts, last_value_text."""
        where, params = _filters(ent=ent, gw=gw, dev=dev)
        return self._rows(f"SELECT * FROM tag_stats{where} ORDER BY ent, gw, dev, tag", params)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _filters(**conditions: str | None) -> tuple[str, list[str]]:
    items = [(k, v) for k, v in conditions.items() if v is not None]
    clauses = [f"{k} = ?" for k, _ in items]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), [v for _, v in items]
