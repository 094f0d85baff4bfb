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
import cProfile
import gc
import json
import logging
import os
import pstats
import resource
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from itertools import zip_longest
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
from gateway.bench.servers import BenchFailed, MosquittoServer, VictoriaMetrics, proc_cpu_seconds, start_with_retry

GOAL = 100_000  # samples/s for one ingester
GOAL_MESSAGES = 10_000  # messages/s for one ingester (small messages)
GW = "gw-bench"
DEVICES = 20
INFLIGHT = 1000  # MQTT Receive Maximum of each ingester: batches of 500


def cmd_ingest_bench(args: argparse.Namespace) -> int:
    try:
        result = run_ingest_bench(
            messages=args.messages,
            samples=args.samples,
            ledger_url=args.ledger,
            spread=Spread(args.gateways, args.devices, args.tags),
            phases=tuple(p.strip() for p in args.phases.split(",") if p.strip()),
            rounds=args.rounds,
            profile=args.profile,
        )
    except ValueError as e:
        print(f"edgegw bench ingest: {e}", file=sys.stderr)
        return 2
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if result["exactly_once"] is not False else 1


# ---------------------------------------------------------------- workload


@dataclass(frozen=True, slots=True)
class Spread:
    """How the messages spread: `gateways` × `devices` × `tags`; each message carries `samples` of its
    device's tags (a window that moves on each round, so every tag's statistics move)."""

    gateways: int = 1
    devices: int = DEVICES
    tags: int = 0  # 0: as many as samples per message

    def check(self, samples: int) -> None:
        if self.gateways < 1 or self.devices < 1 or self.tags < 0 or samples < 1:
            raise ValueError("gateways, devices and samples must be at least 1, tags at least 0")
        if self.tags and self.tags < samples:
            raise ValueError(f"--tags {self.tags} is fewer than --samples {samples} (one sample per tag)")


def gateway_ids(spread: Spread) -> list[str]:
    return [GW] if spread.gateways == 1 else [f"{GW}-{g:04d}" for g in range(spread.gateways)]


def _bodies(messages: int, samples: int, t0: int, spread: Spread) -> dict[str, list[tuple[str, bytes]]]:
    """Gateway → (device, body) of its data messages (seq 1, 2, … in list order): message i goes to
    gateway i mod G; a gateway's k-th message to device k mod D, with `samples` floats of that device's
    tags from window k div D; timestamps t0 + i (every point distinct)."""
    gws = gateway_ids(spread)
    names = [f"tag_{j:03d}" for j in range(spread.tags or samples)]
    units = {names[0]: "kW", names[1]: "rpm"} if len(names) > 1 else {}
    out: dict[str, list[tuple[str, bytes]]] = {gw: [] for gw in gws}
    for i in range(messages):
        gw = gws[i % len(gws)]
        k = i // len(gws)
        start = (k // spread.devices) * samples
        tags = [names[(start + j) % len(names)] for j in range(samples)]
        body = encode_data_body(
            [Sample(tag, round((i + 1) * 0.1 + j, 1), t0 + i) for j, tag in enumerate(tags)],
            {t: u for t, u in units.items() if t in tags},
        )
        out[gw].append((f"dev-{k % spread.devices:02d}", body))
    return out


def plain_payloads(
    ent_run: str, messages: int, samples: int, t0: int, spread: Spread = Spread()
) -> list[tuple[str, bytes]]:
    """The messages as gateways without the hash chain sent them (wire v1 as first released), seq from 1."""
    out = []
    for gw, bodies in _bodies(messages, samples, t0, spread).items():
        topics = Topics("sf/v1", ent_run, gw)
        out += [(topics.data(dev), envelope(gw, dev, seq, False, body)) for seq, (dev, body) in enumerate(bodies, 1)]
    return _interleave(out, spread)


def _interleave(messages: list[tuple[str, bytes]], spread: Spread) -> list[tuple[str, bytes]]:
    """Gateway after gateway → round-robin over the gateways (as many gateways publishing at once),
    keeping each gateway's own order (its checkpoint before the messages it covers)."""
    if spread.gateways == 1:
        return messages
    by_gw: dict[str, list[tuple[str, bytes]]] = {}
    for topic, payload in messages:
        by_gw.setdefault(topic.split("/")[3], []).append((topic, payload))
    queues = list(by_gw.values())
    return [m for row in zip_longest(*queues) for m in row if m is not None]


def payloads(
    ent_run: str, messages: int, samples: int, t0: int, work: Path, spread: Spread = Spread()
) -> list[tuple[str, bytes]]:
    """The messages as the gateways send them: chained in a real buffer each, each signed checkpoint
    (every 500 messages) before the messages it covers. Each gateway's key is made in
    `work/{ent_run}/{gw}` (`work/{ent_run}` for a single gateway)."""
    out: list[tuple[str, bytes]] = []
    logging.getLogger("cloud_bridge.uplink.identity").setLevel(logging.WARNING)  # not one line per gateway
    for gw, bodies in _bodies(messages, samples, t0, spread).items():
        out += _chained(ent_run, gw, bodies, _key_dir(work, ent_run, gw, spread))
    return _interleave(out, spread)


def _key_dir(work: Path, ent_run: str, gw: str, spread: Spread) -> Path:
    return work / ent_run if spread.gateways == 1 else work / ent_run / gw


def _chained(ent_run: str, gw: str, bodies: list[tuple[str, bytes]], where: Path) -> list[tuple[str, bytes]]:
    topics = Topics("sf/v1", ent_run, gw)
    key = load_or_create_identity(where).key
    buf = Buffer(where / "buffer.db", synchronous="NORMAL", chain=Chain(ent_run, gw, key, topics.checkpoint))
    try:
        for i in range(0, len(bodies), 100):
            buf.enqueue([Outgoing("data", topics.data(dev), dev, body) for dev, body in bodies[i : i + 100]])
        buf.seal_if_due(force=True)
        pub = Publisher(MqttSection(), topics, buf, version="bench")
        rows = buf.peek(len(bodies) + 1)
        out = []
        for cp in buf.checkpoints():
            c = decode_checkpoint(cp.body)
            out.append((cp.topic, cp.body))
            out += [(r.topic, pub._payload(r)) for r in rows if r.seq is not None and c.first <= r.seq <= c.last]
        return out
    finally:
        buf.close()


def enrol(ledger_url: str, ent_run: str, work: Path, spread: Spread = Spread()) -> None:
    """Register the run's gateways (their keys made by `payloads`) in the ledger, as `edgegw cloud gateway add`."""
    from cloud_bridge.cloud.ledger.sqldb import Database
    from cloud_bridge.cloud.trust.registry import Registry

    db = Database(ledger_url)
    try:
        registry = Registry(db)
        for gw in gateway_ids(spread):
            registry.add(ent_run, gw, load_or_create_identity(_key_dir(work, ent_run, gw, spread)).public_key)
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


_PRELOAD_WINDOW = 20_000


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
    # in windows: paho numbers the messages it holds by a 16-bit id, so at most 65,535 may wait at once
    for start in range(0, len(messages), _PRELOAD_WINDOW):
        infos = [pub.publish(topic, payload, qos=1) for topic, payload in messages[start : start + _PRELOAD_WINDOW]]
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
        raise BenchFailed("preload: the broker did not grant the subscription")
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
        sql = "SELECT ent, SUM(last_seq - first_seq + 1) FROM received_seqs GROUP BY ent"  # seq ranges per gateway
        return _per_enterprise(ledger_url, sql).get(ent, 0)
    except Exception:  # no ledger yet (either driver's error)
        return 0


def ledger_samples(ledger_url: str, ent: str) -> int:
    return _per_enterprise(ledger_url, "SELECT ent, SUM(samples) FROM device_stats GROUP BY ent").get(ent, 0)


# ---------------------------------------------------------------- phases


def floor_run(vm: VictoriaMetrics, ent: str, messages: list[tuple[str, bytes]]) -> dict[str, Any]:
    from cloud_bridge.wire.fastdecode import decode_data

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
    spread: Spread = Spread(),
    profile: bool = False,
) -> dict[str, Any]:
    url = ledger_url or f"sqlite:///{work / f'core-ledger-{ent}.db'}"
    if trust == "enforce":
        enrol(url, ent, work, spread)
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
    profiler = cProfile.Profile() if profile else None
    try:
        cpu, t = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        for i in range(0, len(mqtt_messages), ing.batch_messages):
            ing.handle_batch(mqtt_messages[i : i + ing.batch_messages])
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        stats = ing.stats
    finally:
        ing.ledger.close()
        if ing.tsdb is not None:
            ing.tsdb.close()
    result: dict[str, Any] = {
        "samples": stats.samples_ingested,
        "messages": stats.data_messages,
        "seconds": wall,
        "samples_s": stats.samples_ingested / wall,
        "messages_s": stats.data_messages / wall,
        "cpu_cores": cpu / wall,
        "cpu_us_per_message": cpu / max(stats.data_messages, 1) * 1e6,
    }
    if profiler is not None:
        result["breakdown_us_per_message"] = breakdown(profiler, max(stats.data_messages, 1))
        profiler.dump_stats(work / "profile.pstats")  # for `python -m pstats`
        result["pstats"] = str(work / "profile.pstats")
    return result


# Steps of the ingester's handling, as (label, functions whose cumulative time is that step's): a
# function is (file name ending, function name). The ledger's dedupe query counts as ledger.
STEPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("decode", (("ingester.py", "_parse"),)),
    ("trust", (("ingester.py", "_screen"),)),
    ("dedupe", (("writer.py", "recorded"),)),
    ("tsdb_format", (("tsdb.py", "lines"),)),
    ("tsdb_write", (("ingester.py", "_write_tsdb"),)),
    ("ledger", (("ingester.py", "_record"),)),
    ("total", (("ingester.py", "handle_batch"),)),
)


def breakdown(profiler: cProfile.Profile, messages: int) -> dict[str, float]:
    """µs of each step (STEPS) per message, from a profile (cProfile's own cost inflates all alike);
    `other` is what the steps leave of the total."""
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    for label, functions in STEPS:
        out[label] = (
            sum(
                st[3]
                for (file, _, name), st in stats.items()
                if any(file.endswith(f) and name == n for f, n in functions)
            )
            / messages
            * 1e6
        )
    out["other"] = out["total"] - sum(v for k, v in out.items() if k != "total")
    return out


def trust_rounds(
    vm: VictoriaMetrics,
    work: Path,
    messages: int,
    samples: int,
    t0: int,
    ledger_url: str | None,
    rounds: int = 3,
    spread: Spread = Spread(),
    suffix: str = "",
) -> dict[str, Any]:
    """The core run as deployed (chained, proven) against the same messages unchained (`trust.mode: off`),
    in alternating rounds (the machine's load drifts); the median round's figures."""
    pairs = []
    for k in range(rounds):
        plain_ent, ent = f"ent-core-plain-{k}{suffix}", f"ent-core-{k}{suffix}"
        plain_msgs = plain_payloads(plain_ent, messages, samples, t0, spread)
        plain = core_run(vm, work, plain_ent, plain_msgs, ledger_url, "off", spread)
        chained_msgs = payloads(ent, messages, samples, t0, work, spread)
        chained = core_run(vm, work, ent, chained_msgs, ledger_url, "enforce", spread)
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
    spread: Spread = Spread(),
) -> dict[str, Any]:
    """`count` ingester processes drain `messages`, preloaded for their persistent sessions."""
    ledger = ledger_url or f"sqlite:///{work / f'ledger-{count}.db'}"
    enrol(ledger, ent, work, spread)
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
        raise BenchFailed(f"an ingester process failed; see {work}/*.log")
    start = min(r["t_start"] for r in reports)
    end = max(r["t_last"] for r in reports)
    wall = end - start
    total = sum(r["samples"] for r in reports)
    msgs = sum(r["messages"] for r in reports)
    return {
        "ingesters": count,
        "preload_s": preload_s,
        "samples": total,
        "messages": msgs,
        "seconds": wall,
        "samples_s": total / wall if wall > 0 else 0.0,
        "messages_s": msgs / wall if wall > 0 else 0.0,
        "cpu_us_per_message": sum(r["cpu_s"] for r in reports) / max(msgs, 1) * 1e6,
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


PHASES = ("floor", "core", "one", "two")


def run_ingest_bench(
    messages: int = 5000,
    samples: int = 100,
    workdir: Path | None = None,
    ledger_url: str | None = None,
    *,
    spread: Spread = Spread(),
    phases: tuple[str, ...] = PHASES,
    rounds: int = 3,
    profile: bool = False,
) -> dict[str, Any]:
    """The whole benchmark (servers included); the figures as a dict (see `report`). Without a
    `workdir`, a temporary one is used and removed after a clean run (kept, for its logs, otherwise).
    `ledger_url`: one ledger for every run (default: a SQLite file per run in the work dir).
    `phases`: which of PHASES run; `profile`: one more core run under cProfile, its steps per message."""
    if messages > 90_000:
        raise ValueError("at most 90,000 messages (the test broker queues 100,000 per session)")
    spread.check(samples)
    if unknown := set(phases) - set(PHASES):
        raise ValueError(f"unknown phases {sorted(unknown)}: choose among {', '.join(PHASES)}")
    work = workdir or Path(tempfile.mkdtemp(prefix="edgegw-bench-ingest-"))
    broker = start_with_retry(lambda port: MosquittoServer(port, work / "mq"))
    vm = start_with_retry(lambda port: VictoriaMetrics(port, work / "vm"))
    t0 = int(time.time() * 1000) - 86_400_000
    # enterprises of this run only: a ledger kept between runs (PostgreSQL) holds the last run's messages
    suffix = f"-{secrets.token_hex(3)}" if ledger_url else ""
    out: dict[str, Any] = {}
    checks: dict[str, bool] = {}
    try:
        if "floor" in phases:
            out["floor"] = floor_run(vm, "ent-floor", plain_payloads("ent-floor", messages, samples, t0, spread))
        if "core" in phases:
            out["core"] = trust_rounds(vm, work, messages, samples, t0, ledger_url, rounds, spread, suffix)
        if profile:
            ent = f"ent-profile{suffix}"
            msgs = payloads(ent, messages, samples, t0, work, spread)
            out["profile"] = core_run(vm, work, ent, msgs, ledger_url, "enforce", spread, profile=True)
        for phase, count in (("one", 1), ("two", 2)):
            if phase in phases:
                ent = f"ent-{phase}{suffix}"
                msgs = payloads(ent, messages, samples, t0, work, spread)
                out[phase] = ingesters_run(broker, vm, work, ent, msgs, samples, count, ledger_url, spread)
        expected = messages * samples
        for phase in ("one", "two"):
            if phase in out:
                run = out[phase]
                run["victoria_samples"] = vm.count(f'{{__name__="sf_v",ent="ent-{phase}{suffix}"}}')
                checks[phase] = (
                    run["victoria_samples"] == expected
                    and run["ledger_samples"] == expected
                    and run["ledger_messages"] == messages
                    and run["duplicates"] == 0
                )
    finally:
        broker.stop()
        vm.stop()
    if workdir is None and all(checks.values()) and not profile:
        shutil.rmtree(work, ignore_errors=True)
    one, two = out.get("one"), out.get("two")
    return {
        "workload": {
            "messages": messages,
            "samples_per_message": samples,
            "samples": messages * samples,
            "gateways": spread.gateways,
            "devices": spread.devices,
            "tags": spread.tags or samples,
            "ledger": "postgresql" if ledger_url and ledger_url.startswith("postgres") else "sqlite",
        },
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        **out,
        "gain_two_over_one": two["samples_s"] / one["samples_s"] if one and two and one["samples_s"] else None,
        "goal_samples_s": GOAL,
        "goal_messages_s": GOAL_MESSAGES,
        "goal_met": None if one is None else _goal_met(one),
        "exactly_once": all(checks.values()) if checks else None,
        "workdir": str(work) if work.exists() else None,
    }


def _goal_met(run: dict[str, Any]) -> bool:
    """≥ 100,000 samples/s, or for small messages ≥ 10,000 messages/s (the per-message cost dominates)."""
    return bool(run["samples_s"] >= GOAL or run["messages_s"] >= GOAL_MESSAGES)


def _n(v: float) -> str:
    return f"{v:,.0f}"


def _rate(run: dict[str, Any]) -> str:
    return f"{_n(run['samples_s'])} samples/s, {_n(run['messages_s'])} messages/s"


def report(r: dict[str, Any]) -> str:
    w = r["workload"]
    load = ", ".join(f"{x:.1f}" for x in r["machine"]["load_average"])
    rows = [
        ("工况 / workload", f"{w['messages']:,} messages × {w['samples_per_message']} samples = {w['samples']:,}; "
         f"{w['gateways']} gateways × {w['devices']} devices × {w['tags']} tags, {w['ledger']} ledger"),
        ("机器 / machine", f"{r['machine']['cpus']} CPUs, load average {load}"),
    ]  # fmt: skip
    if "floor" in r:
        rows.append(("裸写下限 / floor: influxdb-client → VM", f"{_n(r['floor']['samples_s'])} samples/s"))
    if "core" in r:
        c = r["core"]
        rows += [
            ("入库核心 / ingester core, no MQTT", f"{_rate(c)}, {c['cpu_us_per_message']:,.0f} µs CPU per message"),
            ("证明开销 / proof overhead (core CPU)", f"{c['trust_overhead'] * 100:+.1f} % median "
             f"({c['cpu_us_per_sample']:.2f} against {c['unchained_cpu_us_per_sample']:.2f} µs "
             "per sample unchained; goal ≤ 10 %)"),
        ]  # fmt: skip
    if "profile" in r:
        b = r["profile"]["breakdown_us_per_message"]
        parts = ", ".join(f"{k} {v:,.0f}" for k, v in b.items() if k != "total")
        rows.append(("剖析 / profile, µs per message", f"{parts} (total {b['total']:,.0f}, under cProfile)"))
    one, two = r.get("one"), r.get("two")
    if one is not None:
        rows += [
            ("单入库进程 / one ingester", _rate(one)),
            ("每条消息 CPU / CPU per message", f"{one['cpu_us_per_message']:,.0f} µs (ingester process)"),
        ]
        if "core" in r:
            mqtt_us = one["cpu_us_per_message"] - r["core"]["cpu_us_per_message"]
            rows.append(("MQTT 接收 / MQTT receive + ack", f"{mqtt_us:,.0f} µs per message (process − core)"))
    if two is not None:
        gain = f" (×{r['gain_two_over_one']:.2f})" if r.get("gain_two_over_one") else ""
        rows += [
            ("双入库进程 / two ingesters (shared)", _rate(two) + gain),
            ("分担 / split between the two", " / ".join(f"{s:,}" for s in two["shares"])),
        ]
    if one is not None:
        cores = f"{one['ingester_cpu_cores'][0]:.2f}"
        if two is not None:
            cores += "; two: " + " + ".join(f"{c:.2f}" for c in two["ingester_cpu_cores"])
        rows += [
            ("入库进程 CPU / ingester CPU (cores)", cores),
            ("代理、时序库 CPU / Mosquitto, VM CPU",
             f"{one['mosquitto_cpu_cores']:.2f}, {one['victoria_cpu_cores']:.2f} cores"),
            ("平均批量 / mean batch (one ingester)", f"{one['samples'] / max(one['batches'], 1):,.0f} samples"),
        ]  # fmt: skip
    if r.get("exactly_once") is not None:
        rows.append(("恰好一次 / exactly once (ledger, VM)", "是 / yes" if r["exactly_once"] else "否 / NO"))
    if r.get("goal_met") is not None:
        rows.append((f"目标 / goal ≥ {GOAL:,} samples/s or {GOAL_MESSAGES:,} messages/s, one ingester",
                     "达到 / met" if r["goal_met"] else "未达到 / not met"))  # fmt: skip
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
    # the tag statistics still pending are part of the work: their fold is counted in the time and CPU
    usage0_fold, t_fold = resource.getrusage(resource.RUSAGE_SELF), time.time()
    ing.fold()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    t_last += time.time() - t_fold
    cpu_last += usage.ru_utime + usage.ru_stime - usage0_fold.ru_utime - usage0_fold.ru_stime
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
                "store_s": ing.metrics.store_totals(),  # wall seconds waiting on each store (TSDB, ledger, fold)
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1], sys.argv[2]))
