"""Equipment models: one definition per machine, served over Modbus (TCP, RTU), OPC UA and DL/T 645.

A machine declares its signals once (`Signal`: name, type, unit, range, business domain,
description, and how the value sits in a Modbus register: scale, table, byte order). The rest is
derived from that table:

- the Modbus register map (`modbus_tags`): addresses allocated in declaration order per table,
  consecutive bools in a register packed into its bits, in the config contract's tag format;
- the OPC UA nodes (`OpcUaNode`, `opcua_nodes`): CamelCase browse names, the variant type from the
  type and scale (a scaled integer is served as its engineering value, a Double), EngineeringUnits
  and EURange from the unit and range;
- the device configs of each protocol (`simulators.registry`).

Every machine has the same five run states (`STATES`), driven by a `StateMachine`: running spells
of random length end in a stop drawn from the machine's `Profile` (micro-stops, faults, setups,
planned stops with their causes, weights and durations), or follow a scripted `Timeline`. Every
machine has an energy meter (`EnergyMeter`: kWh, kW, V, A, power factor, frequency) and counters
for OEE (a total and a good or reject counter) that wrap at their register's maximum.

Models advance in fixed steps of `step_s` seconds of model time (1 s): what a machine shows
depends on its seed and the model time only, never on when or how often it is read.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

IDLE, RUNNING, FAULT, SETUP, PLANNED_STOP = 0, 1, 2, 3, 4
STATE_NAMES: dict[int, str] = {IDLE: "idle", RUNNING: "running", FAULT: "fault", SETUP: "setup",
                               PLANNED_STOP: "planned_stop"}  # fmt: skip
STATE_CODES: dict[str, int] = {name: code for code, name in STATE_NAMES.items()}
STATES: dict[str, list[int]] = {"running": [RUNNING], "idle": [IDLE], "fault": [FAULT], "setup": [SETUP],
                                "planned_stop": [PLANNED_STOP]}  # fmt: skip
RUN_STATE_TEXT = "0 idle, 1 running, 2 fault, 3 setup, 4 planned stop 运行状态"

_INT_RANGE: dict[str, tuple[int, int]] = {
    "int16": (-(1 << 15), (1 << 15) - 1),
    "uint16": (0, (1 << 16) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "uint32": (0, (1 << 32) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint64": (0, (1 << 64) - 1),
}
_REGISTERS = {"bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4,
              "uint64": 4, "float64": 4}  # fmt: skip
# OPC UA variant type of an unscaled value
_VARIANT = {"bool": "Boolean", "string": "String", "float32": "Float", "float64": "Double", "int16": "Int16",
            "uint16": "UInt16", "int32": "Int32", "uint32": "UInt32", "int64": "Int64", "uint64": "UInt64"}  # fmt: skip


def camel(name: str) -> str:
    """`wall_temperature` → `WallTemperature` (OPC UA browse names)."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def snake(name: str) -> str:
    """`WallTemperature` → `wall_temperature`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal of a machine, as the config contract and the OPC UA address space need it.

    `scale`: a Modbus integer register holds value / scale (the engineering value is register ×
    scale, as in the tag map); the engineering value is quantized to it. `resolution`: the step of a
    float value (a sensor's resolution); None keeps every digit. `counter`: a count that only grows
    and wraps at the register's maximum (OEE counters).
    """

    name: str
    type: str = "float32"
    unit: str | None = None
    lo: float | None = None
    hi: float | None = None
    domain: str = "equipment"
    description: str = ""
    scale: float = 1.0
    resolution: float | None = None
    table: str = "hr"
    byte_order: str | None = None
    length: int | None = None
    counter: bool = False

    @property
    def range(self) -> tuple[float, float] | None:
        return None if self.lo is None or self.hi is None else (self.lo, self.hi)

    @property
    def browse_name(self) -> str:
        return camel(self.name)

    @property
    def integer(self) -> bool:
        return self.type in _INT_RANGE

    @property
    def step(self) -> float | None:
        """The quantum of the engineering value (None: not quantized)."""
        if self.integer:
            return self.scale
        return self.resolution

    @property
    def counter_max(self) -> int | None:
        """The largest value before a counter wraps to 0 (the register's maximum)."""
        return _INT_RANGE[self.type][1] if self.counter and self.integer else None

    @property
    def opcua_type(self) -> str:
        """Variant type on OPC UA: scaled integers are served as their engineering value."""
        if self.integer and self.scale != 1.0:
            return "Double"
        return _VARIANT[self.type]

    @property
    def config_type(self) -> str:
        """The tag type of an OPC UA device config (what the driver receives)."""
        if self.integer and self.scale != 1.0:
            return "float64"
        return self.type

    @property
    def registers(self) -> int:
        if self.type == "string":
            return self.length or 1
        return _REGISTERS[self.type]


def oee_settings(total: str, *, ideal: str, reject: str | None = None, good: str | None = None) -> dict[str, Any]:
    """A machine's OEE settings for the config: the run state tag, its counters, its ideal cycle time."""
    out: dict[str, Any] = {"state_tag": "run_state", "states": STATES, "total_count_tag": total}
    if reject is not None:
        out["reject_count_tag"] = reject
    if good is not None:
        out["good_count_tag"] = good
    out["ideal_cycle_time"] = ideal
    return out


def run_state_signal() -> Signal:
    return Signal("run_state", "uint16", domain="equipment", description=RUN_STATE_TEXT)


def counter_signal(name: str, unit: str | None, description: str, domain: str = "production") -> Signal:
    return Signal(name, "uint32", unit, domain=domain, description=description, counter=True)


def meter_signals(current_scale: float = 0.01, energy_type: str = "float32") -> tuple[Signal, ...]:
    """The energy meter every machine has (input registers; float32 energy word-swapped, as many meters)."""
    return (
        Signal("energy_kwh", energy_type, "kWh", domain="energy", description="active energy 有功电能",
               table="ir", byte_order="CDAB", resolution=0.001),
        Signal("power_kw", "float32", "kW", 0, None, domain="energy", description="active power 有功功率",
               table="ir", resolution=0.01),
        Signal("voltage", "uint16", "V", 342, 418, domain="energy", description="line voltage 线电压",
               scale=0.1, table="ir"),
        Signal("current", "uint16", "A", 0, None, domain="energy", description="phase current 电流",
               scale=current_scale, table="ir"),
        Signal("power_factor", "int16", None, 0, 1, domain="energy", description="power factor 功率因数",
               scale=0.001, table="ir"),
    )  # fmt: skip


# ---------------------------------------------------------------- derived maps


def modbus_tags(signals: Iterable[Signal]) -> list[dict[str, Any]]:
    """The Modbus tag map of a signal table: config contract tag dicts, addresses allocated in order.

    Each table (hr, ir, di, co) has its own cursor; consecutive bools in a register table share a
    register, one bit each, until 16 bits are used.
    """
    cursor = {"hr": 0, "ir": 0, "di": 0, "co": 0}
    packing: tuple[str, int, int] | None = None  # (table, register, next bit)
    tags: list[dict[str, Any]] = []
    for s in signals:
        tag: dict[str, Any] = {"name": s.name, "type": s.type}
        if s.table in ("di", "co"):
            if s.type != "bool":
                raise ValueError(f"signal {s.name}: table {s.table} holds bools only")
            tag["address"] = f"{s.table}:{cursor[s.table]}"
            cursor[s.table] += 1
        elif s.type == "bool":
            if packing is None or packing[0] != s.table or packing[2] >= 16:
                packing = (s.table, cursor[s.table], 0)
                cursor[s.table] += 1
            tag["address"] = f"{s.table}:{packing[1]}"
            tag["bit"] = packing[2]
            packing = (packing[0], packing[1], packing[2] + 1)
        else:
            tag["address"] = f"{s.table}:{cursor[s.table]}"
            cursor[s.table] += s.registers
            packing = None
        if s.scale != 1.0:
            tag["scale"] = s.scale
        if s.byte_order:
            tag["byte_order"] = s.byte_order
        if s.type == "string":
            tag["length"] = s.length
        if s.unit:
            tag["unit"] = s.unit
        tag["domain"] = s.domain
        tag["description"] = s.description
        tags.append(tag)
    return tags


@dataclass(frozen=True, slots=True)
class OpcUaNode:
    """A signal as an OPC UA variable under its machine's object."""

    signal: str  # the signal's name (config tag name)
    browse_name: str
    variant: str  # Double, Float, Int32, UInt32, Boolean, String, ...
    config_type: str
    unit: str | None
    range: tuple[float, float] | None
    description: str
    domain: str


NS = 2  # the simulator's namespace index (urn:edgegw:simulator)


def node_id(equipment: str, tag: str) -> str:
    """The node id of a simulated machine's variable: `ns=2;s=Reactor1.Temperature`."""
    return f"ns={NS};s={equipment}.{tag}"


def opcua_nodes(signals: Iterable[Signal]) -> list[OpcUaNode]:
    return [
        OpcUaNode(s.name, s.browse_name, s.opcua_type, s.config_type, s.unit, s.range, s.description, s.domain)
        for s in signals
    ]


# ---------------------------------------------------------------- run states


@dataclass(frozen=True, slots=True)
class Stop:
    """One way a running spell ends: a cause, the state it puts the machine in, how often, how long."""

    cause: str
    state: int
    weight: float
    seconds: tuple[float, float]  # uniform duration range

    @property
    def mean(self) -> float:
        return (self.seconds[0] + self.seconds[1]) / 2


@dataclass(frozen=True, slots=True)
class Profile:
    """How a machine runs: running spells of exponential length (mean `mean_run` s) ended by `stops`."""

    mean_run: float
    stops: tuple[Stop, ...]

    def __post_init__(self) -> None:
        if self.mean_run <= 0 or not self.stops or any(s.weight <= 0 for s in self.stops):
            raise ValueError("a profile needs mean_run > 0 and stops with positive weights")

    def share(self, cause: str) -> float:
        return next(s.weight for s in self.stops if s.cause == cause) / sum(s.weight for s in self.stops)


@dataclass(frozen=True, slots=True)
class Interval:
    """A scripted interval of a timeline: state, production rate (share of nominal), reject ratio, events."""

    seconds: float
    state: int
    rate: float = 1.0
    reject: float | None = None  # None: the machine's own reject ratio
    events: tuple[str, ...] = ()  # counter_reset, rollover at the interval's start


@dataclass(frozen=True, slots=True)
class Spell:
    """A completed stay in one state (recorded by the state machine for statistics)."""

    state: int
    cause: str
    seconds: float


class StateMachine:
    """The run state of a machine: a seeded random process after a `Profile`, or a scripted timeline."""

    def __init__(self, profile: Profile, rng: random.Random, timeline: Sequence[Interval] = (),
                 repeat: bool = False) -> None:  # fmt: skip
        self.profile = profile
        self.rng = rng
        self.timeline = list(timeline)
        self.repeat = repeat
        self.state = RUNNING
        self.cause = ""
        self.counts: dict[str, int] = {}  # stops by cause
        self.spells: list[Spell] | None = None  # set to [] to record completed spells
        self.rate = 1.0
        self.reject: float | None = None
        self.events: list[str] = []  # timeline events due, taken by the machine
        self.stopped: list[str] = []  # causes of the stops begun, taken by the machine
        self._clock = 0.0  # model seconds advanced
        self._since = 0.0  # when the current spell began, exactly (between steps)
        self._index = -1
        if self.timeline:
            self._left = 0.0
            self._next_interval()
        else:
            self._left = rng.expovariate(1.0 / profile.mean_run)

    @property
    def scripted(self) -> bool:
        return bool(self.timeline)

    def advance(self, dt: float) -> bool:
        """Move on by `dt` seconds; True when the state changed."""
        self._clock += dt
        self._left -= dt
        changed = False
        while self._left <= 1e-9:
            before = self.state
            if self.timeline:
                if not self._next_interval():
                    self._left = math.inf
                    break
            else:
                self._next_random()
            changed = changed or self.state != before
        return changed

    def enter(self, state: int, seconds: float, cause: str) -> None:
        """The machine itself stops (a doff, a batch's cleaning): `state` for `seconds`, then running."""
        if self.timeline or self.state != RUNNING:
            return
        self._begin(state, cause, seconds)

    def _begin(self, state: int, cause: str, seconds: float) -> None:
        boundary = self._clock + min(self._left, 0.0)  # where the spell ended, between two steps
        if self.spells is not None and boundary > self._since:
            self.spells.append(Spell(self.state, self.cause, boundary - self._since))
        self._since = boundary
        self.state, self.cause = state, cause
        self._left = seconds
        if state != RUNNING:
            self.counts[cause] = self.counts.get(cause, 0) + 1
            self.stopped.append(cause)

    def _next_random(self) -> None:
        rng = self.rng
        if self.state != RUNNING:
            self._begin(RUNNING, "", self._left + rng.expovariate(1.0 / self.profile.mean_run))
            return
        stops = self.profile.stops
        stop = rng.choices(stops, [s.weight for s in stops])[0]
        self._begin(stop.state, stop.cause, self._left + rng.uniform(*stop.seconds))

    def _next_interval(self) -> bool:
        self._index += 1
        if self._index >= len(self.timeline):
            if not self.repeat:
                self._index = len(self.timeline) - 1
                return False
            self._index = 0
        iv = self.timeline[self._index]
        self._begin(iv.state, "script", self._left + iv.seconds)
        self.rate = iv.rate if iv.state == RUNNING else 0.0
        self.reject = iv.reject
        self.events.extend(iv.events)
        return True


# ---------------------------------------------------------------- energy meter


def approach(value: float, target: float, dt: float, tau: float) -> float:
    """First-order lag towards `target` with time constant `tau` seconds (exact for any step)."""
    if tau <= 0:
        return target
    return target + (value - target) * math.exp(-dt / tau)


class EnergyMeter:
    """A three-phase meter on the machine's supply: the load's power and power factor, integrated."""

    def __init__(self, rng: random.Random, kwh: float, nominal_v: float = 380.0) -> None:
        self.rng = rng
        self.energy_kwh = kwh
        self.nominal_v = nominal_v
        self.power_kw = 0.0
        self.voltage = nominal_v
        self.current = 0.0
        self.power_factor = 0.0
        self.frequency = 50.0

    def advance(self, load_kw: float, power_factor: float, dt: float) -> None:
        rng = self.rng
        self.power_kw = max(0.0, load_kw)
        self.power_factor = min(0.999, max(0.05, power_factor))
        self.voltage = rng.gauss(self.nominal_v, 1.5)
        self.frequency = rng.gauss(50.0, 0.015)
        self.current = self.power_kw * 1000.0 / (math.sqrt(3) * self.voltage * self.power_factor)
        self.energy_kwh += self.power_kw * dt / 3600.0

    def values(self) -> dict[str, float]:
        return {
            "energy_kwh": self.energy_kwh,
            "power_kw": self.power_kw,
            "voltage": self.voltage,
            "current": self.current,
            "power_factor": self.power_factor,
        }


# ---------------------------------------------------------------- the machine


def _quantize(value: float, step: float) -> float:
    return round(round(value / step) * step, 10)


def _renderer(s: Signal) -> tuple[str, Callable[[Any], tuple[Any, Any]]]:
    """(name, a function from a model value to (engineering value, register value)) of a signal."""
    if s.counter:
        modulo = (s.counter_max or 0) + 1
        return s.name, lambda v: (int(v) % modulo,) * 2
    if s.integer:
        lo, hi = _INT_RANGE[s.type]
        scale = s.scale

        def scaled(v: Any) -> tuple[Any, Any]:
            r = min(hi, max(lo, round(float(v) / scale)))
            return (r if scale == 1.0 else _quantize(r * scale, scale)), r

        return s.name, scaled
    if s.type in ("float32", "float64"):
        res = s.resolution
        if res is None:
            return s.name, lambda v: (float(v),) * 2
        return s.name, lambda v: (_quantize(float(v), res),) * 2
    return s.name, lambda v: (v, v)


@dataclass
class Counter:
    """A production counter: a running total (fractional), shown as whole units wrapped at the register."""

    total: float = 0.0
    offset: int = 0  # added on the register (a rollover fault moves it)


class Machine:
    """Base of every simulated machine. Subclasses give the class attributes and `_advance`/`_values`.

    `values()` are engineering values by signal name (quantized to each signal's scale or
    resolution, counters wrapped), `raw_values()` the Modbus register-level values, `tags` the
    Modbus tag map. OEE counters live in `counters` and grow through `produce`.
    """

    kind: ClassVar[str]  # equipment type in the config (`air_jet_loom`)
    label: ClassVar[str]  # Chinese name (`喷气织机`)
    english: ClassVar[str]  # English name (`air-jet loom`)
    prefix: ClassVar[str]  # device id prefix (`loom` → loom-01) and OPC UA object name (Loom1)
    SIGNALS: ClassVar[tuple[Signal, ...]]  # the machine's own signals (without the meter)
    METER: ClassVar[tuple[Signal, ...]] = meter_signals()
    PROFILE: ClassVar[Profile]
    OEE: ClassVar[dict[str, Any]]
    NOMINAL_RATE: ClassVar[float] = 1.0  # counted units per second running at nominal speed
    REJECT_RATIO: ClassVar[float] = 0.0
    METER_CT: ClassVar[int] = 1  # current transformer ratio of its DL/T 645 meter (1: connected directly)
    step_s: float = 1.0

    def __init__(
        self,
        name: str = "",
        display_name: str = "",
        seed: int = 1,
        *,
        profile: Profile | None = None,
        start: float | None = None,
        points: int = 0,
        point_change: float = 0.2,
        timeline: Sequence[Interval] = (),
        repeat: bool = False,
    ) -> None:
        number = re.search(r"(\d+)$", name)
        self.name = name or f"{camel(self.prefix)}1"
        self.display_name = display_name or f"{self.label} {number.group(1) if number else 1}#"
        self.seed = seed
        self.rng = random.Random(seed)
        self.sm = StateMachine(profile or self.PROFILE, self.rng, timeline, repeat)
        self.meter = EnergyMeter(random.Random(seed * 7919 + 1), self.rng.uniform(1_000.0, 50_000.0))
        self.counters: dict[str, Counter] = {}
        self.points = [self.rng.randint(200, 800) for _ in range(points)]  # tenths of a percent
        self.point_change = point_change
        own = (*self.SIGNALS, *self.METER)
        self.signals: tuple[Signal, ...] = (*own, *point_signals(points))
        self._by_name = {s.name: s for s in self.signals}
        self._render = [_renderer(s) for s in own]
        self._point_names = [s.name for s in self.signals[len(own) :]]
        self.steps = 0  # model steps taken: what a cache of values keys on
        self.clock_skew = 0.0  # seconds added to the timestamps the machine reports (a fault)
        self._t: float | None = start
        self._cache: tuple[int, dict[str, Any], dict[str, Any]] | None = None
        self._tags: list[dict[str, Any]] | None = None
        for s in self.signals:
            if s.counter:
                self.counters[s.name] = Counter()

    def play(self, timeline: Sequence[Interval], repeat: bool = False) -> None:
        """Follow a scripted timeline from now on instead of the random process."""
        self.sm = StateMachine(self.sm.profile, self.rng, timeline, repeat)

    # ------------------------------------------------------------ protocol views

    @property
    def tags(self) -> list[dict[str, Any]]:
        """The Modbus tag map (what `simulators.modbus_server` serves)."""
        if self._tags is None:
            self._tags = modbus_tags(self.signals)
        return self._tags

    @property
    def nodes(self) -> list[OpcUaNode]:
        return opcua_nodes(self.signals)

    @property
    def run_state(self) -> int:
        return self.sm.state

    def signal(self, name: str) -> Signal:
        return self._by_name[name]

    # ------------------------------------------------------------ time

    def step(self, now: float) -> None:
        """Advance to model time `now` in whole steps; the first call only sets the clock."""
        if self._t is None:
            self._t = now
            return
        n = int((now - self._t) / self.step_s + 1e-9)
        if n <= 0:
            return
        dt = self.step_s
        sm = self.sm
        for _ in range(n):
            sm.advance(dt)
            if sm.stopped:
                for cause in sm.stopped:
                    self._stopped(cause)
                sm.stopped.clear()
            if sm.events:
                self._events(sm.events)
                sm.events.clear()
            self._advance(dt)
            kw, pf = self._load()
            self.meter.advance(kw, pf, dt)
            if self.points:
                self._move_points()
        self._t += n * dt
        self.steps += n

    def _move_points(self) -> None:
        """Each point moves a tenth up or down with chance `point_change`, within 0.1 … 99.9."""
        rng, pts, p = self.rng.random, self.points, self.point_change
        for i in range(len(pts)):
            if rng() < p:
                pts[i] = min(999, max(1, pts[i] + (1 if rng() < 0.5 else -1)))

    # ------------------------------------------------------------ production

    def produce(self, units: float, total: str, reject: str | None = None, good: str | None = None) -> None:
        """Count `units` made into the `total` counter, and the rejects (or good ones) among them."""
        self.counters[total].total += units
        ratio = self.sm.reject if self.sm.reject is not None else self.REJECT_RATIO
        bad = 0.0
        if ratio > 0:
            # exactly as scripted; otherwise around the machine's ratio, varying from step to step
            bad = units * ratio * (1.0 if self.sm.scripted else self.rng.uniform(0.0, 2.0))
        if reject is not None:
            self.counters[reject].total += bad
        if good is not None:
            self.counters[good].total += units - bad

    def produce_one(self, total: str, reject: str | None = None, good: str | None = None) -> bool:
        """Count one unit (a coil, a batch, a test); True when it is good. A scripted reject ratio is
        counted exactly (as a fraction of a unit), otherwise each unit is a reject with that chance."""
        if self.sm.scripted:
            self.produce(1.0, total, reject, good)
            return True
        ratio = self.sm.reject if self.sm.reject is not None else self.REJECT_RATIO
        ok = self.rng.random() >= ratio
        self.counters[total].total += 1.0
        if reject is not None and not ok:
            self.counters[reject].total += 1.0
        if good is not None and ok:
            self.counters[good].total += 1.0
        return ok

    def reset_counters(self) -> None:
        """Counters back to 0 (an operator's reset, or a shift change)."""
        for c in self.counters.values():
            c.total, c.offset = 0.0, 0
        self._cache = None

    def rollover(self, margin: int = 20) -> None:
        """Move every counter `margin` units below its register's maximum: it wraps soon."""
        for name, c in self.counters.items():
            top = self._by_name[name].counter_max or 0
            c.offset = (top - margin - int(c.total)) % (top + 1)
        self._cache = None

    def _events(self, events: Sequence[str]) -> None:
        for e in events:
            if e == "counter_reset":
                self.reset_counters()
            elif e == "rollover":
                self.rollover()

    # ------------------------------------------------------------ values

    def values(self) -> dict[str, Any]:
        """Engineering values by signal name, as a PLC or server shows them now."""
        return self._rendered()[0]

    def raw_values(self) -> dict[str, Any]:
        """Register-level values by signal name (value / scale as an integer, counters wrapped)."""
        return self._rendered()[1]

    def _rendered(self) -> tuple[dict[str, Any], dict[str, Any]]:
        cache = self._cache
        if cache is not None and cache[0] == self.steps:
            return cache[1], cache[2]
        raw_values = self._values()
        raw_values.update(self.meter.values())
        raw_values["run_state"] = self.sm.state
        for name, c in self.counters.items():
            raw_values[name] = int(c.total) + c.offset
        eng: dict[str, Any] = {}
        reg: dict[str, Any] = {}
        for name, render in self._render:
            eng[name], reg[name] = render(raw_values[name])
        for name, tenths in zip(self._point_names, self.points, strict=True):  # already on their resolution
            eng[name] = reg[name] = tenths / 10
        self._cache = (self.steps, eng, reg)
        return eng, reg

    # ------------------------------------------------------------ for subclasses

    def _stopped(self, cause: str) -> None:
        """A stop with `cause` began (stop counters count here)."""

    def _advance(self, dt: float) -> None:
        raise NotImplementedError

    def _values(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load(self) -> tuple[float, float]:
        """Electrical load now: (kW, power factor)."""
        raise NotImplementedError


def point_signals(count: int) -> tuple[Signal, ...]:
    """Extra monitoring points of a machine (temperatures, vibration…), for scale runs: `point_001`…"""
    return tuple(
        Signal(f"point_{i + 1:03d}", "float32", "%", 0, 100, domain="equipment",
               description=f"monitoring point {i + 1} 监测点", resolution=0.1)
        for i in range(count)
    )  # fmt: skip


def state_durations(spells: Iterable[Spell]) -> dict[tuple[int, str], list[float]]:
    """Completed spells by (state, cause), for statistics."""
    out: dict[tuple[int, str], list[float]] = {}
    for s in spells:
        out.setdefault((s.state, s.cause), []).append(s.seconds)
    return out
