"""Power-equipment machines: coil winding machine, cable extrusion line, transformer test bench.

(The vacuum drying oven for windings is in `drying_oven.py`.) Ranges follow shared/DOMAIN.md; see
the README's simulator table.
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


class CoilWindingMachine(Machine):
    """Winds transformer coils: 1,200 turns in 40 layers at ≈240 r/min (5 min a coil), then the
    finished coil is taken off and a new former put on (40–90 s, setup). A coil whose wire broke
    during winding, or 2 % at random, fails the resistance test (a reject)."""

    kind = "coil_winding_machine"
    label = "绕线机"
    english = "coil winding machine"
    prefix = "winder"
    TURNS = 1200
    TURNS_PER_LAYER = 30
    SIGNALS = (
        Signal("spindle_speed", "uint16", "r/min", 0, 300, "equipment", "spindle speed 主轴转速", scale=0.1),
        Signal("turns", "uint32", None, 0, 100000, "production", "turns on the current coil 当前匝数"),
        Signal("turns_setpoint", "uint32", None, 0, 100000, "production", "turns per coil 设定匝数"),
        Signal("wire_tension", "uint16", "N", 5, 200, "quality", "wire tension 线张力", scale=0.1),
        Signal("layer", "uint16", None, 0, 200, "production", "current layer 当前层数"),
        Signal("wire_break", "bool", domain="equipment", description="wire break alarm 断线报警"),
        run_state_signal(),
        counter_signal("coils_total", "coils", "coils wound 绕制线圈数"),
        counter_signal("coils_rejected", "coils", "coils failing the resistance test 不合格线圈", domain="quality"),
    )  # fmt: skip
    PROFILE = Profile(
        1800.0,
        (
            Stop("wire_break", FAULT, 0.35, (60.0, 300.0)),
            Stop("tension_alarm", IDLE, 0.35, (10.0, 60.0)),
            Stop("former_change", SETUP, 0.1, (900.0, 2400.0)),
            Stop("drive_fault", FAULT, 0.1, (1200.0, 3600.0)),
            Stop("maintenance", PLANNED_STOP, 0.1, (1800.0, 3600.0)),
        ),
    )
    OEE = oee_settings("coils_total", reject="coils_rejected", ideal="4m")
    REJECT_RATIO = 0.02

    def __init__(self, name: str = "", display_name: str = "", seed: int = 1, **kwargs: Any) -> None:
        super().__init__(name, display_name, seed, **kwargs)
        rng = self.rng
        self.speed = 240.0  # it starts mid-coil, winding
        self.turns = rng.uniform(0.0, self.TURNS)
        self.tension = 45.0
        self.broke = False
        self.counters["coils_total"].total = float(rng.randint(500, 20_000))
        self.counters["coils_rejected"].total = self.counters["coils_total"].total * 0.02

    def _stopped(self, cause: str) -> None:
        if cause == "wire_break":
            self.broke = True

    def _advance(self, dt: float) -> None:
        rng, sm = self.rng, self.sm
        if sm.state == RUNNING:
            # slower on the first and last layer, as an operator does
            edge = self.turns < self.TURNS_PER_LAYER or self.turns > self.TURNS - self.TURNS_PER_LAYER
            target = (150.0 if edge else 240.0) * (sm.rate if sm.scripted else 1.0)
            self.speed = approach(self.speed, target, dt, 4.0)
            self.turns += self.speed / 60.0 * dt
            self.tension = approach(self.tension, 45.0, dt, 5.0) + rng.gauss(0.0, 0.6)
            if self.turns >= self.TURNS:
                self.turns = 0.0
                if self.broke and not sm.scripted:  # a coil with a joint fails the resistance test
                    self.counters["coils_total"].total += 1
                    self.counters["coils_rejected"].total += 1
                else:
                    self.produce_one("coils_total", reject="coils_rejected")
                self.broke = False
                sm.enter(SETUP, rng.uniform(40.0, 90.0), "coil_change")
        else:
            self.speed = approach(self.speed, 0.0, dt, 1.5)
            self.tension = approach(self.tension, 8.0 if sm.state == FAULT else 20.0, dt, 3.0)

    def _load(self) -> tuple[float, float]:
        if self.sm.state == RUNNING:
            return 0.4 + 3.0 * self.speed / 240.0 + self.rng.gauss(0.0, 0.05), 0.8
        return 0.3 + self.rng.gauss(0.0, 0.01), 0.35

    def _values(self) -> dict[str, Any]:
        return {
            "spindle_speed": self.speed,
            "turns": int(self.turns),
            "turns_setpoint": self.TURNS,
            "wire_tension": min(200.0, max(5.0, self.tension)),
            "layer": int(self.turns // self.TURNS_PER_LAYER) + 1,
            "wire_break": self.sm.state == FAULT and self.sm.cause == "wire_break",
        }


class CableExtrusionLine(Machine):
    """Insulates conductor at ≈150 m/min: screw, barrel and die temperatures around 180–190 °C, outer
    diameter 10.5 mm, eccentricity 1.5–3 %. The spark tester marks insulation faults; each costs a
    few metres of scrap, as does every start-up."""

    kind = "cable_extrusion_line"
    label = "电缆挤出生产线"
    english = "cable extrusion line"
    prefix = "extruder"
    LINE_SPEED = 150.0  # m/min
    SIGNALS = (
        Signal("screw_speed", "uint16", "r/min", 0, 100, "equipment", "screw speed 螺杆转速", scale=0.1),
        Signal("line_speed", "uint16", "m/min", 0, 300, "production", "line speed 线速度", scale=0.1),
        Signal("barrel_temperature", "int16", "°C", 0, 250, "equipment", "barrel temperature 机筒温度", scale=0.1),
        Signal("die_temperature", "int16", "°C", 0, 250, "equipment", "die temperature 机头温度", scale=0.1),
        Signal("melt_pressure", "uint16", "MPa", 0, 60, "equipment", "melt pressure 熔体压力", scale=0.01),
        Signal("outer_diameter", "uint16", "mm", 0, 50, "quality", "outer diameter 外径", scale=0.001),
        Signal("eccentricity", "uint16", "%", 0, 20, "quality", "eccentricity 偏心度", scale=0.01),
        Signal("spark_faults", "uint32", domain="quality", description="spark test faults 火花击穿次数",
               counter=True),
        run_state_signal(),
        counter_signal("length_m", "m", "cable extruded 累计长度"),
        counter_signal("scrap_m", "m", "cable scrapped 废线长度", domain="quality"),
    )  # fmt: skip
    PROFILE = Profile(
        5400.0,
        (
            Stop("diameter_alarm", IDLE, 0.35, (15.0, 90.0)),
            Stop("conductor_break", FAULT, 0.2, (600.0, 1800.0)),
            Stop("reel_change", SETUP, 0.3, (300.0, 900.0)),
            Stop("heater_fault", FAULT, 0.05, (1800.0, 3600.0)),
            Stop("maintenance", PLANNED_STOP, 0.1, (3600.0, 7200.0)),
        ),
    )
    NOMINAL_RATE = LINE_SPEED / 60.0  # m/s
    METER_CT = 20  # its meter sits behind 100/5 A current transformers
    OEE = oee_settings("length_m", reject="scrap_m", ideal="333ms")
    REJECT_RATIO = 0.002

    def __init__(self, name: str = "", display_name: str = "", seed: int = 1, **kwargs: Any) -> None:
        super().__init__(name, display_name, seed, **kwargs)
        rng = self.rng
        self.line_speed = self.LINE_SPEED  # it starts mid-run
        self.barrel, self.die = 180.0, 190.0
        self.pressure = 0.17 * self.LINE_SPEED
        self.diameter = 10.5
        self.ecc = 2.0
        self.counters["length_m"].total = rng.uniform(1e6, 2e7)
        self.counters["scrap_m"].total = self.counters["length_m"].total * 0.003
        self.startup_scrap = 0.0  # metres still to scrap after a restart

    def _stopped(self, cause: str) -> None:
        self.startup_scrap = 20.0  # the first metres after a restart are scrap

    def _advance(self, dt: float) -> None:
        rng, sm = self.rng, self.sm
        running = sm.state == RUNNING
        target = self.LINE_SPEED * (sm.rate if sm.scripted else 1.0) if running else 0.0
        self.line_speed = approach(self.line_speed, target, dt, 15.0)
        heated = sm.state != PLANNED_STOP
        self.barrel = approach(self.barrel, 180.0 if heated else 25.0, dt, 600.0) + rng.gauss(0.0, 0.15)
        self.die = approach(self.die, 190.0 if heated else 25.0, dt, 600.0) + rng.gauss(0.0, 0.15)
        self.pressure = approach(self.pressure, 0.17 * self.line_speed, dt, 5.0)
        self.diameter = 10.5 + rng.gauss(0.0, 0.012) if running else self.diameter
        self.ecc = min(20.0, max(0.5, approach(self.ecc, 2.2, dt, 300.0) + rng.gauss(0.0, 0.05)))
        if running:
            metres = self.line_speed / 60.0 * dt
            self.produce(metres, "length_m", reject="scrap_m")
            if self.startup_scrap > 0 and not sm.scripted:
                cut = min(self.startup_scrap, metres)
                self.startup_scrap -= cut
                self.counters["scrap_m"].total += cut
            if rng.random() < metres / 20_000.0:  # a spark fault every ≈20 km
                self.counters["spark_faults"].total += 1
                if not sm.scripted:
                    self.counters["scrap_m"].total += 5.0

    def _load(self) -> tuple[float, float]:
        s = self.sm.state
        if s == RUNNING:
            return 35.0 + 50.0 * self.line_speed / self.LINE_SPEED + self.rng.gauss(0.0, 0.5), 0.86
        return (5.0 if s == PLANNED_STOP else 30.0) + self.rng.gauss(0.0, 0.3), 0.7

    def _values(self) -> dict[str, Any]:
        return {
            "screw_speed": self.line_speed / self.LINE_SPEED * 55.0,
            "line_speed": self.line_speed,
            "barrel_temperature": self.barrel,
            "die_temperature": self.die,
            "melt_pressure": self.pressure,
            "outer_diameter": self.diameter,
            "eccentricity": self.ecc,
        }


# test steps of the transformer test bench, with their nominal length in seconds
CONNECT, INSULATION, RATIO, NO_LOAD, LOAD, INDUCED, DONE = range(7)
TEST_STEPS = ("connect", "insulation", "ratio", "no_load", "load", "induced", "done")
STEP_SECONDS = (0.0, 120.0, 180.0, 300.0, 420.0, 60.0, 0.0)


class TransformerTestBench(Machine):
    """Routine tests of distribution transformers (400 V side): insulation resistance, ratio, no-load
    loss, load loss, induced voltage at 100 Hz; ≈18 min a unit plus connecting it (setup). 97 % pass."""

    kind = "transformer_test_bench"
    label = "变压器试验台"
    english = "transformer test bench"
    prefix = "testbench"
    SIGNALS = (
        Signal("test_voltage_a", "uint16", "V", 0, 1000, "quality", "test voltage phase A 试验电压A相", scale=0.1),
        Signal("test_voltage_b", "uint16", "V", 0, 1000, "quality", "test voltage phase B 试验电压B相", scale=0.1),
        Signal("test_voltage_c", "uint16", "V", 0, 1000, "quality", "test voltage phase C 试验电压C相", scale=0.1),
        Signal("test_current", "uint16", "A", 0, 600, "quality", "test current 试验电流", scale=0.01),
        Signal("test_power", "float32", "kW", 0, 200, "quality", "measured loss 试验功率", resolution=0.01),
        Signal("test_frequency", "uint16", "Hz", 0, 200, "quality", "test frequency 试验频率", scale=0.01),
        Signal("test_step", "uint16", None, 0, 6, "production",
               "0 connect 1 insulation 2 ratio 3 no-load 4 load 5 induced 6 done 试验步骤"),
        Signal("last_passed", "bool", domain="quality", description="last unit passed 上一台合格"),
        run_state_signal(),
        counter_signal("tests_total", "units", "units tested 试验台数"),
        counter_signal("tests_passed", "units", "units passed 合格台数", domain="quality"),
    )  # fmt: skip
    PROFILE = Profile(
        7200.0,
        (
            Stop("waiting_for_unit", IDLE, 0.5, (120.0, 900.0)),
            Stop("interlock", IDLE, 0.2, (20.0, 60.0)),
            Stop("protection_trip", FAULT, 0.2, (300.0, 1200.0)),
            Stop("calibration", PLANNED_STOP, 0.1, (3600.0, 7200.0)),
        ),
    )
    OEE = oee_settings("tests_total", good="tests_passed", ideal="15m")
    REJECT_RATIO = 0.03

    def __init__(self, name: str = "", display_name: str = "", seed: int = 1, **kwargs: Any) -> None:
        super().__init__(name, display_name, seed, **kwargs)
        rng = self.rng
        self.test_step = rng.randrange(INSULATION, DONE)
        self.left = STEP_SECONDS[self.test_step] * rng.uniform(0.2, 1.0)
        self.voltage = self.current = self.power = 0.0
        self.phases = [0.0, 0.0, 0.0]
        self.frequency = 50.0
        self.passed = True
        total = float(rng.randint(500, 5_000))
        self.counters["tests_total"].total = total
        self.counters["tests_passed"].total = total * 0.97

    def _advance(self, dt: float) -> None:
        rng, sm = self.rng, self.sm
        if sm.state == RUNNING:
            self.left -= dt * (sm.rate if sm.scripted and sm.rate > 0 else 1.0)
            if self.left <= 0:
                self._next_step()
        step = self.test_step if sm.state == RUNNING else CONNECT
        target_v = {NO_LOAD: 400.0, LOAD: 28.0, INDUCED: 800.0, RATIO: 230.0}.get(step, 0.0)
        self.voltage = approach(self.voltage, target_v, dt, 2.0)
        self.frequency = 100.0 if step == INDUCED else 50.0
        # the current follows the voltage as it is brought up (not down: the source switches between steps)
        rise = min(1.0, self.voltage / target_v) if target_v else 0.0
        self.current = {NO_LOAD: 2.5, LOAD: 144.0, INDUCED: 4.0, RATIO: 0.3}.get(step, 0.0) * rise
        self.power = {NO_LOAD: 1.3, LOAD: 6.9, INDUCED: 2.4}.get(step, 0.0) * rng.uniform(0.97, 1.03)
        self.phases = [self.voltage + rng.gauss(0.0, 0.2) if self.voltage > 0.05 else 0.0 for _ in range(3)]

    def _next_step(self) -> None:
        if self.test_step == INDUCED:
            self.passed = self.produce_one("tests_total", good="tests_passed")
            self.test_step = INSULATION
            self.left = STEP_SECONDS[INSULATION]
            self.sm.enter(SETUP, self.rng.uniform(120.0, 300.0), "connect_unit")
            return
        self.test_step += 1
        self.left = STEP_SECONDS[self.test_step] * self.rng.uniform(0.9, 1.1)

    def _load(self) -> tuple[float, float]:
        base = 1.5 if self.sm.state != PLANNED_STOP else 0.4
        return base + self.power * 1.4 + self.rng.gauss(0.0, 0.02), 0.6 if self.power else 0.4

    def _values(self) -> dict[str, Any]:
        a, b, c = self.phases
        return {
            "test_voltage_a": a,
            "test_voltage_b": b,
            "test_voltage_c": c,
            "test_current": self.current,
            "test_power": self.power,
            "test_frequency": self.frequency if a else 0.0,
            "test_step": self.test_step if self.sm.state == RUNNING else CONNECT,
            "last_passed": self.passed,
        }
