"""Protocol drivers. `make_driver` picks the one a device's config names."""

from __future__ import annotations

from typing import Any

from drivers.base import Driver, DriverError, DriverStatus, Reading


def make_driver(device: Any) -> Driver:
    """A driver for a validated device config (edge_config.models.*Device)."""
    if device.driver in ("modbus_tcp", "modbus_rtu"):
        from drivers.modbus import make_driver as make_modbus

        return make_modbus(device)
    raise NotImplementedError(f"driver {device.driver!r} is not available in this version")


__all__ = ["Driver", "DriverError", "DriverStatus", "Reading", "make_driver"]
