"""The OPC UA simulator as a process of its own: `python -m simulators.opcua_process --industry bulk --bulk 10000`.

The benches run it apart from the gateway they measure, so the two do not share a core's GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Sequence

from asyncua import ua

from simulators.opcua_server import SECURITY_CHOICES, OpcUaSimulator
from simulators.registry import opcua_equipment


def _skip_monitored_item_copies() -> None:
    """asyncua's server deep-copies every value it hands a monitored item (a guard against writers that
    mutate what they wrote); that copy is two thirds of the simulator's CPU at 10,000 changes/s. The
    standalone simulator writes a fresh DataValue every time, so a reference is as good as a copy.
    Only `main()` does this: it changes asyncua's class for the whole process."""
    from asyncua.server.monitored_item_service import MonitoredItemValues

    def set_current(self: MonitoredItemValues, cur_val: ua.DataValue) -> None:
        self.old_dvalue = self.current_dvalue
        self.current_dvalue = cur_val

    MonitoredItemValues.set_current_datavalue = set_current  # type: ignore[method-assign]


async def _serve(args: argparse.Namespace) -> None:
    sim = OpcUaSimulator(
        [] if args.industry == "bulk" else opcua_equipment(args.industry, args.count),
        host=args.host,
        port=args.port,
        pki_dir=args.pki_dir,
        security=args.security.split(","),
        bulk=args.bulk,
        period=args.period,
        type_test=args.industry != "bulk",
    )
    await sim.start()
    gc.collect()
    gc.freeze()  # the address space lives for the whole run: keep it out of the GC's full passes
    print(f"ready {sim.endpoint} bulk={sim.bulk}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulators.opcua_process", description="edgegw OPC UA simulator")
    p.add_argument("--industry", default="chemicals", choices=["chemicals", "power", "bulk"])
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4840)
    p.add_argument("--pki-dir", default=None)
    p.add_argument("--security", default=",".join(SECURITY_CHOICES), help="None,Sign,SignAndEncrypt")
    p.add_argument("--bulk", type=int, default=0, help="extra Double nodes changing once per period")
    p.add_argument("--period", type=float, default=1.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    _skip_monitored_item_copies()
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
