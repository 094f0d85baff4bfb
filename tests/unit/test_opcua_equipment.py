"""Chemicals and power equipment models: values stay in their engineering ranges, batches progress."""

from __future__ import annotations

from typing import Any

import pytest

from edge_config.models import OpcUaDevice
from simulators.chemicals import CIP, REACT, BatchReactor, DistillationColumn
from simulators.drying_oven import DRY, VacuumDryingOven
from simulators.opcua_server import UNITS, eu_information, unece_unit_id
from simulators.registry import opcua_equipment, opcua_simulated_devices

HOURS = 6


def run(model: Any, hours: float, step: float = 5.0) -> list[dict[str, Any]]:
    seen = []
    t = 1000.0
    model.step(t)
    for _ in range(int(hours * 3600 / step)):
        t += step
        model.step(t)
        seen.append(dict(model.values()))
    return seen


def in_range(model: Any, seen: list[dict[str, Any]]) -> None:
    for tag in model.tags:
        if tag["range"] is None:
            continue
        lo, hi = tag["range"]
        values = [s[tag["name"]] for s in seen]
        assert lo - 1e-9 <= min(values) and max(values) <= hi + 1e-9, (tag["name"], min(values), max(values))


def test_batch_reactor_cycles_and_stays_in_range() -> None:
    r = BatchReactor(seed=4)
    seen = run(r, HOURS)
    in_range(r, seen)
    assert seen[-1]["BatchCount"] - seen[0]["BatchCount"] >= 5  # a batch takes about 40 minutes
    assert {s["Phase"] for s in seen} == set(range(6))  # every phase, CIP included
    react = [s["Temperature"] for s in seen if s["Phase"] == REACT and s["RunState"] == 1]
    assert react and max(abs(t - r.setpoint) for t in react[5:]) <= 1.0  # PID holds ± 1 °C
    assert any(s["RunState"] == 3 for s in seen if s["Phase"] == CIP)  # CIP counts as setup
    energy = [s["EnergyKwh"] for s in seen]
    assert energy == sorted(energy)


def test_distillation_column_is_continuous() -> None:
    c = DistillationColumn(seed=5)
    seen = run(c, HOURS)
    in_range(c, seen)
    product = [s["ProductTotal"] for s in seen]
    assert product == sorted(product) and product[-1] > product[0]
    assert all(s["TopTemperature"] < s["BottomTemperature"] for s in seen)


def test_vacuum_oven_pulls_a_deep_vacuum_and_extracts_water() -> None:
    o = VacuumDryingOven(seed=6)
    seen = run(o, HOURS)
    in_range(o, seen)
    dry = [s for s in seen if s["Phase"] == DRY]
    assert dry and min(s["VacuumPressure"] for s in dry) <= 50.0
    assert max(s["Temperature"] for s in seen) <= 130.0
    assert max(s["WaterExtracted"] for s in seen) > 30.0
    assert seen[-1]["BatchCount"] > seen[0]["BatchCount"]


def test_models_are_deterministic() -> None:
    assert run(BatchReactor(seed=9), 0.5) == run(BatchReactor(seed=9), 0.5)


@pytest.mark.parametrize(("code", "unit_id"), [("CEL", 4408652), ("MPA", 5066817), ("P1", 20529)])
def test_unece_unit_ids(code: str, unit_id: int) -> None:
    assert unece_unit_id(code) == unit_id


def test_every_unit_used_has_a_unece_code() -> None:
    for eq in opcua_equipment("chemicals", 1) + opcua_equipment("power", 1):
        for tag in eq.tags:
            if tag["unit"]:
                assert tag["unit"] in UNITS, tag
    eu = eu_information("°C")
    assert (eu.UnitId, eu.DisplayName.Text) == (4408652, "°C")


@pytest.mark.parametrize(("industry", "ids"), [("chemicals", ["reactor-01", "reactor-02", "column-01"]),
                                               ("power", ["oven-01", "oven-02"])])  # fmt: skip
def test_registry_device_configs_validate(industry: str, ids: list[str]) -> None:
    devices = [OpcUaDevice.model_validate(d) for d in opcua_simulated_devices(industry, 2, "127.0.0.1", 4840)]
    assert [d.id for d in devices] == ids
    assert all(d.connection.endpoint == "opc.tcp://127.0.0.1:4840" for d in devices)
    first = devices[0]
    assert first.oee is not None and first.oee.state_tag == "run_state"
    assert {t.name for t in first.tags} >= {"temperature", "run_state", "batch_count", "energy_kwh"}
