"""`edgegw bench simulators`: can one simulator serve a workshop of 200 devices / 50,000 tags at 1 s?

For each protocol:
1. `edgegw simulate --industry all` serves ⌈devices / 11⌉ machines of each of the 11 kinds, each with
   monitoring points added up to `--tags` tags on average, in a process of its own (OPC UA: `--shards`
   processes); every 5 s each prints how its update loop keeps the 1 s period and its CPU;
2. a reader in another process takes every value every second: Modbus TCP through the gateway's
   driver, one poll loop per device; OPC UA through a bare asyncua client per shard subscribed to every
   node (the raw publish callback: the least a client can do), counting notifications;
3. over the window: the simulator's CPU (share of a core, all its processes), its update ticks that ran
   late and the longest tick, the values it changed per second (OPC UA); the reader's values read or
   notifications received per second and the scans that missed their second.
Falling behind shows as late ticks (updating) and late scans or missing notifications (serving).

The reader runs as `python -m gateway.bench.simulators {modbus,opcua} --config gw.yaml --seconds N`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.bench.servers import BenchFailed, log_tail

KINDS = 11  # kinds of machine in `--industry all`
STATS_EVERY = 5.0  # seconds between the simulator's stats lines (shorter for a shorter window)


def cmd_simulators(args: argparse.Namespace) -> int:
    protocols = [p.strip() for p in args.protocol.split(",") if p.strip()]
    bad = [p for p in protocols if p not in ("modbus", "opcua")]
    if bad or not protocols or args.devices < 1 or args.tags < 1:
        print("edgegw bench simulators: --protocol modbus|opcua, --devices and --tags at least 1", file=sys.stderr)
        return 2
    settings = {k: v for k, v in vars(args).items() if k != "func"} | {"cpus": os.cpu_count()}
    result: dict[str, Any] = {"settings": settings, "runs": [run_one(p, args) for p in protocols]}
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


# ---------------------------------------------------------------- pure helpers


def points_for(tags: int) -> int:
    """Points per machine so that the average device of the workshop has `tags` tags."""
    from simulators.registry import KINDS as kinds

    signals = sum(len(cls.SIGNALS) + len(cls.METER) for cls in kinds.values()) / len(kinds)
    return max(0, round(tags - signals))


def window(first: dict[str, Any], last: dict[str, Any]) -> dict[str, float]:
    """What an update loop did between two of its stats lines."""
    return {k: last.get(k, 0) - first.get(k, 0) for k in ("ticks", "late", "missed", "busy_s", "changes", "cpu_s")} | {
        "max_s": last.get("max_s", 0.0)
    }


# ---------------------------------------------------------------- the simulator process


class Simulator:
    """`edgegw simulate` in its own process; its stats lines collected as they come."""

    def __init__(self, protocol: str, args: argparse.Namespace, tmp: Path) -> None:
        from gateway.bench.servers import free_port_block

        self.config = tmp / f"gw-{protocol}.yaml"
        per_kind = math.ceil(args.devices / KINDS)
        self.every = min(STATS_EVERY, max(0.5, args.seconds / 2))  # a line before the window and one after
        self.cmd = [sys.executable, "-m", "gateway.cli", "simulate", "--industry", "all", "--devices", str(per_kind),
                    "--protocol", protocol, "--points", str(points_for(args.tags)),
                    "--point-change", str(args.point_change), "--write-config", str(self.config),
                    "--data-dir", str(tmp / "edge"), "--stats-every", str(self.every)]  # fmt: skip
        if protocol == "modbus":
            self.cmd += ["--port", str(free_port_block(per_kind * KINDS))]
        else:
            self.cmd += ["--opcua-port", str(free_port_block(args.shards)), "--shards", str(args.shards),
                         "--security", "None"]  # fmt: skip
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self.proc: subprocess.Popen[str] | None = None
        self.log = tmp / f"sim-{protocol}.log"

    def __enter__(self) -> Simulator:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 600
        while not self.config.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchFailed(f"the simulator did not start: {log_tail(self.log)}")
            time.sleep(0.2)
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith('{"stats"'):
                self.lines.append((time.time(), json.loads(line)["stats"]))

    def loops(self, start: float, end: float) -> dict[str, dict[str, float]]:
        """Each update loop's work between the stats lines bracketing [start, end], by name: the last line
        printed before `start` (the first line, when the window began before it) and the first after `end`,
        waited for (a line every `every` seconds)."""
        deadline = time.monotonic() + 3 * self.every
        while not any(t >= end for t, _ in self.lines):
            if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                raise BenchFailed(f"the simulator printed no stats line after the window: {log_tail(self.log)}")
            time.sleep(0.1)
        lines = list(self.lines)
        first = next((s for t, s in reversed(lines) if t <= start), lines[0][1])
        last = next(s for t, s in lines if t >= end)
        if first is last:
            raise BenchFailed(f"the simulator printed one stats line over the window: {log_tail(self.log)}")
        out = {"modbus": window(first["modbus"] | {"cpu_s": first["cpu_s"]}, last["modbus"] | {"cpu_s": last["cpu_s"]})}
        out["modbus"]["seconds"] = last["ts"] - first["ts"]
        for a, b in zip(first.get("shards", []), last.get("shards", []), strict=False):
            out[f"opcua shard {b.get('shard')}"] = window(a, b)
        for k, b in last.get("opcua", {}).items():
            out[f"opcua {k}"] = window(first["opcua"].get(k, {}), b)
        return out

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def run_one(protocol: str, args: argparse.Namespace) -> dict[str, Any]:
    from edge_config import load_gateway_config

    with tempfile.TemporaryDirectory(prefix="edgegw-bench-sim-") as tmp, Simulator(protocol, args, Path(tmp)) as sim:
        cfg = load_gateway_config(sim.config)
        tags = sum(len(d.tags) for d in cfg.devices)
        reader = subprocess.run(
            [sys.executable, "-m", "gateway.bench.simulators", protocol, "--config", str(sim.config),
             "--seconds", str(args.seconds), "--warmup", str(args.warmup)],
            capture_output=True, text=True, timeout=900 + args.seconds, check=False,
        )  # fmt: skip
        lines = [ln for ln in reader.stdout.splitlines() if ln.startswith("{")]
        if reader.returncode != 0 or not lines:
            raise BenchFailed(f"the {protocol} reader failed: {reader.stderr[-2000:]}")
        read: dict[str, Any] = json.loads(lines[-1])
        loops = sim.loops(read["window"][0], read["window"][1])
    seconds = loops["modbus"]["seconds"] or args.seconds
    sim_cpu = sum(v["cpu_s"] for v in loops.values())
    served = {k: v for k, v in loops.items() if k.startswith("opcua")} if protocol == "opcua" else loops
    return {
        "protocol": protocol,
        "devices": len(cfg.devices),
        "tags": tags,
        "simulator_processes": 1 + (args.shards if protocol == "opcua" and args.shards > 1 else 0),
        "simulator_cpu_share": sim_cpu / seconds,
        "loops": loops,
        "ticks": sum(v["ticks"] for v in served.values()),
        "late_ticks": sum(v["late"] for v in served.values()),
        "missed_ticks": sum(v["missed"] for v in served.values()),
        "max_tick_ms": 1000 * max(v["max_s"] for v in served.values()),
        "changes_per_s": sum(v["changes"] for v in served.values()) / seconds,
        "reader": read,
    }


# ---------------------------------------------------------------- readers (separate processes)


async def _read_modbus(config: str, seconds: float, warmup: float) -> dict[str, Any]:
    """Every device through the gateway's Modbus driver, one loop per device at its poll interval."""
    from drivers.modbus import BusPool, ModbusDriver
    from edge_config import load_gateway_config

    cfg = load_gateway_config(config)
    pool = BusPool()
    drivers = [ModbusDriver(d, pool) for d in cfg.devices]  # type: ignore[arg-type]
    counts = {"scans": 0, "late": 0, "read": 0, "changed": 0, "errors": 0}
    measuring = asyncio.Event()
    stop = asyncio.Event()

    async def loop(drv: ModbusDriver) -> None:
        await drv.connect()
        next_due = time.monotonic()
        while not stop.is_set():
            try:
                scan = await drv.read_changes()
            except Exception:
                counts["errors"] += measuring.is_set()
                await drv.connect()
                continue
            finished = time.monotonic()
            if measuring.is_set():
                counts["scans"] += 1
                counts["read"] += scan.read
                counts["changed"] += len(scan.readings)
                counts["late"] += finished > next_due + 1.0
            next_due += 1.0
            if next_due < finished:
                next_due = finished
            await asyncio.sleep(max(0.0, next_due - time.monotonic()))
        await drv.close()

    tasks = [asyncio.create_task(loop(d)) for d in drivers]
    await asyncio.sleep(warmup)
    c0, t0, w0 = time.process_time(), time.monotonic(), time.time()
    measuring.set()
    await asyncio.sleep(seconds)
    measuring.clear()
    c1, t1, w1 = time.process_time(), time.monotonic(), time.time()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    dt = t1 - t0
    return {"window": [w0, w1], "seconds": dt, "cpu_share": (c1 - c0) / dt, "scans_per_s": counts["scans"] / dt,
            "values_read_per_s": counts["read"] / dt, "values_changed_per_s": counts["changed"] / dt,
            "late_scans": counts["late"], "errors": counts["errors"], "devices": len(drivers)}  # fmt: skip


async def _read_opcua(config: str, seconds: float, warmup: float) -> dict[str, Any]:
    """Every node of every device, one bare asyncua client and subscription per endpoint."""
    from asyncua import Client, ua
    from asyncua.common.subscription import Subscription

    from edge_config import load_gateway_config

    cfg = load_gateway_config(config)
    by_endpoint: dict[str, list[str]] = {}
    for d in cfg.devices:
        by_endpoint.setdefault(d.connection.endpoint, []).extend(t.node for t in d.tags)  # type: ignore[union-attr]
    state = {"n": 0, "bad": 0}

    class Count(Subscription):
        async def publish_callback(self, publish_result: ua.PublishResult) -> None:
            for notif in publish_result.NotificationMessage.NotificationData or []:
                if isinstance(notif, ua.DataChangeNotification):
                    state["n"] += len(notif.MonitoredItems)

    clients = []
    for endpoint, nodes in by_endpoint.items():
        client = Client(endpoint, timeout=60)
        await client.connect()
        clients.append(client)
        params = ua.CreateSubscriptionParameters(RequestedPublishingInterval=500, RequestedMaxKeepAliveCount=20,
                                                 RequestedLifetimeCount=200, MaxNotificationsPerPublish=0,
                                                 PublishingEnabled=True)  # fmt: skip
        sub = Count(client.uaclient.session, params, handler=None, queue_maxsize=1)
        await sub.init()
        objs = [client.get_node(n) for n in nodes]
        for i in range(0, len(objs), 1000):
            await sub.subscribe_data_change(objs[i : i + 1000], queuesize=1, sampling_interval=1000)  # type: ignore[call-overload]
    try:
        await asyncio.sleep(warmup)
        n0, c0, t0, w0 = state["n"], time.process_time(), time.monotonic(), time.time()
        await asyncio.sleep(seconds)
        n1, c1, t1, w1 = state["n"], time.process_time(), time.monotonic(), time.time()
    finally:
        for client in clients:
            await client.disconnect()
    dt = t1 - t0
    return {"window": [w0, w1], "seconds": dt, "cpu_share": (c1 - c0) / dt, "notifications_per_s": (n1 - n0) / dt,
            "endpoints": len(clients), "nodes": sum(len(v) for v in by_endpoint.values())}  # fmt: skip


def worker_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.bench.simulators")
    p.add_argument("protocol", choices=["modbus", "opcua"])
    p.add_argument("--config", required=True)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=10.0)
    a = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    read = _read_modbus if a.protocol == "modbus" else _read_opcua
    print(json.dumps(asyncio.run(read(a.config, a.seconds, a.warmup))), flush=True)
    return 0


# ---------------------------------------------------------------- report


def report(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [f"edgegw bench simulators — {s['devices']}+ devices, {s['tags']} tags each on average, points moving "
             f"with chance {s['point_change']:g} a second, {s['seconds']:g} s window, {s['cpus']} CPUs"]  # fmt: skip
    for x in r["runs"]:
        rd = x["reader"]
        if x["protocol"] == "modbus":
            served = (f"{rd['values_read_per_s']:,.0f} values read/s ({rd['values_changed_per_s']:,.0f} changed), "
                      f"{rd['late_scans']} scans late, {rd['errors']} errors")  # fmt: skip
        else:
            served = f"{rd['notifications_per_s']:,.0f} notifications/s to {rd['endpoints']} subscribers"
        lines += [
            f"  {x['protocol']}: {x['devices']} devices, {x['tags']:,} tags, {x['simulator_processes']} process(es)",
            f"    更新 / update loop: {x['ticks']} ticks, {x['late_ticks']} a period late, {x['missed_ticks']} missed, "
            f"longest {x['max_tick_ms']:.0f} ms"
            + (f", {x['changes_per_s']:,.0f} changes/s written" if x["protocol"] == "opcua" else ""),
            f"    模拟器CPU / simulator CPU: {x['simulator_cpu_share']:.0%} of a core",
            f"    读取 / reader: {served}, its CPU {rd['cpu_share']:.0%} of a core",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(worker_main())
