"""The evidence ledger: what was received from which gateway and device, kept in SQL.

SQLite (WAL) by default, PostgreSQL by URL (see sqldb.py); the SQL is kept portable (ON CONFLICT
upserts, CASE rather than scalar MIN/MAX).

The row in `received` is the commit point of a message: `record_data` / `record_events` insert it
together with the statistics in one transaction, and do nothing when (ent, gw, seq) is already
there, so redeliveries and concurrent ingesters never count a message twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from cloud_bridge.cloud.ledger.sqldb import Cursor, Database
from cloud_bridge.wire.codec import DataMessage, DeviceMeta, EventMessage, Status, encode_meta

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
    # evidence (OEE, online time, networked equipment): see the "OEE and evidence" section of README.md
    # samples per device and 10 s slot (slot = epoch ms of its start), written with the data statistics
    """CREATE TABLE IF NOT EXISTS device_activity (
        ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, slot BIGINT NOT NULL,
        samples BIGINT NOT NULL, good_samples BIGINT NOT NULL, first_ts BIGINT NOT NULL, last_ts BIGINT NOT NULL,
        PRIMARY KEY (ent, gw, dev, slot))""",
    "CREATE INDEX IF NOT EXISTS device_activity_ent_slot ON device_activity (ent, slot)",
    # OEE state changes and counter snapshots, with the counter values they carry
    """CREATE TABLE IF NOT EXISTS device_counts (
        ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, ts BIGINT NOT NULL, kind TEXT NOT NULL,
        state TEXT, total REAL, good REAL, reject REAL, readings REAL, good_readings REAL)""",
    "CREATE INDEX IF NOT EXISTS device_counts_dev_ts ON device_counts (ent, gw, dev, ts)",
    # retained device metadata (birth): the latest per device, and every config hash ever announced
    """CREATE TABLE IF NOT EXISTS device_meta (
        ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, ts BIGINT NOT NULL, config_hash TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (ent, gw, dev))""",
    """CREATE TABLE IF NOT EXISTS meta_log (
        ent TEXT NOT NULL, gw TEXT NOT NULL, dev TEXT NOT NULL, ts BIGINT NOT NULL, config_hash TEXT NOT NULL,
        version TEXT NOT NULL,
        PRIMARY KEY (ent, gw, dev, ts))""",
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

# The newest status wins, with one exception: a gateway's last will. The broker publishes it when
# the gateway dies, but its payload was fixed at connect time, so its ts is older than the births
# the gateway sent since. An offline gateway status therefore always replaces an online one; its
# ts becomes the later of the two (the last moment the gateway was known alive).
_UPSERT_STATUS = """INSERT INTO device_status (ent, gw, dev, online, ts, reason, version)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (ent, gw, dev) DO UPDATE SET
        online = excluded.online,
        ts = CASE WHEN excluded.ts > device_status.ts THEN excluded.ts ELSE device_status.ts END,
        reason = excluded.reason,
        version = excluded.version
    WHERE excluded.ts >= device_status.ts
       OR (excluded.dev = '' AND NOT excluded.online AND device_status.online)"""

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

    def recorded(self, keys: Iterable[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
        """Those of `keys` (ent, gw, seq) already recorded: one indexed query per 500 keys."""
        unique = list(dict.fromkeys(keys))
        found: set[tuple[str, str, int]] = set()
        for i in range(0, len(unique), 500):
            chunk = unique[i : i + 500]
            # A CTE joined on the primary key: both SQLite and PostgreSQL look each key up in the index
            # (SQLite scans the whole table for the row-value form `(ent, gw, seq) IN (VALUES ...)`).
            sql = (
                f"WITH k (ent, gw, seq) AS (VALUES {', '.join(['(?, ?, ?)'] * len(chunk))}) "
                "SELECT r.ent, r.gw, r.seq FROM k JOIN received AS r ON r.ent = k.ent AND r.gw = k.gw AND r.seq = k.seq"
            )
            rows = self.db.rows(sql, [x for key in chunk for x in key])
            found.update((r["ent"], r["gw"], int(r["seq"])) for r in rows)
        return found

    def record_data(self, ent: str, msg: DataMessage) -> bool:
        """Record a data message and its statistics atomically; False (no change) if already recorded."""
        with self.db.transaction() as cur:
            return self._record_data(cur, ent, msg)

    def _record_data(self, cur: Cursor, ent: str, msg: DataMessage) -> bool:
        if not msg.samples:
            raise ValueError("a data message without samples")
        if not self._claim(cur, ent, msg.gw, msg.seq, msg.dev, "data"):
            return False
        self._add_data_stats(cur, [(ent, msg)])
        return True

    @staticmethod
    def _add_data_stats(cur: Cursor, items: Sequence[tuple[str, DataMessage]]) -> None:
        """Add the statistics of newly claimed data messages: aggregated in Python first, so one
        statement per device and per (device, tag) whatever the number of messages and samples.
        The result equals recording the messages one by one in this order (on equal timestamps the
        later sample is the tag's last value; a unit given later replaces an earlier one)."""
        devices: dict[tuple[str, str, str], list[int]] = {}  # → [first_seen, last_seen, samples, good]
        tags: dict[tuple[str, str, str], dict[str, list[Any]]] = {}  # → tag → [samples, last_ts, last_v, unit]
        for ent, msg in items:
            key = (ent, msg.gw, msg.dev)
            dev_tags = tags.setdefault(key, {})
            units = msg.units
            good = 0
            first = last = msg.samples[0].ts
            for s in msg.samples:
                ts = s.ts
                if s.q == "good":
                    good += 1
                if ts < first:
                    first = ts
                elif ts > last:
                    last = ts
                t = dev_tags.get(s.tag)
                if t is None:
                    dev_tags[s.tag] = [1, ts, s.v, units.get(s.tag)]
                else:
                    t[0] += 1
                    if ts >= t[1]:
                        t[1] = ts
                        t[2] = s.v
                    if units and (unit := units.get(s.tag)) is not None:
                        t[3] = unit
            d = devices.get(key)
            if d is None:
                devices[key] = [first, last, len(msg.samples), good]
            else:
                d[0] = min(d[0], first)
                d[1] = max(d[1], last)
                d[2] += len(msg.samples)
                d[3] += good
        cur.executemany(_UPSERT_DEVICE_STATS, [(*key, *d) for key, d in devices.items()])
        cur.executemany(
            _UPSERT_TAG_STATS,
            [
                (*key, tag, unit, n, ts, value_text(v))
                for key, dev_tags in tags.items()
                for tag, (n, ts, v, unit) in dev_tags.items()
            ],
        )
        _add_activity(cur, items)

    def record_events(self, ent: str, msg: EventMessage) -> bool:
        """Record an events message atomically; False (no change) if already recorded."""
        with self.db.transaction() as cur:
            return self._record_events(cur, ent, msg)

    def _record_events(self, cur: Cursor, ent: str, msg: EventMessage) -> bool:
        if not self._claim(cur, ent, msg.gw, msg.seq, msg.dev, "events"):
            return False
        cur.executemany(_INSERT_EVENT, [(ent, msg.gw, msg.dev, e.ts, e.kind, e.reason, e.state) for e in msg.events])
        _add_counts(cur, ent, msg)
        return True

    def record_batch(self, items: Sequence[tuple[str, DataMessage | EventMessage]]) -> list[bool]:
        """Record many (ent, message) pairs in ONE transaction (one commit: one fsync on SQLite).

        Per item: True if newly recorded, False if its (ent, gw, seq) was already there (recorded
        before, meanwhile by a concurrent ingester, or earlier in the same batch): idempotent, as
        `record_data` / `record_events`. All or nothing: if it raises, nothing of the batch is kept.
        """
        if any(isinstance(msg, DataMessage) and not msg.samples for _, msg in items):
            raise ValueError("a data message without samples")
        with self.db.transaction() as cur:
            results: list[bool] = []
            claimed_data: list[tuple[str, DataMessage]] = []
            for ent, msg in items:
                if isinstance(msg, DataMessage):
                    new = self._claim(cur, ent, msg.gw, msg.seq, msg.dev, "data")
                    if new:
                        claimed_data.append((ent, msg))
                else:
                    new = self._record_message(cur, ent, msg)
                results.append(new)
            if claimed_data:
                self._add_data_stats(cur, claimed_data)  # statistics of all data messages at once
            return results

    def _record_message(self, cur: Cursor, ent: str, msg: DataMessage | EventMessage) -> bool:
        """One message inside an open transaction, by its type (new message kinds go here)."""
        if isinstance(msg, DataMessage):
            return self._record_data(cur, ent, msg)
        if isinstance(msg, EventMessage):
            return self._record_events(cur, ent, msg)
        raise TypeError(f"the ledger cannot record a {type(msg).__name__}")

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

    # ------------------------------------------------------------ evidence (OEE, online time, metadata)

    def record_meta(self, ent: str, meta: DeviceMeta) -> None:
        """Keep a device's latest metadata and log the config hash it announces (idempotent)."""
        body = encode_meta(meta).decode()
        with self.db.transaction() as cur:
            cur.execute(_UPSERT_META, (ent, meta.gw, meta.dev, meta.ts, meta.config_hash, body))
            cur.execute(_INSERT_META_LOG, (ent, meta.gw, meta.dev, meta.ts, meta.config_hash, meta.version))


_UPSERT_ACTIVITY = """INSERT INTO device_activity (ent, gw, dev, slot, samples, good_samples, first_ts, last_ts)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (ent, gw, dev, slot) DO UPDATE SET
        samples = device_activity.samples + excluded.samples,
        good_samples = device_activity.good_samples + excluded.good_samples,
        first_ts = CASE WHEN excluded.first_ts < device_activity.first_ts
                        THEN excluded.first_ts ELSE device_activity.first_ts END,
        last_ts = CASE WHEN excluded.last_ts > device_activity.last_ts
                       THEN excluded.last_ts ELSE device_activity.last_ts END"""

_INSERT_COUNTS = """INSERT INTO device_counts
        (ent, gw, dev, ts, kind, state, total, good, reject, readings, good_readings)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""

_UPSERT_META = """INSERT INTO device_meta (ent, gw, dev, ts, config_hash, body) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (ent, gw, dev) DO UPDATE SET
        ts = excluded.ts, config_hash = excluded.config_hash, body = excluded.body
    WHERE excluded.ts >= device_meta.ts"""

_INSERT_META_LOG = """INSERT INTO meta_log (ent, gw, dev, ts, config_hash, version) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (ent, gw, dev, ts) DO NOTHING"""

ACTIVITY_SLOT_MS = 10_000
_COUNT_COLUMNS = ("total", "good", "reject", "readings", "good_readings")


def _add_activity(cur: Cursor, items: Sequence[tuple[str, DataMessage]]) -> None:
    """Samples per device and 10 s slot of newly claimed data messages (inside the claiming transaction)."""
    buckets: dict[tuple[str, str, str, int], list[int]] = {}  # → [samples, good, first_ts, last_ts]
    for ent, msg in items:
        for s in msg.samples:
            key = (ent, msg.gw, msg.dev, s.ts - s.ts % ACTIVITY_SLOT_MS)
            b = buckets.get(key)
            good = 1 if s.q == "good" else 0
            if b is None:
                buckets[key] = [1, good, s.ts, s.ts]
            else:
                b[0] += 1
                b[1] += good
                b[2] = min(b[2], s.ts)
                b[3] = max(b[3], s.ts)
    cur.executemany(_UPSERT_ACTIVITY, [(*k, *b) for k, b in buckets.items()])


def _add_counts(cur: Cursor, ent: str, msg: EventMessage) -> None:
    """OEE state changes and counter snapshots of a newly claimed events message, with their counts."""
    rows = []
    for e in msg.events:
        if e.kind not in ("state", "snapshot") and e.counts is None:
            continue
        c = e.counts or {}
        rows.append(
            (
                ent,
                msg.gw,
                msg.dev,
                e.ts,
                e.kind,
                e.state,
                *(None if (v := c.get(k)) is None else float(v) for k in _COUNT_COLUMNS),
            )
        )
    cur.executemany(_INSERT_COUNTS, rows)


def _filters(**conditions: str | None) -> tuple[str, list[str]]:
    items = [(k, v) for k, v in conditions.items() if v is not None]
    clauses = [f"{k} = ?" for k, _ in items]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), [v for _, v in items]
