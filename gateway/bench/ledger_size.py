"""`edgegw bench ledger-size`: the evidence ledger's bytes per device-hour (#14: ≤ 8 KB).

The workload is a plant's steady stream: `--devices` devices on gateways of `--per-gateway` each, one
message of `--samples` samples (one per tag, 6 s apart) per device per minute, for `--hours` whole hours
that are over (they end at the last full hour). Each gateway is real: its own key (enrolled in the
ledger's registry), a real buffer that numbers, chains and seals the messages at their simulated times
(one checkpoint per gateway-minute, as when the devices publish on the minute; `--spread` publishes them
spread over the minute: a checkpoint per message), and the publisher's wire payloads. The ingester's
own code takes them (`Ingester.handle_batch`, trust enforced: every message proven by its checkpoint),
no broker and no time-series store. Then the ledger's bytes by table, before and after the archive step
(`Ingester.prune(force=True)`): PostgreSQL `pg_total_relation_size` after `VACUUM FULL`, SQLite the
pages of each table and its indexes (`dbstat`) after `VACUUM`.

`--ledger URL` measures a PostgreSQL (or SQLite) ledger of its own: it must hold no ledger tables yet, and
on PostgreSQL it should be a database of its own (VACUUM FULL keeps the deleted rows that an open
transaction of another session of the same database may still see).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from sqlalchemy import inspect

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ledger.activity import HOUR_MS, MINUTE_MS, hour_of
from cloud_bridge.cloud.ledger.schema import metadata
from cloud_bridge.cloud.ledger.sqldb import Database
from cloud_bridge.cloud.trust.registry import Registry
from cloud_bridge.uplink.buffer import Buffer, Chain, Outgoing
from cloud_bridge.uplink.identity import load_or_create_identity
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire.codec import Sample, Topics, encode_data_body
from cloud_bridge.wire.signing import decode_checkpoint
from edge_config.models import CloudConfig, MqttSection
from edge_config.timing import now_ms

GOAL_BYTES = 8 * 1024  # per device-hour
ENT = "ent-ledger-size"


@dataclass(frozen=True, slots=True)
class Workload:
    devices: int
    hours: int
    per_gateway: int = 20
    samples: int = 10
    spread: bool = False

    @property
    def gateways(self) -> int:
        return -(-self.devices // self.per_gateway)


def cmd_ledger_size(args: argparse.Namespace) -> int:
    w = Workload(args.devices, args.hours, args.per_gateway, args.samples, args.spread)
    if min(w.devices, w.hours, w.per_gateway, w.samples) < 1:
        print("edgegw bench ledger-size: --devices, --hours, --per-gateway and --samples must be at least 1")
        return 2
    with tempfile.TemporaryDirectory(prefix="edgegw-ledger-size-") as tmp:
        url = args.ledger or f"sqlite:///{Path(tmp) / 'ledger.db'}"
        try:
            result = run(w, url, Path(tmp))
        except LedgerNotEmpty as e:
            print(f"edgegw bench ledger-size: {e}")
            return 2
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if result["exactly_once"] else 1


class LedgerNotEmpty(Exception):
    pass


# ---------------------------------------------------------------- workload


def _values(rng: random.Random, samples: int) -> Iterator[list[float]]:
    """A device's tag values minute after minute: random walks, one decimal (as a scaled register)."""
    v = [rng.uniform(10, 1000) for _ in range(samples)]
    while True:
        v = [round(x + rng.uniform(-1, 1), 1) for x in v]
        yield v


def gateway_messages(w: Workload, g: int, t0: int, work: Path) -> list[tuple[str, bytes]]:
    """(topic, payload) of gateway `g`'s messages as the publisher sends them, each checkpoint first."""
    gw = f"gw-{g:03d}"
    topics = Topics("sf/v1", ENT, gw)
    key = load_or_create_identity(work / gw).key
    buf = Buffer(work / gw / "buffer.db", synchronous="NORMAL", chain=Chain(ENT, gw, key, topics.checkpoint))
    first = g * w.per_gateway
    devices = [f"dev-{d:04d}" for d in range(first, min(first + w.per_gateway, w.devices))]
    rng = random.Random(g)
    walks = {d: _values(rng, w.samples) for d in devices}
    tags = [f"tag_{j:02d}" for j in range(w.samples)]
    step = MINUTE_MS // w.samples
    try:
        for m in range(w.hours * 60):
            minute = t0 + m * MINUTE_MS
            out = []
            for i, dev in enumerate(devices):
                values = next(walks[dev])
                stamped = [Sample(t, v, minute + j * step) for j, (t, v) in enumerate(zip(tags, values, strict=True))]
                body = encode_data_body(stamped)
                out.append(Outgoing("data", topics.data(dev), dev, body, samples=w.samples))
                if w.spread:  # each device on its own second of the minute: a checkpoint each
                    at = (
                        minute
                        + (w.samples - 1) * step
                        + 1
                        + i * (MINUTE_MS - (w.samples - 1) * step - 1) // len(devices)
                    )
                    buf.enqueue(out, now_ms=at)
                    buf.seal_if_due(at, force=True)
                    out = []
            if out:  # sent in the minute's last second (so the hours measured hold every message)
                buf.enqueue(out, now_ms=minute + MINUTE_MS - 1000)
                buf.seal_if_due(minute + MINUTE_MS - 1000, force=True)
        pub = Publisher(MqttSection(), topics, buf, version="bench")
        rows = buf.peek(len(devices) * w.hours * 60 + 1)
        by_seq = {r.seq: r for r in rows if r.seq is not None}
        messages = []
        for cp in buf.checkpoints():
            c = decode_checkpoint(cp.body)
            messages.append((cp.topic, cp.body))
            messages += [(by_seq[s].topic, pub._payload(by_seq[s])) for s in range(c.first, c.last + 1)]
        return messages
    finally:
        buf.close()


def enrol(url: str, w: Workload, work: Path) -> None:
    """Register each gateway's key (made by `gateway_messages`) in the ledger, as `edgegw cloud gateway add`."""
    db = Database(url)
    try:
        for g in range(w.gateways):
            Registry(db).add(ENT, f"gw-{g:03d}", load_or_create_identity(work / f"gw-{g:03d}").public_key)
    finally:
        db.close()


def handle_all(ing: Ingester, messages: list[tuple[str, bytes]]) -> None:
    """The messages through the ingester's own handling, in its batches, as they came off the broker."""
    batch = []
    for topic, payload in messages:
        m = mqtt.MQTTMessage(topic=topic.encode())
        m.payload = payload
        batch.append(m)
        if len(batch) == ing.batch_messages:
            ing.handle_batch(batch)
            batch = []
    if batch:
        ing.handle_batch(batch)


# ---------------------------------------------------------------- measuring


def table_bytes(url: str) -> dict[str, int]:
    """Bytes each ledger table takes with its indexes, compacted first (VACUUM [FULL])."""
    names = {t.name for t in metadata.sorted_tables}
    if url.startswith("sqlite:///"):
        db = sqlite3.connect(url[len("sqlite:///") :])
        try:
            db.execute("VACUUM")
            owner = dict(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
            sizes: dict[str, int] = {}
            for name, size in db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                table = owner.get(name, name)
                if table in names:
                    sizes[table] = sizes.get(table, 0) + int(size)
            return sizes
        finally:
            db.close()
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as pg:
        present = [r[0] for r in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        out = {}
        for table in sorted(set(present) & names):
            pg.execute(f'VACUUM FULL "{table}"')  # the names are ours (schema.py), not input
            row = pg.execute("SELECT pg_total_relation_size(%s::regclass)", (f'"{table}"',)).fetchone()
            out[table] = int(row[0]) if row else 0
        return out


def run(w: Workload, url: str, work: Path) -> dict[str, Any]:
    db = Database(url)
    try:
        if set(inspect(db.engine).get_table_names()) & {t.name for t in metadata.sorted_tables}:
            raise LedgerNotEmpty(f"{db!r} already holds ledger tables: give it an empty database")
        db.create(metadata)
    finally:
        db.close()
    t0 = hour_of(now_ms()) - w.hours * HOUR_MS
    messages = [m for g in range(w.gateways) for m in gateway_messages(w, g, t0, work)]
    enrol(url, w, work)
    config = CloudConfig.model_validate({"mqtt": {"url": "mqtt://127.0.0.1:1"}, "ledger": {"url": url}})
    ing = Ingester(config)
    try:
        handle_all(ing, messages)
        recorded = ing.ledger.received_count()
        samples = ing.ledger.total_samples()
        before = table_bytes(url)
        ing.prune(force=True)
        after = table_bytes(url)
    finally:
        ing.ledger.close()
    device_hours = w.devices * w.hours
    data_messages = w.devices * w.hours * 60
    checkpoints = sum(1 for topic, _ in messages if topic.endswith("/checkpoint"))
    return {
        "workload": {**asdict(w), "gateways": w.gateways, "messages": data_messages, "checkpoints": checkpoints},
        "ledger": "postgresql" if url.startswith("postgres") else "sqlite",
        "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        "device_hours": device_hours,
        "before": {k: v / device_hours for k, v in sorted(before.items())},
        "after": {k: v / device_hours for k, v in sorted(after.items())},
        "total_before": sum(before.values()) / device_hours,
        "total_after": sum(after.values()) / device_hours,
        "recorded": recorded,
        "samples": samples,
        "exactly_once": recorded == data_messages and samples == data_messages * w.samples,
        "goal_bytes": GOAL_BYTES,
        "goal_met": sum(after.values()) / device_hours <= GOAL_BYTES,
    }


# ---------------------------------------------------------------- report


def report(r: dict[str, Any]) -> str:
    w = r["workload"]
    load = ", ".join(f"{x:.2f}" for x in r["machine"]["load_average"])
    lines = [
        "edgegw bench ledger-size",
        f"  工况 / workload: {w['devices']} devices on {w['gateways']} gateways × {w['hours']} h, one "
        f"{w['samples']}-sample message per device per minute ({w['messages']:,} messages, "
        f"{w['checkpoints']:,} checkpoints{', spread' if w['spread'] else ''}); ledger {r['ledger']}",
        f"  机器 / machine: {r['machine']['cpus']} CPUs, load average {load}",
        "  每设备小时字节 / bytes per device-hour, by table:   归档前 / before   归档后 / after archive",
    ]
    for table in sorted(set(r["before"]) | set(r["after"]), key=lambda t: -r["before"].get(t, 0)):
        b, a = r["before"].get(table, 0.0), r["after"].get(table, 0.0)
        if b or a:
            lines.append(f"    {table:<22} {b:>12,.0f} {a:>12,.0f}")
    lines += [
        f"    {'合计 / total':<20} {r['total_before']:>12,.0f} {r['total_after']:>12,.0f}"
        f"  ({r['total_after'] / 1024:.2f} KB)",
        f"  恰好一次 / exactly once: {'是 / yes' if r['exactly_once'] else '否 / NO'} "
        f"({r['recorded']:,} messages, {r['samples']:,} samples)",
        f"  目标 / goal ≤ {GOAL_BYTES // 1024} KB per device-hour: "
        + ("达到 / met" if r["goal_met"] else "未达到 / not met"),
    ]
    return "\n".join(lines)
