"""Device simulators: equipment models of the pilot industries served over Modbus TCP/RTU, OPC UA and
DL/T 645 (`workshop` puts a plant together; `registry` lists the industries and their machines)."""

from __future__ import annotations

from simulators.loom import LOOM_TAGS, AirJetLoom, loom_device_config
from simulators.modbus_server import EquipmentModel, ModbusTcpSimulator

__all__ = ["LOOM_TAGS", "AirJetLoom", "EquipmentModel", "ModbusTcpSimulator", "loom_device_config"]
