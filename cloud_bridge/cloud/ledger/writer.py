"""The evidence ledger: what was received from which gateway and device, kept in SQL.

SQLite (WAL) by default, PostgreSQL by URL; tables in schema.py, statements as SQLAlchemy Core
constructs compiled by each database's dialect (see sqldb.py). The upserts keep to what both
databases do alike (CASE rather than scalar MIN/MAX or GREATEST).

The claim of a message's (ent, gw, seq) in `received_seqs` is its commit point: `record_batch` (and
`record_data` / `record_events`) merges the seqs of a batch into their gateways' seq ranges together
with the statistics in one transaction, and counts only the messages whose seq no range held yet, so
redeliveries and concurrent ingesters never count a message twice: the ranges of a gateway are read and
rewritten under a lock (PostgreSQL: a transaction-scoped advisory lock per gateway, taken in sorted
order; SQLite: the write lock every transaction takes at BEGIN). Tables of earlier releases (`received`
per message, `device_activity` per 10 s slot) are turned into ranges and hours at start-up.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, TypeVar

import lz4.block
import msgspec
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Executable,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    inspect,
    not_,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import ColumnElement

from cloud_bridge.cloud.ledger import ranges as rg
from cloud_bridge.cloud.ledger.activity import HOUR_MS, MINUTE_MS, hour_of, minute_bit
from cloud_bridge.cloud.ledger.days import forget_days
from cloud_bridge.cloud.ledger.schema import (
    dead_letters,
    device_activity,
    device_counts,
    device_events,
    device_hours,
    device_meta,
    device_stats,
    device_status,
    message_bodies,
    meta_log,
    metadata,
    received,
    received_seqs,
    tag_stats,
    tag_stats_pending,
)
from cloud_bridge.cloud.ledger.sqldb import Database, Encoder, execute_many, pg_array
from cloud_bridge.wire.codec import DataMessage, DeviceMeta, EventMessage, Status, encode_meta

ACTIVITY_SLOT_MS = HOUR_MS  # the rows of `device_hours`
_COUNT_COLUMNS = ("total", "good", "reject", "readings", "good_readings")
_Key = tuple[str, str, int]  # (ent, gw, seq): a message's identity
Proof = tuple[bytes, bytes | memoryview]  # (chain hash, signed part) of a chained message
Flags = dict[tuple[str, str, str], int]  # (ent, gw, what) → count: what the ledger kept out of the evidence
NO_HORIZON = 2**63 - 1
_GATEWAYS_PER_QUERY = 500
M = TypeVar("M", DataMessage, EventMessage)


def value_text(v: object) -> str:
    """A sample value as text, JSON style: true/false, 42, 1.5, strings as they are."""
    t = type(v)
    if t is float:
        return float.__repr__(v)
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)  # int, or a finite float (the wire allows no others)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _later(new: ColumnElement[Any], old: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((new > old, new), else_=old)


def _earlier(new: ColumnElement[Any], old: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((new < old, new), else_=old)


@dataclass(frozen=True, slots=True)
class _Writes:
    """The ledger's upserts, built once for the database's dialect."""

    unclaim: Executable
    claim: Executable  # a new range of a gateway's seqs
    device_stats: Executable
    tag_stats: Executable
    activity: Executable
    status: Executable
    meta: Executable
    meta_log: Executable
    body: Executable

    @classmethod
    def build(cls, db: Database) -> _Writes:
        st, dm = device_status.c, device_meta.c
        rs = received_seqs.c
        return cls(
            # a gateway's range that a claim merged into a larger one
            unclaim=delete(received_seqs).where(
                rs.ent == bindparam("ent"), rs.gw == bindparam("gw"), rs.first_seq == bindparam("first_seq")
            ),
            claim=received_seqs.insert(),
            device_stats=db.upsert(device_stats, _device_stats_update),
            tag_stats=db.upsert(tag_stats, _tag_stats_update),
            activity=db.upsert(device_hours, _activity_update),
            # The newest status wins, with one exception: a gateway's last will. The broker publishes
            # it when the gateway dies, but its payload was fixed at connect time, so its ts is older
            # than the births the gateway sent since. An offline gateway status therefore always
            # replaces an online one; its ts becomes the later of the two (the last moment the gateway
            # was known alive).
            status=db.upsert(
                device_status,
                lambda x: {
                    "online": x.online,
                    "ts": _later(x.ts, st.ts),
                    "reason": x.reason,
                    "version": x.version,
                },
                where=lambda x: or_(x.ts >= st.ts, and_(x.dev == "", not_(x.online), st.online)),
            ),
            meta=db.upsert(
                device_meta,
                lambda x: {"ts": x.ts, "config_hash": x.config_hash, "body": x.body},
                where=lambda x: x.ts >= dm.ts,
            ),
            meta_log=db.upsert(meta_log),
            body=db.upsert(message_bodies),
        )


@dataclass(frozen=True, slots=True)
class _Bulk:
    """Many rows of one table in one statement. PostgreSQL: `INSERT … SELECT FROM unnest(arrays) ON
    CONFLICT …`, one array parameter per column: a single statement the server plans once and runs
    over every row, where an executemany sends and runs one statement per row (the tag statistics of a
    batch of 500 small messages are thousands of rows: most of the ledger transaction). SQLite (in the
    process, no round trips): the dialect's executemany of the row-at-a-time upsert. Rows are tuples in
    the table's column order, of distinct keys (one statement may change a row only once), sorted by
    key by the caller (one lock order for concurrent ingesters)."""

    columns: tuple[str, ...]
    unnest: Executable | None  # None: executemany
    encoders: tuple[Encoder, ...] = ()  # PostgreSQL: each column's values → its array parameter (pg_array)

    @classmethod
    def build(
        cls,
        table: Table,
        dialect: str,
        update: Callable[[Any], Mapping[str, Any]] | None,
        *,
        on_conflict: bool = True,
    ) -> _Bulk:
        """The bulk upsert of `table` (on a key already there: `update(excluded)`, or nothing without
        `update`); a plain INSERT, failing on a key already there, with `on_conflict=False`."""
        columns = tuple(c.name for c in table.columns)
        if dialect != "postgresql":
            return cls(columns, None)
        src, encoders = _unnest(list(table.columns))
        ins = postgresql.insert(table).from_select(list(columns), select(*(src.c[c] for c in columns)))
        keys = list(table.primary_key.columns)
        stmt: Executable = ins
        if on_conflict:
            stmt = (
                ins.on_conflict_do_nothing(index_elements=keys)
                if update is None
                else ins.on_conflict_do_update(index_elements=keys, set_=update(ins.excluded))
            )
        return cls(columns, stmt, encoders)

    @classmethod
    def delete(cls, table: Table, dialect: str) -> _Bulk:
        """Delete the rows of `table` whose primary key is among the rows given (tuples in the key's column
        order); PostgreSQL: `DELETE … USING unnest(arrays)`."""
        keys = list(table.primary_key.columns)
        if dialect != "postgresql":
            return cls(tuple(k.name for k in keys), None)
        src, encoders = _unnest(keys)
        stmt = delete(table).where(*(k == src.c[k.name] for k in keys))
        return cls(tuple(k.name for k in keys), stmt, encoders)

    def run(self, conn: Connection, rows: Sequence[tuple[Any, ...]], fallback: Executable) -> None:
        """Write `rows` with the one statement, or as an executemany of `fallback` (same columns)."""
        if not rows:
            return
        if self.unnest is None:
            plan = _driver_plan(conn, fallback, self.columns)
            if plan is None:
                execute_many(conn, fallback, [dict(zip(self.columns, r, strict=True)) for r in rows])
            else:
                conn.exec_driver_sql(plan.sql, plan.params(rows))
        else:
            columns = zip(self.columns, self.encoders, zip(*rows, strict=True), strict=True)
            conn.execute(self.unnest, {name: encode(values) for name, encode, values in columns})


@dataclass(frozen=True, slots=True)
class _DriverPlan:
    """A statement compiled once for the dialect, run as the driver's executemany of row tuples: SQLAlchemy
    builds and processes a dict per row otherwise (≈ 5 µs a row here, as much as SQLite's insert)."""

    sql: str
    order: tuple[int, ...]  # per positional parameter, its column in the rows
    processors: tuple[Callable[[Any], Any] | None, ...]  # per positional parameter, the type's bind processor

    whole: bool  # the rows as they are: every column in order, nothing to process

    def params(self, rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """A list (SQLAlchemy takes a tuple for one row's parameters) of each row's parameters."""
        if self.whole:
            return rows if isinstance(rows, list) else list(rows)
        pairs = tuple(zip(self.order, self.processors, strict=True))
        return [tuple([r[i] if p is None else p(r[i]) for i, p in pairs]) for r in rows]


# (id(statement), dialect, the rows' columns) → the statement and its plan
_PLANS: dict[tuple[int, str, tuple[str, ...]], tuple[Executable, _DriverPlan | None]] = {}


def _driver_plan(conn: Connection, stmt: Executable, columns: tuple[str, ...]) -> _DriverPlan | None:
    """`stmt` as a _DriverPlan for `conn`'s dialect; None where that would not bind exactly what SQLAlchemy
    binds (a statement not positional, or binding a value other than the rows' columns)."""
    dialect = conn.dialect
    key = (id(stmt), dialect.name, columns)
    found = _PLANS.get(key)
    if found is not None and found[0] is stmt:
        return found[1]
    plan = None
    compiled = stmt.compile(dialect=dialect)  # type: ignore[attr-defined]
    names = compiled.positiontup
    if dialect.positional and names is not None and all(n in columns for n in names):
        processors = tuple(compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names)
        order = tuple(columns.index(n) for n in names)
        whole = order == tuple(range(len(columns))) and not any(processors)
        plan = _DriverPlan(str(compiled), order, processors, whole)
    if len(_PLANS) >= 256:  # the ledger's statements are built once: a few dozen; never grow without bound
        _PLANS.clear()
    _PLANS[key] = (stmt, plan)  # the statement kept with it, so its id is not another's
    return plan


def _unnest(columns: Sequence[Column[Any]]) -> tuple[Any, tuple[Encoder, ...]]:
    """`unnest(array per column) AS x(columns)`, with each array's encoder (pg_array)."""
    arrays, encoders = zip(*(pg_array(c.name, c.type) for c in columns), strict=True)
    return func.unnest(*arrays).table_valued(*(c.name for c in columns)).render_derived(name="x"), encoders


@dataclass(frozen=True, slots=True)
class _Claims:
    """The claim of a batch's seqs; on PostgreSQL three statements whatever the number of gateways (a
    statement per gateway cost ≈ 0.3 ms each, with the locks taken so far held: 100 ms a batch over the
    408 gateways of the pilot city): every gateway's advisory lock, the ranges a claim merged away, the
    ranges it made."""

    # takes the locks in the order of the keys' array: pg_advisory_xact_lock is volatile and parallel
    # restricted, so one process calls it row by row as unnest gives them
    lock: Executable  # PostgreSQL only
    lock_keys: Encoder  # the lock keys → the array parameter `keys`
    unclaim: _Bulk
    add: _Bulk

    @classmethod
    def build(cls, dialect: str) -> _Claims:
        keys, encode = pg_array("keys", BigInteger())
        k = func.unnest(keys).column_valued("k")
        return cls(
            lock=select(func.count(func.pg_advisory_xact_lock(k))),
            lock_keys=encode,
            unclaim=_Bulk.delete(received_seqs, dialect),
            add=_Bulk.build(received_seqs, dialect, None, on_conflict=False),
        )


@dataclass(frozen=True, slots=True)
class _BulkWrites:
    """The ledger's per-batch upserts of many rows (see _Bulk), with the same updates as _Writes."""

    device_stats: _Bulk
    tag_stats: _Bulk
    body: _Bulk
    activity: _Bulk

    @classmethod
    def build(cls, dialect: str) -> _BulkWrites:
        return cls(
            device_stats=_Bulk.build(device_stats, dialect, _device_stats_update),
            tag_stats=_Bulk.build(tag_stats, dialect, _tag_stats_update),
            body=_Bulk.build(message_bodies, dialect, None),
            activity=_Bulk.build(device_hours, dialect, _activity_update),
        )


def _activity_update(x: Any) -> dict[str, Any]:
    act = device_hours.c
    return {
        "samples": act.samples + x.samples,
        "good_samples": act.good_samples + x.good_samples,
        "first_ts": _earlier(x.first_ts, act.first_ts),
        "last_ts": _later(x.last_ts, act.last_ts),
        "minutes": act.minutes.op("|")(x.minutes),
    }


def _device_stats_update(x: Any) -> dict[str, Any]:
    ds = device_stats.c
    return {
        "first_seen": _earlier(x.first_seen, ds.first_seen),
        "last_seen": _later(x.last_seen, ds.last_seen),
        "samples": ds.samples + x.samples,
        "good_samples": ds.good_samples + x.good_samples,
    }


def _tag_stats_update(x: Any) -> dict[str, Any]:
    ts = tag_stats.c
    return {
        "unit": func.coalesce(x.unit, ts.unit),
        "samples": ts.samples + x.samples,
        "last_value_text": case((x.last_ts >= ts.last_ts, x.last_value_text), else_=ts.last_value_text),
        "last_ts": _later(x.last_ts, ts.last_ts),
    }


class Ledger:
    """The evidence ledger behind one class; `url` is `sqlite:///path/ledger.db` (or `sqlite:///:memory:`)
    or `postgresql://user@host/db`."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        self.url = url
        self.db = Database(url, busy_timeout=busy_timeout)
        self.db.create(metadata)  # the trust tables (TRUST_TABLES) among them
        self._writes = _Writes.build(self.db)
        _migrate(self.db, self._writes)

    # ------------------------------------------------------------ writing

    def is_duplicate(self, ent: str, gw: str, seq: int) -> bool:
        """Whether (ent, gw, seq) was recorded."""
        return bool(self.recorded([(ent, gw, seq)]))

    def recorded(self, keys: Iterable[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
        """Those of `keys` (ent, gw, seq) already recorded: one query for a batch's gateways (per 500)."""
        by_gw: dict[tuple[str, str], set[int]] = {}
        for ent, gw, seq in keys:
            by_gw.setdefault((ent, gw), set()).add(seq)
        held = _held(self.db.rows, by_gw)
        return {(e, g, s) for (e, g), seqs in by_gw.items() for s in seqs if rg.contains(held.get((e, g), []), s)}

    def record_data(self, ent: str, msg: DataMessage) -> bool:
        """Record a data message and its statistics atomically; False (no change) if already recorded."""
        return self.record_batch([(ent, msg)])[0]

    def record_events(self, ent: str, msg: EventMessage) -> bool:
        """Record an events message atomically; False (no change) if already recorded."""
        return self.record_batch([(ent, msg)])[0]

    def record_batch(
        self,
        items: Sequence[tuple[str, DataMessage | EventMessage]],
        *,
        proofs: Mapping[_Key, Proof] | None = None,
        horizon_ms: int = NO_HORIZON,
        flags: Flags | None = None,
    ) -> list[bool]:
        """Record many (ent, message) pairs in ONE transaction (one commit: one fsync on SQLite).

        Per item: True if newly recorded, False if its (ent, gw, seq) was already there (recorded
        before, meanwhile by a concurrent ingester, or earlier in the same batch): idempotent, as
        `record_data` / `record_events`. All or nothing: if it raises, nothing of the batch is kept.

        `proofs`: the chain hash and signed part of chained messages, kept in `message_bodies` with the
        newly recorded ones (what the audit re-derives the evidence from). Samples and events stamped
        after `horizon_ms` (the ingester's clock plus the allowed skew) are flagged: counted in `flags`
        and kept out of the evidence tables (they never move last seen).
        """
        for _, msg in items:
            if isinstance(msg, DataMessage):
                if not msg.samples:
                    raise ValueError("a data message without samples")
            elif not isinstance(msg, EventMessage):  # new message kinds go here
                raise TypeError(f"the ledger cannot record a {type(msg).__name__}")
        now = _now_ms()
        rows: dict[_Key, dict[str, Any]] = {}  # the first message of each key claims it
        for ent, msg in items:
            kind = "data" if isinstance(msg, DataMessage) else "events"
            row = {"ent": ent, "gw": msg.gw, "seq": msg.seq, "dev": msg.dev, "kind": kind, "received_ms": now}
            rows.setdefault((ent, msg.gw, msg.seq), row)
        # What the batch adds, computed before the transaction as if every message were new (the usual
        # case): the transaction then holds its gateways' locks only for its statements. If the claim finds
        # some were recorded already, it is computed again inside, for the new ones.
        everyone = [True] * len(items) if len(rows) == len(items) else None
        ready = _additions(items, everyone, proofs, now, horizon_ms) if everyone is not None else None
        with self.db.transaction() as conn:
            claimed = self._claim(conn, [rows[k] for k in sorted(rows)])
            results: list[bool] = []
            for ent, msg in items:
                key = (ent, msg.gw, msg.seq)
                new = key in claimed
                if new:
                    claimed.discard(key)  # a later copy in the same batch is a duplicate
                results.append(new)
            if ready is None or results != everyone:
                ready = _additions(items, results, proofs, now, horizon_ms)
            ready.write(conn, self._bulk, self._writes, now)
        if flags is not None:
            for k, n in ready.flags.items():
                flags[k] = flags.get(k, 0) + n
        return results

    @cached_property
    def _bulk(self) -> _BulkWrites:
        return _BulkWrites.build(self.db.dialect)

    def _claim(self, conn: Connection, rows: list[dict[str, Any]]) -> set[_Key]:
        """Merge the seqs of `rows` (distinct keys) into their gateways' ranges, skipping those a range
        holds already (whoever put them there: a concurrent claim waits for the other's outcome on the
        gateway's lock); return the keys that were new. The commit point of each message."""
        by_gw: dict[tuple[str, str], set[int]] = {}
        for r in rows:
            by_gw.setdefault((r["ent"], r["gw"]), set()).add(int(r["seq"]))
        if conn.dialect.name == "postgresql":  # one lock order for all ingesters, (ent, gw) sorted: no deadlock
            locks = [_gateway_lock(ent, gw) for ent, gw in sorted(by_gw)]
            conn.execute(self._claims.lock, {"keys": self._claims.lock_keys(locks)})
        held = _held(lambda q: [dict(r) for r in conn.execute(q).mappings()], by_gw)
        claimed: set[_Key] = set()
        gone: list[tuple[str, str, int]] = []
        added: list[tuple[str, str, int, int]] = []
        for (ent, gw), seqs in by_gw.items():
            before = held.get((ent, gw), [])
            new, merged = rg.claim(before, seqs)
            claimed.update((ent, gw, s) for s in new)
            kept = set(before) & set(merged)
            gone += [(ent, gw, f) for f, la in before if (f, la) not in kept]
            added += [(ent, gw, f, la) for f, la in merged if (f, la) not in kept]
        self._claims.unclaim.run(conn, gone, self._writes.unclaim)
        self._claims.add.run(conn, added, self._writes.claim)
        return claimed

    @cached_property
    def _claims(self) -> _Claims:
        return _Claims.build(self.db.dialect)

    def record_status(self, ent: str, gw: str, dev: str | None, status: Status) -> None:
        """Keep the latest status of a device (or of the gateway itself when `dev` is None)."""
        self.db.execute(
            self._writes.status,
            {
                "ent": ent,
                "gw": gw,
                "dev": dev or "",
                "online": status.online,
                "ts": status.ts,
                "reason": status.reason,
                "version": status.version,
            },
        )

    def prune_dead_letters(self, before_ms: int) -> int:
        """Delete the dead letters received before `before_ms` (their retention); returns how many."""
        return self.db.execute(delete(dead_letters).where(dead_letters.c.received_ms < before_ms))

    def fold_tag_stats(self, limit: int = 200) -> int:
        """Add the pending tag statistics (`tag_stats_pending`, up to `limit` batches at a time, fewer once
        FOLD_ROWS rows are merged) to `tag_stats`, deleting them in the same transaction: each batch's
        statistics are added once, whoever folds, concurrent folds included (a row deleted by one is not
        returned to the other). The result equals recording the batches' statistics in the order they
        were pending. Returns the batches folded."""
        folded = 0
        while True:
            with self.db.transaction() as conn:
                n, more = _fold(conn, self._bulk.tag_stats, self._writes.tag_stats, limit)
            folded += n
            if not more:
                return folded

    def series(self, ent: str, gw: str) -> set[tuple[str, str]]:
        """(device, tag) of every series a gateway has created (tag_stats)."""
        self.fold_tag_stats()
        t = tag_stats.c
        return {(r["dev"], r["tag"]) for r in self.db.rows(select(t.dev, t.tag).where(t.ent == ent, t.gw == gw))}

    def series_counts(self, gateways: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """(ent, gw) → how many series (device, tag) the gateway has in tag_stats, 0 for none: the folded
        statistics only (the batches still pending are not counted; `series` folds them first). One
        statement per 500 gateways, counting the primary key's index, not fetching the series."""
        keys = sorted(set(gateways))
        out = dict.fromkeys(keys, 0)
        t = tag_stats.c
        for i in range(0, len(keys), 500):
            q = select(t.ent, t.gw, func.count().label("n")).where(tuple_(t.ent, t.gw).in_(keys[i : i + 500]))
            for r in self.db.rows(q.group_by(t.ent, t.gw)):
                out[(r["ent"], r["gw"])] = int(r["n"])
        return out

    def dead_letter(self, topic: str, payload: bytes, reason: str) -> None:
        self.db.execute(
            dead_letters.insert(), {"received_ms": _now_ms(), "topic": topic, "payload": payload, "reason": reason}
        )

    # ------------------------------------------------------------ reading

    def devices(self) -> list[dict[str, Any]]:
        """Every device seen in data or status: ent, gw, dev, first_seen, last_seen, samples,
        good_samples (None/0 without data), online, status_ts, reason (None without status)."""
        merged: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in self.db.rows(select(device_stats)):
            merged[(r["ent"], r["gw"], r["dev"])] = {**r, "online": None, "status_ts": None, "reason": None}
        st = device_status.c
        for r in self.db.rows(select(st.ent, st.gw, st.dev, st.online, st.ts, st.reason).where(st.dev != "")):
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
        st = device_status.c
        rows = self.db.rows(
            select(st.ent, st.gw, st.online, st.ts, st.version).where(st.dev == "").order_by(st.ent, st.gw)
        )
        for r in rows:
            r["online"] = bool(r["online"])
        return rows

    def total_samples(self) -> int:
        return int(self.db.scalar(select(func.coalesce(func.sum(device_stats.c.samples), 0))) or 0)

    def received_count(self) -> int:
        """Messages recorded (data and events), all gateways."""
        rs = received_seqs.c
        return int(self.db.scalar(select(func.coalesce(func.sum(rs.last_seq - rs.first_seq + 1), 0))) or 0)

    def dead_letter_count(self) -> int:
        return int(self.db.scalar(select(func.count()).select_from(dead_letters)) or 0)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        dl = dead_letters.c
        rows = self.db.rows(
            select(dl.id, dl.received_ms, dl.topic, dl.payload, dl.reason).order_by(dl.id.desc()).limit(limit)
        )
        for r in rows:
            r["payload"] = bytes(r["payload"])
        return rows

    def events(self, dev: str | None = None, *, ent: str | None = None, gw: str | None = None) -> list[dict[str, Any]]:
        """Device events (ent, gw, dev, ts, kind, reason, state) by time, optionally filtered."""
        e = device_events.c
        return self.db.rows(
            select(device_events)
            .where(*_filters(device_events.c, ent=ent, gw=gw, dev=dev))
            .order_by(e.ts, e.ent, e.gw, e.dev)
        )

    def tag_stats(self, dev: str, *, ent: str | None = None, gw: str | None = None) -> list[dict[str, Any]]:
        """Per-tag statistics of a device: ent, gw, dev, tag, unit, samples, last_ts, last_value_text."""
        self.fold_tag_stats()
        t = tag_stats.c
        return self.db.rows(
            select(tag_stats).where(*_filters(t, ent=ent, gw=gw, dev=dev)).order_by(t.ent, t.gw, t.dev, t.tag)
        )

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ evidence (OEE, online time, metadata)

    def record_meta(self, ent: str, meta: DeviceMeta) -> None:
        """Keep a device's latest metadata and log the config hash it announces (idempotent)."""
        key = {"ent": ent, "gw": meta.gw, "dev": meta.dev, "ts": meta.ts, "config_hash": meta.config_hash}
        with self.db.transaction() as conn:
            conn.execute(self._writes.meta, {**key, "body": encode_meta(meta).decode()})
            conn.execute(self._writes.meta_log, {**key, "version": meta.version})


def _held(
    run: Callable[[Select[Any]], list[dict[str, Any]]], by_gw: Mapping[tuple[str, str], set[int]]
) -> dict[tuple[str, str], list[rg.Range]]:
    """The ranges of each gateway that may hold some of its seqs (adjacent ones included: what a claim
    merges with), sorted: one query per 500 gateways, with a seq bound loose enough for all of them
    (what it brings of other gateways or seqs is left out here). `run` executes a query."""
    out: dict[tuple[str, str], list[rg.Range]] = {}
    if not by_gw:
        return out
    lo = min(min(seqs) for seqs in by_gw.values()) - 1
    hi = max(max(seqs) for seqs in by_gw.values()) + 1
    rs = received_seqs.c
    gateways = sorted(by_gw)
    for i in range(0, len(gateways), _GATEWAYS_PER_QUERY):
        chunk = gateways[i : i + _GATEWAYS_PER_QUERY]
        query = select(rs.ent, rs.gw, rs.first_seq, rs.last_seq).where(
            rs.ent.in_({e for e, _ in chunk}), rs.gw.in_({g for _, g in chunk}), rs.first_seq <= hi, rs.last_seq >= lo
        )
        for r in run(query.order_by(rs.first_seq)):
            key = (r["ent"], r["gw"])
            if key in by_gw:
                out.setdefault(key, []).append((int(r["first_seq"]), int(r["last_seq"])))
    return out


def _gateway_lock(ent: str, gw: str) -> int:
    """The key of a gateway's advisory lock (PostgreSQL): 64 bits of a hash of (ent, gw), signed."""
    digest = hashlib.blake2b(f"received_seqs\0{ent}\0{gw}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _migrate(db: Database, writes: _Writes) -> None:
    """Turn the tables of earlier releases into today's, once, in one transaction: `received` (one row
    per message) into seq ranges, `device_activity` (10 s slots) into hours; then drop them."""
    names = set(inspect(db.engine).get_table_names())
    if not names & {received.name, device_activity.name}:
        return
    with db.transaction() as conn:
        if db.dialect == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        names = set(inspect(conn).get_table_names())
        if received.name in names:
            _migrate_received(conn)
            received.drop(conn)
        if device_activity.name in names:
            _migrate_activity(conn, writes)
            device_activity.drop(conn)


_MIGRATION_LOCK = 0x6564676578


def _migrate_received(conn: Connection) -> None:
    r, rs = received.c, received_seqs.c
    # gaps and islands: within a gateway, seq minus its rank is constant along a run of consecutive seqs
    island = (r.seq - func.row_number().over(partition_by=(r.ent, r.gw), order_by=r.seq)).label("island")
    runs = select(r.ent, r.gw, r.seq, island).subquery()
    found: dict[tuple[str, str], list[rg.Range]] = {}
    for row in conn.execute(
        select(runs.c.ent, runs.c.gw, func.min(runs.c.seq), func.max(runs.c.seq)).group_by(
            runs.c.ent, runs.c.gw, runs.c.island
        )
    ):
        found.setdefault((row[0], row[1]), []).append((int(row[2]), int(row[3])))
    for (ent, gw), runs_of_gw in found.items():
        held = [
            (int(f), int(la))
            for f, la in conn.execute(select(rs.first_seq, rs.last_seq).where(rs.ent == ent, rs.gw == gw))
        ]
        conn.execute(delete(received_seqs).where(rs.ent == ent, rs.gw == gw))
        conn.execute(
            received_seqs.insert(),
            [{"ent": ent, "gw": gw, "first_seq": f, "last_seq": la} for f, la in rg.merge([*held, *runs_of_gw])],
        )


def _migrate_activity(conn: Connection, writes: _Writes) -> None:
    hours: dict[tuple[str, str, str, int], list[int]] = {}
    for r in conn.execute(select(device_activity)).mappings():
        key = (r["ent"], r["gw"], r["dev"], hour_of(int(r["slot"])))
        first, last = int(r["first_ts"]), int(r["last_ts"])
        minutes = 0
        for m in range(first - first % 60_000, last + 1, 60_000):  # a slot lies in at most one or two minutes
            minutes |= minute_bit(m)
        h = hours.get(key)
        if h is None:
            hours[key] = [int(r["samples"]), int(r["good_samples"]), first, last, minutes]
        else:
            h[0] += int(r["samples"])
            h[1] += int(r["good_samples"])
            h[2], h[3], h[4] = min(h[2], first), max(h[3], last), h[4] | minutes
    execute_many(
        conn,
        writes.activity,
        [
            {"ent": e, "gw": g, "dev": d, "hour": hour, "samples": n, "good_samples": gd, "first_ts": f,
             "last_ts": la, "minutes": m}
            for (e, g, d, hour), (n, gd, f, la, m) in hours.items()
        ],
    )  # fmt: skip


def _within(items: list[tuple[str, M]], horizon: int, flags: Flags, what: str) -> list[tuple[str, M]]:
    """The messages as the evidence takes them: samples (or events) stamped after `horizon` left out and
    counted in `flags` per gateway as `what`."""
    kept: list[tuple[str, M]] = []
    for ent, msg in items:
        parts: tuple[Any, ...] = msg.samples if isinstance(msg, DataMessage) else msg.events
        if all(x.ts <= horizon for x in parts):  # the usual case: nothing to leave out
            kept.append((ent, msg))
            continue
        fine = tuple(x for x in parts if x.ts <= horizon)
        if len(fine) < len(parts):
            key = (ent, msg.gw, what)
            flags[key] = flags.get(key, 0) + len(parts) - len(fine)
            if not fine:
                continue
            msg = replace(msg, samples=fine) if isinstance(msg, DataMessage) else replace(msg, events=fine)
        kept.append((ent, msg))
    return kept


def message_span(msg: DataMessage | EventMessage) -> tuple[int, int]:
    """Earliest and latest timestamp a message carries."""
    stamps = [s[2] for s in msg.samples] if isinstance(msg, DataMessage) else [e.ts for e in msg.events]
    return min(stamps), max(stamps)


def _body_row(
    ent: str, msg: DataMessage | EventMessage, proof: Proof, now: int, horizon: int, span: tuple[int, int] | None
) -> tuple[Any, ...]:
    """A `message_bodies` row, its values in the table's column order."""
    lo, hi = span if span is not None else message_span(msg)
    # LZ4: ≈ 6× smaller in 2.7 µs (zlib: 12 µs), cheaper than writing the whole body (bench ingest)
    return (ent, msg.gw, msg.seq, lz4.block.compress(proof[1]), lo, hi, min(horizon, NO_HORIZON))


def _additions(
    items: Sequence[tuple[str, DataMessage | EventMessage]],
    new: Sequence[bool],
    proofs: Mapping[_Key, Proof] | None,
    now: int,
    horizon_ms: int,
) -> _Additions:
    """What recording the `new` ones of `items` adds to the ledger's tables (no I/O)."""
    new_data: list[tuple[str, DataMessage]] = []
    new_events: list[tuple[str, EventMessage]] = []
    for (ent, msg), fresh in zip(items, new, strict=True):
        if fresh:
            if isinstance(msg, DataMessage):
                new_data.append((ent, msg))
            else:
                new_events.append((ent, msg))
    flags: Flags = {}
    if horizon_ms != NO_HORIZON:
        new_data = _within(new_data, horizon_ms, flags, "future:samples")
        new_events = _within(new_events, horizon_ms, flags, "future:events")
    # id(message) → its earliest and latest timestamp, of the messages as the evidence takes them
    kept: list[tuple[str, DataMessage | EventMessage]] = [*new_data, *new_events]
    spans = {id(m): message_span(m) for _, m in kept}
    devices, tags, hours = _data_stats(new_data, spans) if new_data else ([], None, [])
    bodies = []
    if proofs:
        bodies = [
            _body_row(ent, msg, proofs[key], now, horizon_ms, spans.get(id(msg)))
            for (ent, msg), fresh in zip(items, new, strict=True)
            if fresh and (key := (ent, msg.gw, msg.seq)) in proofs
        ]
    stamps = [(ent, m.gw, m.dev, spans[id(m)][0]) for ent, m in kept]
    return _Additions(stamps, devices, tags, hours, new_events, bodies, flags)


def _data_stats(
    items: Sequence[tuple[str, DataMessage]], spans: Mapping[int, tuple[int, int]]
) -> tuple[list[tuple[Any, ...]], bytes | None, list[tuple[Any, ...]]]:
    """The statistics of newly claimed data messages (`spans`: each one's earliest and latest timestamp, by
    `id` of the message), aggregated in one pass over the samples, so one statement per table whatever the
    number of messages and samples: the `device_stats` rows, the `tag_stats_pending` body, the
    `device_hours` rows (rows sorted by key). The result equals recording the messages one by one in this
    order (on equal timestamps the later sample is the tag's last value; a unit given later replaces an
    earlier one)."""
    devices: dict[tuple[str, str, str], list[int]] = {}  # → [first_seen, last_seen, samples, good]
    tags: dict[tuple[str, str, str], dict[str, list[Any]]] = {}  # → tag → [samples, last_ts, last_v, unit]
    # per device and hour: [samples, good, first_ts, last_ts, minutes] (the rows of device_hours)
    hours: dict[tuple[str, str, str, int], list[int]] = {}
    for ent, msg in items:
        key = (ent, msg.gw, msg.dev)
        dev_tags = tags.setdefault(key, {})
        units = msg.units
        good = 0
        hour, hour_end = 0, -1  # the hour of the samples before (none yet)
        b: list[int] = []
        for s in msg.samples:
            ts = s.ts
            g = 1 if s.q == "good" else 0
            good += g
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
            if not hour <= ts < hour_end:  # the samples of a message mostly share their hour
                hour = hour_of(ts)
                hour_end = hour + HOUR_MS
                found = hours.get((*key, hour))
                if found is None:
                    b = hours[(*key, hour)] = [0, 0, ts, ts, 0]
                else:
                    b = found
            b[0] += 1
            b[1] += g
            if ts < b[2]:
                b[2] = ts
            if ts > b[3]:
                b[3] = ts
            b[4] |= 1 << (ts - hour) // MINUTE_MS  # minute_bit(ts)
        first, last = spans[id(msg)]
        d = devices.get(key)
        if d is None:
            devices[key] = [first, last, len(msg.samples), good]
        else:
            d[0] = min(d[0], first)
            d[1] = max(d[1], last)
            d[2] += len(msg.samples)
            d[3] += good

    return (
        [(e, g, v, f, la, n, good) for (e, g, v), (f, la, n, good) in sorted(devices.items())],
        _pending_tag_stats(tags),
        # samples per device and hour, and the minutes that had samples
        [(*k, *hours[k]) for k in sorted(hours)],
    )


_TagStats = dict[tuple[str, str, str], dict[str, list[Any]]]  # (ent, gw, dev) → tag → [samples, last_ts, last_v, unit]


def _pending_tag_stats(tags: _TagStats) -> bytes | None:
    """A batch's tag statistics as the body of one `tag_stats_pending` row: LZ4 of JSON [[ent, gw, dev,
    [[tag, samples, last_ts, last_value_text, unit], ...]], ...]. One row where an upsert per tag would
    write thousands (most of the transaction for small messages). None for no statistics."""
    rows = [[e, g, v, [[t, n, ts, value_text(val), unit] for t, (n, ts, val, unit) in dev.items()]]
            for (e, g, v), dev in tags.items()]  # fmt: skip
    if not rows:
        return None
    return lz4.block.compress(msgspec.json.encode(rows))  # ≈ 5× json.dumps (bench ingest: 3 % of the ingester's CPU)


@dataclass(frozen=True, slots=True)
class _Additions:
    """What a batch's newly claimed messages add to the ledger, ready to write (`_additions`)."""

    stamps: list[tuple[str, str, str, int]]  # (ent, gw, dev, earliest ts) per message: the days to forget
    devices: list[tuple[Any, ...]]  # device_stats rows
    tags: bytes | None  # the tag_stats_pending body
    hours: list[tuple[Any, ...]]  # device_hours rows
    events: list[tuple[str, EventMessage]]
    bodies: list[tuple[Any, ...]]  # message_bodies rows (the proofs)
    flags: Flags  # what was kept out of the evidence (beyond the horizon)

    def write(self, conn: Connection, bulk: _BulkWrites, writes: _Writes, now: int) -> None:
        """In the claiming transaction."""
        forget_days(conn, self.stamps, now)
        bulk.device_stats.run(conn, self.devices, writes.device_stats)
        if self.tags is not None:
            conn.execute(tag_stats_pending.insert(), {"body": self.tags})
        bulk.activity.run(conn, self.hours, writes.activity)
        if self.events:
            _add_events(conn, self.events)
        bulk.body.run(conn, self.bodies, writes.body)


# Rows of tag statistics one fold merges in memory before it writes them (≈ 0.6 KB each with the statement
# built from them): 200 batches of 500 small messages from many devices are ≈ 10⁶ rows, ≈ 155 MB at the
# peak of one fold (`bench city`), while 200 batches from a few devices merge into a few thousand rows
# (`bench ingest`: taking fewer batches a fold costs it ≈ 8 % of its rate). So batches are taken FOLD_CHUNK
# at a time until FOLD_ROWS rows are merged.
FOLD_ROWS = 50_000
FOLD_CHUNK = 5


def _fold(conn: Connection, bulk: _Bulk, fallback: Executable, limit: int) -> tuple[int, bool]:
    """Up to `limit` pending batches (oldest first, fewer once FOLD_ROWS rows are merged) taken out of
    `tag_stats_pending` and added to `tag_stats` with one upsert, in `conn`'s transaction; returns how
    many batches, and whether more may be pending."""
    p = tag_stats_pending.c
    ids = [r[0] for r in conn.execute(select(p.id).order_by(p.id).limit(limit))]
    merged: dict[tuple[str, str, str, str], list[Any]] = {}  # → [unit, samples, last_ts, last_value_text]
    taken = 0
    for i in range(0, len(ids), FOLD_CHUNK):
        chunk = conn.execute(
            delete(tag_stats_pending).where(p.id.in_(ids[i : i + FOLD_CHUNK])).returning(p.id, p.body)
        ).all()
        taken += len(chunk)
        for _, body in sorted(chunk, key=lambda r: int(r[0])):  # the order they were recorded in
            for e, g, v, dev_tags in msgspec.json.decode(lz4.block.decompress(body)):
                for tag, n, ts, text, unit in dev_tags:
                    m = merged.get((e, g, v, tag))
                    if m is None:
                        merged[(e, g, v, tag)] = [unit, n, ts, text]
                    else:
                        if unit is not None:
                            m[0] = unit
                        m[1] += n
                        if ts >= m[2]:
                            m[2], m[3] = ts, text
        if len(merged) >= FOLD_ROWS and i + FOLD_CHUNK < len(ids):
            bulk.run(conn, [(*key, *merged[key]) for key in sorted(merged)], fallback)
            return taken, True  # the rest in the next transaction
    bulk.run(conn, [(*key, *merged[key]) for key in sorted(merged)], fallback)
    return taken, len(ids) == limit


def _add_events(conn: Connection, items: Sequence[tuple[str, EventMessage]]) -> None:
    """The events of newly claimed events messages, and the OEE state changes and counter snapshots
    among them with their counts, in one statement per table."""
    events: list[dict[str, Any]] = []
    counts: list[dict[str, Any]] = []
    for ent, msg in items:
        for e in msg.events:
            row = {"ent": ent, "gw": msg.gw, "dev": msg.dev, "ts": e.ts, "kind": e.kind, "state": e.state}
            events.append({**row, "reason": e.reason})
            if e.kind in ("state", "snapshot") or e.counts is not None:
                c = e.counts or {}
                counts.append({**row, **{k: None if (v := c.get(k)) is None else float(v) for k in _COUNT_COLUMNS}})
    execute_many(conn, device_events.insert(), events)
    execute_many(conn, device_counts.insert(), counts)


def _filters(
    columns: ReadOnlyColumnCollection[str, Column[Any]], **conditions: str | None
) -> list[ColumnElement[bool]]:
    """`column = value` for each condition given (not None)."""
    return [columns[name] == v for name, v in conditions.items() if v is not None]
