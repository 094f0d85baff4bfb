"""The OPC UA simulator as a process of its own.

- `python -m simulators.opcua_process --industry power --devices 10 --shards 4 --shard 2`: shard 2 of
  a workshop's OPC UA servers (`edgegw simulate --shards 4` starts one such process per shard, so
  the servers use every core); every few seconds it prints its update loop's stats as a JSON line.
- `python -m simulators.opcua_process --industry bulk --bulk 10000`: bare Double nodes changing once
  per second (what `edgegw bench opcua` measures).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence

from asyncua import ua

from edge_config.scenario import load_timeline
from simulators.opcua_server import SECURITY_CHOICES, OpcUaSimulator
from simulators.registry import INDUSTRIES
from simulators.serve import fault_specs
from simulators.workshop import Workshop, WorkshopSpec

STATS_EVERY = 5.0


def skip_monitored_item_copies() -> None:
    """asyncua's server deep-copies every value it hands a monitored item (a guard against writers that
    mutate what they wrote); that copy is two thirds of the simulator's CPU at 10,000 changes/s. The
    simulator writes a fresh DataValue every time, so a reference is as good as a copy. Only a
    simulator process does this: it changes asyncua's class for the whole process."""
    from asyncua.server.monitored_item_service import MonitoredItemValues

    def set_current(self: MonitoredItemValues, cur_val: ua.DataValue) -> None:
        self.old_dvalue = self.current_dvalue
        self.current_dvalue = cur_val

    MonitoredItemValues.set_current_datavalue = set_current  # type: ignore[method-assign]


async def _serve_bulk(args: argparse.Namespace) -> None:
    sim = OpcUaSimulator([], host=args.host, port=args.port, pki_dir=args.pki_dir, security=args.security.split(","),
                         bulk=args.bulk, period=args.period, type_test=False)  # fmt: skip
    stop = _stop_on_signals()
    await sim.start()
    gc.collect()
    gc.freeze()  # the address space lives for the whole run: keep it out of the GC's full passes
    print(f"ready {sim.endpoint} bulk={sim.bulk}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.close()  # its temporary PKI directory too


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (how the benches and `edgegw simulate` stop this process)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _serve_shard(args: argparse.Namespace) -> None:
    devices = [int(n) for n in str(args.devices).split(",")] if "," in str(args.devices) else int(args.devices)
    spec = WorkshopSpec(
        industry=args.industry, devices=devices, protocol="opcua", host=args.host, opcua_port=args.port,
        seed=args.seed, speed=args.speed, points=args.points, point_change=args.point_change,
        timeline=load_timeline(args.timeline) if args.timeline else None, shards=args.shards,
        security=tuple(args.security.split(",")), faults=fault_specs(args.fault), period=args.period,
    )  # fmt: skip
    ws = Workshop(spec, serve_shards={args.shard}, local=False, pki_dir=args.pki_dir)
    stop = _stop_on_signals()
    await ws.start()
    gc.collect()
    gc.freeze()
    server = ws.opcua_servers.get(args.shard)
    served = sum(1 for d in ws.devices if d.protocol == "opcua" and d.shard == args.shard)
    print(f"ready {server.endpoint if server else '-'} devices={served}", flush=True)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), STATS_EVERY)
            except asyncio.TimeoutError:
                stats = server.stats.as_dict() if server else {}
                print(json.dumps({"shard": args.shard, "cpu_s": round(time.process_time(), 3), **stats}), flush=True)
    finally:
        await ws.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulators.opcua_process", description="edgegw OPC UA simulator")
    p.add_argument("--industry", default="chemicals", choices=[*INDUSTRIES, "bulk"])
    p.add_argument("--devices", default="1", help="machines of each kind (or one count per kind: 2,1,0)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4840, help="port of shard 0; shard k listens on port + k")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--points", type=int, default=0)
    p.add_argument("--point-change", type=float, default=0.2)
    p.add_argument("--timeline", default=None)
    p.add_argument("--fault", action="append", default=[])
    p.add_argument("--pki-dir", default=None)
    p.add_argument("--security", default=",".join(SECURITY_CHOICES), help="None,Sign,SignAndEncrypt")
    p.add_argument("--bulk", type=int, default=0, help="bulk: Double nodes changing once per period")
    p.add_argument("--period", type=float, default=1.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    skip_monitored_item_copies()
    try:
        asyncio.run(_serve_bulk(args) if args.industry == "bulk" else _serve_shard(args))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
