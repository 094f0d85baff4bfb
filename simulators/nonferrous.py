"""Non-ferrous metals: a copper rod continuous casting and rolling line (铜杆连铸连轧生产线, SCR type).

Cathode copper melts in a shaft furnace (≈1,120 °C), is cast on a wheel into a bar (≈1,110 °C
pouring), enters the rolling mill at ≈880 °C and leaves as 8 mm rod at ≈12 m/s: ≈19 t an hour
(8 mm rod weighs 0.45 kg/m). Coils are changed on the fly; the line stops for bar breaks, mill jams
(micro-stops), launder blockages, casting-band changes (setup) and planned maintenance. Scrap is
the rod cut off at every restart and around surface defects.
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
    approach,
    counter_signal,
    meter_signals,
    oee_settings,
    run_state_signal,
)

ROD_KG_PER_M = 8960.0 * math.pi * 0.004**2  # 8 mm copper rod: 0.45 kg/m


class CopperRodLine(Machine):
    kind = "copper_rod_line"
    label = "铜杆连铸连轧生产线"
    english = "copper rod continuous casting and rolling line"
    prefix = "rodline"
    ROD_SPEED = 11.5  # m/s
    SIGNALS = (
        Signal("furnace_temperature", "int16", "°C", 1000, 1250, "equipment",
               "shaft furnace melt temperature 竖炉铜液温度", scale=0.1),
        Signal("casting_temperature", "int16", "°C", 1000, 1250, "quality", "pouring temperature 浇铸温度", scale=0.1),
        Signal("casting_wheel_speed", "uint16", "r/min", 0, 5, "equipment", "casting wheel speed 结晶轮转速",
               scale=0.001),
        Signal("bar_temperature", "int16", "°C", 0, 1100, "quality", "cast bar temperature at the mill 入轧温度",
               scale=0.1),
        Signal("rod_speed", "uint16", "m/s", 0, 20, "production", "rod speed 出杆速度", scale=0.01),
        Signal("rod_diameter", "uint16", "mm", 0, 20, "quality", "rod diameter 铜杆直径", scale=0.001),
        Signal("cooling_water_flow", "uint16", "m³/h", 0, 400, "equipment", "casting wheel cooling water 冷却水流量",
               scale=0.1),
        run_state_signal(),
        counter_signal("output_kg", "kg", "rod produced 累计产量"),
        counter_signal("scrap_kg", "kg", "rod scrapped 废杆", domain="quality"),
    )  # fmt: skip
    METER = meter_signals(current_scale=0.1)  # a rolling mill draws over a thousand amperes
    PROFILE = Profile(
        6 * 3600.0,
        (
            Stop("mill_jam", FAULT, 0.15, (40.0, 110.0)),
            Stop("launder_blockage", IDLE, 0.1, (60.0, 600.0)),
            Stop("bar_break", FAULT, 0.35, (900.0, 2700.0)),
            Stop("casting_band_change", SETUP, 0.25, (3600.0, 7200.0)),
            Stop("maintenance", PLANNED_STOP, 0.15, (4 * 3600.0, 8 * 3600.0)),
        ),
    )
    NOMINAL_RATE = ROD_SPEED * ROD_KG_PER_M  # kg/s
    METER_CT = 300  # its meter sits behind 1500/5 A current transformers
    OEE = oee_settings("output_kg", reject="scrap_kg", ideal="164ms")
    REJECT_RATIO = 0.004

    def __init__(self, name: str = "", display_name: str = "", seed: int = 1, **kwargs: Any) -> None:
        super().__init__(name, display_name, seed, **kwargs)
        rng = self.rng
        self.furnace = 1120.0
        self.pour = 1110.0
        self.bar = 880.0
        self.speed = self.ROD_SPEED  # it starts mid-run
        self.water = 250.0
        self.startup_scrap = 0.0
        self.counters["output_kg"].total = rng.uniform(5e7, 3e8)
        self.meter.energy_kwh = rng.uniform(1e5, 5e5)

    def _stopped(self, cause: str) -> None:
        self.startup_scrap = 300.0  # the first rod after a restart is cut off

    def _advance(self, dt: float) -> None:
        rng, sm = self.rng, self.sm
        running = sm.state == RUNNING
        self.furnace = approach(self.furnace, 1120.0 if sm.state != PLANNED_STOP else 1085.0, dt, 600.0)
        self.furnace += rng.gauss(0.0, 0.3)
        self.pour = approach(self.pour, self.furnace - 10.0 if running else 1090.0, dt, 60.0) + rng.gauss(0, 0.2)
        target = self.ROD_SPEED * (sm.rate if sm.scripted else 1.0) if running else 0.0
        self.speed = approach(self.speed, target, dt, 20.0)
        self.bar = approach(self.bar, 880.0 if running else 25.0, dt, 30.0 if running else 300.0)
        self.bar += rng.gauss(0.0, 0.5) if running else 0.0
        self.water = approach(self.water, 250.0 if running else 60.0, dt, 20.0) + rng.gauss(0.0, 0.5)
        if running:
            kg = self.speed * ROD_KG_PER_M * dt
            self.produce(kg, "output_kg", reject="scrap_kg")
            if self.startup_scrap > 0 and not sm.scripted:
                cut = min(self.startup_scrap, kg)
                self.startup_scrap -= cut
                self.counters["scrap_kg"].total += cut

    def _load(self) -> tuple[float, float]:
        if self.sm.state == RUNNING:
            return 120.0 + 700.0 * self.speed / self.ROD_SPEED + self.rng.gauss(0.0, 5.0), 0.9
        return (40.0 if self.sm.state == PLANNED_STOP else 110.0) + self.rng.gauss(0.0, 1.0), 0.75

    def _values(self) -> dict[str, Any]:
        running = self.sm.state == RUNNING
        return {
            "furnace_temperature": self.furnace,
            "casting_temperature": self.pour,
            "casting_wheel_speed": self.speed / self.ROD_SPEED * 2.2,
            "bar_temperature": self.bar,
            "rod_speed": self.speed,
            "rod_diameter": 8.0 + math.sin(self.steps / 37.0) * 0.02 if running else 0.0,
            "cooling_water_flow": self.water,
        }
