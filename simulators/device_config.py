"""Device configs for simulated machines, derived from their signal tables: one per protocol.

`device_config(machine, device_id, name, connection, protocol)` gives a dict that validates as the
config contract's device (`modbus` → ModbusTcpDevice, `rtu` → ModbusRtuDevice, `opcua` →
OpcUaDevice); `meter_config` one for a DL/T 645 meter. Nothing here imports a machine module.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from simulators.equipment import Machine, node_id

PROTOCOLS = ("modbus", "rtu", "opcua")
DRIVERS = {"modbus": "modbus_tcp", "rtu": "modbus_rtu", "opcua": "opcua"}

# the DL/T 645 data identifiers a simulated meter answers, with the tag they become
METER_TAGS: list[dict[str, Any]] = [
    {"name": "energy_kwh", "di": "00010000", "unit": "kWh", "domain": "energy",
     "description": "forward active energy, total 正向有功总电能"},
    {"name": "voltage_a", "di": "02010100", "unit": "V", "domain": "energy", "description": "phase A voltage A相电压"},
    {"name": "current_a", "di": "02020100", "unit": "A", "domain": "energy", "description": "phase A current A相电流"},
    {"name": "power_kw", "di": "02030000", "unit": "kW", "domain": "energy",
     "description": "active power, total 瞬时总有功功率"},
    {"name": "power_factor", "di": "02060000", "domain": "energy", "description": "power factor, total 总功率因数"},
    {"name": "frequency", "di": "02800002", "unit": "Hz", "domain": "energy", "description": "grid frequency 电网频率"},
]  # fmt: skip


def device_config(
    machine: Machine,
    device_id: str,
    name: str,
    connection: Mapping[str, Any],
    protocol: str,
    *,
    poll_interval: str | float = "1s",
    line: str = "",
) -> dict[str, Any]:
    """The config contract's device dict for `machine` read over `protocol` (modbus, rtu or opcua)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")
    if protocol == "opcua":
        tags = []
        for n in machine.nodes:
            tag: dict[str, Any] = {"name": n.signal, "node": node_id(machine.name, n.browse_name),
                                   "type": n.config_type, "domain": n.domain, "description": n.description}  # fmt: skip
            if n.unit:
                tag["unit"] = n.unit
            tags.append(tag)
    else:
        tags = copy.deepcopy(machine.tags)
    return {
        "id": device_id,
        "name": name,
        "type": machine.kind,
        "line": line,
        "production": True,
        "driver": DRIVERS[protocol],
        "connection": dict(connection),
        "poll_interval": poll_interval,
        "tags": tags,
        "oee": copy.deepcopy(machine.OEE),
    }


def meter_config(device_id: str, name: str, connection: Mapping[str, Any], *, ct: int = 1, line: str = "",
                 poll_interval: str | float = "5s") -> dict[str, Any]:  # fmt: skip
    """A DL/T 645 energy meter device (`driver: dlt645`); not production equipment. Behind current
    transformers of ratio `ct` the meter shows secondary values: the tags multiply them back."""
    tags = copy.deepcopy(METER_TAGS)
    if ct != 1:
        for t in tags:
            if t["name"] in ("energy_kwh", "current_a", "power_kw"):
                t["scale"] = ct
    return {
        "id": device_id,
        "name": name,
        "type": "energy_meter",
        "line": line,
        "production": False,
        "driver": "dlt645",
        "connection": dict(connection),
        "poll_interval": poll_interval,
        "tags": tags,
    }
