"""New materials: a lithium-ion battery electrode coating line (锂电池极片涂布线).

Our choice for the sixth pilot line (new materials / new energy): a slot-die coater putting cathode
slurry on 12 µm aluminium foil at 60 m/min (80 m/min ideal), areal density 200 g/m² ± 1.5 (β-ray
gauge), wet thickness ≈180 µm, dried in three oven zones (90 / 110 / 120 °C) with the NMP solvent
recovered (exhaust concentration watched for safety). Metres outside the areal-density tolerance or
with coating defects are rejected (≈2 %). Stops: roll changes with a manual splice and coating-defect
alarms (micro-stops), web breaks, die cleaning (setup), planned maintenance.
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

ZONES = (90.0, 110.0, 120.0)


class ElectrodeCoatingLine(Machine):
    kind = "electrode_coating_line"
    label = "锂电池极片涂布线"
    english = "battery electrode coating line"
    prefix = "coater"
    SPEED = 60.0  # m/min
    SIGNALS = (
        Signal("line_speed", "uint16", "m/min", 0, 100, "production", "line speed 涂布速度", scale=0.1),
        Signal("coating_weight", "uint16", "g/m²", 0, 400, "quality", "areal density (β-ray gauge) 面密度",
               scale=0.01),
        Signal("wet_thickness", "uint16", "µm", 0, 400, "quality", "wet coating thickness 湿膜厚度", scale=0.1),
        Signal("oven_zone1_temperature", "int16", "°C", 0, 160, "equipment", "oven zone 1 temperature 烘箱一区温度",
               scale=0.1),
        Signal("oven_zone2_temperature", "int16", "°C", 0, 160, "equipment", "oven zone 2 temperature 烘箱二区温度",
               scale=0.1),
        Signal("oven_zone3_temperature", "int16", "°C", 0, 160, "equipment", "oven zone 3 temperature 烘箱三区温度",
               scale=0.1),
        Signal("web_tension", "uint16", "N", 0, 500, "quality", "web tension 走带张力", scale=0.1),
        Signal("nmp_concentration", "uint16", "ppm", 0, 1000, "safety", "NMP in the oven exhaust 排风NMP浓度",
               scale=0.1),
        Signal("unwind_diameter", "uint16", "mm", 0, 1000, "production", "unwind roll diameter 放卷直径", scale=0.1),
        run_state_signal(),
        counter_signal("length_m", "m", "electrode coated 累计涂布长度"),
        counter_signal("rejected_m", "m", "electrode rejected 不良长度", domain="quality"),
    )  # fmt: skip
    PROFILE = Profile(
        2400.0,
        (
            Stop("splice", IDLE, 0.35, (30.0, 100.0)),
            Stop("coating_defect_alarm", IDLE, 0.15, (15.0, 60.0)),
            Stop("web_break", FAULT, 0.25, (600.0, 1800.0)),
            Stop("die_cleaning", SETUP, 0.15, (900.0, 1800.0)),
            Stop("maintenance", PLANNED_STOP, 0.1, (3600.0, 7200.0)),
        ),
    )
    NOMINAL_RATE = SPEED / 60.0
    METER_CT = 40  # its meter sits behind 200/5 A current transformers
    OEE = oee_settings("length_m", reject="rejected_m", ideal="750ms")
    REJECT_RATIO = 0.02

    def __init__(self, name: str = "", display_name: str = "", seed: int = 1, **kwargs: Any) -> None:
        super().__init__(name, display_name, seed, **kwargs)
        rng = self.rng
        self.speed = self.SPEED  # it starts mid-run
        self.weight = 200.0
        self.zones = list(ZONES)
        self.tension = 150.0
        self.nmp = 200.0
        self.unwind = rng.uniform(300.0, 800.0)
        self.counters["length_m"].total = rng.uniform(1e6, 1e7)

    def _stopped(self, cause: str) -> None:
        if cause == "splice":
            self.unwind = 800.0  # a new roll

    def _advance(self, dt: float) -> None:
        rng, sm = self.rng, self.sm
        running = sm.state == RUNNING
        target = self.SPEED * (sm.rate if sm.scripted else 1.0) if running else 0.0
        self.speed = approach(self.speed, target, dt, 8.0)
        heated = sm.state != PLANNED_STOP
        for i, set_t in enumerate(ZONES):
            self.zones[i] = approach(self.zones[i], set_t if heated else 25.0, dt, 400.0) + rng.gauss(0.0, 0.1)
        self.tension = approach(self.tension, 150.0 if running else 40.0, dt, 3.0) + rng.gauss(0.0, 0.8)
        self.nmp = max(0.0, approach(self.nmp, 200.0 * self.speed / self.SPEED + 10.0, dt, 60.0) + rng.gauss(0, 2))
        if running:
            self.weight = rng.gauss(200.0, 0.6)
            metres = self.speed / 60.0 * dt
            self.produce(metres, "length_m", reject="rejected_m")
            # 12 µm foil: the roll's cross-section shrinks by its length × thickness
            area = max(0.0, 3.14159 * ((self.unwind / 2000.0) ** 2) - metres * 12e-6)
            self.unwind = max(80.0, 2000.0 * (area / 3.14159) ** 0.5)
            if self.unwind <= 80.0:  # the roll is used up: splice a new one
                sm.enter(IDLE, rng.uniform(30.0, 100.0), "splice")

    def _load(self) -> tuple[float, float]:
        s = self.sm.state
        if s == PLANNED_STOP:
            return 6.0 + self.rng.gauss(0.0, 0.1), 0.5
        drive = 25.0 * self.speed / self.SPEED if s == RUNNING else 0.0
        return 110.0 + drive + self.rng.gauss(0.0, 1.0), 0.93

    def _values(self) -> dict[str, Any]:
        running = self.sm.state == RUNNING
        return {
            "line_speed": self.speed,
            "coating_weight": self.weight if running else 0.0,
            "wet_thickness": self.weight * 0.9 if running else 0.0,
            "oven_zone1_temperature": self.zones[0],
            "oven_zone2_temperature": self.zones[1],
            "oven_zone3_temperature": self.zones[2],
            "web_tension": self.tension,
            "nmp_concentration": self.nmp,
            "unwind_diameter": self.unwind,
        }
