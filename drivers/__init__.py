"""Protocol drivers. `make_driver` picks the one a device's config names."""

from __future__ import annotations

from typing import Any

from drivers.base import Driver, DriverError, DriverStatus, Reading


def make_driver(device: Any, *, data_dir: str = "./data") -> Driver:
    """A driver for a validated device config (edge_config.models.*Device).

    `data_dir` is the gateway's data directory (OPC UA keeps its certificates under `data_dir/pki`).
    """
    if device.driver in ("modbus_tcp", "modbus_rtu"):
        from drivers.modbus import make_driver as make_modbus

        return make_modbus(device)
    if device.driver == "opcua":
        from drivers.opcua import OpcUaDriver

        return OpcUaDriver(device, data_dir=data_dir)
    if device.driver == "dlt645":
        from drivers.dlt645 import Dlt645Driver

        return Dlt645Driver(device)
    raise NotImplementedError(f"driver {device.driver!r} is not available in this version")


__all__ = ["Driver", "DriverError", "DriverStatus", "Reading", "make_driver"]
