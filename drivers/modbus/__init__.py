"""Modbus drivers: the register codec, block planning and the TCP driver."""

from __future__ import annotations

from drivers.base import Driver
from drivers.modbus.driver import ModbusTcpDriver
from drivers.modbus.plan import Block, plan_blocks
from edge_config.modbus_codec import decode, encode
from edge_config.models import ModbusRtuDevice, ModbusTcpDevice

__all__ = ["Block", "ModbusTcpDriver", "decode", "encode", "make_driver", "plan_blocks"]


def make_driver(device: ModbusTcpDevice | ModbusRtuDevice) -> Driver:
    """The driver for a validated Modbus device config."""
    if isinstance(device, ModbusTcpDevice):
        return ModbusTcpDriver(device)
    if isinstance(device, ModbusRtuDevice):
        raise NotImplementedError(f"device {device.id}: the Modbus RTU driver is not implemented yet")
    raise ValueError(f"device {getattr(device, 'id', '?')}: driver {getattr(device, 'driver', '?')!r} is not Modbus")
