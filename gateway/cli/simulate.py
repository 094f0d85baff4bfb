"""`edgegw simulate`: the options. The simulators are imported only when the command runs
(`gateway.cli.simulate_run`): every command builds this parser, `edgegw run` included."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.bench import later
from gateway.cli.options import listen, positive, share, whole

# the same as simulators.registry.INDUSTRIES and simulators.workshop.PROTOCOLS (a unit test checks)
INDUSTRIES = ("textiles", "power", "chemicals", "nonferrous", "food", "new_materials", "all")
PROTOCOLS = ("modbus", "rtu", "opcua")


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
    p.add_argument("--port", type=whole(1, 65_535), default=None,
                   help="first Modbus TCP port (one per device, default 5020); with --protocol opcua: the OPC UA "
                   "port")  # fmt: skip
    p.add_argument("--opcua-port", type=whole(1, 65_535), default=4840, help="OPC UA port (shard k: port + k)")
    p.add_argument("--serial", default=None, help="rtu: the serial port the simulator opens, or pty for a socat pair")
    p.add_argument("--gateway-serial", default=None, help="rtu: the port the gateway opens (default: --serial)")
    p.add_argument("--baudrate", type=whole(50, 4_000_000), default=9600)
    p.add_argument("--parity", choices=["N", "E", "O"], default="N")
    p.add_argument("--meters", action="store_true", help="rtu: a DL/T 645 energy meter per machine on the same line")
    p.add_argument("--seed", type=int, default=0, help="the same seed tells the same story")
    p.add_argument(
        "--speed", type=positive(), default=1.0, help="model time runs this many times faster (480: a shift a minute)"
    )
    p.add_argument(
        "--timeline", default=None, help="a scripted timeline (YAML: state, rate, rejects, faults per interval)"
    )
    p.add_argument("--fault", action="append", default=[], metavar="DEVICE:FAULT[=VALUE][@START][+DURATION]",
                   help="e.g. loom-02:offline@30s+20s, filler-01:exception=hr:3, reactor-01:restart@1m+5s")  # fmt: skip
    p.add_argument("--points", type=whole(0, 100_000), default=0, help="extra monitoring points per machine (scale)")
    p.add_argument("--point-change", type=share, default=0.2, help="chance a point moves each second (0.2)")
    p.add_argument("--shards", type=whole(1, 64), default=1, help="OPC UA servers, each in a process of its own")
    p.add_argument("--security", default="None,Sign,SignAndEncrypt", help="OPC UA security modes offered")
    p.add_argument("--write-config", default=None, metavar="GW.YAML", help="write the gateway config that reads it")
    p.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", help="the written config's broker")
    p.add_argument("--data-dir", default="./edgegw-data/sim", help="the written config's data_dir")
    p.add_argument("--api", type=listen, default="127.0.0.1:8080", help="the written config's edge API address")
    p.add_argument("--seconds", type=positive(), default=None, help="stop after N seconds")
    p.add_argument("--stats-every", type=positive(), default=None, metavar="SECONDS",
                   help="print the update loops' stats and the CPU as a JSON line this often")  # fmt: skip
    p.set_defaults(func=later("gateway.cli.simulate_run", "cmd_simulate"))
