"""The edge's own OEE history: state changes, online/offline transitions and counter readings per device,
in a small SQLite file in data_dir (`oee_history.db`), kept for a bounded time.

It feeds the edge API's OEE endpoint (`GET /api/v1/metrics/oee`) and remembers when the gateway was
last alive, so that after an unclean stop (power cut, kill) the devices it last saw online are
reported offline from that moment rather than counted online through the outage.

Writes come from the asyncio loop (the devices' observers); reads from the API's worker threads:
one connection, guarded by a lock.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cloud_bridge.metrics import CountPoint
from cloud_bridge.uplink.localdb import open_local_db
from edge_config.timing import is_future, now_ms

_SCHEMA = """
CREATE TABLE IF NOT EXISTS states (dev TEXT NOT NULL, ts INTEGER NOT NULL, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS states_dev_ts ON states (dev, ts);
CREATE TABLE IF NOT EXISTS online (dev TEXT NOT NULL, ts INTEGER NOT NULL, online INTEGER NOT NULL,
                                   reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS online_dev_ts ON online (dev, ts);
CREATE TABLE IF NOT EXISTS counts (dev TEXT NOT NULL, ts INTEGER NOT NULL, total REAL, good REAL, reject REAL);
CREATE INDEX IF NOT EXISTS counts_dev_ts ON counts (dev, ts);
CREATE TABLE IF NOT EXISTS alive (id INTEGER PRIMARY KEY CHECK (id = 1), ts INTEGER NOT NULL);
"""

log = logging.getLogger(__name__)

ALIVE_EVERY_MS = 5_000
PRUNE_EVERY_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Window:
    """What the OEE maths needs for one device and window (see cloud_bridge.metrics.compute_oee)."""

    states: list[tuple[int, str]]
    online: list[tuple[int, bool]]
    counts: list[CountPoint]


class OeeHistory:
    def __init__(
        self, path: str | Path, *, retention_s: float = 744 * 3600.0, max_future_skew_s: float = 300.0
    ) -> None:
        self.path = Path(path)
        self.retention_ms = int(retention_s * 1000)
        self.max_future_skew_ms = int(max_future_skew_s * 1000)
        self._lock = threading.Lock()
        # synchronous=NORMAL: history, not the commit point of anything. A damaged file is moved aside and
        # the history starts afresh (the evidence is in the cloud; only the edge's own OEE view loses it)
        opened = open_local_db(self.path, _SCHEMA, synchronous="NORMAL", what="OEE history")
        self._db = opened.db
        self.moved_aside = opened.moved_aside
        self.write_errors = 0
        self._error_logged = -60.0
        self._alive_written = 0
        self._next_prune = 0
        self.closed = False

    # ------------------------------------------------------------ writing

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        """A write that fails (disk full, I/O error) is counted and logged once a minute, never raised: the
        history is the edge's own view; the evidence goes through the buffer."""
        with self._lock:
            if self.closed:
                return
            try:
                self._db.execute(sql, params)
            except sqlite3.Error as e:
                self.write_errors += 1
                now = time.monotonic()
                if now - self._error_logged >= 60.0:
                    self._error_logged = now
                    log.error("OEE history %s: a write failed (%s); %d so far", self.path, e, self.write_errors)

    def record_state(self, dev: str, ts: int, state: str) -> None:
        self._write("INSERT INTO states (dev, ts, state) VALUES (?, ?, ?)", (dev, ts, state))

    def record_online(self, dev: str, ts: int, online: bool, reason: str) -> None:
        self._write("INSERT INTO online (dev, ts, online, reason) VALUES (?, ?, ?, ?)", (dev, ts, int(online), reason))

    def record_counts(self, dev: str, ts: int, total: float | None, good: float | None, reject: float | None) -> None:
        self._write(
            "INSERT INTO counts (dev, ts, total, good, reject) VALUES (?, ?, ?, ?, ?)", (dev, ts, total, good, reject)
        )

    def touch(self, ts: int | None = None, *, force: bool = False) -> None:
        """Note that the gateway is alive (written at most every few seconds unless forced). A time from the
        future (beyond the allowed skew) is taken as the gateway's own clock: it never marks the gateway
        alive ahead of time nor prunes the history."""
        clock = now_ms()
        now = ts if ts is not None and not is_future(ts, clock, self.max_future_skew_ms) else clock
        if not force and now - self._alive_written < ALIVE_EVERY_MS:
            return
        self._alive_written = now
        self._write(
            "INSERT INTO alive (id, ts) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET ts = excluded.ts "
            "WHERE excluded.ts > alive.ts",
            (now,),
        )
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY_MS
            self.prune(now)

    def prune(self, now_ms: int) -> None:
        """Drop what is older than the retention, keeping each device's last state and transition before it."""
        cutoff = now_ms - self.retention_ms
        with self._lock:
            if self.closed:
                return
            for table in ("states", "online"):
                self._db.execute(
                    f"DELETE FROM {table} WHERE ts < (SELECT MAX(t2.ts) FROM {table} AS t2"
                    f" WHERE t2.dev = {table}.dev AND t2.ts < ?)",
                    (cutoff,),
                )
            self._db.execute("DELETE FROM counts WHERE ts < ?", (cutoff,))

    # ------------------------------------------------------------ reading

    def last_alive(self) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT ts FROM alive WHERE id = 1").fetchone()
        return int(row[0]) if row else None

    def open_devices(self) -> dict[str, int]:
        """Devices whose last recorded transition is `online`, with its time."""
        with self._lock:
            rows = self._db.execute(
                "SELECT o.dev, o.ts, o.online FROM online AS o JOIN (SELECT dev, MAX(rowid) AS r FROM online"
                " GROUP BY dev) AS last ON o.rowid = last.r"
            ).fetchall()
        return {dev: int(ts) for dev, ts, online in rows if online}

    def window(self, dev: str, start: int, end: int, margin_ms: int = 0) -> Window:
        """History of `dev` for [start, end): the points inside, the last ones before (two states, to tell a
        micro-stop at the start), states up to `margin_ms` past the end, and the first count reading after."""
        with self._lock:
            db = self._db
            states = db.execute(
                "SELECT ts, state FROM (SELECT ts, state, rowid AS r FROM states WHERE dev = ? AND ts < ?"
                " ORDER BY ts DESC, r DESC LIMIT 2)"
                " UNION ALL SELECT ts, state FROM states WHERE dev = ? AND ts >= ? AND ts <= ?",
                (dev, start, dev, start, end + margin_ms),
            ).fetchall()
            online = db.execute(
                "SELECT ts, online FROM (SELECT ts, online, rowid AS r FROM online WHERE dev = ? AND ts < ?"
                " ORDER BY ts DESC, r DESC LIMIT 1)"
                " UNION ALL SELECT ts, online FROM online WHERE dev = ? AND ts >= ? AND ts <= ?",
                (dev, start, dev, start, end + margin_ms),
            ).fetchall()
            counts = db.execute(
                "SELECT ts, total, good, reject FROM (SELECT ts, total, good, reject FROM counts"
                " WHERE dev = ? AND ts < ? ORDER BY ts DESC LIMIT 1)"
                " UNION ALL SELECT ts, total, good, reject FROM counts WHERE dev = ? AND ts >= ? AND ts < ?"
                " UNION ALL SELECT ts, total, good, reject FROM (SELECT ts, total, good, reject FROM counts"
                " WHERE dev = ? AND ts >= ? ORDER BY ts LIMIT 1)",
                (dev, start, dev, start, end, dev, end),
            ).fetchall()
        return Window(
            sorted(((int(t), s) for t, s in states), key=lambda p: p[0]),
            sorted(((int(t), bool(o)) for t, o in online), key=lambda p: p[0]),
            sorted((CountPoint(int(t), a, b, c) for t, a, b, c in counts), key=lambda p: p.ts),
        )

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._db.close()
