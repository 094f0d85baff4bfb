"""`edgegw bench ingest`: the cloud ingester's throughput, MQTT → VictoriaMetrics + evidence ledger.

One run on this machine, with its own Mosquitto and VictoriaMetrics on free loopback ports:
1. floor: influxdb-client writes the same points (line protocol built beforehand) straight to
   VictoriaMetrics in requests of 50,000: no MQTT, no decoding, no ledger;
2. core: the ingester's handling in-process (decode, dedupe, one TSDB request and one ledger
   transaction per batch of 500), messages handed over directly: no MQTT; as deployed (chained
   messages and their signed checkpoints, every one proven: `trust.mode: enforce`), and for
   comparison the same messages unchained with `trust.mode: off`: the CPU the proof costs;
3. one ingester: `--messages` × `--samples` are preloaded into the broker for a persistent session
   (offline), then an ingester process connects and drains them into VictoriaMetrics + a SQLite
   ledger; samples/s from its start to its last commit, and its CPU;
4. two ingesters: the same on one MQTT 5 shared subscription (two sessions, two processes).
Each run is checked: every sample once in the ledger and in VictoriaMetrics. Like `edgegw ingest`,
each ingester moves what start-up made out of the garbage collector's way (`gc.freeze()`).

`--ledger URL` puts every run's ledger in that database instead (e.g. a PostgreSQL one); the runs
write distinct enterprise ids, so they can share it, but it should start empty of those ids.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_bridge.cloud.ingest.ingester import SESSION_EXPIRY_S, Ingester
from cloud_bridge.cloud.ingest.tsdb import TsdbWriter, to_lines
from cloud_bridge.uplink.buffer import Buffer, Chain, Outgoing
from cloud_bridge.uplink.identity import load_or_create_identity
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire.codec import Sample, Topics, encode_data_body, envelope
from cloud_bridge.wire.mqtt import host_port, make_client
from cloud_bridge.wire.signing import decode_checkpoint
from edge_config.models import CloudConfig, InfluxSection, MqttSection
from gateway.bench.servers import MosquittoServer, VictoriaMetrics, proc_cpu_seconds, start_with_retry

GOAL = 100_000  # samples/s for one ingester
GW = "gw-bench"
DEVICES = 20
INFLIGHT = 1000  # MQTT Receive Maximum of each ingester: batches of 500


def cmd_ingest_bench(args: argparse.Namespace) -> int:
    result = run_ingest_bench(messages=args.messages, samples=args.samples, ledger_url=args.ledger)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if result["exactly_once"] else 1


# ---------------------------------------------------------------- workload


def _bodies(messages: int, samples: int, t0: int) -> list[tuple[str, bytes]]:
    """(device, body) of `messages` data messages of `samples` floats (one per tag), devices in turn."""
    tags = [f"tag_{j:03d}" for j in range(samples)]
    units = {tags[0]: "kW", tags[1]: "rpm"} if samples > 1 else {}
    return [
        (
            f"dev-{seq % DEVICES:02d}",
            encode_data_body([Sample(tag, round(seq * 0.1 + j, 1), t0 + seq) for j, tag in enumerate(tags)], units),
        )
        for seq in range(1, messages + 1)
    ]


def plain_payloads(ent_run: str, messages: int, samples: int, t0: int) -> list[tuple[str, bytes]]:
    """The messages as a gateway without the hash chain sent them (wire v1 as first released), seq from 1."""
    topics = Topics("sf/v1", ent_run, GW)
    return [
        (topics.data(dev), envelope(GW, dev, seq, False, body))
        for seq, (dev, body) in enumerate(_bodies(messages, samples, t0), start=1)
    ]


def payloads(ent_run: str, messages: int, samples: int, t0: int, work: Path) -> list[tuple[str, bytes]]:
    """The messages as the gateway sends them: chained in a real buffer, each signed checkpoint (every
    500 messages) before the messages it covers. The gateway's key is made in `work/{ent_run}`."""
    topics = Topics("sf/v1", ent_run, GW)
    key = load_or_create_identity(work / ent_run).key
    buf = Buffer(work / ent_run / "buffer.db", synchronous="NORMAL", chain=Chain(ent_run, GW, key, topics.checkpoint))
    try:
        bodies = _bodies(messages, samples, t0)
        for i in range(0, len(bodies), 100):
            buf.enqueue([Outgoing("data", topics.data(dev), dev, body) for dev, body in bodies[i : i + 100]])
        buf.seal_if_due(force=True)
        pub = Publisher(MqttSection(), topics, buf, version="bench")
        rows = buf.peek(messages + 1)
        out = []
        for cp in buf.checkpoints():
            c = decode_checkpoint(cp.body)
            out.append((cp.topic, cp.body))
            out += [(r.topic, pub._payload(r)) for r in rows if r.seq is not None and c.first <= r.seq <= c.last]
        return out
    finally:
        buf.close()


def enrol(ledger_url: str, ent_run: str, work: Path) -> None:
    """Register the run's gateway (its key made by `payloads`) in the ledger, as `edgegw cloud gateway add`."""
    from cloud_bridge.cloud.ledger.sqldb import Database
    from cloud_bridge.cloud.trust.registry import Registry

    db = Database(ledger_url)
    try:
        Registry(db).add(ent_run, GW, load_or_create_identity(work / ent_run).public_key)
    finally:
        db.close()


def cloud_config(
    broker: MosquittoServer, vm: VictoriaMetrics, ledger_url: str, client_id: str | None, group: str
) -> CloudConfig:
    return CloudConfig.model_validate(
        {
            "mqtt": {
                "url": broker.url,
                "protocol": "5",
                "shared_group": group,
                "client_id": client_id,
                "inflight": INFLIGHT,
            },
            "influx": {"url": vm.url},
            "ledger": {"url": ledger_url},
        }
    )


def preload(broker: MosquittoServer, group: str, client_ids: list[str], messages: list[tuple[str, bytes]]) -> float:
    """Create each persistent session (subscribed to the shared group, then offline) and publish the
    messages: the broker keeps them for the sessions, split between them. Returns seconds taken."""
    t = time.monotonic()
    host, port = host_port(broker.url)
    for cid in client_ids:
        _offline_session(host, port, cid, group)
    pub = make_client(broker.url, "5", "bench-preload", None, None, None)
    pub.max_inflight_messages_set(1000)
    pub.connect(host, port)
    pub.loop_start()
    infos = [pub.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()
    return time.monotonic() - t


def _offline_session(host: str, port: int, client_id: str, group: str) -> None:
    """A persistent session subscribed to the shared group, left disconnected."""
    subscribed = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_subscribe = lambda *a: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    c.connect(host, port, clean_start=False, properties=props)
    c.loop_start()
    c.subscribe(f"$share/{group}/sf/v1/#", qos=1)
    if not subscribed.wait(10):
        raise RuntimeError("preload: the broker did not grant the subscription")
    c.disconnect()
    c.loop_stop()


def _end_session(host: str, port: int, client_id: str) -> None:
    """Discard a persistent session (clean start, no expiry), so it takes no more messages."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.connect(host, port, clean_start=True)
    c.disconnect()


def _per_enterprise(ledger_url: str, sql: str) -> dict[str, int]:
    """(ent, number) rows of a query, read with the bare driver (not the ledger code being measured);
    no parameters, so the same SQL serves SQLite and PostgreSQL."""
    if ledger_url.startswith("sqlite:///"):
        db = sqlite3.connect(f"file:{ledger_url[len('sqlite:///') :]}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute(sql).fetchall()
        finally:
            db.close()
    else:
        import psycopg

        with psycopg.connect(ledger_url, connect_timeout=5) as pg:
            rows = pg.execute(sql).fetchall()
    return {ent: int(n) for ent, n in rows}


def received(ledger_url: str, ent: str) -> int:
    try:
        return _per_enterprise(ledger_url, "SELECT ent, COUNT(*) FROM received GROUP BY ent").get(ent, 0)
    except Exception:  # no ledger yet (either driver's error)
        return 0


def ledger_samples(ledger_url: str, ent: str) -> int:
    return _per_enterprise(ledger_url, "SELECT ent, SUM(samples) FROM device_stats GROUP BY ent").get(ent, 0)


# ---------------------------------------------------------------- phases


def floor_run(vm: VictoriaMetrics, ent: str, messages: list[tuple[str, bytes]]) -> dict[str, Any]:
    from cloud_bridge.wire.codec import decode_data

    decoded = [decode_data(payload) for _, payload in messages]
    lines = [line for msg in decoded for line in to_lines("sf", ent, msg)]
    writer = TsdbWriter(InfluxSection(url=vm.url))
    try:
        cpu, t = time.process_time(), time.perf_counter()
        for i in range(0, len(lines), 50_000):
            writer.write_lines(lines[i : i + 50_000])
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    finally:
        writer.close()
    return {"samples": len(lines), "seconds": wall, "samples_s": len(lines) / wall, "client_cpu_cores": cpu / wall}


def core_run(
    vm: VictoriaMetrics,
    work: Path,
    ent: str,
    messages: list[tuple[str, bytes]],
    ledger_url: str | None,
    trust: str = "enforce",
) -> dict[str, Any]:
    url = ledger_url or f"sqlite:///{work / f'core-ledger-{trust}.db'}"
    if trust == "enforce":
        enrol(url, ent, work)
    config = CloudConfig.model_validate(
        {
            "mqtt": {"url": "mqtt://127.0.0.1:1", "inflight": INFLIGHT},  # never connected
            "influx": {"url": vm.url},
            "ledger": {"url": url},
            "trust": {"mode": trust},
        }
    )
    ing = Ingester(config)
    mqtt_messages = []
    for topic, payload in messages:
        m = mqtt.MQTTMessage(topic=topic.encode())
        m.payload = payload
        mqtt_messages.append(m)
    gc.freeze()  # as `edgegw ingest` does once started
    try:
        cpu, t = time.process_time(), time.perf_counter()
        for i in range(0, len(mqtt_messages), ing.batch_messages):
            ing.handle_batch(mqtt_messages[i : i + ing.batch_messages])
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        stats = ing.stats
    finally:
        ing.ledger.close()
        if ing.tsdb is not None:
            ing.tsdb.close()
    return {
        "samples": stats.samples_ingested,
        "seconds": wall,
        "samples_s": stats.samples_ingested / wall,
        "cpu_cores": cpu / wall,
    }


def trust_rounds(
    vm: VictoriaMetrics, work: Path, messages: int, samples: int, t0: int, ledger_url: str | None, rounds: int = 3
) -> dict[str, Any]:
    """The core run as deployed (chained, proven) against the same messages unchained (`trust.mode: off`),
    in alternating rounds (the machine's load drifts); the median round's figures."""
    pairs = []
    for k in range(rounds):
        plain_ent, ent = f"ent-core-plain-{k}", f"ent-core-{k}"
        plain = core_run(vm, work, plain_ent, plain_payloads(plain_ent, messages, samples, t0), ledger_url, "off")
        chained = core_run(vm, work, ent, payloads(ent, messages, samples, t0, work), ledger_url)
        per_sample = [r["cpu_cores"] * r["seconds"] / r["samples"] * 1e6 for r in (plain, chained)]
        pairs.append((per_sample[1] / per_sample[0] - 1, per_sample, chained))
    pairs.sort(key=lambda p: p[0])
    overhead, (unchained_us, chained_us), median = pairs[len(pairs) // 2]
    return {
        **median,
        "cpu_us_per_sample": chained_us,
        "unchained_cpu_us_per_sample": unchained_us,
        "trust_overhead": overhead,
        "trust_overhead_rounds": [p[0] for p in pairs],
    }


def ingesters_run(
    broker: MosquittoServer,
    vm: VictoriaMetrics,
    work: Path,
    ent: str,
    messages: list[tuple[str, bytes]],
    samples: int,
    count: int,
    ledger_url: str | None = None,
) -> dict[str, Any]:
    """`count` ingester processes drain `messages`, preloaded for their persistent sessions."""
    ledger = ledger_url or f"sqlite:///{work / f'ledger-{count}.db'}"
    enrol(ledger, ent, work)
    group = f"bench-{count}"  # a group of its own: no other session shares these messages
    client_ids = [f"bench-ingest-{count}-{i}" for i in range(count)]
    preload_s = preload(broker, group, client_ids, messages)
    cpu_broker0, cpu_vm0 = _cpu(broker.proc), _cpu(vm.proc)
    workers = []
    for cid in client_ids:
        cfg_path = work / f"{cid}.yaml"
        cfg = cloud_config(broker, vm, ledger, cid, group)
        cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)))
        report_path = work / f"{cid}.json"
        workers.append(
            (
                report_path,
                subprocess.Popen(
                    [sys.executable, "-m", "gateway.bench.ingest", str(cfg_path), str(report_path)],
                    stdout=(work / f"{cid}.log").open("wb"),
                    stderr=subprocess.STDOUT,
                ),
            )
        )
    done, progress_at = 0, time.monotonic()
    target = sum(1 for topic, _ in messages if topic.endswith("/data"))  # checkpoints are not `received`
    while done < target:
        time.sleep(0.1)
        n = received(ledger, ent)
        if n != done:
            done, progress_at = n, time.monotonic()
        if time.monotonic() - progress_at > 30 or any(p.poll() is not None for _, p in workers):
            break  # stalled or died: the checks below report it
    time.sleep(0.5)  # a duplicate still on its way would show now
    for _, proc in workers:
        proc.send_signal(signal.SIGTERM)
    reports = []
    for report_path, proc in workers:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        reports.append(json.loads(report_path.read_text()) if report_path.exists() else {})
    cpu_broker, cpu_vm = _cpu(broker.proc) - cpu_broker0, _cpu(vm.proc) - cpu_vm0
    for cid in client_ids:
        _end_session(*host_port(broker.url), cid)
    if not all(reports):
        raise RuntimeError(f"an ingester process failed; see {work}/*.log")
    start = min(r["t_start"] for r in reports)
    end = max(r["t_last"] for r in reports)
    wall = end - start
    total = sum(r["samples"] for r in reports)
    return {
        "ingesters": count,
        "preload_s": preload_s,
        "samples": total,
        "seconds": wall,
        "samples_s": total / wall if wall > 0 else 0.0,
        "shares": [r["samples"] for r in reports],
        "batches": sum(r["batches"] for r in reports),
        "duplicates": sum(r["duplicates"] for r in reports),
        "dead_letters": sum(r["dead_letters"] for r in reports),
        "ingester_cpu_cores": [r["cpu_s"] / wall for r in reports],
        "mosquitto_cpu_cores": cpu_broker / wall,  # over the whole drain, start-up included: an upper bound
        "victoria_cpu_cores": cpu_vm / wall,
        "ledger_samples": ledger_samples(ledger, ent),
        "ledger_messages": received(ledger, ent),
    }


def _cpu(proc: subprocess.Popen[bytes] | None) -> float:
    return proc_cpu_seconds(proc.pid) if proc is not None else 0.0


# ---------------------------------------------------------------- the run


def run_ingest_bench(
    messages: int = 5000, samples: int = 100, workdir: Path | None = None, ledger_url: str | None = None
) -> dict[str, Any]:
    """The whole benchmark (servers included); the figures as a dict (see `report`). Without a
    `workdir`, a temporary one is used and removed after a clean run (kept, for its logs, otherwise).
    `ledger_url`: one ledger for every run (default: a SQLite file per run in the work dir)."""
    if messages > 90_000:
        raise ValueError("at most 90,000 messages (the test broker queues 100,000 per session)")
    work = workdir or Path(tempfile.mkdtemp(prefix="edgegw-bench-ingest-"))
    broker = start_with_retry(lambda port: MosquittoServer(port, work / "mq"))
    vm = start_with_retry(lambda port: VictoriaMetrics(port, work / "vm"))
    t0 = int(time.time() * 1000) - 86_400_000
    try:
        floor = floor_run(vm, "ent-floor", plain_payloads("ent-floor", messages, samples, t0))
        core = trust_rounds(vm, work, messages, samples, t0, ledger_url)
        one = ingesters_run(
            broker, vm, work, "ent-one", payloads("ent-one", messages, samples, t0, work), samples, 1, ledger_url
        )
        two = ingesters_run(
            broker, vm, work, "ent-two", payloads("ent-two", messages, samples, t0, work), samples, 2, ledger_url
        )
        expected = messages * samples
        checks = {}
        for ent, run in (("ent-one", one), ("ent-two", two)):
            in_vm = vm.count(f'{{__name__="sf_v",ent="{ent}"}}')
            run["victoria_samples"] = in_vm
            checks[ent] = (
                in_vm == expected
                and run["ledger_samples"] == expected
                and run["ledger_messages"] == messages
                and run["duplicates"] == 0
            )
    finally:
        broker.stop()
        vm.stop()
    if workdir is None and all(checks.values()):
        shutil.rmtree(work, ignore_errors=True)
    return {
        "workload": {"messages": messages, "samples_per_message": samples, "samples": messages * samples},
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "floor": floor,
        "core": core,
        "one": one,
        "two": two,
        "gain_two_over_one": two["samples_s"] / one["samples_s"] if one["samples_s"] else 0.0,
        "goal_samples_s": GOAL,
        "goal_met": one["samples_s"] >= GOAL,
        "exactly_once": all(checks.values()),
        "workdir": str(work) if work.exists() else None,
    }


def _n(v: float) -> str:
    return f"{v:,.0f}"


def report(r: dict[str, Any]) -> str:
    w, one, two = r["workload"], r["one"], r["two"]
    load = ", ".join(f"{x:.1f}" for x in r["machine"]["load_average"])
    rows = [
        ("工况 / workload", f"{w['messages']:,} messages × {w['samples_per_message']} samples = {w['samples']:,}"),
        ("机器 / machine", f"{r['machine']['cpus']} CPUs, load average {load}"),
        ("裸写下限 / floor: influxdb-client → VM", f"{_n(r['floor']['samples_s'])} samples/s"),
        ("入库核心 / ingester core, no MQTT", f"{_n(r['core']['samples_s'])} samples/s"),
        ("证明开销 / proof overhead (core CPU)", f"{r['core']['trust_overhead'] * 100:+.1f} % median "
         f"({r['core']['cpu_us_per_sample']:.2f} against {r['core']['unchained_cpu_us_per_sample']:.2f} µs "
         "per sample unchained; goal ≤ 10 %)"),
        ("单入库进程 / one ingester", f"{_n(one['samples_s'])} samples/s"),
        ("双入库进程 / two ingesters (shared)", f"{_n(two['samples_s'])} samples/s (×{r['gain_two_over_one']:.2f})"),
        ("分担 / split between the two", " / ".join(f"{s:,}" for s in two["shares"])),
        ("入库进程 CPU / ingester CPU (cores)", f"{one['ingester_cpu_cores'][0]:.2f}; two: "
         + " + ".join(f"{c:.2f}" for c in two["ingester_cpu_cores"])),
        ("代理、时序库 CPU / Mosquitto, VM CPU",
         f"{one['mosquitto_cpu_cores']:.2f}, {one['victoria_cpu_cores']:.2f} cores"),
        ("平均批量 / mean batch (one ingester)", f"{one['samples'] / max(one['batches'], 1):,.0f} samples"),
        ("恰好一次 / exactly once (ledger, VM)", "是 / yes" if r["exactly_once"] else "否 / NO"),
        (f"目标 / goal ≥ {GOAL:,}/s, one ingester", "达到 / met" if r["goal_met"] else "未达到 / not met"),
    ]  # fmt: skip
    width = max(_width(k) for k, _ in rows)
    return "edgegw bench ingest\n" + "\n".join(f"  {k}{' ' * (width - _width(k))}  {v}" for k, v in rows)


def _width(text: str) -> int:
    """Columns on a terminal: CJK characters take two."""
    return sum(2 if "\u3000" <= c <= "\u9fff" or "\uff00" <= c <= "\uffef" else 1 for c in text)


# ---------------------------------------------------------------- worker process


def _worker(config_path: str, report_path: str) -> int:
    """One ingester process: runs until SIGTERM, then writes its figures to `report_path`."""
    from edge_config.loader import load_cloud_config

    cfg = load_cloud_config(config_path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ing = Ingester(cfg)
    gc.freeze()  # as `edgegw ingest` does
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t_start = time.time()
    ing.start()
    last, t_last, cpu_last = 0, t_start, 0.0
    while not stop.wait(0.01):
        n = ing.stats.samples_ingested
        if n != last:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            last, t_last = n, time.time()
            cpu_last = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    stats = ing.stats
    ing.stop(drain_timeout=1)
    Path(report_path).write_text(
        json.dumps(
            {
                "t_start": t_start,
                "t_last": t_last,
                "samples": stats.samples_ingested,
                "messages": stats.data_messages,
                "batches": stats.batches,
                "duplicates": stats.duplicates,
                "dead_letters": stats.dead_letters,
                "errors": stats.errors,
                "held": stats.held,  # trust: set aside until their checkpoint came (another ingester's)
                "released": stats.released,
                "cpu_s": cpu_last,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1], sys.argv[2]))
