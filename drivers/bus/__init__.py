"""Links shared by the devices behind them: the bus scheduler and the serial line, for every protocol."""

from __future__ import annotations

from drivers.bus.errors import BadFrame, LinkDown, LinkError, NoResponse
from drivers.bus.scheduler import Bus, BusClient, BusPool, BusStats, Link, loop_pool
from drivers.bus.serial import LineSettings, PortReader, SerialLink, char_time, rtu_silence

__all__ = [
    "BadFrame",
    "Bus",
    "BusClient",
    "BusPool",
    "BusStats",
    "LineSettings",
    "Link",
    "LinkDown",
    "LinkError",
    "NoResponse",
    "PortReader",
    "SerialLink",
    "char_time",
    "loop_pool",
    "rtu_silence",
]
