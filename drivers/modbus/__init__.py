"""Modbus drivers (TCP and RTU): codec, block planning, bad-address isolation, shared buses."""

from __future__ import annotations

from drivers.bus import Bus, BusPool
from drivers.modbus.driver import ModbusDriver, PollGroup
from drivers.modbus.plan import Block, plan_blocks
from edge_config.modbus_codec import decode, encode
from edge_config.models import ModbusRtuDevice, ModbusTcpDevice

# the names of earlier versions
ModbusTcpDriver = ModbusDriver
ModbusBus = Bus

__all__ = [
    "Block",
    "BusPool",
    "ModbusBus",
    "ModbusDriver",
    "ModbusTcpDriver",
    "PollGroup",
    "decode",
    "encode",
    "make_driver",
    "plan_blocks",
]


def make_driver(device: ModbusTcpDevice | ModbusRtuDevice, pool: BusPool | None = None) -> ModbusDriver:
    """The driver for a validated Modbus device config (buses shared through `pool`, default per event loop)."""
    if isinstance(device, ModbusTcpDevice | ModbusRtuDevice):
        return ModbusDriver(device, pool)
    raise ValueError(f"device {getattr(device, 'id', '?')}: driver {getattr(device, 'driver', '?')!r} is not Modbus")
