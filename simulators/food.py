"""Food: a filling and capping line (灌装旋盖线) for 500 g bottles.

360 bottles a minute (400 is the filler's ideal), fill weight 500.0 g ± 1.2 g, cap torque ≈1.8 N·m,
chilled product at ≈6 °C. The checkweigher and the cap inspection reject ≈0.4 %. Jams at the infeed
and an empty cap feeder are micro-stops; a filling valve fault a breakdown; format changes setups;
every 8 hours of filling the line is cleaned in place (CIP, setup: pre-rinse, caustic, rinse, acid,
final rinse).
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

CIP_PHASES = ("none", "pre_rinse", "caustic", "rinse", "acid", "final_rinse")
CIP_AFTER_S = 8 * 3600.0


class FillingLine(Machine):
    kind = "filling_line"
    label = "灌装旋盖线"
    english = "filling and capping line"
    prefix = "filler"
    SPEED = 360.0  # bottles per minute
    SIGNALS = (
        Signal("line_speed", "uint16", "bottles/min", 0, 400, "production", "line speed 灌装速度"),
        Signal("fill_weight", "uint16", "g", 0, 600, "quality", "fill weight (checkweigher) 灌装重量", scale=0.1),
        Signal("fill_setpoint", "uint16", "g", 0, 600, "production", "fill weight setpoint 灌装设定值", scale=0.1),
        Signal("cap_torque", "uint16", "N·m", 0, 5, "quality", "capping torque 旋盖扭矩", scale=0.01),
        Signal("product_temperature", "int16", "°C", -5, 100, "quality", "product temperature 物料温度", scale=0.1),
        Signal("bowl_level", "uint16", "%", 0, 100, "production", "filler bowl level 灌装缸液位", scale=0.1),
        Signal("cip_phase", "uint16", None, 0, 5, "production",
               "0 none 1 pre-rinse 2 caustic 3 rinse 4 acid 5 final rinse 清洗阶段"),
        run_state_signal(),
        counter_signal("bottles_total", "bottles", "bottles filled 灌装总数"),
        counter_signal("bottles_rejected", "bottles", "bottles rejected 剔除数", domain="quality"),
    )  # fmt: skip
    PROFILE = Profile(
        1200.0,
        (
            Stop("bottle_jam", IDLE, 0.45, (10.0, 90.0)),
            Stop("cap_feeder_empty", IDLE, 0.2, (20.0, 110.0)),
            Stop("filling_valve_fault", FAULT, 0.15, (300.0, 1500.0)),
            Stop("format_change", SETUP, 0.1, (1200.0, 2700.0)),
            Stop("hygiene_break", PLANNED_STOP, 0.1, (1800.0, 3600.0)),
        ),
    )
    NOMINAL_RATE = SPEED / 60.0
    OEE = oee_settings("bottles_total", reject="bottles_rejected", ideal="150ms")
    REJECT_RATIO = 0.004

    def __init__(self, name: str = "", display_name: str = "", seed: int = 1, **kwargs: Any) -> None:
        super().__init__(name, display_name, seed, **kwargs)
        rng = self.rng
        self.speed = self.SPEED  # it starts mid-run
        self.weight = 500.0
        self.torque = 1.8
        self.temperature = 6.0
        self.bowl = 60.0
        self.since_cip = rng.uniform(0.0, CIP_AFTER_S)
        self.cip_left = self.cip_total = 0.0
        self.counters["bottles_total"].total = rng.uniform(1e6, 5e7)

    def _advance(self, dt: float) -> None:
        rng, sm = self.rng, self.sm
        running = sm.state == RUNNING
        target = self.SPEED * (sm.rate if sm.scripted else 1.0) if running else 0.0
        self.speed = approach(self.speed, target, dt, 5.0)
        self.bowl = min(100.0, max(0.0, approach(self.bowl, 60.0, dt, 30.0) + rng.gauss(0.0, 0.4)))
        cleaning = sm.state == SETUP and sm.cause == "CIP"
        self.temperature = approach(self.temperature, 75.0 if cleaning else 6.0, dt, 120.0) + rng.gauss(0, 0.05)
        if cleaning:
            self.cip_left -= dt
        if running:
            self.weight = rng.gauss(500.0, 1.2)
            self.torque = rng.gauss(1.8, 0.08)
            self.produce(self.speed / 60.0 * dt, "bottles_total", reject="bottles_rejected")
            self.since_cip += dt
            if self.since_cip >= CIP_AFTER_S:
                self.since_cip = 0.0
                self.cip_left = rng.uniform(2700.0, 3600.0)
                self.cip_total = self.cip_left
                sm.enter(SETUP, self.cip_left, "CIP")

    def _load(self) -> tuple[float, float]:
        s = self.sm.state
        if s == RUNNING:
            return 8.0 + 22.0 * self.speed / self.SPEED + self.rng.gauss(0.0, 0.2), 0.85
        return (3.0 if s == PLANNED_STOP else 12.0 if s == SETUP else 8.0) + self.rng.gauss(0.0, 0.05), 0.6

    def _values(self) -> dict[str, Any]:
        sm = self.sm
        phase = 0
        if sm.state == SETUP and sm.cause == "CIP" and self.cip_left > 0:
            done = 1.0 - self.cip_left / max(self.cip_total, 1.0)
            phase = min(5, 1 + int(done * 5))
        return {
            "line_speed": self.speed,
            "fill_weight": self.weight if sm.state == RUNNING else 0.0,
            "fill_setpoint": 500.0,
            "cap_torque": self.torque if sm.state == RUNNING else 0.0,
            "product_temperature": self.temperature,
            "bowl_level": self.bowl,
            "cip_phase": phase,
        }
