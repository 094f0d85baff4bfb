"""Properties of the OEE maths over random timelines, counters and calendars: A and Q stay in [0, 1], P above 1
is always flagged (never clipped), OEE = A × P × Q, and the time model adds up, for the whole and per shift."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_bridge.metrics import CountPoint, OeeParams, ShiftSpec, compute_oee
from cloud_bridge.metrics.calendar import local_ms
from cloud_bridge.metrics.timeline import MACHINE_STATES

TZ = "Asia/Shanghai"
T0 = local_ms(date(2024, 5, 1), 0, TZ)
S = 1000

segments = st.lists(
    st.tuples(st.integers(1, 900), st.sampled_from([*MACHINE_STATES, "offline"]), st.floats(0.0, 3.0)),
    min_size=1,
    max_size=25,
)
calendars = st.sampled_from(
    [
        [],
        [ShiftSpec("A", (0, 30), break_spans=((10, 15),)), ShiftSpec("B", (30, 95))],
        [ShiftSpec("N", (23 * 60, 25 * 60), break_spans=((23 * 60 + 50, 24 * 60 + 10),))],
    ]
)


def build(segs: list[tuple[int, str, float]], snapshot_s: int, reject_share: float):  # type: ignore[no-untyped-def]
    """States, online transitions and counter readings (every `snapshot_s` while online) for a script."""
    states, online, counts = [], [], []
    t = T0 - 600 * S  # start before the window
    total = reject = 0.0
    for dur, state, rate in segs:
        is_online = state != "offline"
        online.append((t, is_online))
        if is_online:
            states.append((t, state))
        for k in range(dur):
            if is_online and k % snapshot_s == 0:
                counts.append(CountPoint(t + k * S, float(int(total)), reject=float(int(reject))))
            if state == "running":
                total += rate
                reject += rate * reject_share
        t += dur * S
    counts.append(CountPoint(t, float(int(total)), reject=float(int(reject))))
    return states, online, counts, t


@settings(max_examples=150, deadline=None)
@given(
    segs=segments,
    snapshot_s=st.integers(1, 120),
    ict=st.floats(0.05, 2.0),
    micro=st.sampled_from([0, 30, 120]),
    policy=st.sampled_from(["performance", "availability"]),
    reject_share=st.floats(0.0, 0.5),
    calendar=calendars,
    offset=st.integers(0, 600),
)
def test_oee_properties(
    segs: list[tuple[int, str, float]],
    snapshot_s: int,
    ict: float,
    micro: int,
    policy: str,
    reject_share: float,
    calendar: list[ShiftSpec],
    offset: int,
) -> None:
    states, online, counts, end_of_script = build(segs, snapshot_s, reject_share)
    start = T0 - 600 * S + offset * S
    end = max(start + S, end_of_script - offset * S)
    r = compute_oee(
        start=start,
        end=end,
        states=states,
        online=online,
        counts=counts,
        shifts=calendar,
        tz=TZ,
        params=OeeParams(
            ideal_cycle_time_s=ict,
            micro_stop_s=micro,
            micro_stop_loss=policy,  # type: ignore[arg-type]
            counter_max=None,
            quality_from="reject",
        ),
    )
    for result in (r, *r.shifts):
        check(result, policy)
    # the shifts hold all planned time, and together all the planned production
    assert sum(x.time_ms["window"] for x in r.shifts) == r.time_ms["window"] - r.time_ms["unscheduled"]
    assert sum(x.counts["produced"] for x in r.shifts) == pytest.approx(r.counts["produced"], abs=1e-6)


def check(r, policy: str) -> None:  # type: ignore[no-untyped-def]
    t = r.time_ms
    if r.availability is not None:
        assert 0.0 <= r.availability <= 1.0
    if r.quality is not None:
        assert 0.0 <= r.quality <= 1.0
    if r.performance is not None:
        assert r.performance >= 0.0
        assert (r.performance > 1 + 1e-9) == ("performance_above_one" in r.flags)
    if None not in (r.availability, r.performance, r.quality):
        assert r.oee == pytest.approx(r.availability * r.performance * r.quality)
    else:
        assert r.oee is None
    assert t["window"] == t["unscheduled"] + t["planned_breaks"] + t["planned_operation"]
    parts = ("offline", "unknown", "planned_stop", "running", "fault", "setup", "idle", "micro_stops")
    assert t["planned_operation"] == sum(t[k] for k in parts)
    assert t["planned_busy"] == t["planned_operation"] - t["planned_stop"] - t["offline"] - t["unknown"]
    micro_in_apt = t["micro_stops"] if policy == "performance" else 0
    assert t["actual_production"] == t["running"] + micro_in_apt
    assert t["planned_busy"] == t["actual_production"] + t["fault"] + t["setup"] + t["idle"] + (
        t["micro_stops"] - micro_in_apt
    )
    assert min(t.values()) >= 0
    assert r.counts["produced"] >= -1e-6 and r.counts["during_offline"] >= -1e-6
    assert r.counts["scrap"] >= -1e-6
