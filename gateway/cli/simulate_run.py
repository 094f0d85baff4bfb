"""`edgegw simulate` at work (its options: `gateway.cli.simulate`): a simulated workshop of an industry over
Modbus TCP, Modbus RTU (+ DL/T 645) or OPC UA, and the gateway config that reads it (`--write-config gw.yaml`,
then `edgegw run -c gw.yaml`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from edge_config.scenario import load_timeline
from simulators.serve import Shards, fault_specs, run, summary, write_config
from simulators.workshop import Workshop, WorkshopSpec


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
