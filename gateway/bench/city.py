"""`edgegw bench city`: the pilot city (`city_seed.csv`) on one machine, through the real parts.

1. Every enterprise of the seed (or the first `--enterprises`) gets a virtual gateway: a real gateway identity
   (Ed25519 key made as `edgegw run` makes it) enrolled in the ledger's registry, and a real store-and-forward
   buffer with the hash chain, so its messages are what a gateway sends (10 samples each, its own seq, signed
   checkpoints before the messages they cover). One MQTT client carries all of them to one Mosquitto (the
   bench's own, on a free port): the broker's per-gateway ACL is not part of the measurement.
2. For each K of `--ingesters`, K `edgegw ingest` processes on one MQTT 5 shared subscription write into
   VictoriaMetrics (the bench's own) and the PostgreSQL ledger (a database of its own, created and dropped
   unless `--keep`), trust enforced (every message proven by its checkpoint):
   - drain: `--messages` preloaded for their sessions, then the K processes start: messages/s and samples/s
     from their start to their last commit, and each one's CPU; per `--backlog`: the gateways' backlogs
     (flushed gateway by gateway) and the broker's (the city's traffic in the order it arrived, see
     `drain_phase`);
   - live: `--seconds` of the city's own rate (each enterprise's tags × its report-by-exception share per
     minute, × `--rate`), sealed once a second per gateway as a gateway does: the lag from publishing to the
     ledger's commit (the ranges read every 50 ms), p50 and p95.
   Each phase is checked: every message sent is in the ledger once (by enterprise, gateway and seq).
3. `--history-days D`: D days of every device of every enterprise written into the ledger through the writer's
   batch path (`Ledger.record_batch`, not MQTT) every `--history-every` seconds, with trust off (no proofs are
   kept for these rows: an audit of that period would say unproven), online/offline events on the way; then
   the evidence API (`create_cloud_app` under uvicorn on loopback) is asked over HTTP with an evaluator's
   token for the overview of all enterprises over the D closed days (first call: the day summaries are
   computed; then `--calls` calls), one enterprise's evidence and its evidence pack.

The scaling model is in the report and README "Cloud at scale".
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from cloud_bridge.cloud.ledger.sqldb import Database
from cloud_bridge.cloud.trust.registry import Registry
from cloud_bridge.uplink.buffer import Buffer, Chain, Outgoing
from cloud_bridge.uplink.identity import load_or_create_identity
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire.codec import DataMessage, Event, EventMessage, Sample, Status, Topics, encode_data_body
from cloud_bridge.wire.mqtt import host_port, make_client
from edge_config.models import MqttSection
from gateway.bench.city_seed import SeedEnterprise, load
from gateway.bench.ingest import _end_session, _width, cloud_config, preload
from gateway.bench.servers import (
    BenchFailed,
    MosquittoServer,
    VictoriaMetrics,
    free_port,
    proc_cpu_seconds,
    start_with_retry,
)

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SAMPLES = 10  # per message
GW = "gw-01"
TZ = "Asia/Shanghai"
HIST_SEQ = 1 << 40  # history messages' seq: far above what the live phases use
GOAL_OVERVIEW_S = 2.0


def cmd_city_bench(args: argparse.Namespace) -> int:
    try:
        ks = [int(k) for k in str(args.ingesters).split(",") if k.strip()]
    except ValueError:
        print(f"edgegw bench city: --ingesters {args.ingesters!r}: give numbers, e.g. 1,2,4", file=sys.stderr)
        return 2
    if not ks or any(k < 1 or k > 16 for k in ks) or args.enterprises < 1 or args.seconds < 0 or args.messages < 0:
        print("edgegw bench city: --ingesters 1..16 each, --enterprises ≥ 1, --seconds/--messages ≥ 0", file=sys.stderr)
        return 2
    backlogs = tuple(b.strip() for b in str(args.backlog).split(",") if b.strip())
    if not backlogs or any(b not in BACKLOGS for b in backlogs):
        print(f"edgegw bench city: --backlog {args.backlog!r}: give gateways, broker or both", file=sys.stderr)
        return 2
    if args.history_every < 60:
        print("edgegw bench city: --history-every is at least 60 (seconds)", file=sys.stderr)
        return 2
    result = run_city_bench(
        ingesters=ks,
        enterprises=args.enterprises,
        seconds=args.seconds,
        messages=args.messages,
        backlogs=backlogs,
        rate=args.rate,
        history_days=args.history_days,
        history_every_s=args.history_every,
        calls=args.calls,
        keep=args.keep,
        pg_admin=args.pg,
        trust=args.trust,
    )
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if result["exactly_once"] else 1


# ---------------------------------------------------------------- the virtual gateways


@dataclass
class VirtualGateway:
    """One enterprise's gateway: its identity, its chained buffer, the publisher's framing. The buffer is open
    only between `open` and `close`: 408 of them open at once would push the bench's MQTT sockets past the
    file numbers paho's select() takes."""

    seed: SeedEnterprise
    work: Path
    topics: Topics = field(init=False)
    public_key: str = field(init=False)
    _buffer: Buffer | None = None
    _publisher: Publisher | None = None
    _turn: int = 0

    def __post_init__(self) -> None:
        self.topics = Topics("sf/v1", self.seed.id, GW)
        self.public_key = load_or_create_identity(self.work).public_key

    def open(self) -> None:
        chain = Chain(self.seed.id, GW, load_or_create_identity(self.work).key, self.topics.checkpoint)
        self._buffer = Buffer(self.work / "buffer.db", synchronous="NORMAL", chain=chain)
        self._publisher = Publisher(MqttSection(), self.topics, self._buffer, version="bench")

    def close(self) -> None:
        if self._buffer is not None:
            self._buffer.close()
        self._buffer = self._publisher = None

    @property
    def msgs_per_s(self) -> float:
        """The enterprise's report-by-exception traffic: its tags × the share changing per minute, / 60."""
        return self.seed.tags * self.seed.rbe_per_min / 60 / SAMPLES

    def _body(self, ts: int) -> tuple[str, bytes]:
        n = self._turn
        self._turn += 1
        dev = n % self.seed.devices
        first = (n // self.seed.devices * SAMPLES) % self.seed.tags_per_device
        tags = [f"t{(first + j) % self.seed.tags_per_device:03d}" for j in range(SAMPLES)]
        return f"dev-{dev:03d}", encode_data_body([Sample(t, round(n * 0.1 + j, 1), ts) for j, t in enumerate(tags)])

    def chunk(self, count: int, ts: int) -> list[tuple[str, bytes, int | None]]:
        """`count` data messages sealed at once: (topic, payload, seq), the checkpoint (seq None) first."""
        buf, pub = self._buffer, self._publisher
        if buf is None or pub is None:
            raise BenchFailed("open the gateway first")
        bodies = [self._body(ts) for _ in range(count)]
        buf.enqueue([Outgoing("data", self.topics.data(d), d, b, samples=SAMPLES) for d, b in bodies], ts)
        buf.seal_if_due(ts, force=True)
        rows = buf.peek(count + 10)
        cps = buf.checkpoints()
        out: list[tuple[str, bytes, int | None]] = [(c.topic, c.body, None) for c in cps]
        out += [(r.topic, pub._payload(r), r.seq) for r in rows]
        buf.ack([r.id for r in rows] + [c.id for c in cps])
        return out

    def chunks(self, counts: list[int], ts: list[int]) -> list[list[tuple[str, bytes, int | None]]]:
        """A chunk per count (empty for 0), the buffer open meanwhile."""
        self.open()
        try:
            return [self.chunk(n, t) if n > 0 else [] for n, t in zip(counts, ts, strict=True)]
        finally:
            self.close()


def make_gateways(seed: list[SeedEnterprise], work: Path, ledger_url: str) -> list[VirtualGateway]:
    """A gateway per enterprise, enrolled in the registry as `edgegw cloud gateway add` does."""
    logging.getLogger("cloud_bridge.uplink.identity").setLevel(logging.WARNING)  # not 408 lines of "made a key"
    gws = [VirtualGateway(s, work / "gateways" / s.id) for s in seed]
    db = Database(ledger_url)
    try:
        reg = Registry(db)
        for g in gws:
            reg.add(g.seed.id, GW, g.public_key)
    finally:
        db.close()
    return gws


# ---------------------------------------------------------------- the ledger's database


@contextmanager
def pg_database(admin_url: str, keep: bool) -> Iterator[str]:
    """A PostgreSQL database of the bench's own: its URL; dropped afterwards unless `keep`."""
    import psycopg

    name = f"city_bench_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as pg:
        pg.execute(f"CREATE DATABASE {name}")
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as pg:
                pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read with the bare driver (not the ledger code being measured)."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as pg:
        return list(pg.execute(query, params).fetchall())


def received_ranges(url: str) -> dict[str, list[tuple[int, int]]]:
    """ent → the seq ranges its gateway's messages were recorded under (the ledger keeps ranges, not rows)."""
    out: dict[str, list[tuple[int, int]]] = {}
    for ent, first, last in _sql(url, "SELECT ent, first_seq, last_seq FROM received_seqs ORDER BY ent, first_seq"):
        out.setdefault(ent, []).append((int(first), int(last)))
    return out


def recorded_keys(url: str) -> set[tuple[str, int]]:
    """(ent, seq) of every message in the ledger (one gateway per enterprise in this bench)."""
    return {(ent, s) for ent, rs in received_ranges(url).items() for first, last in rs for s in range(first, last + 1)}


def _covers(ranges: list[tuple[int, int]], seq: int) -> bool:
    i = bisect.bisect_right(ranges, (seq, 1 << 62)) - 1
    return i >= 0 and ranges[i][0] <= seq <= ranges[i][1]


class CommitWatch:
    """When each message reached the ledger's commit: the ranges read every `every` s (a thread); a message's
    commit time is that of the first reading that holds it (ranges only grow), so the lag is known to `every`."""

    def __init__(self, url: str, every: float = 0.05) -> None:
        self.url, self.every = url, every
        self.snaps: list[tuple[int, dict[str, list[tuple[int, int]]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="commit-watch", daemon=True)

    def __enter__(self) -> CommitWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.snaps.append((int(time.time() * 1000), received_ranges(self.url)))

    def committed_ms(self, ent: str, seq: int) -> int | None:
        lo, hi = 0, len(self.snaps)
        while lo < hi:  # the first snapshot that holds it
            mid = (lo + hi) // 2
            if _covers(self.snaps[mid][1].get(ent, []), seq):
                hi = mid
            else:
                lo = mid + 1
        return self.snaps[lo][0] if lo < len(self.snaps) else None


def backend_cpu(url: str) -> float:
    """CPU seconds of the PostgreSQL backends serving the ledger's database now, this one's excepted."""
    rows = _sql(url, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
    total = 0.0
    for (pid,) in rows:
        try:
            total += proc_cpu_seconds(int(pid))
        except OSError:
            continue  # gone meanwhile
    return total


def received_count(url: str) -> int:
    return int(_sql(url, "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM received_seqs")[0][0])


# ---------------------------------------------------------------- the ingesters


@dataclass
class Workers:
    procs: list[tuple[Path, subprocess.Popen[bytes]]]
    client_ids: list[str]
    broker: MosquittoServer

    def stop(self) -> list[dict[str, Any]]:
        for _, p in self.procs:
            p.send_signal(signal.SIGTERM)
        out = []
        for path, p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
            out.append(json.loads(path.read_text()) if path.exists() else {})
        for cid in self.client_ids:
            _end_session(*host_port(self.broker.url), cid)
        return out


def start_workers(
    broker: MosquittoServer, vm: VictoriaMetrics, ledger: str, work: Path, group: str, k: int, trust: str
) -> Workers:
    """K `edgegw ingest` processes (the ingest bench's worker: the real Ingester, figures on SIGTERM)."""
    client_ids = [f"{group}-{i}" for i in range(k)]
    procs = []
    for cid in client_ids:
        cfg = cloud_config(broker, vm, ledger, cid, group).model_dump(mode="json", exclude_none=True)
        cfg["trust"] = {**cfg.get("trust", {}), "mode": trust}
        path = work / f"{cid}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        report_path = work / f"{cid}.json"
        log = (work / f"{cid}.log").open("wb")
        cmd = [sys.executable, "-m", "gateway.bench.ingest", str(path), str(report_path)]
        procs.append((report_path, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
    return Workers(procs, client_ids, broker)


def _wait_received(ledger: str, target: int, workers: Workers, stall_s: float = 30) -> None:
    done, progress = -1, time.monotonic()
    while True:
        n = received_count(ledger)
        if n >= target:
            return
        if n != done:
            done, progress = n, time.monotonic()
        if time.monotonic() - progress > stall_s or any(p.poll() is not None for _, p in workers.procs):
            return  # stalled or died: the checks report it
        time.sleep(0.2)


def _shares(gws: list[VirtualGateway], total: int) -> list[int]:
    """`total` messages split between the gateways in proportion to their traffic."""
    weights = [g.msgs_per_s for g in gws]
    s = sum(weights)
    out = [int(total * w / s) for w in weights]
    for i in range(total - sum(out)):
        out[i % len(out)] += 1
    return out


def drain_phase(
    broker: MosquittoServer,
    vm: VictoriaMetrics,
    ledger: str,
    work: Path,
    gws: list[VirtualGateway],
    k: int,
    total: int,
    trust: str,
    backlog: str = "gateways",
) -> dict[str, Any]:
    """`total` messages preloaded for K sessions, then drained by K ingesters. The backlog as it builds up:
    - `gateways`: the gateways' own (store-and-forward after their link was down), each flushing chunks of up
      to 100 messages under one checkpoint, the gateways in turn: a batch of the ingester holds a few gateways;
    - `broker`: the city's traffic held by the broker while the ingesters were away, in the order it arrived:
      second by second, each gateway's messages of that second under their checkpoint (a gateway seals once a
      second): a batch holds hundreds of gateways, one or two messages each."""
    ts = int(time.time() * 1000)
    per_gw = []
    shares = _shares(gws, total)
    rounds = max(1, math.ceil(total / sum(g.msgs_per_s for g in gws))) if backlog == "broker" else 0
    for g, n in zip(gws, shares, strict=True):
        if backlog == "broker":
            sizes = [(r + 1) * n // rounds - r * n // rounds for r in range(rounds)]
            per_gw.append(g.chunks(sizes, [ts - (rounds - r) * 1000 for r in range(rounds)]))
        else:
            sizes = [min(100, n - i) for i in range(0, n, 100)]
            per_gw.append(g.chunks(sizes, [ts] * len(sizes)))
    sent = {(g.seed.id, seq) for g, chunks in zip(gws, per_gw, strict=True) for c in chunks for _, _, seq in c if seq}
    messages = []
    for r in range(max((len(c) for c in per_gw), default=0)):  # gateways in turn, chunk by chunk
        for chunks in per_gw:
            if r < len(chunks):
                messages += [(t, p) for t, p, _ in chunks[r]]
    group = f"city-drain-{k}"
    client_ids = [f"{group}-{i}" for i in range(k)]
    before = recorded_keys(ledger)
    base = len(before)
    preload_s = preload(broker, group, client_ids, messages)
    cpu_b0, cpu_v0 = _cpu(broker), _cpu(vm)
    workers = start_workers(broker, vm, ledger, work, group, k, trust)
    _wait_received(ledger, base + len(sent), workers)
    time.sleep(0.5)  # a duplicate on its way would show now
    pg_cpu = backend_cpu(ledger)  # the ingesters' connections, made for this phase
    reports = workers.stop()
    got = recorded_keys(ledger) - before
    if not all(reports):
        raise BenchFailed(f"an ingester process failed; see {work}/*.log")
    wall = max(r["t_last"] for r in reports) - min(r["t_start"] for r in reports)
    samples = sum(r["samples"] for r in reports)
    return {
        "ingesters": k,
        "backlog": backlog,
        "messages": len(sent),
        "samples": samples,
        "preload_s": preload_s,
        "seconds": wall,
        "messages_s": len(sent) / wall if wall > 0 else 0.0,
        "samples_s": samples / wall if wall > 0 else 0.0,
        "per_ingester_messages_s": [r["messages"] / wall for r in reports] if wall > 0 else [],
        "ingester_cpu_cores": [r["cpu_s"] / wall for r in reports] if wall > 0 else [],
        "mosquitto_cpu_cores": (_cpu(broker) - cpu_b0) / wall if wall > 0 else 0.0,
        "victoria_cpu_cores": (_cpu(vm) - cpu_v0) / wall if wall > 0 else 0.0,
        "postgres_cpu_cores": pg_cpu / wall if wall > 0 else 0.0,
        # the share of each ingester's wall time spent waiting on a store (where a batch's time goes)
        "store_share": [{k: v / wall for k, v in r.get("store_s", {}).items()} for r in reports] if wall > 0 else [],
        # messages that came before their checkpoint was in the ledger: held in `unproven`, later released
        "held": sum(r.get("held", 0) for r in reports),
        "batches": [r.get("batches", 0) for r in reports],
        "messages_per_batch": [r["messages"] / r["batches"] if r.get("batches") else 0.0 for r in reports],
        "released": sum(r.get("released", 0) for r in reports),
        "cpu_ms_per_message": (
            (sum(r["cpu_s"] for r in reports) + pg_cpu + _cpu(broker) - cpu_b0 + _cpu(vm) - cpu_v0) * 1000 / len(sent)
            if sent
            else None
        ),
        "duplicates": sum(r["duplicates"] for r in reports),
        "exactly_once": set(got) == sent and len(got) == len(sent),
        "in_ledger": len(set(got) & sent),
    }


def live_phase(
    broker: MosquittoServer,
    vm: VictoriaMetrics,
    ledger: str,
    work: Path,
    gws: list[VirtualGateway],
    k: int,
    seconds: float,
    rate: float,
    trust: str,
) -> dict[str, Any]:
    """`seconds` of the city's traffic (× `rate`), each gateway sealing once a second (its messages made and
    signed beforehand, in its real buffer); the lag from publishing to the ledger's commit."""
    rounds = int(seconds)
    t_plan = int(time.time() * 1000)
    plan = []
    for g in gws:
        gr = g.msgs_per_s * rate
        counts = [int((r + 1) * gr) - int(r * gr) for r in range(rounds)]
        plan.append((g.seed.id, g.chunks(counts, [t_plan + r * 1000 for r in range(rounds)])))
    group = f"city-live-{k}"
    workers = start_workers(broker, vm, ledger, work, group, k, trust)
    time.sleep(3.0)  # the ingesters connect and subscribe
    client = make_client(broker.url, "5", f"city-pub-{k}", None, None, None)
    client.max_inflight_messages_set(2000)
    host, port = host_port(broker.url)
    client.connect(host, port)
    client.loop_start()
    published: dict[tuple[str, int], int] = {}
    before = recorded_keys(ledger)
    base = len(before)
    watch = CommitWatch(ledger).__enter__()
    t0 = time.monotonic()
    late = 0
    for r in range(rounds):
        for ent, chunks in plan:
            for topic, payload, seq in chunks[r]:
                client.publish(topic, payload, qos=1)
                if seq is not None:
                    published[(ent, seq)] = int(time.time() * 1000)
        pause = t0 + r + 1 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            late += 1
    try:
        _wait_received(ledger, base + len(published), workers)
        time.sleep(0.5)
    finally:
        watch.__exit__()
    client.disconnect()
    client.loop_stop()
    pg_cpu = backend_cpu(ledger)  # the ingesters' connections, made for this phase
    reports = workers.stop()
    got = recorded_keys(ledger) - before
    lags = sorted(c - t for (ent, seq), t in published.items() if (c := watch.committed_ms(ent, seq)) is not None)
    wall = time.monotonic() - t0
    return {
        "ingesters": k,
        "seconds": seconds,
        "messages": len(published),
        "offered_messages_s": len(published) / seconds if seconds else 0.0,
        "offered_samples_s": len(published) * SAMPLES / seconds if seconds else 0.0,
        "rounds_late": late,
        "lag_ms_p50": _pct(lags, 0.50),
        "lag_ms_p95": _pct(lags, 0.95),
        "lag_ms_max": lags[-1] if lags else None,
        "ingester_cpu_cores": [r.get("cpu_s", 0.0) / wall for r in reports],
        # CPU per message at the city's own rate: the ingesters' (their idle loops included) and their
        # PostgreSQL backends'
        "ingester_us_per_message": sum(r.get("cpu_s", 0.0) for r in reports) * 1e6 / len(published)
        if published
        else None,
        "postgres_us_per_message": pg_cpu * 1e6 / len(published) if published else None,
        "exactly_once": set(got) == set(published) and len(got) == len(published),
        "in_ledger": len(set(got) & set(published)),
    }


def _pct(values: list[int], q: float) -> float | None:
    if not values:
        return None
    return float(values[min(len(values) - 1, int(q * len(values)))])


def _cpu(server: MosquittoServer | VictoriaMetrics) -> float:
    return proc_cpu_seconds(server.proc.pid) if server.proc is not None else 0.0


# ---------------------------------------------------------------- history and the evidence API


def history_plan(seed: SeedEnterprise, days: int, every_s: int, end_ms: int) -> Iterator[DataMessage | EventMessage]:
    """D days of one enterprise's devices up to `end_ms`: online from the start, a daily outage of 0–4 h (most
    of the day for the devices past the enterprise's networked share), a data message every `every_s` while
    online. Deterministic per enterprise."""
    rnd = random.Random(seed.id)
    start = end_ms - days * 86_400_000
    share = rnd.uniform(0.55, 0.98)  # of its devices networked
    seq = HIST_SEQ
    step = every_s * 1000
    for i in range(seed.devices):
        dev = f"dev-{i:03d}"
        weak = rnd.random() > share
        seq += 1
        yield EventMessage(GW, dev, seq, True, (Event("online", start - 3_600_000, "bench"),))
        for d in range(days):
            day0 = start + d * 86_400_000
            out_len = rnd.randint(14, 22) * 3_600_000 if weak else rnd.randint(0, 4) * 3_600_000
            out_at = day0 + rnd.randint(0, 86_400_000 - out_len) if out_len else None
            if out_at is not None:
                seq += 1
                yield EventMessage(GW, dev, seq, True, (Event("offline", out_at, "timeout"),))
                seq += 1
                yield EventMessage(GW, dev, seq, True, (Event("online", out_at + out_len, "ok"),))
            for ts in range(day0, min(day0 + 86_400_000, end_ms), step):
                if out_at is not None and out_at <= ts < out_at + out_len:
                    continue
                seq += 1
                samples = tuple(Sample(f"t{j:03d}", float(j), ts) for j in range(SAMPLES))
                yield DataMessage(GW, dev, seq, True, samples)


def fill_history(ledger_url: str, seed: list[SeedEnterprise], days: int, every_s: int) -> dict[str, Any]:
    """The history of every enterprise through `Ledger.record_batch` (trust off: no proofs kept), in batches
    of 2,000 messages; then each gateway's last sign of life now (online, one sample)."""
    from cloud_bridge.cloud.ledger.writer import Ledger

    now = int(time.time() * 1000)
    ledger = Ledger(ledger_url)
    t = time.perf_counter()
    messages = samples = events = 0
    try:
        for s in seed:
            batch: list[tuple[str, DataMessage | EventMessage]] = []
            for m in history_plan(s, days, every_s, now - 60_000):
                batch.append((s.id, m))
                if isinstance(m, DataMessage):
                    samples += len(m.samples)
                else:
                    events += 1
                if len(batch) >= 2000:
                    ledger.record_batch(batch)
                    messages += len(batch)
                    batch = []
            last = DataMessage(GW, "dev-000", HIST_SEQ - 1, False, (Sample("t000", 1.0, now - 1000),))
            ledger.record_batch([*batch, (s.id, last)])
            messages += len(batch) + 1
            ledger.record_status(s.id, GW, None, Status(True, now, version="bench"))
    finally:
        ledger.close()
    wall = time.perf_counter() - t
    return {"days": days, "every_s": every_s, "messages": messages, "samples": samples, "events": events,
            "seconds": wall, "messages_s": messages / wall}  # fmt: skip


@contextmanager
def serve_api(ledger_url: str, seed: list[SeedEnterprise]) -> Iterator[tuple[str, Any]]:
    """`edgegw serve`'s app under uvicorn on a free loopback port (trust off: the history has no proofs):
    (its URL, the app; its background day fill starts with it)."""
    import uvicorn

    from cloud_bridge.cloud.api.app import create_cloud_app
    from edge_config.models import CloudConfig

    port = free_port()
    config = CloudConfig.model_validate(
        {
            "ledger": {"url": ledger_url},
            "api": {"listen": f"127.0.0.1:{port}"},
            "trust": {"mode": "off"},
            "enterprises": [{"id": s.id, "name": s.name} for s in seed],
        }
    )
    app = create_cloud_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise BenchFailed("the evidence API did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)


def _get(url: str, token: str) -> tuple[int, bytes, float]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, r.read(), time.perf_counter() - t
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.perf_counter() - t


def _first_fill(app: Any, timeout_s: float = 3600) -> Any:
    """The report of the app's first background day fill, once it is done (None if it has no filler)."""
    deadline = time.monotonic() + timeout_s
    while getattr(app.state, "filler", None) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    filler = getattr(app.state, "filler", None)
    while filler is not None and filler.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    return filler.last if filler is not None else None


def api_phase(ledger_url: str, seed: list[SeedEnterprise], days: int, calls: int) -> dict[str, Any]:
    """The overview of all enterprises over the D closed days, cold then warm; one enterprise's evidence and
    pack over the same days; through HTTP with an evaluator's token."""
    from cloud_bridge.cloud.ledger.users import CloudUsers
    from cloud_bridge.metrics.calendar import local_date

    db = Database(ledger_url)
    try:
        token = CloudUsers(db).add(f"city-evaluator-{os.getpid()}", "evaluator", []).secret
    finally:
        db.close()
    today = local_date(int(time.time() * 1000), TZ)
    frm, to = (today - timedelta(days=days)).isoformat(), (today - timedelta(days=1)).isoformat()
    q = f"from={frm}&to={to}"
    big = max(seed, key=lambda s: s.devices)
    with serve_api(ledger_url, seed) as (base, app):
        fill = _first_fill(app)
        status, body, cold = _get(f"{base}/api/v1/overview?{q}", token)
        if status != 200:
            raise BenchFailed(f"GET /api/v1/overview: {status} {body[:300]!r}")
        ov = json.loads(body)
        warm = [_get(f"{base}/api/v1/overview?{q}", token)[2] for _ in range(max(1, calls))]
        ev_status, ev_body, ev_s = _get(f"{base}/api/v1/enterprises/{big.id}/evidence?{q}", token)
        pack_status, pack_body, pack_s = _get(f"{base}/enterprises/{big.id}/pack.zip?start={frm}&end={to}", token)
    t = ov["totals"]
    return {
        "period": [frm, to],
        "enterprises": len(ov["enterprises"]),
        "devices": t["equipment_total"],
        "networked": t["networked"],
        "online_rate": t["online_rate"],
        "from_days": ov["computed_from_days"],
        "fill_s": fill.seconds if fill else None,
        "fill_rows": fill.rows if fill else 0,
        "cold_computed_rows": ov["computed_day_rows"],
        "overview_cold_s": cold,
        "overview_warm_s": statistics.median(warm),
        "overview_warm_max_s": max(warm),
        "overview_bytes": len(body),
        "evidence_enterprise": big.id,
        "evidence_devices": big.devices,
        "evidence_status": ev_status,
        "evidence_s": ev_s,
        "evidence_bytes": len(ev_body),
        "pack_status": pack_status,
        "pack_s": pack_s,
        "pack_bytes": len(pack_body) if pack_status == 200 else 0,
        "pack_error": "" if pack_status == 200 else pack_body[:200].decode(errors="replace"),
        "goal_s": GOAL_OVERVIEW_S,
        "goal_met": statistics.median(warm) <= GOAL_OVERVIEW_S,
    }


# ---------------------------------------------------------------- the run


def run_city_bench(
    *,
    ingesters: list[int],
    enterprises: int = 408,
    seconds: float = 20,
    messages: int = 20_000,
    backlogs: tuple[str, ...] = ("gateways",),
    rate: float = 1.0,
    history_days: int = 0,
    history_every_s: int = 21_600,
    calls: int = 5,
    keep: bool = False,
    pg_admin: str = PG_ADMIN,
    trust: str = "enforce",
    workdir: Path | None = None,
) -> dict[str, Any]:
    seed = load()[:enterprises]
    work = workdir or Path(tempfile.mkdtemp(prefix="edgegw-bench-city-"))
    load0 = os.getloadavg()
    broker = start_with_retry(lambda port: MosquittoServer(port, work / "mq"))
    vm = start_with_retry(lambda port: VictoriaMetrics(port, work / "vm"))
    gws: list[VirtualGateway] = []
    drains: list[dict[str, Any]] = []
    lives: list[dict[str, Any]] = []
    history: dict[str, Any] | None = None
    api: dict[str, Any] | None = None
    try:
        with pg_database(pg_admin, keep) as ledger:
            from cloud_bridge.cloud.ledger.writer import Ledger

            Ledger(ledger).close()  # the tables, before the ingesters race to make them
            gws = make_gateways(seed, work, ledger)
            for k in ingesters:
                for backlog in backlogs if messages else ():
                    drains.append(drain_phase(broker, vm, ledger, work, gws, k, messages, trust, backlog))
                if seconds:
                    lives.append(live_phase(broker, vm, ledger, work, gws, k, seconds, rate, trust))
            if history_days:
                history = fill_history(ledger, seed, history_days, history_every_s)
                api = api_phase(ledger, seed, history_days, calls)
            ledger_url = ledger if keep else None
    finally:
        broker.stop()
        vm.stop()
    ok = all(r["exactly_once"] for r in [*drains, *lives])
    if workdir is None and ok and not keep:
        shutil.rmtree(work, ignore_errors=True)
    for d in drains:  # against one ingester draining the same backlog
        one = next((x for x in drains if x["ingesters"] == 1 and x["backlog"] == d["backlog"]), None)
        d["scaling"] = d["messages_s"] / one["messages_s"] if one and one["messages_s"] else None
    return {
        "seed": {
            "enterprises": len(seed),
            "devices": sum(s.devices for s in seed),
            "tags": sum(s.tags for s in seed),
            "city_messages_s": sum(s.tags * s.rbe_per_min / 60 / SAMPLES for s in seed),
        },
        "machine": {"cpus": os.cpu_count(), "load_average_before": load0, "load_average_after": os.getloadavg()},
        "trust": trust,
        "drain": drains,
        "live": lives,
        "history": history,
        "api": api,
        "exactly_once": ok,
        "ledger": ledger_url,
        "workdir": str(work) if work.exists() else None,
    }


BACKLOGS = {"gateways": "积压在网关 / gateways' backlogs", "broker": "积压在代理 / the broker's backlog"}


def _f(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "n/a" if v is None else fmt.format(v)


MODEL = (
    "scaling model: an ingester handles a batch in sequence, decode and proof check (CPU, at most one core: "
    "Python's GIL) then the VictoriaMetrics write and the ledger commit (waits), so one ingester uses less than "
    "a core and K ingesters overlap each other's waits until the cores are busy. Every message also costs "
    "VictoriaMetrics and PostgreSQL CPU, here on the same 2 cores (with the other work of the machine): whatever K, "
    "messages/s ≤ 2 cores / (CPU per message of ingester + VM + PostgreSQL), the bound printed per run. With "
    "trust enforced, Mosquitto's round-robin shared subscription splits a gateway's checkpoint from its messages: "
    "those reaching another ingester are proven by a look-up of the ledger's checkpoints (before holding, and "
    "after the batch is written) or held in `unproven` until the sweep that ends the next batch of either "
    "ingester; a broker that keeps each publisher on one member of the group (EMQX's hash_clientid strategy) "
    "avoids that second pass and the ledger rows K ingesters share"
)


def report(r: dict[str, Any]) -> str:
    s, m = r["seed"], r["machine"]
    la = ", ".join(f"{x:.2f}" for x in m["load_average_before"])
    la2 = ", ".join(f"{x:.2f}" for x in m["load_average_after"])
    rows = [
        ("城市 / city", f"{s['enterprises']} enterprises, {s['devices']:,} devices, {s['tags']:,} tags, "
         f"{s['city_messages_s']:,.0f} msgs/s report-by-exception"),
        ("机器 / machine", f"{m['cpus']} CPUs, load average {la} before, {la2} after"),
        ("信任 / trust", r["trust"]),
    ]  # fmt: skip
    cores = m["cpus"] or 2
    for d in r["drain"]:
        rows.append(
            (f"排空 / drain K={d['ingesters']} ({BACKLOGS[d['backlog']]})",
             f"{d['messages_s']:,.0f} msgs/s, {d['samples_s']:,.0f} samples/s "
             f"(×{_f(d['scaling'], '{:.2f}')} of K=1); per ingester "
             + " / ".join(f"{x:,.0f}" for x in d["per_ingester_messages_s"]) + " msgs/s, CPU "
             + " + ".join(f"{c:.2f}" for c in d["ingester_cpu_cores"])
             + f" cores; Mosquitto {d['mosquitto_cpu_cores']:.2f}, VM {d['victoria_cpu_cores']:.2f}, "
             f"PostgreSQL {d['postgres_cpu_cores']:.2f}; {_f(d['cpu_ms_per_message'], '{:.2f}')} ms CPU per message "
             f"(bound {_f(cores * 1000 / d['cpu_ms_per_message'] if d['cpu_ms_per_message'] else None)} msgs/s "
             f"on {cores} cores); waiting on the stores (share of the wall time, per ingester): "
             + " / ".join(", ".join(f"{k} {v:.0%}" for k, v in sorted(w.items())) for w in d.get("store_share", []))
             + "; messages per batch " + " / ".join(f"{n:,.0f}" for n in d.get("messages_per_batch", []))
             + f"; held before their checkpoint {d.get('held', 0):,}, released {d.get('released', 0):,}"
             + f"; {d['in_ledger']:,}/{d['messages']:,} in the ledger")
        )  # fmt: skip
    for v in r["live"]:
        rows.append(
            (f"实时 / live K={v['ingesters']}", f"{v['offered_messages_s']:,.0f} msgs/s offered, lag p50 "
             f"{_f(v['lag_ms_p50'])} ms, p95 {_f(v['lag_ms_p95'])} ms, max {_f(v['lag_ms_max'])} ms; CPU per "
             f"message: ingesters {_f(v.get('ingester_us_per_message'))} µs ("
             + " + ".join(f"{c:.2f}" for c in v["ingester_cpu_cores"])
             + f" cores), PostgreSQL {_f(v.get('postgres_us_per_message'))} µs; "
             f"{v['in_ledger']:,}/{v['messages']:,} in the ledger, {v['rounds_late']} late rounds")
        )  # fmt: skip
    h, a = r["history"], r["api"]
    if h:
        rows.append(
            ("历史 / history", f"{h['days']} days every {h['every_s']} s: {h['messages']:,} messages, "
             f"{h['events']:,} events in {h['seconds']:.0f} s ({h['messages_s']:,.0f} msgs/s, trust off)")
        )  # fmt: skip
    if a:
        rows += [
            ("日汇总 / day fill", f"{a['fill_rows']:,} device-day rows computed in the background in "
             f"{a['fill_s'] or 0:.1f} s before the first call; the first call computed {a['cold_computed_rows']:,}"),
            ("总览 / overview", f"{a['enterprises']} enterprises, {a['devices']:,} devices, "
             f"{a['period'][0]}..{a['period'][1]}: "
             f"first {a['overview_cold_s']:.2f} s, then {a['overview_warm_s']:.2f} s median "
             f"(max {a['overview_warm_max_s']:.2f} s); goal ≤ {a['goal_s']:.0f} s: "
             + ("达到 / met" if a["goal_met"] else "未达到 / not met")),
            ("证据 / evidence", f"{a['evidence_enterprise']} ({a['evidence_devices']} devices): "
             f"{a['evidence_s']:.2f} s "
             f"(HTTP {a['evidence_status']}); pack {a['pack_s']:.2f} s (HTTP {a['pack_status']}) {a['pack_error']}"),
        ]  # fmt: skip
    rows.append(("恰好一次 / exactly once (ledger, by seq)", "是 / yes" if r["exactly_once"] else "否 / NO"))
    width = max(_width(k) for k, _ in rows)
    body = "\n".join(f"  {k}{' ' * (width - _width(k))}  {v}" for k, v in rows)
    return f"edgegw bench city\n{body}\n  {MODEL}"
