"""Modern-chemicals equipment: a batch reactor with recipe phases and a distillation column.

Ranges follow shared/DOMAIN.md. Run states everywhere: 0 idle, 1 running, 2 fault, 3 setup,
4 planned stop. Models are seeded and step with the time passed in, so tests can freeze them.
"""

from __future__ import annotations

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
    approach,
    counter_signal,
    oee_settings,
    run_state_signal,
)

__all__ = ["CIP", "COLUMN_SIGNALS", "REACT", "REACTOR_SIGNALS", "BatchReactor", "DistillationColumn"]

# batch phases of the reactor, with their nominal length in seconds
CHARGE, HEAT, REACT, COOL, DISCHARGE, CIP = range(6)
PHASE_NAMES = ("charge", "heat", "react", "cool", "discharge", "CIP")
PHASE_SECONDS = (240.0, 480.0, 900.0, 480.0, 240.0, 300.0)


class BatchReactor(Machine):
    """A jacketed batch reactor cycling charge → heat → react → cool → discharge, with cleaning in place
    (setup) after every 5th batch. A stop pauses the recipe (the agitator stops, the batch drifts);
    a batch whose reaction temperature left the setpoint by 0.95 °C or more is off spec."""

    kind = "batch_reactor"
    label = "反应釜"
    english = "batch reactor"
    prefix = "reactor"
    SIGNALS = (
        Signal("temperature", "int16", "°C", 20, 200, "equipment", "zone temperature 釜内温度", scale=0.01),
        Signal("wall_temperature", "int16", "°C", 20, 200, "equipment", "wall temperature 釜壁温度", scale=0.01),
        Signal("jacket_temperature", "int16", "°C", 10, 220, "equipment", "jacket temperature 夹套温度", scale=0.01),
        Signal("temperature_setpoint", "int16", "°C", 20, 200, "production", "temperature setpoint 温度设定值",
               scale=0.1),
        Signal("pressure", "uint16", "MPa", 0, 2.5, "safety", "vessel pressure 釜压", scale=0.001),
        Signal("agitator_speed", "uint16", "r/min", 0, 300, "equipment", "agitator speed 搅拌转速", scale=0.1),
        Signal("level", "uint16", "%", 0, 100, "production", "level 液位", scale=0.1),
        Signal("feed_flow", "uint16", "m³/h", 0, 20, "production", "feed flow 进料流量", scale=0.01),
        Signal("phase", "uint16", None, 0, 5, "production",
               "0 charge 1 heat 2 react 3 cool 4 discharge 5 CIP 批次阶段"),
        run_state_signal(),
        counter_signal("batch_count", "batches", "batches completed 完成批次"),
        counter_signal("batches_off_spec", "batches", "batches off spec 不合格批次", domain="quality"),
        Signal("high_temperature_alarm", "bool", domain="safety", description="high temperature alarm 超温报警"),
        Signal("recipe", "string", domain="production", description="recipe 配方", length=4),
    )  # fmt: skip
    PROFILE = Profile(
        6 * 3600.0,
        (
            Stop("agitator_trip", FAULT, 0.3, (60.0, 300.0)),
            Stop("cooling_water_low", IDLE, 0.3, (20.0, 100.0)),
            Stop("seal_leak", FAULT, 0.1, (1800.0, 5400.0)),
            Stop("waiting_for_material", IDLE, 0.2, (300.0, 1200.0)),
            Stop("maintenance", PLANNED_STOP, 0.1, (7200.0, 14400.0)),
        ),
    )
    METER_CT = 20  # its meter sits behind 100/5 A current transformers
    OEE = oee_settings("batch_count", reject="batches_off_spec", ideal="44m")
    REJECT_RATIO = 0.03

    def __init__(self, name: str = "", display_name: str = "", seed: int = 1, *, setpoint: float = 150.0,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(name, display_name, seed, **kwargs)
        rng = self.rng
        self.setpoint = setpoint
        self.phase = rng.choice((CHARGE, HEAT, REACT))
        self.temperature = 25.0 if self.phase == CHARGE else setpoint * 0.9
        self.wall = self.jacket = self.temperature
        self.pressure = 0.1
        self.level = 40.0
        self.agitator = 120.0
        self.feed = 0.0
        self.max_dev = 0.0  # largest deviation from the setpoint during react
        self.counters["batch_count"].total = float(rng.randint(100, 900))
        self.counters["batches_off_spec"].total = float(int(self.counters["batch_count"].total) // 40)
        self.left = PHASE_SECONDS[self.phase] * rng.uniform(0.2, 1.0)

    @property
    def batches(self) -> int:
        return int(self.counters["batch_count"].total)

    def _advance(self, dt: float) -> None:
        rng, sm = self.rng, self.sm
        if sm.state == RUNNING or (sm.state == SETUP and sm.cause == "CIP"):
            self.left -= dt
            self._run_phase(dt)
            if self.left <= 0 and sm.state == RUNNING:
                self._next_phase()
        else:  # stopped: the recipe waits
            self.agitator = approach(self.agitator, 0.0, dt, 5.0)
            self.feed = 0.0
            self.temperature = approach(self.temperature, 25.0, dt, 3000.0) + rng.gauss(0.0, 0.03)
            self.jacket = approach(self.jacket, self.temperature, dt, 60.0)
        self.wall = self.temperature + (self.jacket - self.temperature) * 0.3 + rng.gauss(0.0, 0.15)
        self.pressure = max(0.0, 0.1 + max(0.0, self.temperature - 100.0) / 100.0 * 1.4 + rng.gauss(0.0, 0.01))

    def _run_phase(self, dt: float) -> None:
        rng, p = self.rng, self.phase
        target_t = {CHARGE: 25.0, HEAT: self.setpoint, REACT: self.setpoint, COOL: 40.0, DISCHARGE: 40.0, CIP: 70.0}[p]
        self.jacket = approach(self.jacket, target_t + (30.0 if p == HEAT else -25.0 if p == COOL else 0.0), dt, 30)
        tau = 20.0 if p == REACT else 180.0
        self.temperature = approach(self.temperature, target_t, dt, tau) + rng.gauss(0.0, 0.05 if p == REACT else 0.1)
        if p == REACT:
            self.temperature = min(self.setpoint + 1.0, max(self.setpoint - 1.0, self.temperature))  # PID ± 1 °C
            self.max_dev = max(self.max_dev, abs(self.temperature - self.setpoint))
        self.feed = 12.0 + rng.gauss(0.0, 0.3) if p == CHARGE else 0.0
        if p == CHARGE:
            self.level = min(85.0, self.level + self.feed / 3600.0 * dt * 120.0)
        elif p == DISCHARGE:
            self.level = max(0.0, self.level - dt * 85.0 / PHASE_SECONDS[DISCHARGE])
        self.level = min(100.0, max(0.0, self.level))
        target_rpm = 30.0 if p in (CHARGE, DISCHARGE) else 60.0 if p == CIP else 180.0
        self.agitator = min(300.0, max(30.0, approach(self.agitator, target_rpm, dt, 10.0) + rng.gauss(0.0, 0.5)))
        if p == CIP and self.left <= 0:
            self.phase, self.left = CHARGE, PHASE_SECONDS[CHARGE] * rng.uniform(0.9, 1.1)

    def _next_phase(self) -> None:
        rng, sm = self.rng, self.sm
        if self.phase == HEAT and self.temperature < self.setpoint - 1.0:
            self.left = 10.0  # heat-up ends when the setpoint is reached, not on the clock
            return
        if self.phase == DISCHARGE:
            good = self.produce_one("batch_count", reject="batches_off_spec")
            if good and self.max_dev > 0.95 and not sm.scripted:
                self.counters["batches_off_spec"].total += 1
            self.max_dev = 0.0
            self.phase = CIP if self.batches % 5 == 0 else CHARGE
        else:
            self.phase += 1
        self.left = PHASE_SECONDS[self.phase] * rng.uniform(0.9, 1.1)
        if self.phase == CIP:
            sm.enter(SETUP, self.left, "CIP")

    def _load(self) -> tuple[float, float]:
        running = self.sm.state in (RUNNING, SETUP)
        heat = 60.0 if self.phase == HEAT and running else 15.0 if self.phase == REACT and running else 0.0
        return 8.0 + self.agitator * 0.12 + heat + self.rng.gauss(0.0, 0.2), 0.85

    def _values(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "wall_temperature": self.wall,
            "jacket_temperature": self.jacket,
            "temperature_setpoint": self.setpoint,
            "pressure": self.pressure,
            "agitator_speed": self.agitator,
            "level": self.level,
            "feed_flow": self.feed,
            "phase": self.phase,
            "high_temperature_alarm": self.temperature > self.setpoint + 5.0,
            "recipe": "PVA-1788",
        }


class DistillationColumn(Machine):
    """A continuous column: top/bottom temperatures, ΔP, reflux, steam; drifts, with feed upsets. The
    distillate is off spec while the top temperature is 1 °C or more above its normal 78.3 °C."""

    kind = "distillation_column"
    label = "精馏塔"
    english = "distillation column"
    prefix = "column"
    SIGNALS = (
        Signal("top_temperature", "int16", "°C", 20, 100, "equipment", "top temperature 塔顶温度", scale=0.01),
        Signal("bottom_temperature", "int16", "°C", 20, 130, "equipment", "bottom temperature 塔釜温度", scale=0.01),
        Signal("differential_pressure", "uint16", "kPa", 0, 40, "equipment", "column ΔP 塔压差", scale=0.01),
        Signal("reflux_ratio", "uint16", None, 1, 10, "production", "reflux ratio 回流比", scale=0.01),
        Signal("reflux_flow", "uint16", "m³/h", 0, 30, "production", "reflux flow 回流量", scale=0.01),
        Signal("feed_flow", "uint16", "m³/h", 0, 20, "production", "feed flow 进料量", scale=0.01),
        Signal("reboiler_steam", "uint16", "t/h", 0, 10, "energy", "reboiler steam 再沸器蒸汽量", scale=0.001),
        Signal("sump_level", "uint16", "%", 0, 100, "production", "sump level 塔釜液位", scale=0.1),
        run_state_signal(),
        counter_signal("product_kg", "kg", "distillate since commissioning 累计产量"),
        counter_signal("off_spec_kg", "kg", "distillate off spec 不合格产量", domain="quality"),
    )  # fmt: skip
    PROFILE = Profile(
        8 * 3600.0,
        (
            Stop("reflux_drum_high", IDLE, 0.3, (30.0, 110.0)),
            Stop("feed_pump_trip", FAULT, 0.3, (300.0, 1800.0)),
            Stop("grade_change", SETUP, 0.2, (1800.0, 3600.0)),
            Stop("flooding", FAULT, 0.1, (600.0, 2400.0)),
            Stop("shutdown", PLANNED_STOP, 0.1, (4 * 3600.0, 8 * 3600.0)),
        ),
    )
    METER_CT = 20  # its meter sits behind 100/5 A current transformers
    OEE = oee_settings("product_kg", reject="off_spec_kg", ideal="2s")

    def __init__(self, name: str = "", display_name: str = "", seed: int = 2, **kwargs: Any) -> None:
        super().__init__(name, display_name, seed, **kwargs)
        rng = self.rng
        self.top, self.bottom = 78.3, 102.0
        self.dp = 12.0
        self.reflux_ratio = 3.5
        self.feed = 8.0
        self.steam = 2.4
        self.level = 55.0
        self.upset = 0.0  # seconds left of a feed upset
        self.counters["product_kg"].total = rng.uniform(5e6, 2e7)

    def _advance(self, dt: float) -> None:
        rng, sm = self.rng, self.sm
        running = sm.state == RUNNING
        if self.upset > 0:
            self.upset -= dt
        elif running and rng.random() < dt / 3600.0:
            self.upset = rng.uniform(120.0, 600.0)
        feed_target = (5.0 if self.upset > 0 else 8.0) * (sm.rate if sm.scripted else 1.0) if running else 0.0
        self.feed = max(0.0, approach(self.feed, feed_target, dt, 60.0) + (rng.gauss(0.0, 0.05) if running else 0.0))
        steam_target = self.feed * 0.3 if running else 0.4 if sm.state != PLANNED_STOP else 0.0
        self.steam = max(0.0, approach(self.steam, steam_target, dt, 120.0) + rng.gauss(0.0, 0.01))
        self.reflux_ratio = min(10.0, max(1.0, approach(self.reflux_ratio, 3.5, dt, 600.0) + rng.gauss(0.0, 0.01)))
        top_target = 78.3 + (1.5 if self.upset > 0 else 0.0) if self.steam > 0.3 else 40.0
        self.top = approach(self.top, top_target, dt, 90.0) + rng.gauss(0.0, 0.05)
        self.bottom = approach(self.bottom, 100.0 + self.steam * 1.0 if self.steam > 0.3 else 45.0, dt, 120.0)
        self.bottom += rng.gauss(0.0, 0.08)
        self.dp = max(0.0, approach(self.dp, 5.0 + self.steam * 3.0 if running else 0.5, dt, 30.0) + rng.gauss(0, 0.1))
        self.level = min(100.0, max(0.0, self.level + rng.gauss(0.0, 0.2) + (50.0 - self.level) * 0.01 * dt))
        if running:
            kg = self.feed * 0.8 / (1.0 + self.reflux_ratio) * 1000.0 * dt / 3600.0  # distillate, roughly
            self.produce(kg, "product_kg", reject="off_spec_kg")
            if self.top >= 79.3 and not sm.scripted:  # off spec while the top runs hot
                self.counters["off_spec_kg"].total += kg

    def _load(self) -> tuple[float, float]:
        running = self.sm.state == RUNNING
        return (40.0 + self.feed * 6.0 if running else 6.0) + self.rng.gauss(0.0, 1.0 if running else 0.1), 0.87

    def _values(self) -> dict[str, Any]:
        return {
            "top_temperature": self.top,
            "bottom_temperature": self.bottom,
            "differential_pressure": self.dp,
            "reflux_ratio": self.reflux_ratio,
            "reflux_flow": self.feed * 0.8 * self.reflux_ratio / (1.0 + self.reflux_ratio),
            "feed_flow": self.feed,
            "reboiler_steam": self.steam,
            "sump_level": self.level,
        }


REACTOR_SIGNALS = BatchReactor.SIGNALS
COLUMN_SIGNALS = DistillationColumn.SIGNALS
