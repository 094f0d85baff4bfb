"""`edgegw bench ...`: the benchmarks. The options are declared here; each bench's code is imported only
when it runs (benches are tools: nothing at run time imports them, and they may need every extra)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

from gateway.cli.options import counts, positive, share, shares, whole


def later(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """`module.function(args)`, imported when the bench runs; a bench that could not measure (a server
    missing or failing, a process that did not start) says why in one line and exits 1, no traceback."""

    def run(args: argparse.Namespace) -> int:
        from gateway.bench.servers import BenchFailed, MissingBinary

        try:
            return int(getattr(importlib.import_module(module), function)(args))
        except (BenchFailed, MissingBinary) as e:
            command = " ".join(str(x) for x in (args.command, getattr(args, "bench_command", None)) if x)
            print(f"edgegw {command}: {e}", file=sys.stderr)
            return 1

    return run


def _ingest(bsub: Any) -> None:
    p: argparse.ArgumentParser = bsub.add_parser("ingest", help="cloud ingester: MQTT → VictoriaMetrics + ledger")
    p.add_argument("--messages", type=whole(1, 90_000), default=5000, help="messages per run (default 5000)")
    p.add_argument("--samples", type=whole(1), default=100, help="samples per message, one per tag (default 100)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures to FILE")
    p.add_argument(
        "--ledger",
        default=None,
        metavar="URL",
        help="ledger of every run, e.g. postgresql://user@host/db (default: SQLite files in the work dir)",
    )
    p.add_argument("--gateways", type=whole(1), default=1, help="gateways the messages come from (default 1)")
    p.add_argument("--devices", type=whole(1), default=20, help="devices per gateway (default 20)")
    p.add_argument(
        "--tags", type=whole(0), default=0, help="tags per device, ≥ --samples (default: as many as --samples)"
    )
    p.add_argument("--phases", default="floor,core,one,two", help="runs to make (default floor,core,one,two)")
    p.add_argument("--rounds", type=whole(1), default=3, help="core rounds, chained against unchained (default 3)")
    p.add_argument("--profile", action="store_true", help="one more core run under cProfile: µs per step")
    p.set_defaults(func=later("gateway.bench.ingest", "cmd_ingest_bench"))


def _city(bsub: Any) -> None:
    p: argparse.ArgumentParser = bsub.add_parser(
        "city", help="the pilot city: virtual gateways → Mosquitto → K ingesters → VM + PostgreSQL; the overview API"
    )
    p.add_argument("--ingesters", default="1,2,4", help="ingester processes per run, a list (default 1,2,4)")
    p.add_argument("--enterprises", type=whole(1), default=408, help="enterprises of the seed (default all 408)")
    p.add_argument(
        "--messages", type=whole(0), default=20_000, help="messages drained per run, 10 samples each (0: none)"
    )
    p.add_argument(
        "--backlog",
        default="gateways,broker",
        help="what the drain drains, a list: gateways (their store-and-forward, gateway by gateway), broker (the "
        "city's traffic held while the ingesters were away, in arrival order); default both",
    )
    p.add_argument(
        "--seconds", type=positive(zero=True), default=20, help="seconds of the city's live traffic per run (0: none)"
    )
    p.add_argument(
        "--rate", type=positive(), default=1.0, help="the city's traffic × this in the live runs (default 1)"
    )
    p.add_argument("--history-days", type=whole(0), default=0, help="fill this many days of history, then time the API")
    p.add_argument(
        "--history-every", type=whole(1), default=21_600, help="seconds between history samples (default 6 h)"
    )
    p.add_argument("--calls", type=whole(0), default=5, help="overview calls after the first (default 5)")
    p.add_argument("--keep", action="store_true", help="keep the PostgreSQL database and the work directory")
    p.add_argument(
        "--trust", choices=("enforce", "off"), default="enforce", help="the ingesters' trust.mode (default enforce)"
    )
    p.add_argument(
        "--pg", default="postgresql://postgres@127.0.0.1:5432/postgres", help="PostgreSQL to create the database in"
    )
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures to FILE")
    p.set_defaults(func=later("gateway.bench.city", "cmd_city_bench"))


def _ledger_size(bsub: Any) -> None:
    p: argparse.ArgumentParser = bsub.add_parser(
        "ledger-size", help="evidence ledger: bytes per device-hour by table, before and after the archive step"
    )
    p.add_argument("--devices", type=whole(1), default=200, help="devices (default 200)")
    p.add_argument("--hours", type=whole(1), default=2, help="whole hours of messages (default 2)")
    p.add_argument("--per-gateway", type=whole(1), default=20, help="devices per gateway (default 20)")
    p.add_argument("--samples", type=whole(1), default=10, help="samples per message, one per tag (default 10)")
    p.add_argument("--spread", action="store_true", help="devices publish spread over the minute (a checkpoint each)")
    p.add_argument("--ledger", default=None, metavar="URL", help="an empty ledger database (default: SQLite)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures to FILE")
    p.set_defaults(func=later("gateway.bench.ledger_size", "cmd_ledger_size"))


def _modbus(bsub: Any) -> None:
    p: argparse.ArgumentParser = bsub.add_parser(
        "modbus", help="Modbus TCP: requests per scan, registers/s, CPU per register against bare pymodbus"
    )
    p.add_argument("--devices", type=whole(1), default=20, help="simulated devices (default 20)")
    p.add_argument("--registers", type=whole(1, 65_536), default=500, help="holding registers per device (default 500)")
    p.add_argument("--interval", type=positive(), default=1.0, help="poll interval, seconds (default 1)")
    p.add_argument("--seconds", type=positive(), default=6.0, help="measured seconds per run (default 6)")
    p.add_argument("--change", type=share, default=0.1, help="share of values that change per second (default 0.1)")
    p.add_argument("--rounds", type=whole(1), default=5, help="floor/gateway runs, alternating (default 5)")
    p.add_argument("--max-seconds", type=positive(zero=True), default=3.0, help="back-to-back phase, seconds (0: skip)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.set_defaults(func=later("gateway.bench.modbus", "cmd_modbus"))


def _opcua(bsub: Any) -> None:
    p: argparse.ArgumentParser = bsub.add_parser(
        "opcua", help="OPC UA: notifications/s, CPU per 1,000 and latency, gateway vs a bare asyncua client"
    )
    p.add_argument("--nodes", type=counts, default="1000,10000", help="node counts to measure (default 1000,10000)")
    p.add_argument("--seconds", type=positive(), default=20.0, help="measuring window per phase (default 20)")
    p.add_argument("--warmup", type=positive(zero=True), default=5.0, help="seconds after subscribing before measuring")
    p.add_argument("--publishing-ms", type=positive(), default=100.0, help="subscription publishing interval (100)")
    p.add_argument("--mqtt-url", default=None, help="use this broker instead of starting a Mosquitto")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.set_defaults(func=later("gateway.bench.opcua", "cmd_opcua"))


def _pipeline(bsub: Any) -> None:
    p: argparse.ArgumentParser = bsub.add_parser("pipeline", help="store-and-forward → MQTT → ingester → stores")
    p.add_argument("--devices", type=whole(1), default=20, help="devices in the synthetic workshop (default 20)")
    p.add_argument("--tags", type=whole(1), default=100, help="tags per device, one scan per second (default 100)")
    p.add_argument(
        "--live-seconds", type=positive(), default=30.0, help="live phase, in 3 rounds with and without the chain"
    )
    p.add_argument("--sustained-seconds", type=positive(), default=15.0)
    p.add_argument("--outage", type=positive(), default=600.0, help="outage to simulate, seconds (default 600)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.set_defaults(func=later("gateway.bench.pipeline", "cmd_pipeline"))


def _soak(bsub: Any) -> None:
    p: argparse.ArgumentParser = bsub.add_parser(
        "soak", help="the agent for hours (time compressed): RSS, open files and threads over time"
    )
    p.add_argument("--hours", type=positive(), default=1.0, help="how long (default 1)")
    p.add_argument("--every", type=positive(), default=30.0, help="seconds between samples (default 30)")
    p.add_argument("--poll", default="100ms", help="the looms' poll interval: time compression (default 100ms)")
    p.add_argument(
        "--broker-restart", type=positive(zero=True), default=600.0, help="restart the broker every N s (0: never)"
    )
    p.add_argument("--json", default=None, metavar="FILE", help="also write every sample to FILE")
    p.set_defaults(func=later("gateway.bench.soak", "cmd_soak"))


def _buffer(bsub: Any) -> None:
    p: argparse.ArgumentParser = bsub.add_parser(
        "buffer", help="store-and-forward durability: time and CPU per scan, synchronous FULL against NORMAL"
    )
    p.add_argument("--dir", default=None, help="measure this disk (e.g. the gateway's data_dir); default a temp dir")
    p.add_argument("--scans", type=whole(1), default=2000)
    p.add_argument("--tags", type=whole(1), default=100, help="samples per scan (default 100)")
    p.add_argument("--json", default=None, metavar="FILE")
    p.set_defaults(func=later("gateway.bench.buffer", "cmd_buffer"))


def _edge(bsub: Any) -> None:
    p: argparse.ArgumentParser = bsub.add_parser(
        "edge", help="the agent end to end (buffer + MQTT) against a bare pymodbus + paho loop; --memory: RSS by tags"
    )
    p.add_argument("--devices", type=whole(1), default=20)
    p.add_argument("--registers", type=whole(1, 65_536), default=500, help="holding registers per device (default 500)")
    p.add_argument("--interval", type=positive(), default=1.0, help="poll interval, seconds (default 1)")
    p.add_argument(
        "--change", type=shares, default="0.1,0.5,1.0", help="shares of tags changing per second (default 0.1,0.5,1.0)"
    )
    p.add_argument("--seconds", type=positive(), default=20.0, help="measured seconds per phase (default 20)")
    p.add_argument(
        "--warmup",
        type=positive(zero=True),
        default=12.0,
        help="seconds before measuring (default 12: past the heap settling)",
    )
    p.add_argument(
        "--memory", type=counts, default=None, metavar="N,...", help="instead: RSS and start-up at these tag counts"
    )
    p.add_argument(
        "--per-device", type=whole(1, 65_536), default=1000, help="with --memory: tags per device (default 1000)"
    )
    p.add_argument(
        "--settle", type=positive(zero=True), default=10.0, help="with --memory: seconds scanning before RSS is read"
    )
    p.add_argument("--memory-change", type=share, default=0.1, help="with --memory: share changing per second")
    p.add_argument("--memory-seconds", type=positive(), default=5.0, help="with --memory: seconds measured per point")
    p.add_argument(
        "--protocol",
        choices=["modbus", "opcua"],
        default="modbus",
        help="with --memory: Modbus devices (default) or one OPC UA device of N subscribed nodes",
    )
    p.add_argument("--plot", default=None, metavar="FILE.png", help="with --memory: draw the scale curve (matplotlib)")
    p.add_argument(
        "--plot-add", action="append", default=[], metavar="FILE.json", help="with --plot: also draw a --json file"
    )
    p.add_argument("--json", default=None, metavar="FILE")
    p.set_defaults(func=later("gateway.bench.edge", "cmd_edge"))


def _simulators(bsub: Any) -> None:
    p: argparse.ArgumentParser = bsub.add_parser(
        "simulators", help="simulators: 200 devices / 50,000 tags at 1 s; update lag and CPU per protocol"
    )
    p.add_argument("--protocol", default="modbus,opcua", help="modbus, opcua or both (default)")
    p.add_argument("--devices", type=whole(1), default=200, help="at least this many devices (default 200)")
    p.add_argument("--tags", type=whole(1), default=250, help="tags per device on average: signals plus points (250)")
    p.add_argument("--point-change", type=share, default=0.2, help="chance a point moves each second (0.2)")
    p.add_argument("--shards", type=whole(1), default=2, help="OPC UA server processes (default 2)")
    p.add_argument("--seconds", type=positive(), default=30.0, help="measuring window (default 30)")
    p.add_argument(
        "--warmup", type=positive(zero=True), default=10.0, help="seconds after the reader is up before measuring"
    )
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.set_defaults(func=later("gateway.bench.simulators", "cmd_simulators"))


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("bench", help="benchmarks (speed and memory, with reports)")
    bsub = p.add_subparsers(dest="bench_command", required=True)
    for add in (_buffer, _city, _edge, _ingest, _ledger_size, _modbus, _opcua, _pipeline, _simulators, _soak):
        add(bsub)
