"""Queries behind the evidence API and pack: what the ledger knows of an enterprise for a period.

Reads the ledger's tables (received data per minute, online/offline events, OEE state changes and
counter snapshots, device metadata, gateway status) and the equipment ledger. SQLite or PostgreSQL
through `cloud_bridge.cloud.ledger.sqldb.Database`, the queries as SQLAlchemy Core selects over the
tables of schema.py; the maths lives in `cloud_bridge.metrics`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, union, union_all

from cloud_bridge.cloud.ledger import equipment as eq
from cloud_bridge.cloud.ledger import schema
from cloud_bridge.cloud.ledger.activity import HOUR_MS, HourRow, within
from cloud_bridge.cloud.ledger.sqldb import Database
from cloud_bridge.wire.codec import DeviceMeta, WireError, decode_meta


@dataclass(frozen=True, slots=True)
class Activity:
    """Data received from one device in a period (from its hours: see `cloud_bridge.cloud.ledger.activity`
    for an edge of the period inside an hour)."""

    gw: str
    dev: str
    samples: int
    good_samples: int
    first_ts: int
    last_ts: int


@dataclass(frozen=True, slots=True)
class CountRow:
    ts: int
    kind: str
    state: str | None
    total: float | None
    good: float | None
    reject: float | None
    readings: float | None
    good_readings: float | None


class EvidenceStore:
    """Read side of the ledger for evidence; `url` as for `Ledger`."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        self.url = url
        self.db = Database(url, busy_timeout=busy_timeout)
        self.db.create(schema.metadata)  # the ledger's tables and the equipment ledger's

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ enterprises and devices

    def enterprises(self) -> list[str]:
        """Every enterprise the ledger has heard of (data, status, metadata) or holds equipment for."""
        rows = self.db.rows(union(*(select(t.c.ent) for t in _ENTERPRISE_TABLES)))
        return sorted({r["ent"] for r in rows})

    def knows(self, ent: str) -> bool:
        return any(self.db.rows(select(t.c.ent).where(t.c.ent == ent).limit(1)) for t in _ENTERPRISE_TABLES)

    def devices(self, ent: str) -> list[tuple[str, str]]:
        """(gateway, device) pairs the enterprise's gateways reported on in any way."""
        meta, status, stats = schema.device_meta.c, schema.device_status.c, schema.device_stats.c
        rows = self.db.rows(
            union(
                select(meta.gw, meta.dev).where(meta.ent == ent),
                select(status.gw, status.dev).where(status.ent == ent, status.dev != ""),
                select(stats.gw, stats.dev).where(stats.ent == ent),
            )
        )
        return sorted({(r["gw"], r["dev"]) for r in rows})

    def metas(self, ent: str) -> dict[tuple[str, str], DeviceMeta]:
        """The latest metadata of each device (what the device is, its tags, its OEE settings)."""
        out: dict[tuple[str, str], DeviceMeta] = {}
        m = schema.device_meta.c
        for r in self.db.rows(select(m.gw, m.dev, m.body).where(m.ent == ent)):
            try:
                out[(r["gw"], r["dev"])] = decode_meta(str(r["body"]).encode())
            except WireError:
                continue  # stored by a newer version: leave it out rather than fail the report
        return out

    def config_hashes(self, ent: str, start: int, end: int) -> list[dict[str, Any]]:
        """Config hashes in force during [start, end): for each device the last one announced before
        `start`, and every one announced in the period (gw, dev, ts, config_hash, version)."""
        m = schema.meta_log.c
        rows = self.db.rows(
            select(m.gw, m.dev, m.ts, m.config_hash, m.version)
            .where(m.ent == ent, m.ts < end)
            .order_by(m.gw, m.dev, m.ts)
        )
        keep: list[dict[str, Any]] = []
        last_before: dict[tuple[str, str], dict[str, Any]] = {}
        for r in rows:
            if r["ts"] < start:
                last_before[(r["gw"], r["dev"])] = r
            else:
                keep.append(r)
        return sorted([*last_before.values(), *keep], key=lambda r: (r["gw"], r["dev"], r["ts"]))

    def gateway_status(self, ent: str) -> dict[str, dict[str, Any]]:
        """Latest retained status of each gateway: {gw: {online, ts, version}}."""
        st = schema.device_status.c
        rows = self.db.rows(select(st.gw, st.online, st.ts, st.version).where(st.ent == ent, st.dev == ""))
        return {r["gw"]: {"online": bool(r["online"]), "ts": int(r["ts"]), "version": r["version"]} for r in rows}

    def gateway_last_seen(self, ent: str) -> dict[str, int]:
        """The newest timestamp each gateway sent (samples, events): its last sign of life."""
        a, e = schema.device_hours.c, schema.device_events.c
        rows = self.db.rows(
            union_all(
                select(a.gw, func.max(a.last_ts).label("t")).where(a.ent == ent).group_by(a.gw),
                select(e.gw, func.max(e.ts).label("t")).where(e.ent == ent).group_by(e.gw),
            )
        )
        out: dict[str, int] = {}
        for r in rows:
            if r["t"] is not None:
                out[r["gw"]] = max(out.get(r["gw"], 0), int(r["t"]))
        return out

    # ------------------------------------------------------------ per period

    def _slots(self, ent: str, start: int, end: int) -> list[dict[str, Any]]:
        """Activity hours with samples inside [start, end), by device and time, as the period reads them."""
        a = schema.device_hours.c
        rows = self.db.rows(
            select(a.gw, a.dev, a.hour, a.samples, a.good_samples, a.first_ts, a.last_ts, a.minutes)
            .where(a.ent == ent, a.hour > start - HOUR_MS, a.hour < end)
            .order_by(a.gw, a.dev, a.hour)
        )
        out = []
        for r in rows:
            h = within(
                HourRow(
                    int(r["hour"]),
                    int(r["samples"]),
                    int(r["good_samples"]),
                    int(r["first_ts"]),
                    int(r["last_ts"]),
                    int(r["minutes"]),
                ),
                start,
                end,
            )
            if h is not None:
                out.append({"gw": r["gw"], "dev": r["dev"], "slot": h.hour, "samples": h.samples,
                            "good_samples": h.good_samples, "first_ts": h.first_ts, "last_ts": h.last_ts})  # fmt: skip
        return out

    def activity(self, ent: str, start: int, end: int) -> dict[tuple[str, str], Activity]:
        """Samples received per device in [start, end); first and last seen inside it."""
        out: dict[tuple[str, str], Activity] = {}
        for r in self._slots(ent, start, end):
            key = (r["gw"], r["dev"])
            first, last = max(int(r["first_ts"]), start), min(int(r["last_ts"]), end - 1)
            a = out.get(key)
            if a is None:
                out[key] = Activity(key[0], key[1], int(r["samples"]), int(r["good_samples"]), first, last)
            else:
                out[key] = Activity(
                    key[0],
                    key[1],
                    a.samples + int(r["samples"]),
                    a.good_samples + int(r["good_samples"]),
                    min(a.first_ts, first),
                    max(a.last_ts, last),
                )
        return out

    def activity_hours(self, ent: str, start: int, end: int) -> list[dict[str, Any]]:
        """The same by device and hour (for the evidence CSV): gw, dev, hour, samples, good_samples,
        first_ts, last_ts."""
        out: dict[tuple[str, str, int], dict[str, Any]] = {}
        for r in self._slots(ent, start, end):
            hour = max(start, int(r["slot"]) - (int(r["slot"]) - start) % 3_600_000)
            key = (r["gw"], r["dev"], hour)
            h = out.get(key)
            if h is None:
                out[key] = {
                    "gw": r["gw"],
                    "dev": r["dev"],
                    "hour": hour,
                    "samples": int(r["samples"]),
                    "good_samples": int(r["good_samples"]),
                    "first_ts": max(int(r["first_ts"]), start),
                    "last_ts": min(int(r["last_ts"]), end - 1),
                }
            else:
                h["samples"] += int(r["samples"])
                h["good_samples"] += int(r["good_samples"])
                h["first_ts"] = min(h["first_ts"], max(int(r["first_ts"]), start))
                h["last_ts"] = max(h["last_ts"], min(int(r["last_ts"]), end - 1))
        return list(out.values())

    def transitions(self, ent: str, gw: str, dev: str, start: int, end: int) -> list[tuple[int, bool]]:
        """Online/offline events of a device: the last one before `start` and those in [start, end]."""
        e = schema.device_events.c
        q = select(e.ts, e.kind).where(e.ent == ent, e.gw == gw, e.dev == dev, e.kind.in_(("online", "offline")))
        before = self.db.rows(q.where(e.ts < start).order_by(e.ts.desc()).limit(1))
        inside = self.db.rows(q.where(e.ts >= start, e.ts <= end).order_by(e.ts))
        return [(int(r["ts"]), r["kind"] == "online") for r in [*before, *inside]]

    def state_points(self, ent: str, gw: str, dev: str, start: int, end: int) -> list[tuple[int, str]]:
        """OEE state changes: the last two before `start` (to tell a micro-stop there) and those in [start, end]."""
        c = schema.device_counts.c
        q = select(c.ts, c.state).where(c.ent == ent, c.gw == gw, c.dev == dev, c.kind == "state")
        before = self.db.rows(q.where(c.ts < start).order_by(c.ts.desc()).limit(2))
        inside = self.db.rows(q.where(c.ts >= start, c.ts <= end).order_by(c.ts))
        return sorted(((int(r["ts"]), str(r["state"])) for r in [*before, *inside]), key=lambda p: p[0])

    def count_rows(self, ent: str, gw: str, dev: str, start: int, end: int) -> list[CountRow]:
        """State changes and snapshots with counters: the last before `start`, those in [start, end),
        and the first at or after `end`."""
        c = schema.device_counts.c
        q = select(c.ts, c.kind, c.state, c.total, c.good, c.reject, c.readings, c.good_readings).where(
            c.ent == ent, c.gw == gw, c.dev == dev
        )
        rows = [
            *self.db.rows(q.where(c.ts < start).order_by(c.ts.desc()).limit(1)),
            *self.db.rows(q.where(c.ts >= start, c.ts < end).order_by(c.ts)),
            *self.db.rows(q.where(c.ts >= end).order_by(c.ts).limit(1)),
        ]
        return [
            CountRow(
                int(r["ts"]),
                r["kind"],
                r["state"],
                _f(r["total"]),
                _f(r["good"]),
                _f(r["reject"]),
                _f(r["readings"]),
                _f(r["good_readings"]),
            )
            for r in rows
        ]

    def event_log(self, ent: str, start: int, end: int) -> list[dict[str, Any]]:
        """The raw online/offline/state events of the period (gw, dev, ts, kind, state, reason)."""
        e = schema.device_events.c
        return self.db.rows(
            select(e.gw, e.dev, e.ts, e.kind, e.state, e.reason)
            .where(e.ent == ent, e.ts >= start, e.ts < end, e.kind.in_(("online", "offline", "state")))
            .order_by(e.gw, e.dev, e.ts)
        )

    def count_log(self, ent: str, start: int, end: int) -> list[dict[str, Any]]:
        """Every counter record of the period (state changes and snapshots)."""
        c = schema.device_counts.c
        return self.db.rows(
            select(c.gw, c.dev, c.ts, c.kind, c.state, c.total, c.good, c.reject, c.readings, c.good_readings)
            .where(c.ent == ent, c.ts >= start, c.ts < end)
            .order_by(c.gw, c.dev, c.ts)
        )

    # ------------------------------------------------------------ what the evidence maths reads, with its boundaries

    def onoff_window(self, ent: str, start: int, end: int) -> list[dict[str, Any]]:
        """The online/offline events of every device of `ent` that `device_window` gives for [start, end) with
        `reach` = `end`, in two reads instead of several per device: those at each device's last instant before
        `start` ("before"), those in [start, end] ("in"; at `end`: "after"), by device and time."""
        e = schema.device_events.c
        onoff = e.kind.in_(("online", "offline"))
        cols = (e.gw, e.dev, e.ts, e.kind, e.state, e.reason)
        last = (
            select(e.gw, e.dev, func.max(e.ts).label("t"))
            .where(e.ent == ent, onoff, e.ts < start)
            .group_by(e.gw, e.dev)
            .subquery()
        )
        before = self.db.rows(
            select(*cols)
            .join(last, (e.gw == last.c.gw) & (e.dev == last.c.dev) & (e.ts == last.c.t))
            .where(e.ent == ent, onoff)
        )
        within_ = self.db.rows(select(*cols).where(e.ent == ent, onoff, e.ts >= start, e.ts <= end))
        rows = [*_marked(before, "before"), *({**r, "boundary": "in" if r["ts"] < end else "after"} for r in within_)]
        return sorted(rows, key=lambda r: (r["gw"], r["dev"], r["ts"]))

    def device_window(
        self, ent: str, gw: str, dev: str, start: int, end: int, reach: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """What the maths may read of one device for [start, end), as (events, counts) rows, each with its
        `boundary` (before, in, after):

        - events: every online/offline/state event in [start, end); the online/offline events at the last
          instant before `start`; those in [end, reach] (`reach`: as of + the micro-stop threshold);
        - counts: every state change and snapshot in [start, end); before `start`, the rows at its last
          instant and the state changes at its last two instants with one; after `end`, the state changes up
          to `reach` and the rows at the first instant at or after `end`.

        Rows at the same instant come together, so a choice among them (the last before the start) is made by
        the caller, the same way whether it reads the ledger or an evidence pack."""
        e = schema.device_events.c
        of_dev = (e.ent == ent, e.gw == gw, e.dev == dev)
        ev = select(e.gw, e.dev, e.ts, e.kind, e.state, e.reason).where(*of_dev)
        onoff = e.kind.in_(("online", "offline"))
        last_ev = self.db.scalar(select(func.max(e.ts)).where(*of_dev, onoff, e.ts < start))
        events = [
            *_marked(self.db.rows(ev.where(onoff, e.ts == last_ev)) if last_ev is not None else [], "before"),
            *_marked(
                self.db.rows(ev.where(e.kind.in_(("online", "offline", "state")), e.ts >= start, e.ts < end)), "in"
            ),
            *_marked(self.db.rows(ev.where(onoff, e.ts >= end, e.ts <= reach)), "after"),
        ]
        c = schema.device_counts.c
        mine = (c.ent == ent, c.gw == gw, c.dev == dev)
        cq = select(c.gw, c.dev, c.ts, c.kind, c.state, c.total, c.good, c.reject, c.readings, c.good_readings).where(
            *mine
        )
        last_any = self.db.scalar(select(func.max(c.ts)).where(*mine, c.ts < start))
        state_ts = [
            r["ts"]
            for r in self.db.rows(
                select(c.ts).where(*mine, c.kind == "state", c.ts < start).distinct().order_by(c.ts.desc()).limit(2)
            )
        ]
        first_after = self.db.scalar(select(func.min(c.ts)).where(*mine, c.ts >= end))
        before = [t for t in (last_any,) if t is not None]
        counts = [
            *_marked(
                self.db.rows(
                    cq.where(c.ts < start, (c.ts.in_(before)) | ((c.kind == "state") & c.ts.in_(state_ts))).order_by(
                        c.ts
                    )
                )
                if before or state_ts
                else [],
                "before",
            ),
            *_marked(self.db.rows(cq.where(c.ts >= start, c.ts < end).order_by(c.ts)), "in"),
            *_marked(
                self.db.rows(
                    cq.where(c.ts >= end, ((c.kind == "state") & (c.ts <= reach)) | (c.ts == first_after)).order_by(
                        c.ts
                    )
                )
                if first_after is not None
                else [],
                "after",
            ),
        ]
        return events, counts

    # ------------------------------------------------------------ equipment ledger

    def equipment(self, ent: str) -> list[eq.Equipment]:
        return eq.load_equipment(self.db, ent)

    def equipment_import(self, ent: str) -> dict[str, Any] | None:
        return eq.last_import(self.db, ent)

    def equipment_file(self, ent: str, sha256: str) -> bytes | None:
        """The equipment sheet imported with this SHA-256, as it was received (None: not kept)."""
        return eq.equipment_file(self.db, ent, sha256)

    def import_equipment(self, ent: str, data: bytes, filename: str) -> tuple[eq.EquipmentSheet, str]:
        """Parse a CSV/XLSX equipment sheet and make it the enterprise's ledger; (sheet, SHA-256)."""
        sheet = eq.parse_equipment(data, filename)
        sha = eq.replace_equipment(self.db, ent, sheet.items, source=filename, data=data)
        return sheet, sha


# The tables that name the enterprises the ledger knows.
_ENTERPRISE_TABLES = (schema.device_status, schema.device_meta, schema.equipment, schema.device_stats)


def _marked(rows: list[dict[str, Any]], boundary: str) -> list[dict[str, Any]]:
    return [{**r, "boundary": boundary} for r in rows]


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def meta_dict(meta: DeviceMeta) -> dict[str, Any]:
    """A device's metadata as plain JSON (for reports)."""
    from cloud_bridge.wire.codec import encode_meta

    return dict(json.loads(encode_meta(meta)))
