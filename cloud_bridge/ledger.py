"""The evidence ledger: what was received from which gateway and device, kept in SQL.

SQLite (WAL) by default, PostgreSQL by URL (see sqldb.py); the SQL is kept portable (ON CONFLICT
upserts, CASE rather than scalar MIN/MAX).

The row in `received` is the commit point of a message: `record_data` / `record_events` insert it
together with the statistics in one transaction, and do nothing when (ent, gw, seq) is already
there, so redeliveries and concurrent ingesters never count a message twice.
"""

from __future__ import annotations

import time
from typing import Any

from cloud_bridge.sqldb import Cursor, Database
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
    """The evidence ledger behind one class; `url` is `sqlite:///path/ledger.db` (or `sqlite:///:memory:`)
    or `postgresql://user@host/db`."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        self.url = url
        self.db = Database(url, busy_timeout=busy_timeout)
        self.db.migrate(SCHEMA)

    # ------------------------------------------------------------ writing

    @staticmethod
    def _claim(cur: Cursor, ent: str, gw: str, seq: int, dev: str, kind: str) -> bool:
        """Insert the (ent, gw, seq) row inside the open transaction; False if it was already there."""
        return cur.execute(_INSERT_RECEIVED, (ent, gw, seq, dev, kind, _now_ms())) == 1

    def is_duplicate(self, ent: str, gw: str, seq: int) -> bool:
        return bool(self.db.rows("SELECT 1 AS x FROM received WHERE ent = ? AND gw = ? AND seq = ?", (ent, gw, seq)))

    def record_data(self, ent: str, msg: DataMessage) -> bool:
        """Record a data message and its statistics atomically; False (no change) if already recorded."""
        with self.db.transaction() as cur:
            return self._record_data(cur, ent, msg)

    def _record_data(self, cur: Cursor, ent: str, msg: DataMessage) -> bool:
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
        if not self._claim(cur, ent, msg.gw, msg.seq, msg.dev, "data"):
            return False
        cur.execute(_UPSERT_DEVICE_STATS, (ent, msg.gw, msg.dev, first, last, len(msg.samples), good))
        cur.executemany(
            _UPSERT_TAG_STATS,
            [(ent, msg.gw, msg.dev, tag, msg.units.get(tag), n, ts, value_text(v)) for tag, (n, ts, v) in tags.items()],
        )
        return True

    def record_events(self, ent: str, msg: EventMessage) -> bool:
        """Record an events message atomically; False (no change) if already recorded."""
        with self.db.transaction() as cur:
            return self._record_events(cur, ent, msg)

    def _record_events(self, cur: Cursor, ent: str, msg: EventMessage) -> bool:
        if not self._claim(cur, ent, msg.gw, msg.seq, msg.dev, "events"):
            return False
        cur.executemany(_INSERT_EVENT, [(ent, msg.gw, msg.dev, e.ts, e.kind, e.reason, e.state) for e in msg.events])
        return True

    def record_status(self, ent: str, gw: str, dev: str | None, status: Status) -> None:
        """Keep the latest status of a device (or of the gateway itself when `dev` is None)."""
        self.db.execute(_UPSERT_STATUS, (ent, gw, dev or "", status.online, status.ts, status.reason, status.version))

    def dead_letter(self, topic: str, payload: bytes, reason: str) -> None:
        self.db.execute(
            "INSERT INTO dead_letters (received_ms, topic, payload, reason) VALUES (?, ?, ?, ?)",
            (_now_ms(), topic, payload, reason),
        )

    # ------------------------------------------------------------ reading

    def devices(self) -> list[dict[str, Any]]:
        """Every device seen in data or status: ent, gw, dev, first_seen, last_seen, samples,
        good_samples (None/0 without data), online, status_ts, reason (None without status)."""
        merged: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in self.db.rows("SELECT * FROM device_stats"):
            merged[(r["ent"], r["gw"], r["dev"])] = {**r, "online": None, "status_ts": None, "reason": None}
        for r in self.db.rows("SELECT ent, gw, dev, online, ts, reason FROM device_status WHERE dev <> ''"):
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
        rows = self.db.rows("SELECT ent, gw, online, ts, version FROM device_status WHERE dev = '' ORDER BY ent, gw")
        for r in rows:
            r["online"] = bool(r["online"])
        return rows

    def total_samples(self) -> int:
        return int(self.db.scalar("SELECT COALESCE(SUM(samples), 0) AS n FROM device_stats") or 0)

    def received_count(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) AS n FROM received") or 0)

    def dead_letter_count(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) AS n FROM dead_letters") or 0)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.rows(
            "SELECT id, received_ms, topic, payload, reason FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,)
        )
        for r in rows:
            r["payload"] = bytes(r["payload"])
        return rows

    def events(self, dev: str | None = None, *, ent: str | None = None, gw: str | None = None) -> list[dict[str, Any]]:
        """Device events (ent, gw, dev, ts, kind, reason, state) by time, optionally filtered."""
        where, params = _filters(ent=ent, gw=gw, dev=dev)
        return self.db.rows(f"SELECT * FROM device_events{where} ORDER BY ts, ent, gw, dev", params)

    def tag_stats(self, dev: str, *, ent: str | None = None, gw: str | None = None) -> list[dict[str, Any]]:
        """Per-tag statistics of a device: ent, gw, dev, tag, unit, samples, last_ts, last_value_text."""
        where, params = _filters(ent=ent, gw=gw, dev=dev)
        return self.db.rows(f"SELECT * FROM tag_stats{where} ORDER BY ent, gw, dev, tag", params)

    def close(self) -> None:
        self.db.close()


def _filters(**conditions: str | None) -> tuple[str, list[str]]:
    items = [(k, v) for k, v in conditions.items() if v is not None]
    clauses = [f"{k} = ?" for k, _ in items]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), [v for _, v in items]
