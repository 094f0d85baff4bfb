"""Simulated plants by industry: which machines each pilot industry has, their device ids and seeds.

`machines(industry, devices)` makes the machines (`devices` of each kind of the industry, or of
every industry for `all`), named and seeded the same way every time: device `loom-01` is always
the OPC UA object `Loom1` with seed 1 (plus the scenario's seed). `simulators.workshop` serves them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simulators.chemicals import BatchReactor, DistillationColumn
from simulators.drying_oven import VacuumDryingOven
from simulators.equipment import Machine, camel
from simulators.food import FillingLine
from simulators.loom import AirJetLoom
from simulators.new_materials import ElectrodeCoatingLine
from simulators.nonferrous import CopperRodLine
from simulators.power import CableExtrusionLine, CoilWindingMachine, TransformerTestBench
from simulators.textiles import RingSpinningFrame


@dataclass(frozen=True)
class Industry:
    name: str
    label: str  # zh-CN
    english: str
    enterprise: str  # a plausible enterprise name for demos
    kinds: tuple[type[Machine], ...]


INDUSTRY_LIST: tuple[Industry, ...] = (
    Industry("textiles", "纺织", "textiles", "昌吉某纺织有限公司", (AirJetLoom, RingSpinningFrame)),
    Industry("power", "电力装备", "power equipment", "昌吉某电气设备有限公司",
             (CoilWindingMachine, VacuumDryingOven, CableExtrusionLine, TransformerTestBench)),
    Industry("chemicals", "现代化工", "modern chemicals", "昌吉某化工有限公司", (BatchReactor, DistillationColumn)),
    Industry("nonferrous", "有色金属", "non-ferrous metals", "昌吉某铜业有限公司", (CopperRodLine,)),
    Industry("food", "食品", "food", "昌吉某食品有限公司", (FillingLine,)),
    Industry("new_materials", "新材料", "new materials", "昌吉某新能源材料有限公司", (ElectrodeCoatingLine,)),
)  # fmt: skip
BY_NAME = {i.name: i for i in INDUSTRY_LIST}
INDUSTRIES: tuple[str, ...] = (*BY_NAME, "all")
KINDS: dict[str, type[Machine]] = {cls.kind: cls for i in INDUSTRY_LIST for cls in i.kinds}
# the protocol a plant usually reads each kind of machine with (the demo's mixed workshop)
USUAL_PROTOCOL: dict[str, str] = {
    "air_jet_loom": "modbus", "ring_spinning_frame": "modbus", "coil_winding_machine": "modbus",
    "vacuum_drying_oven": "opcua", "cable_extrusion_line": "opcua", "transformer_test_bench": "modbus",
    "batch_reactor": "opcua", "distillation_column": "opcua", "copper_rod_line": "opcua", "filling_line": "modbus",
    "electrode_coating_line": "opcua",
}  # fmt: skip


def check_industry(industry: str) -> None:
    if industry not in INDUSTRIES:
        raise ValueError(f"unknown industry {industry!r} (one of {', '.join(INDUSTRIES)})")


def kinds_of(industry: str) -> tuple[type[Machine], ...]:
    check_industry(industry)
    if industry == "all":
        return tuple(cls for i in INDUSTRY_LIST for cls in i.kinds)
    return BY_NAME[industry].kinds


@dataclass
class Planned:
    """A machine of a simulated plant with the device id and name it gets in the config."""

    device_id: str
    name: str
    machine: Machine


def machines(
    industry: str,
    devices: int | Sequence[int] = 1,
    *,
    seed: int = 0,
    machine_options: dict[str, Any] | None = None,
) -> list[Planned]:
    """`devices` machines of each kind of the industry (a list: a count per kind, in order; 0 leaves a
    kind out). Machine i (from 1) of the k-th kind of the whole registry gets seed `seed × 10007 +
    k × 1000 + i`, so loom-01 is seed 1 whatever else the plant holds."""
    kinds = kinds_of(industry)
    counts = [devices] * len(kinds) if isinstance(devices, int) else list(devices)
    if len(counts) != len(kinds):
        raise ValueError(f"{len(counts)} device counts for {len(kinds)} kinds of machine")
    if any(n < 0 for n in counts) or sum(counts) < 1:
        raise ValueError(f"devices must be 1 or more, not {devices}")
    order = list(KINDS.values())
    out = []
    for cls, n in zip(kinds, counts, strict=True):
        k = order.index(cls)
        for i in range(1, n + 1):
            m = cls(f"{camel(cls.prefix)}{i}", f"{cls.label} {i}#", seed * 10007 + k * 1000 + i,
                    **(machine_options or {}))  # fmt: skip
            out.append(Planned(f"{cls.prefix}-{i:02d}", f"{cls.label} {i}# / {cls.english} {i}", m))
    return out
