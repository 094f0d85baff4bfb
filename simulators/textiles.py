"""Ring spinning frame (环锭细纱机) for the textiles simulators (the air-jet loom is in `loom.py`).

A 1,008-spindle frame spinning Ne 40 (14.8 tex) cotton at ≈16,500 r/min and 917 T/m: each spindle
delivers 18 m/min, the frame ≈16 kg of yarn an hour. Cops fill in ≈3.8 h; a full frame is doffed
(setup, 3–5 min). Ends down (yarn breaks) run at 20–40 per 1,000 spindle-hours; a spindle waits for
the piecer, so a few spindles are always idle. Stops: roving run-outs and drafting jams (micro-stops),
motor or drafting faults, count changes (setup), cleaning (planned stop).
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

SPINDLES = 1008
TEX = 14.76  # g per km of Ne 40 yarn
COP_GRAMS = 60.0  # yarn on a full cop


class RingSpinningFrame(Machine):
    kind = "ring_spinning_frame"
    label = "环锭细纱机"
    english = "ring spinning frame"
    prefix = "spinning"
    SIGNALS = (
        Signal("spindle_speed", "uint16", "r/min", 0, 20000, "equipment", "spindle speed 锭速"),
        Signal("front_roller_speed", "uint16", "r/min", 0, 300, "equipment", "front roller speed 前罗拉转速",
               scale=0.1),
        Signal("twist", "uint16", "T/m", 400, 1500, "quality", "twist 捻度", scale=0.1),
        Signal("ends_down_rate", "uint16", "1/1000 spindle·h", 0, 100, "quality",
               "ends down per 1,000 spindle-hours 千锭时断头", scale=0.1),
        Signal("spindles_running", "uint16", None, 0, SPINDLES, "equipment", "spindles spinning 运转锭数"),
        Signal("cop_fill", "uint16", "%", 0, 100, "production", "cop build 管纱成形", scale=0.1),
        run_state_signal(),
        Signal("doffs", "uint32", domain="production", description="doffs since commissioning 落纱次数", counter=True),
        counter_signal("output_kg", "kg", "yarn spun since commissioning 累计产量"),
        counter_signal("downgraded_kg", "kg", "yarn downgraded by the spindle monitor 降等纱", domain="quality"),
    )  # fmt: skip
    PROFILE = Profile(
        3000.0,
        (
            Stop("roving_runout", IDLE, 0.5, (20.0, 90.0)),
            Stop("drafting_jam", FAULT, 0.25, (30.0, 110.0)),
            Stop("motor_fault", FAULT, 0.1, (600.0, 2400.0)),
            Stop("count_change", SETUP, 0.05, (1800.0, 5400.0)),
            Stop("cleaning", PLANNED_STOP, 0.1, (900.0, 1800.0)),
        ),
    )
    # delivery at 16,500 r/min and 917 T/m over 1,008 spindles: ≈4.46 g/s; 18,000 r/min is the ideal
    NOMINAL_RATE = 16500.0 / 917.0 / 60.0 * SPINDLES * TEX / 1e6  # kg/s
    OEE = oee_settings("output_kg", reject="downgraded_kg", ideal="205s")
    REJECT_RATIO = 0.01

    def __init__(self, name: str = "", display_name: str = "", seed: int = 1, **kwargs: Any) -> None:
        super().__init__(name, display_name, seed, **kwargs)
        rng = self.rng
        self.target_rpm = rng.uniform(15500.0, 17500.0)
        self.twist = 917.0
        self.speed = self.target_rpm  # it starts mid-run
        self.ends_down_rate = rng.uniform(20.0, 40.0)
        self.down = 0  # spindles waiting for the piecer
        self.cop_fill = rng.uniform(0.0, 90.0)
        self.counters["output_kg"].total = rng.uniform(50_000.0, 400_000.0)
        self.counters["doffs"].total = float(rng.randint(1_000, 20_000))

    def _advance(self, dt: float) -> None:
        rng, sm = self.rng, self.sm
        if sm.state == RUNNING:
            target = self.target_rpm * (sm.rate if sm.scripted else 1.0)
            self.speed = approach(self.speed, rng.gauss(target, 40.0), dt, 20.0)
            self.ends_down_rate = min(
                100.0, max(5.0, approach(self.ends_down_rate, 30.0, dt, 3600.0) + rng.gauss(0, 0.2))
            )
            breaks = self.ends_down_rate * SPINDLES / 1000.0 / 3600.0 * dt  # expected breaks this step
            if rng.random() < breaks:
                self.down += 1
            if self.down and rng.random() < dt / 40.0:  # a piecing takes ≈40 s
                self.down -= 1
            grams = self.speed / self.twist / 60.0 * dt * (SPINDLES - self.down) * TEX / 1000.0
            self.produce(grams / 1000.0, "output_kg", reject="downgraded_kg")
            self.cop_fill += grams / SPINDLES / COP_GRAMS * 100.0
            if self.cop_fill >= 100.0:
                self.cop_fill = 0.0
                self.counters["doffs"].total += 1
                sm.enter(SETUP, rng.uniform(180.0, 300.0), "doff")
        else:
            self.speed = approach(self.speed, 0.0, dt, 3.0)
            self.down = 0

    def _load(self) -> tuple[float, float]:
        if self.sm.state == RUNNING:
            return 45.0 * self.speed / 16500.0 + self.rng.gauss(0.0, 0.3), 0.88
        return (0.8 if self.sm.state == PLANNED_STOP else 2.0) + self.rng.gauss(0.0, 0.05), 0.35

    def _values(self) -> dict[str, Any]:
        running = self.sm.state == RUNNING
        return {
            "spindle_speed": self.speed,
            "front_roller_speed": self.speed / self.twist / (3.14159 * 0.027),
            "twist": self.twist,
            "ends_down_rate": self.ends_down_rate,
            "spindles_running": SPINDLES - self.down if running else 0,
            "cop_fill": self.cop_fill,
        }
