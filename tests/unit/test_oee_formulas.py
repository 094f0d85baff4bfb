"""OEE per ISO 22400-2 on hand-computed fixtures: the time model, losses, micro-stops under both policies,
shift splits, counter wraps and resets, offline gaps, P above 1, missing counters."""

from __future__ import annotations

from datetime import date

import pytest

from cloud_bridge.metrics import CountPoint, OeeParams, OeeResult, ShiftSpec, compute_oee
from cloud_bridge.metrics.calendar import local_ms

TZ = "Asia/Shanghai"
T0 = local_ms(date(2024, 5, 1), 0, TZ)  # local midnight
S = 1000
M = 60 * S
H = 60 * M


def at(hh: int, mm: int = 0, ss: int = 0) -> int:
    return T0 + hh * H + mm * M + ss * S


ALWAYS_ONLINE = [(T0 - H, True)]


def test_one_shift_with_a_break_fault_and_setup() -> None:
    """Shift 08:00–16:00 with a 30 min lunch break: POT 450 min. Fault 47 min, setup 20 min: APT 383 min.
    19 000 parts, 400 rejects, ideal cycle time 1 s:
      A = 383 / 450 = 0.851111, P = 19 000 / 22 980 = 0.826806, Q = 18 600 / 19 000 = 0.978947,
      OEE = ideal × good / PBT = 18 600 / 27 000 = 0.688889."""
    shift = ShiftSpec("A", (8 * 60, 16 * 60), break_spans=((12 * 60, 12 * 60 + 30),))
    r = compute_oee(
        start=at(8),
        end=at(16),
        states=[
            (at(8), "running"),
            (at(9), "fault"),
            (at(9, 47), "running"),
            (at(12), "idle"),  # over lunch: in the break, not planned operation
            (at(12, 30), "running"),
            (at(14), "setup"),
            (at(14, 20), "running"),
        ],
        online=ALWAYS_ONLINE,
        counts=[CountPoint(at(8), 0, reject=0), CountPoint(at(16), 19_000, reject=400)],
        shifts=[shift],
        tz=TZ,
        params=OeeParams(ideal_cycle_time_s=1.0, quality_from="reject"),
    )
    t = {k: v / 1000 for k, v in r.time_ms.items()}
    assert (t["window"], t["planned_breaks"], t["planned_operation"], t["unscheduled"]) == (28_800, 1_800, 27_000, 0)
    assert (t["fault"], t["setup"], t["idle"], t["micro_stops"]) == (2_820, 1_200, 0, 0)
    assert (t["planned_busy"], t["actual_production"], t["running"]) == (27_000, 22_980, 22_980)
    assert r.availability == pytest.approx(383 / 450)
    assert r.performance == pytest.approx(19_000 / 22_980)
    assert r.quality == pytest.approx(18_600 / 19_000)
    assert r.oee == pytest.approx(18_600 / 27_000)
    assert r.counts["produced"] == pytest.approx(19_000) and r.counts["scrap"] == pytest.approx(400)
    assert r.losses_s == pytest.approx(
        {"fault": 2_820, "setup": 1_200, "idle": 0, "micro_stops": 0, "speed": 22_980 - 19_000, "scrap": 400}
    )
    losses = sum(v for v in r.losses_s.values() if v is not None)
    assert losses + 18_600 == pytest.approx(t["planned_busy"])  # the losses and the good parts fill PBT
    assert r.flags == ()
    [shift_result] = r.shifts
    assert shift_result.shift is not None and shift_result.shift.name == "A"
    assert shift_result.oee == pytest.approx(r.oee)


MICRO = [
    (at(0), "idle"),  # a stop at the start, not after a run: not a micro-stop
    (at(0, 0, 50), "running"),
    (at(0, 20), "idle"),  # 60 s between runs: a micro-stop (threshold 120 s)
    (at(0, 21), "running"),
    (at(0, 40), "fault"),  # 5 min: a breakdown
    (at(0, 45), "running"),
    (at(0, 50), "idle"),  # 30 s idle then 200 s fault: one 230 s stop, not micro
    (at(0, 50, 30), "fault"),
    (at(0, 53, 50), "running"),
]


@pytest.mark.parametrize("policy", ["performance", "availability"])
def test_micro_stops_under_both_policies(policy: str) -> None:
    """Hour 00:00–01:00, ideal 1 s, 2 800 parts. Running 50–1200, 1260–2400, 2700–3000, 3230–3600 s
    (1150 + 1140 + 300 + 370 = 2960 s); micro-stop 60 s; idle 50 + 30 s; fault 300 + 200 s."""
    r = compute_oee(
        start=at(0),
        end=at(1),
        states=MICRO,
        online=ALWAYS_ONLINE,
        counts=[CountPoint(at(0), 100), CountPoint(at(1), 2_900)],
        shifts=[],
        tz=TZ,
        params=OeeParams(ideal_cycle_time_s=1.0, micro_stop_s=120, micro_stop_loss=policy),  # type: ignore[arg-type]
    )
    t = {k: v / 1000 for k, v in r.time_ms.items()}
    assert (t["running"], t["micro_stops"], t["idle"], t["fault"]) == (2_960, 60, 80, 500)
    assert t["planned_busy"] == 3_600
    apt = 3_020 if policy == "performance" else 2_960
    assert t["actual_production"] == apt
    assert r.availability == pytest.approx(apt / 3_600)
    assert r.performance == pytest.approx(2_800 / apt)
    assert r.oee == pytest.approx(2_800 / 3_600)  # the policy moves the loss, not the OEE
    assert r.losses_s["micro_stops"] == 60 and r.losses_s["speed"] == pytest.approx(2_960 - 2_800)
    assert "quality_assumed" in r.flags and r.quality == 1.0


def test_micro_stop_threshold_zero_turns_them_off() -> None:
    r = compute_oee(
        start=at(0),
        end=at(1),
        states=MICRO,
        online=ALWAYS_ONLINE,
        counts=[],
        shifts=[],
        tz=TZ,
        params=OeeParams(ideal_cycle_time_s=1.0, micro_stop_s=0),
    )
    assert r.time_ms["micro_stops"] == 0 and r.time_ms["idle"] == 140 * S


def test_split_at_shift_boundaries_with_a_16_bit_wrap() -> None:
    """Shift A 06–14, B 14–22; window 12:00–16:00 running at the ideal 1 part/s. The uint16 counter
    starts at 60 000 and wraps between 13:00 and 14:00: each shift made 7 200 parts, P = 1 exactly."""
    shifts = [ShiftSpec("A", (6 * 60, 14 * 60)), ShiftSpec("B", (14 * 60, 22 * 60))]
    values = [60_000, 63_600, 1_664, 5_264, 8_864]
    r = compute_oee(
        start=at(12),
        end=at(16),
        states=[(at(11), "running")],
        online=ALWAYS_ONLINE,
        counts=[CountPoint(at(12 + i), v) for i, v in enumerate(values)],
        shifts=shifts,
        tz=TZ,
        params=OeeParams(ideal_cycle_time_s=1.0, counter_max=65_535),
    )
    assert r.counts["produced"] == pytest.approx(14_400) and r.counts["rollovers"] == 1
    assert r.performance == pytest.approx(1.0) and "performance_above_one" not in r.flags
    assert "counter_rollover" in r.flags
    a, b = r.shifts
    assert (a.shift.name, b.shift.name) == ("A", "B")  # type: ignore[union-attr]
    assert (a.start, a.end, b.start, b.end) == (at(12), at(14), at(14), at(16))
    assert a.counts["produced"] == pytest.approx(7_200) and b.counts["produced"] == pytest.approx(7_200)
    assert a.counts["rollovers"] == 1 and b.counts["rollovers"] == 0
    assert a.oee == pytest.approx(1.0) and b.oee == pytest.approx(1.0)


def test_time_outside_every_shift_is_unscheduled() -> None:
    shifts = [ShiftSpec("B", (14 * 60, 22 * 60))]
    r = compute_oee(
        start=at(20),
        end=at(24),
        states=[(at(20), "running")],
        online=ALWAYS_ONLINE,
        counts=[CountPoint(at(20), 0), CountPoint(at(24), 14_400)],
        shifts=shifts,
        tz=TZ,
        params=OeeParams(ideal_cycle_time_s=1.0),
    )
    assert r.time_ms["unscheduled"] == 2 * H and r.time_ms["running_outside_plan"] == 2 * H
    assert r.counts["produced"] == pytest.approx(7_200) and r.counts["outside_plan"] == pytest.approx(7_200)
    assert r.availability == 1.0 and r.performance == pytest.approx(1.0)


def running_12_to_15(counts: list[CountPoint], counter_max: float) -> OeeResult:
    """A device running 12:00–15:00 with these counter readings, 1 s ideal cycle time, no shifts."""
    return compute_oee(
        start=at(12),
        end=at(15),
        states=[(at(12), "running")],
        online=ALWAYS_ONLINE,
        counts=counts,
        shifts=[],
        tz=TZ,
        params=OeeParams(ideal_cycle_time_s=1.0, counter_max=counter_max),
    )


def test_reset_at_shift_change_counts_from_zero() -> None:
    """Reset by hand at 14:00 (12 199 → 1): the 1 part after the reset counts, nothing is lost."""
    counts = [
        CountPoint(at(12), 5_000),
        CountPoint(at(13), 8_600),
        CountPoint(at(13, 59, 59), 12_199),
        CountPoint(at(14, 0, 1), 1),
        CountPoint(at(15), 3_600),
    ]
    r = running_12_to_15(counts, counter_max=65_535)
    assert r.counts["resets"] == 1 and r.counts["rollovers"] == 0 and "counter_reset" in r.flags
    assert r.counts["produced"] == pytest.approx(3_600 + 3_599 + 1 + 3_599)
    assert r.performance == pytest.approx(10_799 / 10_800)


def test_a_counter_set_back_to_an_older_value_is_a_jump_not_production() -> None:
    """Running 12:00–15:00 at 1 part/s; at 13:00 the PLC is restored from an older backup: its counter reads
    2,000,002 two seconds later (3,003,600 before). A reset would count those 2,000,002 as parts made in two
    seconds (P ≈ 186); they cannot have been: the step counts nothing, its time is left out of the run time P
    is measured on (what was made in it is unknown), and it is flagged. Found by running
    `edgegw demo` twice on one data directory (the simulated loom's counter starts at the same seeded value)."""
    counts = [
        CountPoint(at(12), 3_000_000),
        CountPoint(at(13), 3_003_600),
        CountPoint(at(13, 0, 2), 2_000_002),
        CountPoint(at(15), 2_007_200),
    ]
    r = running_12_to_15(counts, counter_max=0xFFFF_FFFF)
    assert r.counts["jumps"] == 1 and r.counts["resets"] == 0 and "counter_jump" in r.flags
    assert r.counts["produced"] == pytest.approx(3_600 + 7_198)
    # P on the run time the counts cover: the jump's 2 s are unknown, not 2 s of making nothing
    assert r.performance == pytest.approx(1.0) and "counts_cover_part" in r.flags
    assert "performance_above_one" not in r.flags and r.availability == 1.0


def test_offline_gap_is_reported_apart_not_as_running_or_idle() -> None:
    """Running 00:00–01:00 at 1 part/s, the device offline 00:20–00:30. The counter step across the gap
    (19:59 → 30:01, 602 parts) is spread over 1 s + 600 s offline + 1 s: 600 parts go to `during_offline`."""
    r = compute_oee(
        start=at(0),
        end=at(1),
        states=[(at(0), "running"), (at(0, 30), "running")],
        online=[(at(0), True), (at(0, 20), False), (at(0, 30), True)],
        counts=[
            CountPoint(at(0), 0),
            CountPoint(at(0, 19, 59), 1_199),
            CountPoint(at(0, 30, 1), 1_801),
            CountPoint(at(1), 3_600),
        ],
        shifts=[],
        tz=TZ,
        params=OeeParams(ideal_cycle_time_s=1.0),
    )
    t = r.time_ms
    assert t["offline"] == 600 * S and t["offline_total"] == 600 * S
    assert t["running"] == 3_000 * S and t["idle"] == 0
    assert t["planned_busy"] == 3_000 * S  # offline is not in PBT
    assert r.counts["during_offline"] == pytest.approx(600) and r.counts["produced"] == pytest.approx(3_000)
    assert r.availability == 1.0 and r.performance == pytest.approx(1.0)
    assert "not_observed_time" in r.flags


def test_state_is_unknown_after_a_reconnect_until_read() -> None:
    r = compute_oee(
        start=at(0),
        end=at(1),
        states=[(at(0), "running"), (at(0, 40), "idle")],
        online=[(at(0), True), (at(0, 20), False), (at(0, 30), True)],
        counts=[],
        shifts=[],
        tz=TZ,
        params=OeeParams(has_counter=False),
    )
    t = r.time_ms
    assert (t["running"], t["offline"], t["unknown"], t["idle"]) == (20 * M, 10 * M, 10 * M, 20 * M)
    assert r.availability == pytest.approx(20 / 40)
    assert r.performance is None and r.quality is None and r.oee is None
    assert "no_counter" in r.flags


def test_performance_above_one_is_flagged_not_clipped() -> None:
    """An ideal cycle time of 2 s on a machine making 1 part/s: P = 2, which means the setting is wrong."""
    r = compute_oee(
        start=at(0),
        end=at(1),
        states=[(at(0), "running")],
        online=ALWAYS_ONLINE,
        counts=[CountPoint(at(0), 0), CountPoint(at(1), 3_600)],
        shifts=[],
        tz=TZ,
        params=OeeParams(ideal_cycle_time_s=2.0),
    )
    assert r.performance == pytest.approx(2.0) and r.oee == pytest.approx(2.0)
    assert "performance_above_one" in r.flags


def test_planned_stop_state_is_planned_downtime_and_good_counter_gives_quality() -> None:
    r = compute_oee(
        start=at(0),
        end=at(1),
        states=[(at(0), "running"), (at(0, 30), "planned_stop"), (at(0, 45), "running")],
        online=ALWAYS_ONLINE,
        counts=[CountPoint(at(0), 0, good=0), CountPoint(at(1), 2_700, good=2_430)],
        shifts=[],
        tz=TZ,
        params=OeeParams(ideal_cycle_time_s=1.0, quality_from="good"),
    )
    assert r.time_ms["planned_stop"] == 15 * M and r.time_ms["planned_busy"] == 45 * M
    assert r.availability == 1.0 and r.performance == pytest.approx(1.0) and r.quality == pytest.approx(0.9)
    assert "quality_assumed" not in r.flags


def test_performance_on_the_run_time_the_counters_cover() -> None:
    """The last counter reading is at 00:45 (the next snapshot has not arrived): P is measured over
    00:00–00:45, not diluted by the 15 min nobody has counted yet."""
    r = compute_oee(
        start=at(0),
        end=at(1),
        states=[(at(0), "running")],
        online=ALWAYS_ONLINE,
        counts=[CountPoint(at(0), 0), CountPoint(at(0, 45), 1_350)],
        shifts=[],
        tz=TZ,
        params=OeeParams(ideal_cycle_time_s=1.0),
    )
    assert r.performance == pytest.approx(0.5) and r.availability == 1.0
    assert "counts_cover_part" in r.flags
    assert r.losses_s["speed"] == pytest.approx(3_600 - 1_800)  # scaled to the whole run


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        compute_oee(start=at(1), end=at(1), states=[], online=[], counts=[], shifts=[], tz=TZ, params=OeeParams())
