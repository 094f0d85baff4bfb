"""DL/T 645-2007 energy meters on a serial bus shared with Modbus RTU units: frames, the driver."""

from __future__ import annotations

from drivers.dlt645.driver import Dlt645Driver
from drivers.dlt645.protocol import MeterError, address_request, build_frame, parse_frame, read_request

__all__ = ["Dlt645Driver", "MeterError", "address_request", "build_frame", "parse_frame", "read_request"]
