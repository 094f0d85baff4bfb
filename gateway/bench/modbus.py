"""`edgegw bench modbus`: the Modbus path against a bare pymodbus client, in the same run.

A simulator process serves `--devices` Modbus TCP devices, each with `--registers` holding
registers laid out as a meter's tag map (uint16, int16, 32- and 64-bit values in all byte orders,
bits of a register, strings); `--change` of the values move every second. Then, in this process,
one after the other and `--rounds` times:

1. floor: a bare pymodbus client per device reads the planner's blocks every `--interval`
   (registers only, no decoding: the least any Modbus client can do);
2. gateway: the edgegw path, the way `edgegw run` polls: ModbusDriver (bus, plan, isolation,
   decoding, reporting by exception) under the poll loop, the channel's normalization into samples
   (scale, deadband, heartbeats) and their encoding for the wire, the message the buffer would
   store. The buffer itself is measured by `edgegw bench pipeline`; a third row, for reference,
   stops at the samples (no wire encoding).

and finally both at full speed, scanning back to back for `--max-seconds`. CPU is this process's
`time.process_time()`; the simulators run in their own process, so their CPU is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_bridge.wire.codec import Topics
from drivers.base import Changes
from drivers.modbus import ModbusDriver
from drivers.modbus.plan import Block, plan_blocks
from edge_config.modbus import parse_address
from edge_config.models import ModbusTcpDevice
from gateway.bench.servers import BenchFailed
from gateway.channel import DeviceChannel, DeviceState
from gateway.heap import settle_heap
from gateway.normalize import Normalizer, TagSpec
from gateway.poller import poll_loop

GOAL_RATIO = 1.3
MAX_REGISTERS = 125

# one meter's worth of tags, repeated to fill the map: (type, byte order, extra)
PATTERN: list[tuple[str, str | None, dict[str, Any]]] = [
    ("uint16", None, {"scale": 0.1, "deadband": 0.5}),
    ("int16", None, {"scale": 0.01}),
    ("float32", "CDAB", {"deadband_percent": 0.5}),
    ("uint32", None, {}),
    ("float32", None, {}),
    ("uint16", None, {}),
    ("int32", "BADC", {}),
    ("bool", None, {"bit": 0}),
    ("bool", None, {"bit": 1}),
    ("float64", "DCBA", {}),
    ("uint64", None, {}),
    ("uint16", None, {"scale": 0.1}),
    ("string", None, {"length": 4}),
]
_SIZE = {"bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4}
_SIZE["float64"] = 4


def bench_tags(registers: int) -> list[dict[str, Any]]:
    """A tag map filling hr:0 .. hr:registers-1 with PATTERN (bools share a register)."""
    tags: list[dict[str, Any]] = []
    at = i = 0
    while True:
        type_, order, extra = PATTERN[i % len(PATTERN)]
        n = extra.get("length", 1) if type_ == "string" else _SIZE[type_]
        shares = type_ == "bool" and extra.get("bit", 0) > 0
        start = at - 1 if shares else at
        if start + n > registers:
            break
        tag: dict[str, Any] = {"name": f"t{i:04d}", "address": f"hr:{start}", "type": type_, **extra}
        if order:
            tag["byte_order"] = order
        tags.append(tag)
        at = start + n
        i += 1
    while at < registers:  # top up with uint16
        tags.append({"name": f"t{i:04d}", "address": f"hr:{at}", "type": "uint16"})
        at += 1
        i += 1
    return tags


class MeterModel:
    """Bench equipment: the bench tag map; every second `change` of the tags (distinct, at random) get a
    new value (seeded)."""

    def __init__(self, tags: list[dict[str, Any]], change: float, seed: int) -> None:
        self._tags = tags
        self._rng = random.Random(seed)
        self._change = change
        self._values: dict[str, bool | int | float | str] = {t["name"]: self._draw(t) for t in tags}
        self._t: float | None = None
        self._owed = 0.0

    @property
    def tags(self) -> list[dict[str, Any]]:
        return self._tags

    def _draw(self, tag: dict[str, Any]) -> bool | int | float | str:
        r, t = self._rng, tag["type"]
        if t == "bool":
            return r.random() < 0.5
        if t == "string":
            return f"M{r.randrange(10**6):06d}"
        if t.startswith("float"):
            return round(r.uniform(-1000, 1000), 3)
        bits = 16 if t in ("int16", "uint16") else 32 if t in ("int32", "uint32") else 63
        value = r.randrange(2 ** (bits - 1))
        return -value if t.startswith("int") and r.random() < 0.3 else value

    def step(self, now: float) -> None:
        if self._t is None:
            self._t = now
            return
        self._owed += (now - self._t) * self._change * len(self._tags)
        self._t = now
        n = int(self._owed)
        if n < 1:
            return
        self._owed -= n
        picked = self._tags if n >= len(self._tags) else self._rng.sample(self._tags, n)  # distinct tags
        for tag in picked:
            self._values[tag["name"]] = self._redraw(tag)

    def _redraw(self, tag: dict[str, Any]) -> bool | int | float | str:
        """A new value, different from the current one."""
        old = self._values[tag["name"]]
        for _ in range(8):
            value = self._draw(tag)
            if value != old:
                return value
        return (not old) if isinstance(old, bool) else value

    def raw_values(self) -> dict[str, bool | int | float | str]:
        return self._values


def device_config(index: int, port: int, tags: list[dict[str, Any]], interval: float) -> ModbusTcpDevice:
    return ModbusTcpDevice.model_validate(
        {
            "id": f"meter-{index + 1:02d}",
            "driver": "modbus_tcp",
            "connection": {"host": "127.0.0.1", "port": port, "timeout": "2s"},
            "poll_interval": interval,
            "tags": tags,
        }
    )


def optimum_requests(tags: list[dict[str, Any]], max_registers: int, max_gap: int) -> int:
    """Fewest requests for a tag map without overlaps, by dynamic programming over consecutive runs.

    Independent of the planner: with no overlapping tags every request reads a run of consecutive
    tags in address order, so the optimum is the best split of that order into runs.
    """
    windows = sorted({_window(t) for t in tags})
    for (_, a1), (b0, _) in itertools.pairwise(windows):
        if b0 < a1:
            raise ValueError("overlapping tags: the run-splitting optimum does not apply")
    n = len(windows)
    best = [0] + [n + 1] * n
    for i in range(1, n + 1):
        for j in range(i - 1, -1, -1):
            if windows[i - 1][1] - windows[j][0] > max_registers:
                break
            gaps_ok = all(windows[k + 1][0] - windows[k][1] <= max_gap for k in range(j, i - 1))
            if gaps_ok:
                best[i] = min(best[i], best[j] + 1)
    return best[n]


def _window(tag: dict[str, Any]) -> tuple[int, int]:
    start = parse_address(tag["address"]).offset
    n = tag.get("length", 1) if tag["type"] == "string" else _SIZE[tag["type"]]
    return start, start + n


# ---------------------------------------------------------------- the simulator process


def _serve_main(argv: Sequence[str]) -> int:
    """`python -m gateway.bench.modbus --serve PORTS REGISTERS CHANGE`: serve until stdin closes."""
    from simulators.modbus_server import ModbusTcpSimulator

    ports = [int(p) for p in argv[0].split(",")]
    registers, change = int(argv[1]), float(argv[2])
    tags = bench_tags(registers)

    async def main() -> None:
        sims = [ModbusTcpSimulator(MeterModel(tags, change, seed=i + 1), port=p) for i, p in enumerate(ports)]
        for s in sims:
            await s.start()
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # the parent closes stdin to stop us
        for s in sims:
            await s.stop()

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(main())
    return 0


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class Simulators:
    """The simulator process."""

    def __init__(self, devices: int, registers: int, change: float) -> None:
        self.ports = _free_ports(devices)
        cmd = [sys.executable, "-m", "gateway.bench.modbus", "--serve", ",".join(map(str, self.ports))]
        self.proc = subprocess.Popen(
            [*cmd, str(registers), str(change)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.close()
            raise BenchFailed(f"the simulator process did not start: {line!r}")

    def cpu_seconds(self) -> float | None:
        """The simulator process's CPU so far (Linux only)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- measuring


@dataclass
class Counts:
    scans: int = 0
    requests: int = 0
    registers: int = 0
    samples: int = 0
    overruns: int = 0


@dataclass
class Phase:
    name: str
    seconds: float
    cpu: float
    counts: Counts
    gc: float = 0.0  # seconds spent in garbage collection while measuring

    def figures(self) -> dict[str, Any]:
        c = self.counts
        return {
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu, 4),
            "gc_seconds": round(self.gc, 4),
            "scans": c.scans,
            "requests": c.requests,
            "registers": c.registers,
            "samples": c.samples,
            "overruns": c.overruns,
            "registers_per_s": round(c.registers / self.seconds) if self.seconds else 0,
            "requests_per_s": round(c.requests / self.seconds, 1) if self.seconds else 0,
            "cpu_s_per_1000_registers": round(1000 * self.cpu / c.registers, 6) if c.registers else None,
        }


async def _measure(name: str, run: Callable[[asyncio.Event], Any], snapshot: Callable[[], Counts], warmup: float,
                   seconds: float) -> Phase:  # fmt: skip
    """Start `run(stop)`, wait `warmup`, then measure CPU and counters over `seconds`."""
    gc.collect()
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop))
    await asyncio.sleep(warmup)
    settle_heap()  # as the agent does once its devices are scanning; the same for the bare client's phase
    timer = _GcTimer()
    gc.callbacks.append(timer)
    c0, cpu0, t0 = snapshot(), time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    c1, cpu1, t1 = snapshot(), time.process_time(), time.monotonic()
    gc.callbacks.remove(timer)
    stop.set()
    await task
    diff = Counts(*(getattr(c1, f) - getattr(c0, f) for f in ("scans", "requests", "registers", "samples", "overruns")))
    return Phase(name, t1 - t0, cpu1 - cpu0, diff, timer.seconds)


class _GcTimer:
    """A gc callback adding up the time collections take."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self.seconds += time.perf_counter() - self._started


async def bare_phase(ports: list[int], blocks: list[Block], interval: float, warmup: float, seconds: float) -> Phase:
    """A bare pymodbus client per device reading `blocks` every `interval` (0: back to back)."""
    from pymodbus.client import AsyncModbusTcpClient

    counts = Counts()
    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, retries=0, reconnect_delay=0, timeout=2) for p in ports]
    for c in clients:
        if not await c.connect():
            raise BenchFailed("the bare client could not connect to the simulator")

    async def device(client: Any, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not stop.is_set():
            for b in blocks:
                rr = await client.read_holding_registers(b.start, count=b.count, device_id=1)
                counts.requests += 1
                counts.registers += len(rr.registers)
            counts.scans += 1
            if interval:
                due += interval
                now = loop.time()
                if due < now:
                    missed = int((now - due) // interval) + 1
                    counts.overruns += missed
                    due += missed * interval
                await asyncio.sleep(due - now)
            else:
                await asyncio.sleep(0)

    async def run(stop: asyncio.Event) -> None:
        await asyncio.gather(*(device(c, stop) for c in clients))

    try:
        name = "floor" if interval else "floor, back to back"
        return await _measure(name, run, lambda: Counts(**vars(counts)), warmup, seconds)
    finally:
        for c in clients:
            c.close()


class _NormalizingChannel:
    """The gateway path up to samples: what DeviceChannel.emit does before encoding for the wire."""

    def __init__(self, device: ModbusTcpDevice, counts: Counts, registers_per_scan: int) -> None:
        self.state = DeviceState(device.id, device.name, device.driver)
        self.normalizer = Normalizer(
            TagSpec(t.name, t.type, t.scale, t.offset, t.unit, t.deadband, t.deadband_percent, t.heartbeat)
            for t in device.tags
        )
        self.counts = counts
        self.registers_per_scan = registers_per_scan

    def set_online(self, online: bool, reason: str) -> None:
        if not online:
            raise BenchFailed(f"{self.state.id} went offline during the bench: {reason}")

    def emit_changes(self, scan: Changes) -> int:
        self.state.samples_read += scan.read
        samples = self.normalizer.apply(scan.readings) + self.normalizer.beat(scan.ts, scan.covered)
        self.counts.scans += 1
        self.counts.registers += self.registers_per_scan
        self.counts.samples += len(samples)
        return len(samples)


class _WireChannel(DeviceChannel):
    """The real DeviceChannel (samples encoded for the wire) with the buffer replaced by a counter."""

    def __init__(self, device: ModbusTcpDevice, counts: Counts, registers_per_scan: int) -> None:
        normalizer = Normalizer(
            TagSpec(t.name, t.type, t.scale, t.offset, t.unit, t.deadband, t.deadband_percent, t.heartbeat)
            for t in device.tags
        )
        state = DeviceState(device.id, device.name, device.driver)
        super().__init__(state, Topics("sf/v1", "ent-bench", "gw-bench"), normalizer, lambda messages: None)
        self.counts = counts
        self.registers_per_scan = registers_per_scan

    def emit_changes(self, scan: Changes) -> int:
        n = super().emit_changes(scan)
        self.counts.scans += 1
        self.counts.registers += self.registers_per_scan
        self.counts.samples += n
        return n


async def gateway_phase(
    devices: list[ModbusTcpDevice], interval: float, warmup: float, seconds: float, *, wire: bool = False
) -> Phase:
    """The edgegw path: ModbusDriver + poll loop + normalization (+ wire encoding)."""
    counts = Counts()
    drivers = [ModbusDriver(d) for d in devices]
    per_scan = sum(p.count for p in drivers[0].pieces)
    make = _WireChannel if wire else _NormalizingChannel
    channels = [make(d, counts, per_scan) for d in devices]

    def snapshot() -> Counts:
        c = Counts(**vars(counts))
        c.requests = sum(d.requests for d in drivers)
        c.overruns = sum(ch.state.overruns for ch in channels)
        return c

    async def run(stop: asyncio.Event) -> None:
        if interval:
            await asyncio.gather(*(poll_loop(ch, d, interval, stop) for ch, d in zip(channels, drivers, strict=True)))  # type: ignore[arg-type]
            return

        async def flat_out(ch: _NormalizingChannel | _WireChannel, drv: ModbusDriver) -> None:
            await drv.connect()
            try:
                while not stop.is_set():
                    ch.emit_changes(await drv.read_changes())
            finally:
                await drv.close()

        await asyncio.gather(*(flat_out(ch, d) for ch, d in zip(channels, drivers, strict=True)))

    name = ("gateway" if wire else "gateway without wire encoding") + ("" if interval else ", back to back")
    return await _measure(name, run, snapshot, warmup, seconds)


async def run_bench(
    devices: int, registers: int, interval: float, seconds: float, change: float, rounds: int, max_seconds: float
) -> dict[str, Any]:
    tags = bench_tags(registers)
    sims = Simulators(devices, registers, change)
    try:
        configs = [device_config(i, p, tags, interval) for i, p in enumerate(sims.ports)]
        conn = configs[0].connection
        blocks = plan_blocks(
            [(t.name, parse_address(t.address).table, parse_address(t.address).offset, t.register_count)
             for t in configs[0].tags],
            conn.max_registers, conn.max_gap,
        )  # fmt: skip
        optimum = optimum_requests(tags, conn.max_registers, conn.max_gap)
        warmup = max(1.5 * interval, 1.0)
        floor: list[Phase] = []
        gateway: list[Phase] = []
        samples_only: list[Phase] = []
        sim_cpu0 = sims.cpu_seconds()
        for _ in range(rounds):
            floor.append(await bare_phase(sims.ports, blocks, interval, warmup, seconds))
            gateway.append(await gateway_phase(configs, interval, warmup, seconds, wire=True))
        samples_only.append(await gateway_phase(configs, interval, warmup, seconds))
        sim_cpu = (sims.cpu_seconds() or 0.0) - (sim_cpu0 or 0.0)
        fast: dict[str, Phase] = {}
        if max_seconds > 0:
            fast["floor"] = await bare_phase(sims.ports, blocks, 0.0, 0.5, max_seconds)
            fast["gateway"] = await gateway_phase(configs, 0.0, 0.5, max_seconds, wire=True)
    finally:
        sims.close()

    def total(phases: list[Phase]) -> Phase:
        c = Counts()
        for p in phases:
            for f in vars(c):
                setattr(c, f, getattr(c, f) + getattr(p.counts, f))
        return Phase(
            phases[0].name, sum(p.seconds for p in phases), sum(p.cpu for p in phases), c, sum(p.gc for p in phases)
        )

    fl, gw, so = total(floor), total(gateway), total(samples_only)
    per_reg = {k: p.cpu / p.counts.registers for k, p in (("floor", fl), ("gateway", gw), ("samples", so))}
    ratio = per_reg["gateway"] / per_reg["floor"]
    gw_requests_per_scan = gw.counts.requests / gw.counts.scans if gw.counts.scans else 0.0
    result: dict[str, Any] = {
        "workload": {
            "devices": devices,
            "registers_per_device": registers,
            "tags_per_device": len(tags),
            "interval_s": interval,
            "seconds_per_run": seconds,
            "rounds": rounds,
            "change_per_s": change,
        },
        "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else []},
        "requests_per_scan": {
            "optimum": optimum,
            "planned": len(blocks),
            "gateway_measured": round(gw_requests_per_scan, 3),
            "floor_measured": round(fl.counts.requests / fl.counts.scans, 3) if fl.counts.scans else 0.0,
            "equal": len(blocks) == optimum and abs(gw_requests_per_scan - optimum) < 1e-9,
        },
        "floor": fl.figures(),
        "gateway": gw.figures(),
        "gateway_without_wire": so.figures(),
        "rounds_ratio": [
            round((g.cpu / g.counts.registers) / (f.cpu / f.counts.registers), 3)
            for f, g in zip(floor, gateway, strict=True)
        ],
        "ratio": round(ratio, 3),
        "ratio_without_wire": round(per_reg["samples"] / per_reg["floor"], 3),
        "goal_ratio": GOAL_RATIO,
        "goal_met": ratio <= GOAL_RATIO,
        "simulator_cpu_seconds": round(sim_cpu, 3),
        "back_to_back": {k: p.figures() for k, p in fast.items()},
    }
    if fast:
        bf, bg = fast["floor"], fast["gateway"]
        result["back_to_back_ratio"] = round((bg.cpu / bg.counts.registers) / (bf.cpu / bf.counts.registers), 3)
    return result


# ---------------------------------------------------------------- report and command


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _width(text: str) -> int:
    """Columns on a terminal: CJK characters take two."""
    return sum(2 if "\u3000" <= c <= "\u9fff" or "\uff00" <= c <= "\uffef" else 1 for c in text)


def report(r: dict[str, Any]) -> str:
    w, rq = r["workload"], r["requests_per_scan"]
    fl, gw, so = r["floor"], r["gateway"], r["gateway_without_wire"]
    load = ", ".join(f"{x:.1f}" for x in r["machine"]["load_average"])

    def cpu(p: dict[str, Any]) -> str:
        gc_share = p["gc_seconds"] / p["cpu_seconds"] if p["cpu_seconds"] else 0.0
        return f"{p['cpu_s_per_1000_registers']:.5f} CPU-s / 1,000 registers (GC {gc_share:.0%})"

    rows = [
        ("工况 / workload", f"{w['devices']} devices × {w['registers_per_device']} registers "
         f"({w['tags_per_device']} tags) every {w['interval_s']:g}s; {w['change_per_s']:.0%} of tags change per s"),
        ("机器 / machine", f"{r['machine']['cpus']} CPUs, load average {load}"),
        ("每轮请求数 / requests per scan", f"planned {rq['planned']}, measured {rq['gateway_measured']:g}, "
         f"optimum {rq['optimum']} per device: " + ("相等 / equal" if rq["equal"] else "不相等 / NOT EQUAL")),
        ("寄存器/秒 / registers per s", f"gateway {_n(gw['registers_per_s'])}, floor {_n(fl['registers_per_s'])}; "
         f"overruns {gw['overruns']}"),
        ("发送样本/秒 / samples sent per s", f"{_n(gw['samples'] / gw['seconds'] if gw['seconds'] else 0)} "
         "(changed values and heartbeats: the gateway's per-value work)"),
        ("裸 pymodbus / bare pymodbus (floor)", cpu(fl)),
        ("网关 / gateway (driver → wire message)", cpu(gw) + f"  ×{r['ratio']:.2f} floor"),
        ("  不含线格式编码 / without wire encoding", cpu(so) + f"  ×{r['ratio_without_wire']:.2f} floor"),
        ("每轮比值 / ratio per round", ", ".join(f"×{x:.2f}" for x in r["rounds_ratio"])),
    ]  # fmt: skip
    if r.get("back_to_back"):
        bf, bg = r["back_to_back"]["floor"], r["back_to_back"]["gateway"]
        rows += [
            ("满速 / back to back: floor", f"{_n(bf['registers_per_s'])} registers/s, {cpu(bf)}"),
            ("满速 / back to back: gateway", f"{_n(bg['registers_per_s'])} registers/s, {cpu(bg)}"
             f"  ×{r['back_to_back_ratio']:.2f} floor"),
        ]  # fmt: skip
    goal = f"目标 / goal ≤ {r['goal_ratio']}× floor CPU per register"
    rows.append((goal, "达到 / met" if r["goal_met"] else "未达到 / not met"))
    width = max(_width(k) for k, _ in rows)
    return "edgegw bench modbus\n" + "\n".join(f"  {k}{' ' * (width - _width(k))}  {v}" for k, v in rows)


def cmd_modbus(args: argparse.Namespace) -> int:
    if args.devices < 1 or args.registers < 1 or args.interval <= 0 or args.seconds <= 0 or args.rounds < 1:
        print("edgegw bench modbus: devices, registers, rounds ≥ 1; interval, seconds > 0", file=sys.stderr)
        return 2
    result = asyncio.run(
        run_bench(args.devices, args.registers, args.interval, args.seconds, args.change, args.rounds, args.max_seconds)
    )
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["requests_per_scan"]["equal"] else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        sys.exit(_serve_main(sys.argv[2:]))
    print("usage: edgegw bench modbus [--devices N] [--registers N] ... (see --help)", file=sys.stderr)
    sys.exit(2)
