"""`edgegw simulate`: a simulated workshop of an industry over Modbus TCP, Modbus RTU (+ DL/T 645) or OPC UA,
and the gateway config that reads it (`--write-config gw.yaml`, then `edgegw run -c gw.yaml`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from edge_config.scenario import load_timeline
from simulators.registry import INDUSTRIES
from simulators.serve import Shards, fault_specs, run, summary, write_config
from simulators.workshop import PROTOCOLS, Workshop, WorkshopSpec


def _devices(text: str) -> int | list[int]:
    try:
        return [int(n) for n in text.split(",")] if "," in text else int(text)
    except ValueError:
        raise ValueError(
            f"--devices {text!r}: a number (of each kind of machine), or one number per kind: 2,1"
        ) from None


def build_spec(args: argparse.Namespace) -> WorkshopSpec:
    """The workshop the options describe; ValueError (or ConfigError for the timeline) with the reason."""
    protocol = args.protocol
    opcua_port = args.opcua_port if args.port is None or protocol != "opcua" else args.port
    if args.speed <= 0:
        raise ValueError(f"--speed must be above 0, not {args.speed:g}")
    return WorkshopSpec(
        industry=args.industry,
        devices=_devices(args.devices),
        protocol=protocol,
        host=args.host,
        port=args.port if args.port is not None else 5020,
        opcua_port=opcua_port,
        serial=args.serial,
        gateway_serial=args.gateway_serial,
        baudrate=args.baudrate,
        parity=args.parity,
        meters=args.meters,
        seed=args.seed,
        speed=args.speed,
        points=args.points,
        point_change=args.point_change,
        timeline=load_timeline(args.timeline) if args.timeline else None,
        shards=args.shards,
        faults=fault_specs(args.fault),
        security=tuple(s.strip() for s in args.security.split(",")),
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        spec = build_spec(args)
        sharded = spec.shards > 1
        ws = Workshop(spec, serve_shards=set() if sharded else None)
    except ValueError as e:
        print(f"edgegw simulate: {e}", file=sys.stderr)
        return 2
    shards = Shards(spec, args.timeline, args.fault) if sharded else None
    if not sharded and any(d.protocol == "opcua" for d in ws.devices):
        from simulators.opcua_process import skip_monitored_item_copies

        skip_monitored_item_copies()  # this process is a simulator: see there

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        async def ready() -> None:
            if shards is not None and any(d.protocol == "opcua" for d in ws.devices):
                shards.start(range(spec.shards))
            print("\n".join(summary(ws)))
            if args.write_config:
                config = ws.gateway_config(mqtt_url=args.mqtt, data_dir=args.data_dir, api=args.api)
                header = f"edgegw simulate {' '.join(sys.argv[2:])}\nread it with: edgegw run -c {args.write_config}"
                write_config(args.write_config, config, header)
                print(f"网关配置 / gateway config: {args.write_config} (edgegw run -c {args.write_config})")
            until = "按 Ctrl-C 停止 / press Ctrl-C to stop"
            print(until if args.seconds is None else f"运行 / running {args.seconds:g} s", flush=True)

        try:
            await run(ws, args.seconds, stop, ready, args.stats_every, shards)
        finally:
            if shards is not None:
                shards.stop()

    try:
        asyncio.run(main())
    except (ValueError, OSError, RuntimeError) as e:
        print(f"edgegw simulate: {e}", file=sys.stderr)
        return 2
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "simulate", help="simulated machines of a pilot industry over Modbus TCP/RTU (+ DL/T 645 meters) or OPC UA"
    )
    p.add_argument("--industry", default="textiles", choices=INDUSTRIES, help="which plant (all: every industry)")
    p.add_argument("--devices", "--count", default="1", help="machines of each kind (default 1), or one count per kind")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="modbus (TCP), rtu (serial) or opcua; default: each machine over its usual "
                   "protocol")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None,
                   help="first Modbus TCP port (one per device, default 5020); with --protocol opcua: the OPC UA "
                   "port")  # fmt: skip
    p.add_argument("--opcua-port", type=int, default=4840, help="OPC UA port (shard k: port + k)")
    p.add_argument("--serial", default=None, help="rtu: the serial port the simulator opens, or pty for a socat pair")
    p.add_argument("--gateway-serial", default=None, help="rtu: the port the gateway opens (default: --serial)")
    p.add_argument("--baudrate", type=int, default=9600)
    p.add_argument("--parity", choices=["N", "E", "O"], default="N")
    p.add_argument("--meters", action="store_true", help="rtu: a DL/T 645 energy meter per machine on the same line")
    p.add_argument("--seed", type=int, default=0, help="the same seed tells the same story")
    p.add_argument(
        "--speed", type=float, default=1.0, help="model time runs this many times faster (480: a shift a minute)"
    )
    p.add_argument(
        "--timeline", default=None, help="a scripted timeline (YAML: state, rate, rejects, faults per interval)"
    )
    p.add_argument("--fault", action="append", default=[], metavar="DEVICE:FAULT[=VALUE][@START][+DURATION]",
                   help="e.g. loom-02:offline@30s+20s, filler-01:exception=hr:3, reactor-01:restart@1m+5s")  # fmt: skip
    p.add_argument("--points", type=int, default=0, help="extra monitoring points per machine (scale runs)")
    p.add_argument("--point-change", type=float, default=0.2, help="chance a point moves each second (0.2)")
    p.add_argument("--shards", type=int, default=1, help="OPC UA servers, each in a process of its own")
    p.add_argument("--security", default="None,Sign,SignAndEncrypt", help="OPC UA security modes offered")
    p.add_argument("--write-config", default=None, metavar="GW.YAML", help="write the gateway config that reads it")
    p.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", help="the written config's broker")
    p.add_argument("--data-dir", default="./edgegw-data/sim", help="the written config's data_dir")
    p.add_argument("--api", default="127.0.0.1:8080", help="the written config's edge API address")
    p.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    p.add_argument("--stats-every", type=float, default=None, metavar="SECONDS",
                   help="print the update loops' stats and the CPU as a JSON line this often")  # fmt: skip
    p.set_defaults(func=cmd_simulate)
