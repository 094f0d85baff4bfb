"""`edgegw bench ...`: the benchmarks. Each benchmark module registers its own subcommand."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

BENCH_MODULES: list[str] = [
    "gateway.bench.ingest",
    "gateway.bench.modbus",
    "gateway.bench.opcua",
    "gateway.bench.pipeline",
    "gateway.bench.simulators",
]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("bench", help="benchmarks (speed and memory, with reports)")
    bsub = p.add_subparsers(dest="bench_command", required=True)
    for name in BENCH_MODULES:
        importlib.import_module(name).register(bsub)
