"""Power-equipment vacuum drying oven (真空干燥罐 for transformer/motor windings).

A batch: load (setup) → preheat to ≈105 °C at atmospheric pressure → evacuate from 10⁵ Pa down to a
few Pa → dry under vacuum (water extracted grows, ever slower) → vent and cool → unload (setup).
Temperature stays ≤ 130 °C. A stop pauses the recipe: the vacuum leaks back, the load cools. A batch
whose drying was interrupted by a vacuum fault, or 2 % at random, fails the end-point check.
Run states: 0 idle, 1 running, 2 fault, 3 setup, 4 planned stop.
"""

from __future__ import annotations

import math
from typing import Any

from simulators.equipment import (
    FAULT,
    IDLE,
    PLANNED_STOP,
    RUNNING,
    SETUP,
    Machine,
    Profile,
    Signal,
    Stop,
    counter_signal,
    oee_settings,
    run_state_signal,
)

__all__ = ["DRY", "PHASE_NAMES", "VacuumDryingOven"]

LOAD, PREHEAT, EVACUATE, DRY, VENT, UNLOAD = range(6)
PHASE_NAMES = ("load", "preheat", "evacuate", "dry", "vent", "unload")
PHASE_SECONDS = (300.0, 1200.0, 600.0, 2400.0, 600.0, 300.0)
ATMOSPHERE_PA = 101_325.0


class VacuumDryingOven(Machine):
    kind = "vacuum_drying_oven"
    label = "真空干燥罐"
    english = "vacuum drying oven"
    prefix = "oven"
    SIGNALS = (
        Signal("temperature", "int16", "°C", 0, 130, "equipment", "tank temperature 罐内温度", scale=0.01),
        Signal("temperature_setpoint", "int16", "°C", 0, 130, "production", "temperature setpoint 温度设定值",
               scale=0.1),
        Signal("vacuum_pressure", "float32", "Pa", 1, 110000, "equipment", "absolute pressure 真空度（绝压）",
               resolution=0.1),
        Signal("water_extracted", "uint16", "kg", 0, 500, "quality", "water extracted this batch 本批出水量",
               scale=0.01),
        Signal("phase", "uint16", None, 0, 5, "production",
               "0 load 1 preheat 2 evacuate 3 dry 4 vent 5 unload 批次阶段"),
        run_state_signal(),
        counter_signal("batch_count", "batches", "batches completed 完成批次"),
        counter_signal("batches_rejected", "batches", "batches failing the end point 不合格批次", domain="quality"),
        Signal("recipe_minutes_left", "uint16", "min", 0, 600, "production", "recipe time remaining 剩余工艺时间"),
        Signal("door_closed", "bool", domain="safety", description="door closed and locked 罐门已锁紧"),
        Signal("heater_power_kw", "uint16", "kW", 0, 150, "energy", "heater power 加热功率", scale=0.1),
    )  # fmt: skip
    PROFILE = Profile(
        20000.0,
        (
            Stop("pump_trip", FAULT, 0.3, (30.0, 100.0)),
            Stop("vacuum_leak", FAULT, 0.25, (600.0, 1800.0)),
            Stop("door_interlock", IDLE, 0.25, (20.0, 90.0)),
            Stop("maintenance", PLANNED_STOP, 0.2, (3600.0, 7200.0)),
        ),
    )
    METER_CT = 40  # its meter sits behind 200/5 A current transformers
    OEE = oee_settings("batch_count", reject="batches_rejected", ideal="95m")
    REJECT_RATIO = 0.02

    def __init__(self, name: str = "", display_name: str = "", seed: int = 3, *, setpoint: float = 105.0,
                 water_kg: float = 60.0, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(name, display_name, seed, **kwargs)
        rng = self.rng
        self.setpoint = setpoint
        self.water_total = water_kg
        self.phase = rng.choice((PREHEAT, DRY))
        self.temperature = 60.0 if self.phase == PREHEAT else setpoint
        self.pressure = ATMOSPHERE_PA if self.phase == PREHEAT else 200.0
        self.water = 0.0 if self.phase == PREHEAT else water_kg * 0.4
        self.heater = 0.0
        self.interrupted = False
        self.counters["batch_count"].total = float(rng.randint(20, 300))
        self.left = PHASE_SECONDS[self.phase] * rng.uniform(0.3, 1.0)

    def _stopped(self, cause: str) -> None:
        if cause == "vacuum_leak" and self.phase == DRY:
            self.interrupted = True

    def _advance(self, dt: float) -> None:
        rng, sm, p = self.rng, self.sm, self.phase
        running = sm.state == RUNNING
        loading = sm.state == SETUP and sm.cause in ("load", "unload")
        if running:
            self.left -= dt
        heating = running and p in (PREHEAT, EVACUATE, DRY)
        target = self.setpoint if heating else 40.0 if p in (VENT, UNLOAD, LOAD) else self.temperature - 5.0
        tau = 400.0 if heating else 900.0
        self.temperature = min(130.0, self.temperature + (target - self.temperature) * min(1.0, dt / tau))
        self.temperature += rng.gauss(0.0, 0.05)
        if running and p == EVACUATE:
            self.pressure = max(20.0, self.pressure * math.exp(-dt / 60.0))
        elif running and p == DRY:
            self.pressure = max(1.0, self.pressure * math.exp(-dt / 600.0) + rng.gauss(0.0, 0.2))
            self.water += (self.water_total - self.water) * (1.0 - math.exp(-dt / 900.0))
        elif p in (VENT, UNLOAD, LOAD):
            self.pressure = min(ATMOSPHERE_PA, self.pressure + (ATMOSPHERE_PA - self.pressure) * min(1.0, dt / 30.0))
        elif not running:  # a stop under vacuum: the tank leaks back slowly
            self.pressure = min(ATMOSPHERE_PA, self.pressure * math.exp(dt / 900.0))
        self.heater = (90.0 if self.temperature < self.setpoint - 2 else 25.0) if heating else 0.0
        if running and self.left <= 0:
            self._next_phase()
        elif not loading and p in (LOAD, UNLOAD) and running:
            self._next_phase()  # loading (setup) is over

    def _next_phase(self) -> None:
        rng, sm = self.rng, self.sm
        if self.phase == UNLOAD:
            if self.interrupted and not sm.scripted:
                self.counters["batch_count"].total += 1
                self.counters["batches_rejected"].total += 1
            else:
                self.produce_one("batch_count", reject="batches_rejected")
            self.interrupted = False
            self.water = 0.0
            self.phase = LOAD
        else:
            self.phase += 1
        self.left = PHASE_SECONDS[self.phase] * rng.uniform(0.9, 1.1)
        if self.phase in (LOAD, UNLOAD):
            sm.enter(SETUP, self.left, PHASE_NAMES[self.phase])

    def _load(self) -> tuple[float, float]:
        pumps = 7.5 if self.phase in (EVACUATE, DRY) and self.sm.state == RUNNING else 0.0
        return self.heater + pumps + 3.0 + self.rng.gauss(0.0, 0.05), 0.95 if self.heater else 0.6

    def _values(self) -> dict[str, Any]:
        remaining = max(0.0, self.left) + sum(PHASE_SECONDS[self.phase + 1 : UNLOAD + 1])
        return {
            "temperature": self.temperature,
            "temperature_setpoint": self.setpoint,
            "vacuum_pressure": self.pressure,
            "water_extracted": self.water,
            "phase": self.phase,
            "recipe_minutes_left": int(remaining // 60),
            "door_closed": self.phase not in (LOAD, UNLOAD),
            "heater_power_kw": self.heater,
        }
