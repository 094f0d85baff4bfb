"""`edgegw bench pipeline`: buffer → MQTT → ingester → VictoriaMetrics + ledger, measured end to end.

Phases, all in one run on this machine:
1. live: a synthetic workshop (`--devices` × `--tags` at 1 s) flows through the whole pipeline;
   the gateway process's CPU per 1,000 samples is measured, with the hash chain and signed
   checkpoints (as the agent runs) and, for comparison, the same workload without them (a second
   enterprise, whose unchained messages the ingester refuses: only the gateway's CPU is measured).
2. sustained: the producer writes as fast as the pipeline drains (backlog bounded); the samples/s
   that reach the ledger is the sustained end-to-end rate.
3. outage: `--outage` seconds of the live workload are written into the buffer while nothing is
   published (a simulated outage: the backlog is built at full speed with back-dated timestamps,
   the disk bytes per buffered sample are measured), then the publisher drains it; the drain rate
   to the broker and into the stores is reported as a multiple of the live rate (goal ≥ 10×).
The ingester runs in its own process (`edgegw ingest`), so its CPU is not the gateway's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from cloud_bridge.uplink.buffer import Buffer, Chain, Outgoing
from cloud_bridge.uplink.identity import load_or_create_identity
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire.codec import Sample, Topics, encode_data_body
from edge_config.models import MqttSection
from edge_config.version import __version__
from gateway.bench.servers import MosquittoServer, VictoriaMetrics, free_port, proc_cpu_seconds

GW = "gw-bench"
ENT = "ent-bench"
ENT_PLAIN = "ent-bench-plain"  # the comparison without the chain
LIVE_ROUNDS = 3


def cmd_pipeline(args: argparse.Namespace) -> int:
    result = asyncio.run(
        run_pipeline_bench(args.devices, args.tags, args.live_seconds, args.sustained_seconds, args.outage)
    )
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


# ---------------------------------------------------------------- workload


class Workshop:
    """Synthetic scans: `devices` × `tags` floats with one decimal, like scaled register values."""

    def __init__(self, devices: int, tags: int, topics: Topics) -> None:
        self.devices = [f"dev-{i:03d}" for i in range(devices)]
        self.tags = [f"tag_{j:03d}" for j in range(tags)]
        self.topics = topics
        self.rng = random.Random(7)
        self.level = {d: [self.rng.uniform(10, 1000) for _ in self.tags] for d in self.devices}

    def scan(self, dev: str, ts: int) -> Outgoing:
        levels = self.level[dev]
        samples = []
        for j, tag in enumerate(self.tags):
            levels[j] += self.rng.uniform(-1, 1)
            samples.append(Sample(tag, round(levels[j], 1), ts))
        return Outgoing("data", self.topics.data(dev), dev, encode_data_body(samples), samples=len(samples))

    def all_scans(self, ts: int) -> list[Outgoing]:
        return [self.scan(d, ts) for d in self.devices]


# ---------------------------------------------------------------- helpers


def ledger_samples(path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            (n,) = db.execute("SELECT COALESCE(SUM(samples), 0) FROM device_stats").fetchone()
        finally:
            db.close()
        return int(n)
    except sqlite3.Error:
        return 0


async def wait_for(cond: Any, timeout: float, step: float = 0.1) -> float:
    """Seconds until cond() held (or the timeout, as a negative number)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        await asyncio.sleep(step)
    return -timeout


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file() and "hwm" not in p.name)


# ---------------------------------------------------------------- the run


async def run_pipeline_bench(
    devices: int, tags: int, live_s: float, sustained_s: float, outage_s: float
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="edgegw-bench-pipeline-"))
    broker = MosquittoServer(free_port(), work / "mq")
    vm = VictoriaMetrics(free_port(), work / "vm")
    broker.start()
    vm.start()
    ledger = work / "ledger.db"
    cloud = {
        "mqtt": {"url": broker.url, "protocol": "5", "shared_group": None, "client_id": "bench-ingest"},
        "influx": {"url": vm.url},
        "ledger": {"url": f"sqlite:///{ledger}"},
    }
    (work / "cloud.yaml").write_text(yaml.safe_dump(cloud))
    ingest = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "ingest", "-c", str(work / "cloud.yaml")],
        stdout=subprocess.DEVNULL,
        stderr=(work / "ingest.log").open("wb"),
    )
    topics = Topics("sf/v1", ENT, GW)
    identity = load_or_create_identity(work / "edge")
    _enrol(f"sqlite:///{ledger}", identity.public_key)
    shop = Workshop(devices, tags, topics)
    live_rate = devices * tags
    result: dict[str, Any] = {
        "workload": {"devices": devices, "tags": tags, "live_rate_samples_s": live_rate, "outage_s": outage_s}
    }
    try:
        await asyncio.sleep(1.0)  # the ingester subscribes
        buffer = Buffer(work / "edge" / "buffer.db", chain=Chain(ENT, GW, identity.key, topics.checkpoint, every=500))
        pub = Publisher(MqttSection(url=broker.url, inflight=1000), topics, buffer, version=__version__)
        stop = asyncio.Event()
        task = asyncio.create_task(pub.run(stop))
        await wait_for(lambda: pub.stats.connected, 10)
        # warm-up: scans until the ingester is subscribed and writing (a message published before
        # its subscription exists would be acknowledged by the broker and go nowhere)
        for _ in range(120):
            buffer.enqueue([shop.scan(shop.devices[0], int(time.time() * 1000))])
            pub.wake()
            if await wait_for(lambda: ledger_samples(ledger) > 0, 1.0) >= 0:
                break

        # 1. live, with the chain (as the agent runs) and without it, in alternating rounds (the machine's
        # load drifts, and a gateway at 2,000 samples/s uses under 1 % of a core: noise is large)
        await wait_for(lambda: buffer.depth().messages == 0, 30)  # the warm-up is in before counting
        await asyncio.sleep(0.5)
        plain_topics = Topics("sf/v1", ENT_PLAIN, GW)
        plain_buffer = Buffer(work / "edge-plain" / "buffer.db")
        plain_pub = Publisher(MqttSection(url=broker.url, inflight=1000), plain_topics, plain_buffer, version="b")
        plain_stop = asyncio.Event()
        plain_task = asyncio.create_task(plain_pub.run(plain_stop))
        await wait_for(lambda: plain_pub.stats.connected, 10)
        plain_shop = Workshop(devices, tags, plain_topics)
        base_ledger = ledger_samples(ledger)
        t_live = time.monotonic()
        chained_cpu = plain_cpu = 0.0
        produced = plain_produced = 0
        rounds = []
        for _ in range(LIVE_ROUNDS):
            cpu, n = await _live(buffer, pub, shop, live_s / LIVE_ROUNDS)
            cpu_plain, n_plain = await _live(plain_buffer, plain_pub, plain_shop, live_s / LIVE_ROUNDS)
            rounds.append((cpu / n) / (cpu_plain / n_plain) - 1)
            chained_cpu, produced = chained_cpu + cpu, produced + n
            plain_cpu, plain_produced = plain_cpu + cpu_plain, plain_produced + n_plain
        plain_stop.set()
        await plain_task
        plain_buffer.close()
        await wait_for(lambda: ledger_samples(ledger) - base_ledger >= produced, 60)
        rounds.sort()
        result["live"] = {
            "samples": produced,
            "gateway_cpu_s_per_1000": chained_cpu / produced * 1000,
            "gateway_cpu_share": chained_cpu / (time.monotonic() - t_live) * 2,
            "all_ingested": ledger_samples(ledger) - base_ledger == produced,
            "unchained_cpu_s_per_1000": plain_cpu / plain_produced * 1000,
            "chain_overhead": rounds[len(rounds) // 2],
            "chain_overhead_rounds": rounds,
        }

        # 2. sustained: keep the backlog bounded and measure what reaches the ledger
        base_ledger = ledger_samples(ledger)
        acked0 = sum(pub.stats.samples_acked.values())
        ing_cpu0 = proc_cpu_seconds(ingest.pid)
        t0 = time.monotonic()
        ts = int(time.time() * 1000)
        while time.monotonic() - t0 < sustained_s:
            if buffer.depth().messages < 2 * devices * 10:
                ts += 1
                buffer.enqueue(shop.all_scans(ts))
                pub.wake()
            await asyncio.sleep(0)
        elapsed = time.monotonic() - t0
        got = ledger_samples(ledger) - base_ledger
        ingester_cpu = proc_cpu_seconds(ingest.pid) - ing_cpu0
        await wait_for(lambda: buffer.depth().messages == 0, 120)
        # every sample the broker took in this phase reaches the ledger (and before the outage's base is read)
        acked = sum(pub.stats.samples_acked.values()) - acked0
        arrived = await wait_for(lambda: ledger_samples(ledger) - base_ledger >= acked, 120) >= 0
        result["sustained"] = {
            "samples_s": got / elapsed,
            "ingester_cpu_share": ingester_cpu / elapsed,
            "all_ingested": arrived and ledger_samples(ledger) - base_ledger == acked,
        }

        # 3. outage: stop publishing, build the backlog, then drain
        stop.set()
        await task
        backlog_samples = int(outage_s * live_rate)
        scans = int(outage_s)
        t_build = time.monotonic()
        start_ms = int(time.time() * 1000) - scans * 1000
        for k in range(scans):
            buffer.enqueue(shop.all_scans(start_ms + k * 1000), now_ms=start_ms + k * 1000)
        build_s = time.monotonic() - t_build
        depth = buffer.depth()
        result["buffer"] = {
            "backlog_samples": depth.samples,
            "stored_bytes_per_sample": depth.bytes / depth.samples,
            "disk_bytes_per_sample": file_bytes(buffer.path) / depth.samples,
            "write_samples_s": backlog_samples / build_s,
        }
        base_ledger = ledger_samples(ledger)
        pub2 = Publisher(MqttSection(url=broker.url, inflight=1000), topics, buffer, version=__version__)
        stop2 = asyncio.Event()
        t0 = time.monotonic()
        task2 = asyncio.create_task(pub2.run(stop2))
        to_broker = await wait_for(lambda: buffer.depth().messages == 0, 1800, 0.2)
        to_stores = await wait_for(lambda: ledger_samples(ledger) - base_ledger >= backlog_samples, 1800, 0.2)
        to_stores = time.monotonic() - t0 if to_stores >= 0 else -1
        stop2.set()
        await task2
        result["drain"] = {
            "to_broker_s": to_broker,
            "to_broker_samples_s": backlog_samples / to_broker if to_broker > 0 else None,
            "to_stores_s": to_stores,
            "to_stores_samples_s": backlog_samples / to_stores if to_stores > 0 else None,
            "multiple_of_live_rate": (backlog_samples / to_stores / live_rate) if to_stores > 0 else None,
        }
        buffer.close()
    finally:
        ingest.terminate()
        try:
            ingest.wait(15)
        except subprocess.TimeoutExpired:
            ingest.kill()
        vm.stop()
        broker.stop()
    shutil.rmtree(work, ignore_errors=True)  # a clean run; a failed one keeps it for its logs
    return result


async def _live(buffer: Buffer, pub: Publisher, shop: Workshop, seconds: float) -> tuple[float, int]:
    """The workshop's scans every second for `seconds`; (gateway CPU seconds, samples produced)."""
    cpu0, t0 = time.process_time(), time.monotonic()
    produced = 0
    next_scan = time.monotonic()
    while time.monotonic() - t0 < seconds:
        buffer.enqueue(shop.all_scans(int(time.time() * 1000)))
        pub.wake()
        produced += len(shop.devices) * len(shop.tags)
        next_scan += 1.0
        await asyncio.sleep(max(0.0, next_scan - time.monotonic()))
    await wait_for(lambda: buffer.depth().messages == 0, 30)  # its checkpoints and messages are out
    return time.process_time() - cpu0, produced


def _enrol(ledger_url: str, public_key: str) -> None:
    """Register the bench's gateway in the ledger's registry (what `edgegw cloud gateway add` does)."""
    from cloud_bridge.cloud.ledger.sqldb import Database
    from cloud_bridge.cloud.trust.registry import Registry

    db = Database(ledger_url)
    try:
        Registry(db).add(ENT, GW, public_key)
    finally:
        db.close()


def _f(v: Any, fmt: str = "{:,.0f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def report(r: dict[str, Any]) -> str:
    w, live, sus, buf, dr = r["workload"], r["live"], r["sustained"], r["buffer"], r["drain"]
    rows = [
        (
            "工况 / workload",
            f"{w['devices']} devices × {w['tags']} tags @ 1 s = {w['live_rate_samples_s']:,} samples/s",
        ),
        ("实时全部入库 / live: all ingested", str(live["all_ingested"])),
        ("网关 CPU / gateway CPU per 1,000 samples", _f(live["gateway_cpu_s_per_1000"], "{:.4f} s")),
        (
            "哈希链开销 / hash chain overhead (gateway)",
            f"{live['chain_overhead'] * 100:+.1f} % median of {len(live['chain_overhead_rounds'])} rounds "
            f"(without: {live['unchained_cpu_s_per_1000']:.4f} s; goal ≤ 10 %)",
        ),
        ("持续吞吐 / sustained end to end", _f(sus["samples_s"]) + " samples/s"),
        ("持续全部入库 / sustained: all ingested", str(sus["all_ingested"])),
        ("入库进程 CPU / ingester CPU (cores)", _f(sus["ingester_cpu_share"], "{:.2f}")),
        ("缓存写入 / buffer write", _f(buf["write_samples_s"]) + " samples/s"),
        (
            "缓存字节每点 / buffer bytes per sample",
            f"{buf['stored_bytes_per_sample']:.1f} stored, {buf['disk_bytes_per_sample']:.1f} on disk",
        ),
        (f"断网积压 / outage backlog ({w['outage_s']:.0f} s)", f"{buf['backlog_samples']:,} samples"),
        ("补传到代理 / drain to broker", _f(dr["to_broker_samples_s"]) + f" samples/s ({dr['to_broker_s']:.1f} s)"),
        ("补传入库 / drain into stores", _f(dr["to_stores_samples_s"]) + f" samples/s ({dr['to_stores_s']:.1f} s)"),
        ("补传倍率 / drain ÷ live rate (goal ≥ 10×)", _f(dr["multiple_of_live_rate"], "{:.1f}×")),
    ]
    width = max(len(k) for k, _ in rows)
    return "edgegw bench pipeline\n" + "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)
