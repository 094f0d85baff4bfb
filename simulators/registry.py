"""Simulated plants by industry: start the simulators and give the matching device configs."""

from __future__ import annotations

from typing import Any

from simulators.loom import AirJetLoom, loom_device_config
from simulators.modbus_server import ModbusTcpSimulator

INDUSTRIES = ("textiles", "chemicals", "power", "nonferrous", "food")


def _check(industry: str, count: int) -> None:
    if industry not in INDUSTRIES:
        raise ValueError(f"unknown industry {industry!r} (one of {', '.join(INDUSTRIES)})")
    if industry != "textiles":
        raise ValueError(f"industry {industry!r} is not yet simulated (only textiles for now)")
    if count < 1:
        raise ValueError(f"count must be 1 or more, not {count}")


async def start_simulators(industry: str, count: int, host: str, base_port: int) -> list[ModbusTcpSimulator]:
    """Start `count` simulators on ports base_port .. base_port+count-1; all or none are left running."""
    _check(industry, count)
    started: list[ModbusTcpSimulator] = []
    try:
        for i in range(count):
            sim = ModbusTcpSimulator(AirJetLoom(seed=i + 1), host=host, port=base_port + i)
            await sim.start()
            started.append(sim)
    except BaseException:
        for sim in started:
            await sim.stop()
        raise
    return started


def simulated_devices(industry: str, count: int, host: str, base_port: int) -> list[dict[str, Any]]:
    """Device config dicts matching `start_simulators` (ids loom-01, loom-02, ...)."""
    _check(industry, count)
    return [loom_device_config(f"loom-{i + 1:02d}", f"喷气织机 {i + 1}#", host, base_port + i) for i in range(count)]
