"""Air-jet loom (喷气织机) with its energy meter, for the textiles simulators.

Run states: 0 idle, 1 running, 2 fault, 3 setup, 4 planned stop. A seeded random process keeps the
loom mostly running; each run ends in a stop, split as in one mill study: warp ≈58% (fault while
the weaver mends the end), weft ≈34% (short fault, a micro-stop), other ≈8% (idle). Now and then a
run ends in a style/beam change (setup) or a planned stop instead. Counters only grow (registers
wrap); a mispick (a faulty weft insertion) is counted as a reject.
"""

from __future__ import annotations

from typing import Any

from simulators.device_config import device_config
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
    modbus_tags,
    oee_settings,
    run_state_signal,
)

__all__ = ["FAULT", "IDLE", "LOOM_TAGS", "MAX_RPM", "MIN_RPM", "PLANNED_STOP", "RUNNING", "SETUP", "AirJetLoom",
           "loom_device_config"]  # fmt: skip

STOP_CAUSES = ("warp", "weft", "other")
STOP_WEIGHTS = (0.58, 0.34, 0.08)
MIN_RPM, MAX_RPM = 600.0, 1200.0


def loom_profile(mean_run_s: float = 420.0, planned_chance: float = 0.02) -> Profile:
    keep = 1.0 - planned_chance
    return Profile(
        mean_run_s,
        (
            Stop("warp", FAULT, STOP_WEIGHTS[0] * keep, (30.0, 180.0)),
            Stop("weft", FAULT, STOP_WEIGHTS[1] * keep, (5.0, 45.0)),
            Stop("other", IDLE, STOP_WEIGHTS[2] * keep, (15.0, 120.0)),
            Stop("style_change", SETUP, planned_chance / 2, (600.0, 1800.0)),
            Stop("planned", PLANNED_STOP, planned_chance / 2, (900.0, 2700.0)),
        ),
    )


class AirJetLoom(Machine):
    """One loom. `step(now)` advances the model in whole seconds up to `now`."""

    kind = "air_jet_loom"
    label = "喷气织机"
    english = "air-jet loom"
    prefix = "loom"
    SIGNALS = (
        Signal("speed", "uint16", "rpm", 0, MAX_RPM, "equipment", "main shaft speed 主轴转速 (register = rpm × 10)",
               scale=0.1),
        run_state_signal(),
        counter_signal("picks_total", "picks", "weft insertions since commissioning 纬纱计数"),
        Signal("warp_stops", "uint16", domain="equipment", description="warp stop count 经停次数", counter=True),
        Signal("weft_stops", "uint32", domain="equipment", description="weft stop count 纬停次数", counter=True),
        Signal("other_stops", "uint16", domain="equipment", description="other stop count 其他停车次数", counter=True),
        Signal("warp_alarm", "bool", domain="equipment", description="warp stop alarm 经停报警"),
        Signal("weft_alarm", "bool", domain="equipment", description="weft stop alarm 纬停报警"),
        Signal("efficiency", "uint16", "%", 0, 100, "production",
               "actual / theoretical picks since start, in % 织机效率", scale=0.1),
        Signal("style", "string", domain="production", description="fabric style code 品种代码", length=4),
        Signal("run_hours", "float64", "h", 0, None, "equipment", "running hours 运行时间"),
        counter_signal("mispicks", "picks", "faulty weft insertions (fabric defects) 错纬次数", domain="quality"),
        Signal("motor_on", "bool", domain="equipment", description="main motor running 主电机运行", table="di"),
    )  # fmt: skip
    PROFILE = loom_profile()
    OEE = oee_settings("picks_total", reject="mispicks", ideal="0.05s")
    NOMINAL_RATE = 900.0 / 60.0  # picks per second at 900 rpm
    REJECT_RATIO = 0.0005

    def __init__(
        self,
        name: str = "",
        display_name: str = "",
        seed: int = 1,
        *,
        target_rpm: float = 900.0,
        mean_run_s: float = 420.0,
        planned_chance: float = 0.02,
        style: str = "JC40S",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("profile", loom_profile(mean_run_s, planned_chance))
        super().__init__(name, display_name, seed, **kwargs)
        self.target_rpm = target_rpm
        self.style = style
        self.counters["picks_total"].total = float(self.rng.randint(0, 5_000_000))
        self.meter.energy_kwh = self.rng.uniform(1000.0, 4000.0)
        self.run_s = 0.0
        self.elapsed_s = 0.0
        self.speed_rpm = 0.0

    @property
    def picks(self) -> float:
        return self.counters["picks_total"].total

    @property
    def stop_cause(self) -> str | None:
        return self.sm.cause or None

    @property
    def energy_kwh(self) -> float:
        return self.meter.energy_kwh

    @property
    def warp_stops(self) -> int:
        return int(self.counters["warp_stops"].total)

    @property
    def weft_stops(self) -> int:
        return int(self.counters["weft_stops"].total)

    @property
    def other_stops(self) -> int:
        return int(self.counters["other_stops"].total)

    def _stopped(self, cause: str) -> None:
        if cause in STOP_CAUSES:
            self.counters[f"{cause}_stops"].total += 1

    def _advance(self, dt: float) -> None:
        self.elapsed_s += dt
        if self.sm.state == RUNNING:
            target = self.target_rpm * (self.sm.rate if self.sm.scripted else 1.0)
            self.speed_rpm = min(MAX_RPM, max(MIN_RPM, self.rng.gauss(target, 12.0)))
            self.run_s += dt
            self.produce(self.speed_rpm / 60.0 * dt, "picks_total", reject="mispicks")
        else:
            self.speed_rpm = 0.0

    def _load(self) -> tuple[float, float]:
        if self.sm.state == RUNNING:
            return 4.5 * self.speed_rpm / 900.0 * self.rng.uniform(0.97, 1.03), self.rng.uniform(0.84, 0.88)
        base = 0.2 if self.sm.state == PLANNED_STOP else 0.6
        return base * self.rng.uniform(0.95, 1.05), self.rng.uniform(0.40, 0.50)

    def _values(self) -> dict[str, Any]:
        # actual picks / picks at the running speed over the whole time = running time share
        efficiency = self.run_s / self.elapsed_s * 100.0 if self.elapsed_s > 0 else 0.0
        fault = self.sm.state == FAULT
        return {
            "speed": self.speed_rpm,
            "warp_alarm": fault and self.sm.cause == "warp",
            "weft_alarm": fault and self.sm.cause == "weft",
            "efficiency": efficiency,
            "style": self.style,
            "run_hours": self.run_s / 3600.0,
            "motor_on": self.sm.state == RUNNING,
        }


LOOM_TAGS: list[dict[str, Any]] = modbus_tags((*AirJetLoom.SIGNALS, *AirJetLoom.METER))


def loom_device_config(device_id: str, name: str, host: str, port: int, unit_id: int = 1) -> dict[str, Any]:
    """A device dict for one simulated loom; it validates as edge_config's ModbusTcpDevice."""
    return device_config(AirJetLoom(), device_id, name, {"host": host, "port": port, "unit_id": unit_id,
                                                         "timeout": "1s"}, "modbus")  # fmt: skip
