"""Power-equipment vacuum drying oven (真空干燥罐 for transformer/motor windings) for the OPC UA simulator.

A batch: load → preheat to ≈105 °C at atmospheric pressure → evacuate from 10⁵ Pa down to a few Pa
→ dry under vacuum (water extracted grows, ever slower) → vent and cool → unload. Temperature stays
≤ 130 °C. Run states: 0 idle, 1 running, 2 fault, 3 setup, 4 planned stop.
"""

from __future__ import annotations

import math
import random
from typing import Any, ClassVar

from simulators.stepping import SteppedModel

IDLE, RUNNING, FAULT, SETUP, PLANNED_STOP = 0, 1, 2, 3, 4
LOAD, PREHEAT, EVACUATE, DRY, VENT, UNLOAD = range(6)
PHASE_NAMES = ("load", "preheat", "evacuate", "dry", "vent", "unload")
PHASE_SECONDS = (300.0, 1200.0, 600.0, 2400.0, 600.0, 300.0)
ATMOSPHERE_PA = 101_325.0


def _tag(
    name: str, type_: str, unit: str | None, lo: float | None, hi: float | None, desc: str, domain: str
) -> dict[str, Any]:
    rng = None if lo is None else (lo, hi)
    return {"name": name, "type": type_, "unit": unit, "range": rng, "description": desc, "domain": domain}


OVEN_TAGS: list[dict[str, Any]] = [
    _tag("Temperature", "Double", "°C", 0, 130, "tank temperature 罐内温度", "equipment"),
    _tag("TemperatureSetpoint", "Double", "°C", 0, 130, "temperature setpoint 温度设定值", "production"),
    _tag("VacuumPressure", "Double", "Pa", 1, 110000, "absolute pressure 真空度（绝压）", "equipment"),
    _tag("WaterExtracted", "Double", "kg", 0, 500, "water extracted this batch 本批出水量", "quality"),
    _tag(
        "Phase", "Int32", None, None, None, "0 load 1 preheat 2 evacuate 3 dry 4 vent 5 unload 批次阶段", "production"
    ),
    _tag(
        "RunState", "Int32", None, None, None, "0 idle 1 running 2 fault 3 setup 4 planned stop 运行状态", "equipment"
    ),
    _tag("BatchCount", "UInt32", None, None, None, "batches completed 完成批次", "production"),
    _tag("RecipeMinutesLeft", "Int32", "min", 0, 600, "recipe time remaining 剩余工艺时间", "production"),
    _tag("DoorClosed", "Boolean", None, None, None, "door closed and locked 罐门已锁紧", "safety"),
    _tag("HeaterPowerKw", "Double", "kW", 0, 150, "heater power 加热功率", "energy"),
    _tag("EnergyKwh", "Double", "kWh", None, None, "active energy 有功电能", "energy"),
]


class VacuumDryingOven(SteppedModel):
    kind = "vacuum_drying_oven"
    oee: ClassVar[dict[str, Any]] = {
        "state_tag": "run_state",
        "states": {
            "running": [RUNNING],
            "idle": [IDLE],
            "fault": [FAULT],
            "setup": [SETUP],
            "planned_stop": [PLANNED_STOP],
        },
        "total_count_tag": "batch_count",
        "ideal_cycle_time": "95m",
    }

    def __init__(
        self,
        name: str = "Oven1",
        display_name: str = "真空干燥罐 1#",
        seed: int = 3,
        setpoint: float = 105.0,
        water_kg: float = 60.0,
    ) -> None:
        self.name, self.display_name = name, display_name
        self._rng = random.Random(seed)
        self.setpoint = setpoint
        self.water_total = water_kg
        self.phase = self._rng.choice((PREHEAT, DRY))
        self.run_state = RUNNING
        self.temperature = 60.0 if self.phase == PREHEAT else setpoint
        self.pressure = ATMOSPHERE_PA if self.phase == PREHEAT else 200.0
        self.water = 0.0 if self.phase == PREHEAT else water_kg * 0.4
        self.batches = self._rng.randint(20, 300)
        self.heater = 0.0
        self.energy = self._rng.uniform(10_000.0, 60_000.0)
        self._left = PHASE_SECONDS[self.phase] * self._rng.uniform(0.3, 1.0)

    @property
    def tags(self) -> list[dict[str, Any]]:
        return OVEN_TAGS

    def _advance(self, dt: float) -> None:
        rng, p = self._rng, self.phase
        self._left -= dt
        heating = p in (PREHEAT, EVACUATE, DRY)
        target = self.setpoint if heating else 40.0
        tau = 400.0 if heating else 900.0
        self.temperature = min(130.0, self.temperature + (target - self.temperature) * min(1.0, dt / tau))
        self.temperature += rng.gauss(0.0, 0.05)
        if p == EVACUATE:
            self.pressure = max(20.0, self.pressure * math.exp(-dt / 60.0))
        elif p == DRY:
            self.pressure = max(1.0, self.pressure * math.exp(-dt / 600.0) + rng.gauss(0.0, 0.2))
            left = self.water_total - self.water
            self.water += left * (1.0 - math.exp(-dt / 900.0))
        elif p in (VENT, UNLOAD, LOAD):
            self.pressure = min(ATMOSPHERE_PA, self.pressure + (ATMOSPHERE_PA - self.pressure) * min(1.0, dt / 30.0))
        self.heater = (90.0 if self.temperature < self.setpoint - 2 else 25.0) if heating else 0.0
        self.energy += (self.heater + 5.0) * dt / 3600.0
        if self._left <= 0:
            self._next_phase()

    def _next_phase(self) -> None:
        if self.phase == UNLOAD:
            self.batches += 1
            self.water = 0.0
            self.phase = LOAD
        else:
            self.phase += 1
        self.run_state = SETUP if self.phase in (LOAD, UNLOAD) else RUNNING
        self._left = PHASE_SECONDS[self.phase] * self._rng.uniform(0.9, 1.1)

    def values(self) -> dict[str, Any]:
        remaining = self._left + sum(PHASE_SECONDS[self.phase + 1 : UNLOAD + 1])
        return {
            "Temperature": round(self.temperature, 2),
            "TemperatureSetpoint": self.setpoint,
            "VacuumPressure": round(self.pressure, 1),
            "WaterExtracted": round(self.water, 2),
            "Phase": self.phase,
            "RunState": self.run_state,
            "BatchCount": self.batches,
            "RecipeMinutesLeft": max(0, int(remaining // 60)),
            "DoorClosed": self.phase not in (LOAD, UNLOAD),
            "HeaterPowerKw": round(self.heater, 1),
            "EnergyKwh": round(self.energy, 3),
        }
