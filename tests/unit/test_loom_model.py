"""Air-jet loom model: counters, speed, states and the stop mix of a long seeded run."""

from __future__ import annotations

from typing import Any

import pytest

from edge_config.models import ModbusTcpDevice
from simulators.loom import (
    FAULT,
    IDLE,
    LOOM_TAGS,
    MAX_RPM,
    MIN_RPM,
    PLANNED_STOP,
    RUNNING,
    SETUP,
    AirJetLoom,
    loom_device_config,
)

COUNTERS = ("picks_total", "warp_stops", "weft_stops", "other_stops")


def test_counters_only_grow_and_speed_follows_state() -> None:
    loom = AirJetLoom(seed=7, start=0.0)
    last = {k: loom.raw_values()[k] for k in COUNTERS}
    last_energy = loom.energy_kwh
    states = set()
    for t in range(1, 20_000):
        loom.step(float(t))
        v: dict[str, Any] = loom.raw_values()
        for k in COUNTERS:
            assert v[k] >= last[k], (t, k)
            last[k] = v[k]
        assert loom.energy_kwh >= last_energy
        last_energy = loom.energy_kwh
        states.add(loom.run_state)
        if loom.run_state == RUNNING:
            assert MIN_RPM <= loom.speed_rpm <= MAX_RPM
            assert v["motor_on"] is True
        else:
            assert loom.speed_rpm == 0.0
            assert v["speed"] == 0
    assert {RUNNING, FAULT, IDLE} <= states


def test_picks_grow_by_speed_over_60_per_second() -> None:
    loom = AirJetLoom(seed=3, start=0.0, mean_run_s=1e9)  # never stops
    expected = loom.picks
    for t in range(1, 11):
        loom.step(float(t))  # one step a second
        expected += loom.speed_rpm / 60.0
    assert loom.picks == pytest.approx(expected)
    assert loom.run_state == RUNNING


def test_a_step_shorter_than_a_second_waits_for_the_whole_second() -> None:
    loom = AirJetLoom(seed=3, start=0.0)
    before = loom.raw_values()
    loom.step(0.5)
    assert loom.raw_values() == before and loom.steps == 0
    loom.step(1.0)
    assert loom.steps == 1


def test_time_going_backwards_or_standing_still_changes_nothing() -> None:
    loom = AirJetLoom(seed=1, start=100.0)
    loom.step(101.0)
    snapshot = loom.raw_values()
    loom.step(101.0)
    loom.step(50.0)
    assert loom.raw_values() == snapshot


def test_first_step_without_start_only_sets_the_clock() -> None:
    loom = AirJetLoom(seed=1)
    picks = loom.picks
    loom.step(1_000_000.0)
    assert loom.picks == picks
    loom.step(1_000_010.0)
    assert loom.picks > picks


def test_stop_mix_over_a_long_run() -> None:
    loom = AirJetLoom(seed=42, start=0.0)
    loom.step_s = 60.0  # sixty simulated days in steps of a minute: thousands of stops
    for minute in range(1, 60 * 24 * 60):
        loom.step(minute * 60.0)
    total = loom.warp_stops + loom.weft_stops + loom.other_stops
    assert total > 5000
    assert abs(loom.warp_stops / total - 0.58) < 0.02
    assert abs(loom.weft_stops / total - 0.34) < 0.02
    assert abs(loom.other_stops / total - 0.08) < 0.01
    # mostly running; efficiency register (running share, 0.1 %) agrees with the run time
    share = loom.run_s / loom.elapsed_s
    assert 0.6 < share < 0.95
    assert loom.raw_values()["efficiency"] == round(share * 1000)


def test_all_states_occur_and_alarms_match_the_cause() -> None:
    loom = AirJetLoom(seed=5, start=0.0)
    loom.step_s = 10.0
    seen = set()
    for t in range(1, 8 * 24 * 3600, 10):
        loom.step(float(t))
        seen.add(loom.run_state)
        v = loom.raw_values()
        assert v["warp_alarm"] == (loom.run_state == FAULT and loom.stop_cause == "warp")
        assert v["weft_alarm"] == (loom.run_state == FAULT and loom.stop_cause == "weft")
    assert seen == {IDLE, RUNNING, FAULT, SETUP, PLANNED_STOP}


def test_same_seed_same_story() -> None:
    a, b = AirJetLoom(seed=9, start=0.0), AirJetLoom(seed=9, start=0.0)
    for t in range(1, 5000, 3):
        a.step(float(t))
        b.step(float(t))
    assert a.raw_values() == b.raw_values()


def test_raw_values_fit_their_registers() -> None:
    loom = AirJetLoom(seed=2, start=0.0)
    loom.step(30.0)
    v: dict[str, Any] = loom.raw_values()
    assert set(v) == {t["name"] for t in LOOM_TAGS}
    assert 6000 <= v["speed"] <= 12000 or v["speed"] == 0
    assert v["speed"] == round(loom.speed_rpm * 10)
    assert 3700 < v["voltage"] < 3900
    assert 0 < v["power_factor"] <= 1000


def test_device_config_validates() -> None:
    cfg = loom_device_config("loom-01", "喷气织机 1#", "127.0.0.1", 5020, unit_id=3)
    dev = ModbusTcpDevice.model_validate(cfg)
    assert dev.connection.unit_id == 3
    assert dev.poll_interval == 1.0
    assert dev.oee is not None and dev.oee.state_tag == "run_state"
    assert dev.oee.total_count_tag == "picks_total"
    assert dev.oee.ideal_cycle_time == 0.05
    speed = next(t for t in dev.tags if t.name == "speed")
    assert speed.scale == 0.1 and speed.unit == "rpm"
    energy = next(t for t in dev.tags if t.name == "energy_kwh")
    assert energy.type == "float32" and energy.byte_order == "CDAB"
    # the config gets its own copy of the tags
    cfg["tags"][0]["name"] = "changed"
    assert LOOM_TAGS[0]["name"] == "speed"
