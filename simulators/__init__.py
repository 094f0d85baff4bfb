"""Device simulators: equipment models of the pilot industries served over Modbus TCP."""

from __future__ import annotations

from simulators.loom import LOOM_TAGS, AirJetLoom, loom_device_config
from simulators.modbus_server import EquipmentModel, ModbusTcpSimulator
from simulators.registry import simulated_devices, start_simulators

__all__ = [
    "LOOM_TAGS",
    "AirJetLoom",
    "EquipmentModel",
    "ModbusTcpSimulator",
    "loom_device_config",
    "simulated_devices",
    "start_simulators",
]
