"""The overview's day summaries (`device_days`): written by the overview, dropped by the writer on late data.

A row holds one device's figures for one closed local day (cloud/evidence/overview.py computes them with the
evidence's own functions). Late data for a device at `ts` changes its days from the one holding `ts` on (its
online state carries over midnight), so the ledger writer drops those rows in the transaction that records
the data (`forget_days`), and the next overview computes them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import BigInteger, Connection, Text, delete, func, select
from sqlalchemy.sql import bindparam

from cloud_bridge.cloud.ledger import schema
from cloud_bridge.cloud.ledger.sqldb import Database, execute_many, pg_array

# Every time zone's midnight falls on a quarter hour UTC: data stamped after the last quarter hour before now
# cannot be in a closed day, so live traffic costs no DELETE.
QUARTER_MS = 900_000

_d = schema.device_days.c
_FORGET = delete(schema.device_days).where(
    _d.ent == bindparam("e"), _d.gw == bindparam("g"), _d.dev == bindparam("d"), _d.day_end > bindparam("ts")
)


def days_to_forget(stamps: Iterable[tuple[str, str, str, int]], now_ms: int) -> list[dict[str, Any]]:
    """(ent, gw, dev, earliest ts) of recorded messages → the DELETE parameters of the devices whose closed
    days they may change: one per device, at its earliest timestamp (pure)."""
    boundary = now_ms - now_ms % QUARTER_MS
    earliest: dict[tuple[str, str, str], int] = {}
    for ent, gw, dev, ts in stamps:
        if ts < boundary:
            key = (ent, gw, dev)
            earliest[key] = min(ts, earliest.get(key, ts))
    return [{"e": e, "g": g, "d": d, "ts": ts} for (e, g, d), ts in sorted(earliest.items())]


# PostgreSQL: the devices of a batch in one `DELETE … USING unnest(arrays)` rather than a statement each
_ARRAYS = {k: pg_array(k, t) for k, t in (("e", Text()), ("g", Text()), ("d", Text()), ("ts", BigInteger()))}
_x = func.unnest(*(a for a, _ in _ARRAYS.values())).table_valued(*_ARRAYS).render_derived(name="x")
_FORGET_MANY = delete(schema.device_days).where(
    _d.ent == _x.c.e, _d.gw == _x.c.g, _d.dev == _x.c.d, _d.day_end > _x.c.ts
)


def forget_days(conn: Connection, stamps: Iterable[tuple[str, str, str, int]], now_ms: int) -> None:
    """Drop the day summaries late data changes (in the transaction that records it)."""
    params = days_to_forget(stamps, now_ms)
    if len(params) > 1 and conn.dialect.name == "postgresql":
        conn.execute(_FORGET_MANY, {k: encode([p[k] for p in params]) for k, (_, encode) in _ARRAYS.items()})
    elif params:
        execute_many(conn, _FORGET, params)


def write_days(db: Database, rows: Sequence[dict[str, Any]]) -> None:
    """Store computed day summaries (replacing those of the same device and day)."""
    if not rows:
        return
    cols = [c.name for c in schema.device_days.columns if not c.primary_key]
    stmt = db.upsert(schema.device_days, lambda x: {c: x[c] for c in cols})
    with db.transaction() as conn:
        for i in range(0, len(rows), 5000):
            execute_many(conn, stmt, list(rows[i : i + 5000]))


def day_sums(
    db: Database, ents: Sequence[str], calendar: str, start: int, end: int
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per device of `ents`: its day summaries in [start, end) under `calendar`, summed in SQL, with `days`
    (how many there are) and `online_end` (at the last day's end, if that day is there)."""
    sums = db.rows(
        select(
            _d.ent,
            _d.gw,
            _d.dev,
            func.count().label("days"),
            func.sum(_d.online_ms).label("online_ms"),
            func.sum(_d.online_planned_ms).label("online_planned_ms"),
            func.sum(_d.planned_ms).label("planned_ms"),
            func.sum(_d.samples).label("samples"),
            func.sum(_d.good_samples).label("good_samples"),
            func.min(_d.first_ts).label("first_ts"),
            func.max(_d.last_ts).label("last_ts"),
        )
        .where(_d.ent.in_(ents), _d.calendar == calendar, _d.day >= start, _d.day_end <= end)
        .group_by(_d.ent, _d.gw, _d.dev)
    )
    last = db.rows(
        select(_d.ent, _d.gw, _d.dev, _d.online_end).where(
            _d.ent.in_(ents), _d.calendar == calendar, _d.day_end == end, _d.day >= start
        )
    )
    ends = {(r["ent"], r["gw"], r["dev"]): bool(r["online_end"]) for r in last}
    out = {}
    for r in sums:
        key = (r["ent"], r["gw"], r["dev"])
        out[key] = {**{k: (int(v) if v is not None else None) for k, v in r.items() if k not in ("ent", "gw", "dev")},
                    "online_end": ends.get(key)}  # fmt: skip
    return out


# ---------------------------------------------------------------- what the overview reads of all enterprises at once


def devices_by_enterprise(db: Database) -> dict[str, set[tuple[str, str]]]:
    """(gateway, device) pairs each enterprise's gateways reported on, as `EvidenceStore.devices`, for all."""
    meta, status, stats = schema.device_meta.c, schema.device_status.c, schema.device_stats.c
    out: dict[str, set[tuple[str, str]]] = {}
    for q in (
        select(meta.ent, meta.gw, meta.dev),
        select(status.ent, status.gw, status.dev).where(status.dev != ""),
        select(stats.ent, stats.gw, stats.dev),
    ):
        for r in db.rows(q):
            out.setdefault(r["ent"], set()).add((r["gw"], r["dev"]))
    return out


def meta_bodies(db: Database) -> dict[str, list[tuple[str, str, str]]]:
    """Every device's latest metadata body, by enterprise: (gw, dev, body)."""
    m = schema.device_meta.c
    out: dict[str, list[tuple[str, str, str]]] = {}
    for r in db.rows(select(m.ent, m.gw, m.dev, m.body)):
        out.setdefault(r["ent"], []).append((r["gw"], r["dev"], str(r["body"])))
    return out


def gateway_statuses(db: Database) -> dict[str, dict[str, dict[str, Any]]]:
    """Latest retained status of each gateway of each enterprise, as `EvidenceStore.gateway_status`."""
    st = schema.device_status.c
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in db.rows(select(st.ent, st.gw, st.online, st.ts, st.version).where(st.dev == "")):
        out.setdefault(r["ent"], {})[r["gw"]] = {
            "online": bool(r["online"]),
            "ts": int(r["ts"]),
            "version": r["version"],
        }
    return out


def gateways_last_sample(db: Database) -> dict[str, dict[str, int]]:
    """Each gateway's newest sample (device_stats): a lower bound of its last sign of life."""
    st = schema.device_stats.c
    out: dict[str, dict[str, int]] = {}
    for r in db.rows(select(st.ent, st.gw, func.max(st.last_seen).label("t")).group_by(st.ent, st.gw)):
        if r["t"] is not None:
            out.setdefault(r["ent"], {})[r["gw"]] = int(r["t"])
    return out


def equipment_enterprises(db: Database) -> set[str]:
    """The enterprises with an equipment ledger."""
    return {r["ent"] for r in db.rows(select(schema.equipment.c.ent).distinct())}
