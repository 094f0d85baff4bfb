"""Simulated plants by industry: start the simulators and give the matching device configs."""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from simulators.loom import AirJetLoom, loom_device_config
from simulators.modbus_server import ModbusTcpSimulator

if TYPE_CHECKING:  # the OPC UA side loads asyncua only when an OPC UA industry is used
    from simulators.opcua_server import OpcUaEquipment, OpcUaSimulator

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


# ---------------------------------------------------------------- OPC UA industries

OPCUA_INDUSTRIES = ("chemicals", "power")
_CONFIG_TYPES = {"Double": "float64", "Float": "float32", "Int32": "int32", "UInt32": "uint32",
                 "Boolean": "bool", "String": "string"}  # fmt: skip


def _check_opcua(industry: str, count: int) -> None:
    if industry not in OPCUA_INDUSTRIES:
        raise ValueError(f"industry {industry!r} has no OPC UA simulator (one of {', '.join(OPCUA_INDUSTRIES)})")
    if count < 1:
        raise ValueError(f"count must be 1 or more, not {count}")


def opcua_equipment(industry: str, count: int) -> list[OpcUaEquipment]:
    """chemicals: `count` batch reactors and one distillation column; power: `count` vacuum drying ovens."""
    from simulators.chemicals import BatchReactor, DistillationColumn
    from simulators.drying_oven import VacuumDryingOven

    _check_opcua(industry, count)
    if industry == "chemicals":
        reactors: list[OpcUaEquipment] = [
            BatchReactor(f"Reactor{i}", f"反应釜 {i}#", seed=i) for i in range(1, count + 1)
        ]
        return [*reactors, DistillationColumn("Column1", "精馏塔 1#", seed=100)]
    return [VacuumDryingOven(f"Oven{i}", f"真空干燥罐 {i}#", seed=i) for i in range(1, count + 1)]


async def start_opcua_simulator(
    industry: str, count: int, host: str, port: int, *, pki_dir: str | None = None, bulk: int = 0
) -> OpcUaSimulator:
    """One OPC UA server on host:port serving the industry's equipment (security policies on)."""
    from simulators.opcua_server import OpcUaSimulator

    sim = OpcUaSimulator(opcua_equipment(industry, count), host=host, port=port, pki_dir=pki_dir, bulk=bulk)
    await sim.start()
    return sim


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def opcua_device_config(equipment: OpcUaEquipment, endpoint: str, device_id: str) -> dict[str, Any]:
    """A device dict for one simulated machine; it validates as edge_config's OpcUaDevice."""
    from simulators.opcua_server import node_id

    tags = []
    for t in equipment.tags:
        tag: dict[str, Any] = {"name": _snake(t["name"]), "node": node_id(equipment.name, t["name"]),
                               "type": _CONFIG_TYPES[t["type"]], "domain": t["domain"],
                               "description": t["description"]}  # fmt: skip
        if t.get("unit"):
            tag["unit"] = t["unit"]
        tags.append(tag)
    return {
        "id": device_id,
        "name": equipment.display_name,
        "type": equipment.kind,
        "production": True,
        "driver": "opcua",
        "connection": {"endpoint": endpoint},
        "poll_interval": "1s",
        "tags": tags,
        "oee": copy.deepcopy(getattr(equipment, "oee", None)),
    }


def opcua_simulated_devices(industry: str, count: int, host: str, port: int) -> list[dict[str, Any]]:
    """Device configs matching `start_opcua_simulator` (ids reactor-01.., column-01 / oven-01..)."""
    endpoint = f"opc.tcp://{host}:{port}"
    out = []
    for eq in opcua_equipment(industry, count):
        m = re.match(r"^([A-Za-z]+)(\d+)$", eq.name)
        device_id = f"{m.group(1).lower()}-{int(m.group(2)):02d}" if m else eq.name.lower()
        out.append(opcua_device_config(eq, endpoint, device_id))
    return out
