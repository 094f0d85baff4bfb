"""Modern-chemicals equipment for the OPC UA simulator: a batch reactor and a distillation column.

Ranges follow shared/DOMAIN.md. Run states everywhere: 0 idle, 1 running, 2 fault, 3 setup,
4 planned stop. Models are seeded and step with the time passed in, so tests can freeze them.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from simulators.stepping import SteppedModel

IDLE, RUNNING, FAULT, SETUP, PLANNED_STOP = 0, 1, 2, 3, 4
STATES = {"running": [RUNNING], "idle": [IDLE], "fault": [FAULT], "setup": [SETUP], "planned_stop": [PLANNED_STOP]}

# batch phases of the reactor, with their nominal length in seconds
CHARGE, HEAT, REACT, COOL, DISCHARGE, CIP = range(6)
PHASE_NAMES = ("charge", "heat", "react", "cool", "discharge", "CIP")
PHASE_SECONDS = (240.0, 480.0, 900.0, 480.0, 240.0, 300.0)


def _tag(
    name: str, type_: str, unit: str | None, lo: float | None, hi: float | None, desc: str, domain: str
) -> dict[str, Any]:
    rng = None if lo is None else (lo, hi)
    return {"name": name, "type": type_, "unit": unit, "range": rng, "description": desc, "domain": domain}


REACTOR_TAGS: list[dict[str, Any]] = [
    _tag("Temperature", "Double", "°C", 20, 200, "zone temperature 釜内温度", "equipment"),
    _tag("WallTemperature", "Double", "°C", 20, 200, "wall temperature 釜壁温度", "equipment"),
    _tag("JacketTemperature", "Double", "°C", 10, 220, "jacket temperature 夹套温度", "equipment"),
    _tag("TemperatureSetpoint", "Double", "°C", 20, 200, "temperature setpoint 温度设定值", "production"),
    _tag("Pressure", "Double", "MPa", 0, 2.5, "vessel pressure 釜压", "safety"),
    _tag("AgitatorSpeed", "Double", "r/min", 30, 300, "agitator speed 搅拌转速", "equipment"),
    _tag("Level", "Float", "%", 0, 100, "level 液位", "production"),
    _tag("FeedFlow", "Double", "m³/h", 0, 20, "feed flow 进料流量", "production"),
    _tag("Phase", "Int32", None, None, None, "0 charge 1 heat 2 react 3 cool 4 discharge 5 CIP 批次阶段", "production"),
    _tag(
        "RunState", "Int32", None, None, None, "0 idle 1 running 2 fault 3 setup 4 planned stop 运行状态", "equipment"
    ),
    _tag("BatchCount", "UInt32", None, None, None, "batches completed 完成批次", "production"),
    _tag("BatchesOffSpec", "UInt32", None, None, None, "batches off spec 不合格批次", "quality"),
    _tag("HighTemperatureAlarm", "Boolean", None, None, None, "high temperature alarm 超温报警", "safety"),
    _tag("Recipe", "String", None, None, None, "recipe 配方", "production"),
    _tag("PowerKw", "Double", "kW", 0, 200, "active power 有功功率", "energy"),
    _tag("EnergyKwh", "Double", "kWh", None, None, "active energy 有功电能", "energy"),
]

COLUMN_TAGS: list[dict[str, Any]] = [
    _tag("TopTemperature", "Double", "°C", 60, 100, "top temperature 塔顶温度", "equipment"),
    _tag("BottomTemperature", "Double", "°C", 90, 130, "bottom temperature 塔釜温度", "equipment"),
    _tag("DifferentialPressure", "Double", "kPa", 0, 40, "column ΔP 塔压差", "equipment"),
    _tag("RefluxRatio", "Double", None, 1, 10, "reflux ratio 回流比", "production"),
    _tag("RefluxFlow", "Double", "m³/h", 0, 30, "reflux flow 回流量", "production"),
    _tag("FeedFlow", "Double", "m³/h", 0, 20, "feed flow 进料量", "production"),
    _tag("ReboilerSteam", "Double", "t/h", 0, 10, "reboiler steam 再沸器蒸汽量", "energy"),
    _tag("SumpLevel", "Float", "%", 0, 100, "sump level 塔釜液位", "production"),
    _tag("ProductTotal", "Double", "t", None, None, "distillate since commissioning 累计产量", "production"),
    _tag(
        "RunState", "Int32", None, None, None, "0 idle 1 running 2 fault 3 setup 4 planned stop 运行状态", "equipment"
    ),
    _tag("PowerKw", "Double", "kW", 0, 300, "active power 有功功率", "energy"),
    _tag("EnergyKwh", "Double", "kWh", None, None, "active energy 有功电能", "energy"),
]


def _approach(value: float, target: float, dt: float, tau: float) -> float:
    """First-order lag towards `target` with time constant `tau` seconds."""
    if tau <= 0:
        return target
    k = min(1.0, dt / tau)
    return value + (target - value) * k


class BatchReactor(SteppedModel):
    """A jacketed batch reactor cycling charge → heat → react → cool → discharge (CIP every 5th)."""

    kind = "batch_reactor"
    oee: ClassVar[dict[str, Any]] = {
        "state_tag": "run_state",
        "states": STATES,
        "total_count_tag": "batch_count",
        "reject_count_tag": "batches_off_spec",
        "ideal_cycle_time": "44m",
    }

    def __init__(
        self,
        name: str = "Reactor1",
        display_name: str = "反应釜 1#",
        seed: int = 1,
        setpoint: float = 150.0,
        fault_chance: float = 0.03,
    ) -> None:
        self.name, self.display_name = name, display_name
        self._rng = random.Random(seed)
        self.setpoint = setpoint
        self.fault_chance = fault_chance
        self.phase = self._rng.choice((CHARGE, HEAT, REACT))
        self.run_state = RUNNING
        self.temperature = 25.0 if self.phase == CHARGE else setpoint * 0.9
        self.wall = self.jacket = self.temperature
        self.pressure = 0.1
        self.level = 40.0
        self.agitator = 120.0
        self.feed = 0.0
        self.batches = self._rng.randint(100, 900)
        self.off_spec = self.batches // 40
        self.energy = self._rng.uniform(20_000.0, 80_000.0)
        self.power = 0.0
        self._max_dev = 0.0  # largest deviation from the setpoint during react
        self._left = PHASE_SECONDS[self.phase] * self._rng.uniform(0.2, 1.0)

    @property
    def tags(self) -> list[dict[str, Any]]:
        return REACTOR_TAGS

    def _advance(self, dt: float) -> None:
        rng = self._rng
        self._left -= dt
        if self.run_state == FAULT:
            self.agitator = _approach(self.agitator, 0.0, dt, 5.0)
            self.power = 3.0
            self.temperature = _approach(self.temperature, 25.0, dt, 3000.0)
            if self._left <= 0:
                self.run_state, self._left = RUNNING, PHASE_SECONDS[self.phase] * 0.5
        else:
            self._run_phase(dt)
            if self._left <= 0:
                self._next_phase()
        self.wall = self.temperature + (self.jacket - self.temperature) * 0.3 + rng.gauss(0.0, 0.15)
        self.energy += self.power * dt / 3600.0

    def _run_phase(self, dt: float) -> None:
        rng, p = self._rng, self.phase
        target_t = {CHARGE: 25.0, HEAT: self.setpoint, REACT: self.setpoint, COOL: 40.0, DISCHARGE: 40.0, CIP: 70.0}[p]
        self.jacket = _approach(self.jacket, target_t + (30.0 if p == HEAT else -25.0 if p == COOL else 0.0), dt, 30)
        tau = 20.0 if p == REACT else 180.0
        self.temperature = _approach(self.temperature, target_t, dt, tau) + rng.gauss(0.0, 0.05 if p == REACT else 0.1)
        if p == REACT:
            self.temperature = min(self.setpoint + 1.0, max(self.setpoint - 1.0, self.temperature))  # PID ± 1 °C
            self._max_dev = max(self._max_dev, abs(self.temperature - self.setpoint))
        self.feed = 12.0 + rng.gauss(0.0, 0.3) if p == CHARGE else 0.0
        if p == CHARGE:
            self.level = min(85.0, self.level + self.feed / 3600.0 * dt * 120.0)
        elif p == DISCHARGE:
            self.level = max(0.0, self.level - dt * 85.0 / PHASE_SECONDS[DISCHARGE])
        self.level = min(100.0, max(0.0, self.level))
        self.pressure = max(0.0, 0.1 + max(0.0, self.temperature - 100.0) / 100.0 * 1.4 + rng.gauss(0.0, 0.01))
        target_rpm = 30.0 if p in (CHARGE, DISCHARGE) else 60.0 if p == CIP else 180.0
        self.agitator = min(300.0, max(30.0, _approach(self.agitator, target_rpm, dt, 10.0) + rng.gauss(0.0, 0.5)))
        self.power = 8.0 + self.agitator * 0.12 + (60.0 if p == HEAT else 15.0 if p == REACT else 0.0)
        if p == REACT and rng.random() < self.fault_chance * dt / PHASE_SECONDS[REACT]:
            self.run_state, self._left = FAULT, rng.uniform(60.0, 300.0)

    def _next_phase(self) -> None:
        if self.phase == HEAT and self.temperature < self.setpoint - 1.0:
            self._left = 10.0  # heat-up ends when the setpoint is reached, not on the clock
            return
        if self.phase == DISCHARGE:
            self.batches += 1
            if self._max_dev > 0.95 or self._rng.random() < 0.03:
                self.off_spec += 1
            self._max_dev = 0.0
            self.phase = CIP if self.batches % 5 == 0 else CHARGE
        elif self.phase == CIP:
            self.phase = CHARGE
        else:
            self.phase += 1
        self.run_state = SETUP if self.phase == CIP else RUNNING
        self._left = PHASE_SECONDS[self.phase] * self._rng.uniform(0.9, 1.1)

    def values(self) -> dict[str, Any]:
        return {
            "Temperature": round(self.temperature, 2),
            "WallTemperature": round(self.wall, 2),
            "JacketTemperature": round(self.jacket, 2),
            "TemperatureSetpoint": self.setpoint,
            "Pressure": round(self.pressure, 3),
            "AgitatorSpeed": round(self.agitator, 1),
            "Level": round(self.level, 1),
            "FeedFlow": round(self.feed, 2),
            "Phase": self.phase,
            "RunState": self.run_state,
            "BatchCount": self.batches,
            "BatchesOffSpec": self.off_spec,
            "HighTemperatureAlarm": self.temperature > self.setpoint + 5.0,
            "Recipe": "PVA-1788",
            "PowerKw": round(self.power, 2),
            "EnergyKwh": round(self.energy, 3),
        }


class DistillationColumn(SteppedModel):
    """A continuous column: top/bottom temperatures, ΔP, reflux, steam; drifts, with rare upsets."""

    kind = "distillation_column"
    oee: ClassVar[dict[str, Any]] = {"state_tag": "run_state", "states": STATES}

    def __init__(self, name: str = "Column1", display_name: str = "精馏塔 1#", seed: int = 2) -> None:
        self.name, self.display_name = name, display_name
        self._rng = random.Random(seed)
        self.run_state = RUNNING
        self.top, self.bottom = 78.3, 102.0
        self.dp = 12.0
        self.reflux_ratio = 3.5
        self.feed = 8.0
        self.steam = 2.4
        self.level = 55.0
        self.product = self._rng.uniform(5_000.0, 20_000.0)
        self.energy = self._rng.uniform(50_000.0, 150_000.0)
        self.power = 0.0
        self._upset = 0.0  # seconds left of a feed upset

    @property
    def tags(self) -> list[dict[str, Any]]:
        return COLUMN_TAGS

    def _advance(self, dt: float) -> None:
        rng = self._rng
        if self._upset > 0:
            self._upset -= dt
        elif rng.random() < dt / 3600.0:
            self._upset = rng.uniform(120.0, 600.0)
        feed_target = 5.0 if self._upset > 0 else 8.0
        self.feed = max(0.0, _approach(self.feed, feed_target, dt, 60.0) + rng.gauss(0.0, 0.05))
        self.steam = max(0.0, _approach(self.steam, self.feed * 0.3, dt, 120.0) + rng.gauss(0.0, 0.01))
        self.reflux_ratio = min(10.0, max(1.0, _approach(self.reflux_ratio, 3.5, dt, 600.0) + rng.gauss(0.0, 0.01)))
        self.top = _approach(self.top, 78.3 + (1.5 if self._upset > 0 else 0.0), dt, 90.0) + rng.gauss(0.0, 0.05)
        self.bottom = _approach(self.bottom, 100.0 + self.steam * 1.0, dt, 120.0) + rng.gauss(0.0, 0.08)
        self.dp = max(0.0, _approach(self.dp, 5.0 + self.steam * 3.0, dt, 30.0) + rng.gauss(0.0, 0.1))
        self.level = min(100.0, max(0.0, self.level + rng.gauss(0.0, 0.2) + (50.0 - self.level) * 0.01 * dt))
        distillate = self.feed * 0.8 / (1.0 + self.reflux_ratio) * 4.0  # t/h, roughly
        self.product += distillate * dt / 3600.0
        self.power = 40.0 + self.feed * 6.0 + rng.gauss(0.0, 1.0)
        self.energy += self.power * dt / 3600.0

    def values(self) -> dict[str, Any]:
        return {
            "TopTemperature": round(self.top, 2),
            "BottomTemperature": round(self.bottom, 2),
            "DifferentialPressure": round(self.dp, 2),
            "RefluxRatio": round(self.reflux_ratio, 2),
            "RefluxFlow": round(self.feed * 0.8 * self.reflux_ratio / (1.0 + self.reflux_ratio), 2),
            "FeedFlow": round(self.feed, 2),
            "ReboilerSteam": round(self.steam, 3),
            "SumpLevel": round(self.level, 1),
            "ProductTotal": round(self.product, 3),
            "RunState": self.run_state,
            "PowerKw": round(self.power, 2),
            "EnergyKwh": round(self.energy, 3),
        }
