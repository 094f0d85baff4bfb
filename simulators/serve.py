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

    def start(self, shards: Sequence[int]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            for k in shards:
                cmd = [sys.executable, "-m", "simulators.opcua_process", *self.args, "--shard", str(k)]
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                self.procs.append(proc)
            for proc in self.procs:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if not line.startswith("ready "):
                    err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
                    raise RuntimeError(f"an OPC UA shard did not start: {(line + err).strip()[-500:]}")
        except BaseException:
            self.stop()
            raise

    def stats(self) -> list[dict[str, Any]]:
        """Each shard's last stats line (they print one every few seconds)."""
        out = []
        for proc in self.procs:
            last: dict[str, Any] = {}
            assert proc.stdout is not None
            os.set_blocking(proc.stdout.fileno(), False)
            with contextlib.suppress(TypeError, OSError):
                for line in proc.stdout:
                    if line.startswith("{"):
                        last = json.loads(line)
            out.append(last)
        return out

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
    Path(path).write_text(text, encoding="utf-8")


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


async def run(ws: Workshop, seconds: float | None, stop: asyncio.Event,
              on_ready: Callable[[], Awaitable[None]] | None = None) -> None:  # fmt: skip
    """Serve until `stop` is set or `seconds` have passed."""
    await ws.start()
    try:
        if on_ready is not None:
            await on_ready()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
    finally:
        await ws.stop()


def fault_specs(texts: Sequence[str]) -> list[Any]:
    return [parse_fault_spec(t) for t in texts]
