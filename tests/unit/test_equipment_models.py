"""Every machine of every pilot industry: ranges, counters, states as configured, determinism, and one
signal table serving Modbus, OPC UA and the configs of each protocol."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from typing import Any

import pytest

from edge_config.models import ModbusRtuDevice, ModbusTcpDevice, OpcUaDevice
from simulators.chemicals import CIP, REACT, BatchReactor, DistillationColumn
from simulators.device_config import device_config
from simulators.drying_oven import DRY, VacuumDryingOven
from simulators.equipment import (
    FAULT,
    IDLE,
    PLANNED_STOP,
    RUNNING,
    SETUP,
    Interval,
    Machine,
    Profile,
    Signal,
    StateMachine,
    Stop,
    modbus_tags,
    state_durations,
)
from simulators.opcua_server import UNITS, UNITS_WITHOUT_CODE, eu_information, unece_unit_id
from simulators.registry import INDUSTRY_LIST, KINDS, machines

ALL = sorted(KINDS)
DAYS = 2


def run(m: Machine, seconds: float, every: float = 10.0, step_s: float = 1.0) -> list[dict[str, Any]]:
    """Values every `every` seconds of model time."""
    m.step_s = step_s
    t = 1000.0
    m.step(t)
    seen = []
    for _ in range(int(seconds / every)):
        t += every
        m.step(t)
        seen.append(dict(m.values()))
    return seen


@pytest.fixture(scope="module")
def long_runs() -> dict[str, tuple[Machine, list[dict[str, Any]]]]:
    """Each kind of machine run for two days, values every 10 s."""
    out = {}
    for kind, cls in KINDS.items():
        m = cls(seed=11)
        out[kind] = (m, run(m, DAYS * 86400.0, step_s=3.0))
    return out


@pytest.mark.parametrize("kind", ALL)
def test_values_stay_in_their_ranges(kind: str, long_runs: dict[str, Any]) -> None:
    m, seen = long_runs[kind]
    for s in m.signals:
        values = [v[s.name] for v in seen]
        if s.range is not None:
            lo, hi = s.range
            assert lo - 1e-9 <= min(values) and max(values) <= hi + 1e-9, (s.name, min(values), max(values))
        if s.type == "bool":
            assert all(isinstance(v, bool) for v in values), s.name
        elif s.integer and s.scale == 1.0:
            assert all(isinstance(v, int) for v in values), s.name


@pytest.mark.parametrize("kind", ALL)
def test_counters_only_grow_and_rejects_never_outgrow_production(kind: str, long_runs: dict[str, Any]) -> None:
    m, seen = long_runs[kind]
    oee = m.OEE
    for s in m.signals:
        if s.counter:
            values = [v[s.name] for v in seen]
            assert all(b >= a for a, b in itertools.pairwise(values)), s.name
    total = [v[oee["total_count_tag"]] for v in seen]
    assert total[-1] > total[0], "production over two days"
    part = oee.get("reject_count_tag") or oee.get("good_count_tag")
    grown = [v[part] for v in seen]
    assert 0 <= grown[-1] - grown[0] <= total[-1] - total[0] + 1


@pytest.mark.parametrize("kind", ALL)
def test_every_state_occurs(kind: str) -> None:
    m = KINDS[kind](seed=3)
    seen = {v["run_state"] for v in run(m, 10 * 86400.0, every=60.0, step_s=30.0)}
    assert seen == {IDLE, RUNNING, FAULT, SETUP, PLANNED_STOP}


@pytest.mark.parametrize("kind", ALL)
def test_stops_last_as_configured(kind: str) -> None:
    """Over 120 simulated days, each stop cause of the profile lasts within its range, with the configured
    mean (±12 % when it occurred 30 times or more). The state machine times spells exactly whatever the
    step, so the machine steps a minute at a time here."""
    m = KINDS[kind](seed=7)
    m.sm.spells = []
    run(m, 120 * 86400.0, every=6 * 3600.0, step_s=60.0)
    durations = state_durations(m.sm.spells)
    checked = 0
    for stop in m.sm.profile.stops:
        spells = durations.get((stop.state, stop.cause), [])
        if not spells:
            continue
        lo, hi = stop.seconds
        assert all(lo - 1e-6 <= d <= hi + 1e-6 for d in spells), (stop.cause, min(spells), max(spells))
        if len(spells) >= 30:
            assert statistics.mean(spells) == pytest.approx(stop.mean, rel=0.12), stop.cause
            checked += 1
    assert checked >= 1


def test_the_state_machine_draws_runs_and_stops_as_configured() -> None:
    profile = Profile(600.0, (Stop("jam", IDLE, 0.7, (10.0, 50.0)), Stop("break", FAULT, 0.3, (300.0, 900.0))))
    sm = StateMachine(profile, random.Random(1))
    sm.spells = []
    for _ in range(3_000_000):
        sm.advance(1.0)
    d = state_durations(sm.spells)
    runs, jams, breaks = d[(RUNNING, "")], d[(IDLE, "jam")], d[(FAULT, "break")]
    assert statistics.mean(runs) == pytest.approx(600.0, rel=0.05)  # exponential with the configured mean
    assert statistics.median(runs) == pytest.approx(600.0 * math.log(2), rel=0.08)
    assert statistics.mean(jams) == pytest.approx(30.0, rel=0.03)
    assert statistics.mean(breaks) == pytest.approx(600.0, rel=0.03)
    assert len(jams) / (len(jams) + len(breaks)) == pytest.approx(0.7, abs=0.02)
    assert sm.counts == {"jam": len(jams), "break": len(breaks)} or abs(sm.counts["jam"] - len(jams)) <= 1


def test_a_timeline_is_played_exactly() -> None:
    profile = Profile(600.0, (Stop("jam", IDLE, 1.0, (10.0, 50.0)),))
    timeline = [Interval(90.0, RUNNING, 0.5), Interval(30.0, FAULT), Interval(60.0, SETUP, events=("counter_reset",))]
    sm = StateMachine(profile, random.Random(1), timeline)
    states = []
    for _ in range(200):
        sm.advance(1.0)
        states.append(sm.state)
    assert states[:89] == [RUNNING] * 89 and states[89:119] == [FAULT] * 30 and states[119:] == [SETUP] * 81
    assert sm.events == ["counter_reset"]  # taken by the machine


@pytest.mark.parametrize("kind", ALL)
def test_same_seed_same_story_whenever_it_is_read(kind: str) -> None:
    a, b = KINDS[kind](seed=5), KINDS[kind](seed=5)
    a.step(0.0)
    b.step(0.0)
    for t in range(1, 3600, 7):  # a reads every 7 s, b only at the end: the same story
        a.step(float(t))
        a.values()
    b.step(a.steps * 1.0)
    assert a.values() == b.values()


@pytest.mark.parametrize("kind", ALL)
def test_a_machine_has_meter_state_and_oee_counters(kind: str) -> None:
    m = KINDS[kind]()
    names = {s.name for s in m.signals}
    assert {"energy_kwh", "power_kw", "voltage", "current", "power_factor", "run_state"} <= names
    assert 6 <= len(m.SIGNALS) <= 14
    oee = m.OEE
    assert oee["state_tag"] == "run_state" and oee["total_count_tag"] in names
    part = oee.get("reject_count_tag") or oee.get("good_count_tag")
    assert part in names and m.signal(part).counter and m.signal(oee["total_count_tag"]).counter
    assert all(s.unit is None or s.unit in UNITS or s.unit in UNITS_WITHOUT_CODE for s in m.signals), kind


@pytest.mark.parametrize("protocol", ["modbus", "rtu", "opcua"])
@pytest.mark.parametrize("kind", ALL)
def test_each_protocol_gets_a_valid_config_from_one_table(kind: str, protocol: str) -> None:
    m = KINDS[kind]()
    conn = {"modbus": {"host": "127.0.0.1", "port": 5020}, "rtu": {"port": "/dev/ttyUSB0", "unit_id": 3},
            "opcua": {"endpoint": "opc.tcp://127.0.0.1:4840"}}[protocol]  # fmt: skip
    cfg = device_config(m, f"{m.prefix}-01", m.display_name, conn, protocol)
    model = {"modbus": ModbusTcpDevice, "rtu": ModbusRtuDevice, "opcua": OpcUaDevice}[protocol]
    dev = model.model_validate(cfg)
    assert [t.name for t in dev.tags] == [s.name for s in m.signals]
    assert dev.oee is not None and dev.type == m.kind
    if protocol == "opcua":
        temps = {t.name: t for t in dev.tags}
        for s in m.signals:
            assert temps[s.name].node == f"ns=2;s={m.name}.{s.browse_name}"
            assert temps[s.name].unit == s.unit


def test_modbus_layout_packs_consecutive_bools_and_keeps_tables_apart() -> None:
    tags = modbus_tags(
        [Signal("a", "uint32"), Signal("b", "bool"), Signal("c", "bool"), Signal("d", "int16", table="ir"),
         Signal("e", "bool"), Signal("f", "string", length=3), Signal("g", "bool", table="di")]
    )  # fmt: skip
    assert [(t["name"], t["address"], t.get("bit")) for t in tags] == [
        ("a", "hr:0", None), ("b", "hr:2", 0), ("c", "hr:2", 1), ("d", "ir:0", None), ("e", "hr:3", 0),
        ("f", "hr:4", None), ("g", "di:0", None),
    ]  # fmt: skip


def test_raw_register_values_scale_and_wrap() -> None:
    m = machines("textiles", [1, 0])[0].machine
    m.step(0.0)
    m.step(5.0)
    v, raw = m.values(), m.raw_values()
    assert raw["speed"] == round(v["speed"] * 10) and raw["voltage"] == round(v["voltage"] * 10)
    m.rollover(margin=3)
    m.step(10.0)  # 5 s at ≈15 picks/s: past the top of the uint32 register
    assert m.values()["picks_total"] < 100


def test_counter_reset_and_rollover_are_seen_on_every_counter() -> None:
    m = BatchReactor(seed=2)
    m.step(0.0)
    m.reset_counters()
    assert m.values()["batch_count"] == 0 or m.steps == 0
    m.step(1.0)
    assert m.values()["batch_count"] == 0 and m.values()["batches_off_spec"] == 0
    m.rollover(margin=1)
    m.step(2.0)
    assert m.values()["batch_count"] == 0xFFFFFFFF - 1


def test_batch_reactor_cycles_with_its_phases() -> None:
    r = BatchReactor(seed=4)
    r.PROFILE.stops  # noqa: B018 - the profile is the class's
    seen = run(r, 8 * 3600.0, every=5.0)
    assert seen[-1]["batch_count"] - seen[0]["batch_count"] >= 5  # a batch takes about 45 minutes
    assert {s["phase"] for s in seen} == set(range(6))  # every phase, CIP included
    react = [s["temperature"] for s in seen if s["phase"] == REACT and s["run_state"] == RUNNING]
    assert react and max(abs(t - r.setpoint) for t in react[5:]) <= 1.0 + 1e-9  # PID holds ± 1 °C
    assert any(s["run_state"] == SETUP for s in seen if s["phase"] == CIP)  # CIP counts as setup
    energy = [s["energy_kwh"] for s in seen]
    assert energy == sorted(energy)


def test_distillation_column_is_continuous() -> None:
    c = DistillationColumn(seed=5)
    seen = [s for s in run(c, 6 * 3600.0, every=5.0) if s["run_state"] == RUNNING]
    product = [s["product_kg"] for s in seen]
    assert product == sorted(product) and product[-1] > product[0]
    assert all(s["top_temperature"] < s["bottom_temperature"] for s in seen)


def test_vacuum_oven_pulls_a_deep_vacuum_and_extracts_water() -> None:
    o = VacuumDryingOven(seed=6)
    seen = run(o, 8 * 3600.0, every=5.0)
    dry = [s for s in seen if s["phase"] == DRY]
    assert dry and min(s["vacuum_pressure"] for s in dry) <= 50.0
    assert max(s["temperature"] for s in seen) <= 130.0
    assert max(s["water_extracted"] for s in seen) > 30.0
    assert seen[-1]["batch_count"] > seen[0]["batch_count"]


def test_industries_cover_the_pilot_and_name_devices_stably() -> None:
    assert [i.name for i in INDUSTRY_LIST] == ["textiles", "power", "chemicals", "nonferrous", "food", "new_materials"]
    plant = machines("all", 1)
    assert len(plant) == len(KINDS) == 11
    assert plant[0].device_id == "loom-01" and plant[0].machine.seed == 1  # as the textiles plant alone
    assert machines("power", 2)[1].device_id == "winder-02"
    with pytest.raises(ValueError, match="unknown industry 'foo'"):
        machines("foo", 1)
    with pytest.raises(ValueError, match="devices must be 1 or more"):
        machines("food", 0)


@pytest.mark.parametrize(("code", "unit_id"), [("CEL", 4408652), ("MPA", 5066817), ("P1", 20529)])
def test_unece_unit_ids(code: str, unit_id: int) -> None:
    assert unece_unit_id(code) == unit_id


def test_engineering_units_carry_their_unece_code() -> None:
    eu = eu_information("°C")
    assert (eu.UnitId, eu.DisplayName.Text) == (4408652, "°C")
    assert eu_information("1/1000 spindle·h").UnitId == -1  # no code: told so, not made up
