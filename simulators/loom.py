"""Air-jet loom (喷气织机) equipment model with its energy meter, for the textiles simulators.

Run states: 0 idle, 1 running, 2 fault, 3 setup, 4 planned stop. A seeded random process keeps the
loom mostly running; each run ends in a stop, split as in one mill study: warp ≈58% (fault while
the weaver mends the end), weft ≈34% (short fault), other ≈8% (idle). Now and then a run ends in
a style/beam change (setup) or a planned stop instead. Counters only grow (registers wrap).
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Sequence
from typing import Any

IDLE, RUNNING, FAULT, SETUP, PLANNED_STOP = 0, 1, 2, 3, 4
STOP_CAUSES = ("warp", "weft", "other")
STOP_WEIGHTS = (0.58, 0.34, 0.08)
MIN_RPM, MAX_RPM = 600.0, 1200.0

LOOM_TAGS: list[dict[str, Any]] = [
    # holding registers: the loom controller
    {"name": "speed", "address": "hr:0", "type": "uint16", "scale": 0.1, "unit": "rpm", "domain": "equipment",
     "description": "main shaft speed 主轴转速 (register = rpm × 10)"},
    {"name": "run_state", "address": "hr:1", "type": "uint16", "domain": "equipment",
     "description": "0 idle, 1 running, 2 fault, 3 setup, 4 planned stop 运行状态"},
    {"name": "picks_total", "address": "hr:2", "type": "uint32", "unit": "picks", "domain": "production",
     "description": "weft insertions since commissioning 纬纱计数"},
    {"name": "warp_stops", "address": "hr:4", "type": "uint16", "domain": "equipment",
     "description": "warp stop count 经停次数"},
    {"name": "weft_stops", "address": "hr:5", "type": "uint32", "domain": "equipment",
     "description": "weft stop count 纬停次数"},
    {"name": "other_stops", "address": "hr:7", "type": "uint16", "domain": "equipment",
     "description": "other stop count 其他停车次数"},
    {"name": "warp_alarm", "address": "hr:8", "type": "bool", "bit": 0, "domain": "equipment",
     "description": "warp stop alarm 经停报警"},
    {"name": "weft_alarm", "address": "hr:8", "type": "bool", "bit": 1, "domain": "equipment",
     "description": "weft stop alarm 纬停报警"},
    {"name": "efficiency", "address": "hr:9", "type": "uint16", "scale": 0.1, "unit": "%",
     "domain": "production", "description": "actual / theoretical picks since start, in % 织机效率"},
    {"name": "style", "address": "hr:10", "type": "string", "length": 4, "domain": "production",
     "description": "fabric style code 品种代码"},
    {"name": "run_hours", "address": "hr:14", "type": "float64", "unit": "h", "domain": "equipment",
     "description": "running hours 运行时间"},
    # input registers: the energy meter
    {"name": "energy_kwh", "address": "ir:0", "type": "float32", "byte_order": "CDAB", "unit": "kWh",
     "domain": "energy", "description": "active energy 有功电能"},
    {"name": "power_kw", "address": "ir:2", "type": "float32", "unit": "kW", "domain": "energy",
     "description": "active power 有功功率"},
    {"name": "voltage", "address": "ir:4", "type": "uint16", "scale": 0.1, "unit": "V", "domain": "energy",
     "description": "line voltage 线电压"},
    {"name": "current", "address": "ir:5", "type": "uint16", "scale": 0.01, "unit": "A", "domain": "energy",
     "description": "phase current 电流"},
    {"name": "power_factor", "address": "ir:6", "type": "int16", "scale": 0.001, "domain": "energy",
     "description": "power factor 功率因数"},
    # discrete input
    {"name": "motor_on", "address": "di:0", "type": "bool", "domain": "equipment",
     "description": "main motor running 主电机运行"},
]  # fmt: skip


class AirJetLoom:
    """One loom. `step(now)` advances the model by the seconds elapsed since the previous call."""

    def __init__(
        self,
        seed: int = 1,
        start: float | None = None,
        target_rpm: float = 900.0,
        mean_run_s: float = 420.0,
        planned_chance: float = 0.02,
        style: str = "JC40S",
    ) -> None:
        self._rng = random.Random(seed)
        self.target_rpm = target_rpm
        self.mean_run_s = mean_run_s
        self.planned_chance = planned_chance
        self.style = style
        self.run_state = RUNNING
        self.stop_cause: str | None = None
        self.picks = float(self._rng.randint(0, 5_000_000))
        self.warp_stops = self.weft_stops = self.other_stops = 0
        self.run_s = 0.0
        self.elapsed_s = 0.0
        self.energy_kwh = self._rng.uniform(1000.0, 4000.0)
        self.speed_rpm = self.power_kw = self.voltage_v = self.current_a = self.power_factor = 0.0
        self._t: float | None = None
        self._until = 0.0
        self._sample()
        if start is not None:
            self._begin(start)

    @property
    def tags(self) -> Sequence[dict[str, Any]]:
        return LOOM_TAGS

    def step(self, now: float) -> None:
        if self._t is None:
            self._begin(now)
            return
        if now <= self._t:
            return
        self._sample()
        while self._t < now:
            seg_end = min(now, self._until)
            self._integrate(seg_end - self._t)
            self._t = seg_end
            if seg_end >= self._until:
                self._transition()

    def raw_values(self) -> dict[str, bool | int | float | str]:
        """Register-level values by tag name (scaled integers, wrapped counters)."""
        # actual picks / picks at the running speed over the whole time = running time share
        efficiency = self.run_s / self.elapsed_s * 100.0 if self.elapsed_s > 0 else 0.0
        fault = self.run_state == FAULT
        return {
            "speed": round(self.speed_rpm * 10),
            "run_state": self.run_state,
            "picks_total": int(self.picks) & 0xFFFFFFFF,
            "warp_stops": self.warp_stops & 0xFFFF,
            "weft_stops": self.weft_stops & 0xFFFFFFFF,
            "other_stops": self.other_stops & 0xFFFF,
            "warp_alarm": fault and self.stop_cause == "warp",
            "weft_alarm": fault and self.stop_cause == "weft",
            "efficiency": min(0xFFFF, round(efficiency * 10)),
            "style": self.style,
            "run_hours": self.run_s / 3600.0,
            "energy_kwh": self.energy_kwh,
            "power_kw": self.power_kw,
            "voltage": round(self.voltage_v * 10),
            "current": round(self.current_a * 100),
            "power_factor": round(self.power_factor * 1000),
            "motor_on": self.run_state == RUNNING,
        }

    # ------------------------------------------------------------ the random process

    def _begin(self, now: float) -> None:
        self._t = now
        self._until = now + self._run_length()

    def _run_length(self) -> float:
        return self._rng.expovariate(1.0 / self.mean_run_s)

    def _transition(self) -> None:
        rng = self._rng
        if self.run_state != RUNNING:
            self.run_state, self.stop_cause = RUNNING, None
            self._until += self._run_length()
        elif rng.random() < self.planned_chance:
            self.run_state = rng.choice((SETUP, PLANNED_STOP))
            self._until += rng.uniform(600.0, 1800.0) if self.run_state == SETUP else rng.uniform(900.0, 2700.0)
        else:
            cause = rng.choices(STOP_CAUSES, STOP_WEIGHTS)[0]
            self.stop_cause = cause
            if cause == "warp":
                self.warp_stops += 1
                self.run_state = FAULT
                self._until += rng.uniform(30.0, 180.0)
            elif cause == "weft":
                self.weft_stops += 1
                self.run_state = FAULT
                self._until += rng.uniform(5.0, 45.0)
            else:
                self.other_stops += 1
                self.run_state = IDLE
                self._until += rng.uniform(15.0, 120.0)
        self._sample()

    def _sample(self) -> None:
        """Draw the instantaneous signals for the current state."""
        rng = self._rng
        running = self.run_state == RUNNING
        if running:
            self.speed_rpm = min(MAX_RPM, max(MIN_RPM, rng.gauss(self.target_rpm, 12.0)))
            self.power_kw = 4.5 * self.speed_rpm / 900.0 * rng.uniform(0.97, 1.03)
            self.power_factor = rng.uniform(0.84, 0.88)
        else:
            self.speed_rpm = 0.0
            self.power_kw = (0.2 if self.run_state == PLANNED_STOP else 0.6) * rng.uniform(0.95, 1.05)
            self.power_factor = rng.uniform(0.40, 0.50)
        self.voltage_v = rng.gauss(380.0, 2.0)
        self.current_a = self.power_kw * 1000.0 / (math.sqrt(3) * self.voltage_v * self.power_factor)

    def _integrate(self, dt: float) -> None:
        self.elapsed_s += dt
        self.energy_kwh += self.power_kw * dt / 3600.0
        if self.run_state == RUNNING:
            self.run_s += dt
            self.picks += self.speed_rpm / 60.0 * dt


def loom_device_config(device_id: str, name: str, host: str, port: int, unit_id: int = 1) -> dict[str, Any]:
    """A device dict for one simulated loom; it validates as edge_config's ModbusTcpDevice."""
    return {
        "id": device_id,
        "name": name,
        "type": "air_jet_loom",
        "production": True,
        "driver": "modbus_tcp",
        "connection": {"host": host, "port": port, "unit_id": unit_id, "timeout": "1s"},
        "poll_interval": "1s",
        "tags": copy.deepcopy(LOOM_TAGS),
        "oee": {
            "state_tag": "run_state",
            "states": {"running": [1], "idle": [0], "fault": [2], "setup": [3], "planned_stop": [4]},
            "total_count_tag": "picks_total",
            "ideal_cycle_time": "0.05s",
        },
    }
