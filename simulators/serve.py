"""Running a simulated workshop from the command line: the servers, OPC UA shards in processes of their
own, the gateway config, a bilingual summary. `edgegw simulate` and `python -m simulators.opcua_process`
are thin wrappers around this."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from edge_config.scenario import parse_fault_spec
from simulators.workshop import Workshop, WorkshopSpec


def spec_args(spec: WorkshopSpec, timeline_path: str | None, fault_texts: Sequence[str]) -> list[str]:
    """The command-line options that rebuild `spec` in another process (an OPC UA shard)."""
    devices = spec.devices if isinstance(spec.devices, int) else ",".join(map(str, spec.devices))
    args = ["--industry", spec.industry, "--devices", str(devices), "--host", spec.host,
            "--port", str(spec.opcua_port), "--shards", str(spec.shards), "--seed", str(spec.seed),
            "--speed", repr(spec.speed), "--points", str(spec.points), "--point-change", repr(spec.point_change),
            "--period", repr(spec.period), "--security", ",".join(spec.security)]  # fmt: skip
    if timeline_path:
        args += ["--timeline", timeline_path]
    for f in fault_texts:
        args += ["--fault", f]
    return args


class Shards:
    """OPC UA shards in processes of their own (`python -m simulators.opcua_process --shard K`)."""

    def __init__(self, spec: WorkshopSpec, timeline_path: str | None, faults: Sequence[str]) -> None:
        self.spec = spec
        self.args = spec_args(spec, timeline_path, faults)
        self.procs: list[subprocess.Popen[str]] = []
        self.last: dict[int, dict[str, Any]] = {}  # each shard's last stats line

    def start(self, shards: Sequence[int]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            for k in shards:
                cmd = [sys.executable, "-m", "simulators.opcua_process", *self.args, "--shard", str(k)]
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                self.procs.append(proc)
            for k, proc in zip(shards, self.procs, strict=True):
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if not line.startswith("ready "):
                    err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
                    raise RuntimeError(f"an OPC UA shard did not start: {(line + err).strip()[-500:]}")
                threading.Thread(target=self._drain, args=(k, proc), daemon=True).start()
        except BaseException:
            self.stop()
            raise

    def _drain(self, shard: int, proc: subprocess.Popen[str]) -> None:
        """Keep a shard's stats lines (every few seconds) and its pipe from filling up."""
        assert proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for line in proc.stdout:
                if line.startswith("{"):
                    self.last[shard] = json.loads(line)

    def stats(self) -> list[dict[str, Any]]:
        """Each shard's last stats line."""
        return [self.last[k] for k in sorted(self.last)]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self.procs = []


def write_config(path: str | Path, config: dict[str, Any], header: str) -> None:
    text = "".join(f"# {line}\n" for line in header.splitlines())
    text += yaml.safe_dump(config, allow_unicode=True, sort_keys=False, width=120, default_flow_style=None)
    part = Path(f"{path}.part")
    part.write_text(text, encoding="utf-8")
    part.replace(path)  # whole or not at all: a reader waiting for the file never sees half of it


def summary(ws: Workshop) -> list[str]:
    s = ws.spec
    lines = [f"模拟车间 / simulated workshop: {ws.industry_label}, {len(ws.devices)} devices"
             f" (seed {s.seed}, speed ×{s.speed:g})"]  # fmt: skip
    for d in ws.devices:
        c = d.connection
        if d.protocol == "modbus":
            where = f"modbus://{c['host']}:{c['port']} unit {c['unit_id']}"
        elif d.protocol == "rtu":
            where = f"rtu {c['port']} unit {c['unit_id']}"
        elif d.protocol == "dlt645":
            where = f"dlt645 {c['port']} address {c['address']}"
        else:
            where = c["endpoint"]
        tags = len(d.machine.signals) if d.protocol != "dlt645" else 6
        lines.append(f"  {d.id:16s} {d.name}: {where}, {tags} tags")
    if ws.serial_ports:
        gw, dev = ws.serial_ports
        lines.append(f"  串口 / serial line: gateway {gw} ↔ devices {dev}")
    for at, device, fault, seconds in ws.schedule:
        span = f" for {seconds:g} s" if seconds is not None else ""
        lines.append(f"  故障 / fault: {device} {fault} at {at:g} s{span}")
    return lines


def stats(ws: Workshop, shards: Shards | None = None) -> dict[str, Any]:
    """How the update loops keep their period, and this process's CPU (and each shard's, in theirs)."""
    out: dict[str, Any] = {"ts": time.time(), "cpu_s": round(time.process_time(), 3), "modbus": ws.stats.as_dict(),
                           "opcua": {k: s.stats.as_dict() for k, s in ws.opcua_servers.items()}}  # fmt: skip
    if shards is not None:
        out["shards"] = shards.stats()
    return out


async def run(ws: Workshop, seconds: float | None, stop: asyncio.Event,
              on_ready: Callable[[], Awaitable[None]] | None = None, stats_every: float | None = None,
              shards: Shards | None = None) -> None:  # fmt: skip
    """Serve until `stop` is set or `seconds` have passed; with `stats_every`, print a JSON stats line
    that often."""
    await ws.start()
    try:
        if on_ready is not None:
            await on_ready()
        deadline = None if seconds is None else time.monotonic() + seconds
        while not stop.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            waits = [w for w in (left, stats_every) if w is not None]
            if waits and min(waits) <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(waits) if waits else None)
            if stats_every is not None and not stop.is_set():
                print(json.dumps({"stats": stats(ws, shards)}), flush=True)
    finally:
        await ws.stop()


def fault_specs(texts: Sequence[str]) -> list[Any]:
    return [parse_fault_spec(t) for t in texts]
