"""Evidence from the ledger alone, on a hand-built day: networked and digitized ratios with their MIIT 2024
bands, online time and rate, completeness, OEE, business areas, and the offline-gateway rule. The figures
are checked as evaluators read them: the JSON of `evidence.json` and the API (`Evidence.jsonable()`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.cloud.evidence.build import build_evidence, enterprise_period
from cloud_bridge.cloud.evidence.models import Device, Evidence
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.cloud.ledger.writer import Ledger
from cloud_bridge.metrics.calendar import local_ms
from cloud_bridge.metrics.evidence import band_label, score_band
from cloud_bridge.metrics.period import PeriodError
from cloud_bridge.wire.codec import DataMessage, DeviceMeta, Event, EventMessage, OeeMeta, Sample, Status, TagMeta
from edge_config.models import CloudConfig

TZ = "Asia/Shanghai"
T0 = local_ms(date(2024, 5, 1), 0, TZ)
H = 3_600_000
NOW = T0 + 30 * 24 * H  # long after the day: the period is over

CONFIG = CloudConfig.model_validate(
    {
        "enterprises": [
            {
                "id": "ent-1",
                "name": "某纺织有限公司",
                "shifts": [
                    {"name": "A", "start": "08:00", "end": "17:00", "breaks": [{"start": "12:00", "end": "13:00"}]}
                ],
            }
        ]
    }
)
LEDGER_CSV = "id,name,type,line,key_process,digitized,gateway\npress-01,Press 1,press,L1,yes,yes,gw-1\n"
LEDGER_CSV += "press-02,Press 2,press,L1,no,yes,\nlathe-01,Lathe,lathe,L2,no,no,\n"


class Feed:
    """Writes messages into the ledger as the ingester would."""

    def __init__(self, ledger: Ledger, ent: str, gw: str) -> None:
        self.ledger, self.ent, self.gw, self.seq = ledger, ent, gw, 0

    def events(self, dev: str, *events: Event) -> None:
        self.seq += 1
        assert self.ledger.record_events(self.ent, EventMessage(self.gw, dev, self.seq, False, events))

    def data(self, dev: str, *stamps: int) -> None:
        self.seq += 1
        samples = tuple(Sample("x", 1.0, ts) for ts in stamps)
        assert self.ledger.record_data(self.ent, DataMessage(self.gw, dev, self.seq, False, samples))

    def meta(
        self, dev: str, tags: list[tuple[str, str]], *, oee: OeeMeta | None = None, production: bool = True
    ) -> None:
        tag_meta = tuple(TagMeta(n, None, d, "uint16", 1.0) for n, d in tags)
        self.ledger.record_meta(
            self.ent, DeviceMeta(self.gw, dev, T0, tags=tag_meta, oee=oee, production=production, config_hash="c" * 64)
        )


def fill_day(url: str) -> None:
    """The hand-built day of enterprise ent-1 (see the tests for what it should give)."""
    ledger = Ledger(url)
    f = Feed(ledger, "ent-1", "gw-1")
    ledger.record_status("ent-1", "gw-1", None, Status(True, NOW, version="0.1.0"))

    # press-01: online from the night before, offline 10:00–11:00, a fault 15:00–15:30; 1 part/s while running
    f.meta(
        "press-01",
        [("run_state", "equipment"), ("energy", "energy")],
        oee=OeeMeta("run_state", "total", ideal_cycle_time_s=1.0, counter_max=65535),
    )
    f.events("press-01", Event("online", T0 - H, "ok"), Event("state", T0 - H, "", "idle", {"total": 0}))
    f.events("press-01", Event("state", T0 + 8 * H, "", "running", {"total": 0}))
    totals = {
        8: 0,
        9: 3600,
        10: 7200,
        11: 10_800,
        12: 14_400,
        13: 18_000,
        14: 21_600,
        15: 25_200,
        16: 27_000,
        17: 30_600,
    }
    readings = {
        8: 0,
        9: 7200,
        10: 14_400,
        11: 14_400,
        12: 21_600,
        13: 28_800,
        14: 36_000,
        15: 43_200,
        16: 50_400,
        17: 57_600,
    }
    for h in totals:
        f.events(
            "press-01", Event("snapshot", T0 + h * H, "", None, {"total": totals[h], "good_readings": readings[h]})
        )
    f.events("press-01", Event("offline", T0 + 10 * H, "timeout"))
    f.events(
        "press-01", Event("online", T0 + 11 * H, "ok"), Event("state", T0 + 11 * H, "", "running", {"total": 10_800})
    )
    f.events("press-01", Event("state", T0 + 15 * H, "", "fault", {"total": 25_200}))
    f.events("press-01", Event("state", T0 + 15 * H + H // 2, "", "running", {"total": 25_200}))
    f.data("press-01", T0 + 9 * H, T0 + 16 * H)
    # still running after the shift: the snapshot at midnight (the gateway's last sign of life)
    f.events("press-01", Event("snapshot", T0 + 24 * H, "", None, {"total": 55_800, "good_readings": 108_000}))

    # press-02: online 14:00–20:00, no OEE, no reading counters
    f.meta("press-02", [("count", "production")])
    f.events("press-02", Event("online", T0 + 14 * H, "ok"))
    f.events("press-02", Event("offline", T0 + 20 * H, "timeout"))
    f.data("press-02", T0 + 15 * H)

    # meter-01: an energy meter the ledger does not list (not production equipment)
    f.meta("meter-01", [("kwh", "energy")], production=False)
    f.data("meter-01", T0 + 12 * H)
    f.data("meter-01", T0 - 2 * H)  # before the period: not counted
    ledger.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EvidenceStore]:
    url = f"sqlite:///{tmp_path}/ledger.db"
    fill_day(url)
    s = EvidenceStore(url)
    s.import_equipment("ent-1", LEDGER_CSV.encode(), "ledger.csv")
    yield s
    s.close()


def period(from_: str = "2024-05-01", to: str = "2024-05-01"):  # type: ignore[no-untyped-def]
    return enterprise_period(CONFIG, "ent-1", from_, to, NOW)


def test_summary_indicators(store: EvidenceStore) -> None:
    ev = build_evidence(store, CONFIG, "ent-1", period(), now_ms=NOW).jsonable()
    s = ev["summary"]
    assert ev["enterprise"] == {"id": "ent-1", "name": "某纺织有限公司"}
    assert ev["period"]["from"] == "2024-05-01T00:00:00+08:00" and ev["period"]["to"] == "2024-05-02T00:00:00+08:00"
    assert ev["period"]["planned_s"] == 8 * 3600
    assert s["denominator_source"] == "equipment_ledger" and s["equipment_total"] == 3
    # press-01 online 7 h of 8 planned: networked; press-02 3 h of 8 (37.5 %): below the default rule's 50 %
    assert s["networked"] == {
        "numerator": 1,
        "denominator": 3,
        "ratio": pytest.approx(1 / 3),
        "score": 3.0,
        "band": "(20,40%]",
    }
    rule = s["networked_rule"]
    assert (rule["min_online_ratio"], rule["min_completeness"], rule["source"]) == (0.5, None, "default")
    assert "at least 50% of the planned operation time" in rule["text"] and "50%" in rule["text_zh"]
    assert s["digitized"]["numerator"] == 2 and s["digitized"]["score"] == 6.0
    assert s["key_process"] == {"total": 1, "networked": 1}
    assert s["online_now"]["online"] == 1 and s["online_now"]["of"] == 3
    # press-01 7 h of 8 planned, press-02 3 h of 8
    assert s["online_time"]["rate"] == pytest.approx(10 / 16) and s["online_time"]["devices"] == 2
    # all 14 business areas, collected for or not; counted where a networked device has tags in them
    areas = {a["key"]: a for a in s["areas"]}
    assert len(s["areas"]) == 14 and s["areas"][0]["zh"] == "产品设计" and "56号" in s["areas_source"]
    assert [k for k, a in areas.items() if a["counted"]] == ["equipment", "energy"] and s["areas_counted"] == 2
    assert areas["energy"]["zh"] == "能耗管理" and areas["energy"]["devices"] == ["press-01", "meter-01"]
    assert areas["energy"]["tags"] == ["press-01/energy", "meter-01/kwh"]
    assert areas["production"]["tags"] == ["press-02/count"] and areas["production"]["data_arrived"]
    assert not areas["production"]["counted"]  # press-02's data arrived, but it is not networked
    assert areas["finance"] == {
        "key": "finance",
        "zh": "财务管理",
        "en": "finance",
        "domains": [],
        "tags": [],
        "devices": [],
        "devices_with_data": [],
        "data_arrived": False,
        "counted": False,
    }
    assert s["oee_devices"] == 1
    assert s["ledger_import"]["source"] == "ledger.csv" and s["ledger_import"]["row_count"] == 3
    assert ev["notes"] == []


def test_per_device_figures(store: EvidenceStore) -> None:
    ev = build_evidence(store, CONFIG, "ent-1", period(), now_ms=NOW).jsonable()
    rows = {r["id"]: r for r in ev["devices"]}
    assert list(rows) == ["press-01", "press-02", "lathe-01", "meter-01"]
    p1 = rows["press-01"]
    assert p1["in_ledger"] and p1["connected"] and p1["networked"] and p1["key_process"]
    assert (p1["first_seen_ms"], p1["last_seen_ms"], p1["samples"]) == (T0 + 9 * H, T0 + 16 * H, 2)
    assert (
        p1["online_s"] == 23 * 3600 and p1["online_planned_s"] == 7 * 3600 and p1["online_rate"] == pytest.approx(0.875)
    )
    assert p1["online_intervals"] == [[T0, T0 + 10 * H], [T0 + 11 * H, T0 + 24 * H]]
    # 2 readings/s planned; 50 400 of 57 600 taken (the offline hour is missing)
    assert p1["completeness"] == {"received": 50_400, "expected": 57_600, "ratio": pytest.approx(0.875)}
    o = p1["oee"]
    assert o["time_s"]["offline"] == 3600 and o["time_s"]["fault"] == 1800 and o["time_s"]["planned_busy"] == 7 * 3600
    assert o["availability"] == pytest.approx(6.5 / 7) and o["performance"] == pytest.approx(1.0)
    assert o["counts"]["during_offline"] == pytest.approx(3600)
    assert o["counts"]["outside_plan"] == pytest.approx(3600 + 7 * 3600)  # lunch, and 17:00 to midnight
    assert o["counts"]["produced"] == pytest.approx(23_400)
    assert [s["shift"] for s in o["shifts"]] == ["A"]
    # observed 7 of 8 planned hours; the offline hour counted as lost: 6.5 h running of 8
    assert o["observed"] == pytest.approx(7 / 8) and o["availability_all"] == pytest.approx(6.5 / 8)
    assert "mostly_unobserved" not in o["flags"]
    p2 = rows["press-02"]
    assert not p2["networked"] and p2["networked_fails"] == ["online_below"]
    assert p2["online_rate"] == pytest.approx(3 / 8) and p2["oee"] is None
    assert p2["completeness"]["ratio"] == 0  # no reading counters reported: nothing proven
    lathe = rows["lathe-01"]
    assert (
        not lathe["connected"]
        and not lathe["networked"]
        and lathe["online_rate"] == 0
        and lathe["planned_s"] == 8 * 3600
    )
    meter = rows["meter-01"]
    assert not meter["in_ledger"] and not meter["networked"] and meter["samples"] == 1 and meter["production"] is False
    assert meter["networked_fails"] == ["online_below"]  # it sent data, but never said it was online
    assert lathe["networked_fails"] == ["no_good_data", "online_below"] and p1["networked_fails"] == []


def test_the_evidence_is_one_typed_model(store: EvidenceStore) -> None:
    ev = build_evidence(store, CONFIG, "ent-1", period(), now_ms=NOW)
    lathe = next(d for d in ev.devices if d.id == "lathe-01")
    # equipment no gateway reports on: the same model, with its defaults
    assert lathe == Device(
        id="lathe-01",
        name="Lathe",
        type="lathe",
        line="L2",
        digitized=False,
        in_ledger=True,
        planned_s=8 * 3600.0,
        online_rate=0.0,
        networked_fails=["no_good_data", "online_below"],
    )
    assert Evidence.model_validate_json(json.dumps(ev.jsonable())) == ev


def test_a_partial_day_and_a_period_still_running(store: EvidenceStore) -> None:
    p = enterprise_period(CONFIG, "ent-1", "2024-05-01T09:00", "2024-05-01T18:00", T0 + 14 * H)
    assert p.as_of == T0 + 14 * H
    ev = build_evidence(store, CONFIG, "ent-1", p, now_ms=T0 + 14 * H).jsonable()
    rows = {r["id"]: r for r in ev["devices"]}
    assert rows["press-01"]["online_planned_s"] == (1 + 1 + 1) * 3600  # 09–10, 11–12, 13–14
    assert rows["press-01"]["first_seen_ms"] == T0 + 9 * H and rows["press-01"]["last_seen_ms"] == T0 + 9 * H
    assert not rows["press-02"]["networked"]  # its data comes at 15:00
    assert any("not over" in n for n in ev["notes"])


def test_a_gateway_silent_for_ten_minutes_has_stopped(store: EvidenceStore) -> None:
    """gw-1 says it is online, but nothing came from it since midnight: after 10 min of silence its
    devices count as offline from then (press-01 was online to the end of the day)."""
    now = T0 + 24 * H + 11 * 60_000
    p = enterprise_period(CONFIG, "ent-1", "2024-05-01", "2024-05-02", now)
    ev = build_evidence(store, CONFIG, "ent-1", p, now_ms=now).jsonable()
    p1 = next(r for r in ev["devices"] if r["id"] == "press-01")
    assert p1["online_intervals"][-1] == [T0 + 11 * H, T0 + 24 * H]
    assert any("gw-1" in n for n in ev["notes"])
    now = T0 + 24 * H + 9 * 60_000  # not yet
    p = enterprise_period(CONFIG, "ent-1", "2024-05-01", "2024-05-02", now)
    ev = build_evidence(store, CONFIG, "ent-1", p, now_ms=now).jsonable()
    p1 = next(r for r in ev["devices"] if r["id"] == "press-01")
    assert p1["online_intervals"][-1] == [T0 + 11 * H, now]


def test_a_gateway_that_is_offline_now_takes_its_devices_with_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/l.db"
    ledger = Ledger(url)
    f = Feed(ledger, "ent-2", "gw-9")
    f.meta("d", [("x", "safety")])
    f.events("d", Event("online", T0 + 8 * H, "ok"))
    f.data("d", T0 + 9 * H, T0 + 12 * H)
    ledger.record_status(
        "ent-2", "gw-9", None, Status(False, T0 + 1 * H, version="0.1.0")
    )  # the will, stamped at connect
    ledger.close()
    store = EvidenceStore(url)
    try:
        ev = build_evidence(
            store, CONFIG, "ent-2", enterprise_period(CONFIG, "ent-2", "2024-05-01", "2024-05-01", NOW)
        ).jsonable()
    finally:
        store.close()
    [d] = ev["devices"]
    assert d["online_intervals"] == [[T0 + 8 * H, T0 + 12 * H]]  # up to its last sign of life
    assert ev["summary"]["denominator_source"] == "gateway_metadata"
    # online 08:00–12:00 of a 24 h planned day: 1/6, not networked under the default rule
    assert ev["summary"]["networked"]["numerator"] == 0 and ev["summary"]["networked"]["denominator"] == 1
    assert d["networked_fails"] == ["online_below"]
    safety = next(a for a in ev["summary"]["areas"] if a["zh"] == "安全生产")
    assert safety["tags"] == ["d/x"] and safety["data_arrived"] and not safety["counted"]
    assert any("no equipment ledger" in n for n in ev["notes"]) and any("gw-9" in n for n in ev["notes"])


def test_the_networked_rule_is_the_pilots_or_the_enterprises(store: EvidenceStore) -> None:
    """A demonstration that ran one hour of the day must not count; the rule is configurable and printed."""
    data = CONFIG.model_dump(mode="json")

    def summary(**evidence: object) -> dict[str, Any]:
        cfg = CloudConfig.model_validate({**data, **evidence})
        return build_evidence(store, cfg, "ent-1", period(), now_ms=NOW).jsonable()["summary"]

    pilot = summary(evidence={"networked": {"min_online_ratio": 0.3}})  # press-02's 37.5 % is enough
    assert pilot["networked"]["numerator"] == 2 and pilot["networked"]["score"] == 6.0
    assert pilot["networked_rule"]["source"] == "pilot" and "at least 30%" in pilot["networked_rule"]["text"]
    data["enterprises"][0]["networked"] = {"min_online_ratio": 0.3, "min_completeness": 0.9}
    ent = summary()  # press-01's completeness is 87.5 %: not enough; press-02's cannot be measured
    assert ent["networked_rule"]["source"] == "enterprise" and "completeness" in ent["networked_rule"]["text"]
    assert ent["networked"]["numerator"] == 0
    data["enterprises"][0]["networked"] = {"min_online_ratio": 0}
    assert summary()["networked"]["numerator"] == 2  # good data alone, as before the rule


def test_a_device_seen_for_a_minute_of_the_day(tmp_path: Path) -> None:
    """The demo's case: a minute of data in a 24 h planned day is not networked, and its OEE says how little of the
    planned time it saw, with availability over all of it beside the ISO value."""
    url = f"sqlite:///{tmp_path}/l.db"
    ledger = Ledger(url)
    f = Feed(ledger, "ent-3", "gw-3")
    f.meta("loom", [("s", "equipment")], oee=OeeMeta("s", "total", ideal_cycle_time_s=1.0))
    t = T0 + 10 * H
    f.events("loom", Event("online", t, "ok"), Event("state", t, "", "running", {"total": 0}))
    f.events("loom", Event("snapshot", t + 60_000, "", None, {"total": 60}), Event("offline", t + 60_000, "stop"))
    f.data("loom", t + 1000, t + 59_000)
    ledger.close()
    store = EvidenceStore(url)
    try:
        p = enterprise_period(CONFIG, "ent-3", "2024-05-01", "2024-05-01", NOW)
        ev = build_evidence(store, CONFIG, "ent-3", p, now_ms=NOW).jsonable()
    finally:
        store.close()
    [d] = ev["devices"]
    assert not d["networked"] and d["networked_fails"] == ["online_below"] and d["online_s"] == 60
    assert ev["summary"]["networked"]["numerator"] == 0 and ev["summary"]["networked"]["score"] == 0.0
    o = d["oee"]
    assert o["availability"] == pytest.approx(1.0)  # ISO: the minute it was seen, it ran
    assert o["observed"] == pytest.approx(60 / 86_400, abs=1e-6) and o["availability_all"] == pytest.approx(
        60 / 86_400, abs=1e-6
    )
    assert "mostly_unobserved" in o["flags"]


@pytest.mark.parametrize(
    ("n", "d", "points", "band"),
    [
        (0, 10, 0.0, "[0,10%]"),
        (1, 10, 0.0, "[0,10%]"),  # exactly 10 %: still the lowest band
        (11, 100, 1.5, "(10,20%]"),
        (2, 10, 1.5, "(10,20%]"),
        (21, 100, 3.0, "(20,40%]"),
        (4, 10, 3.0, "(20,40%]"),
        (41, 100, 4.5, "(40,60%]"),
        (3, 5, 4.5, "(40,60%]"),
        (61, 100, 6.0, "(60,100%]"),
        (10, 10, 6.0, "(60,100%]"),
        (0, 0, None, "—"),
    ],
)
def test_miit_2024_score_bands(n: int, d: int, points: float | None, band: str) -> None:
    assert score_band(n, d) == points and band_label(n, d) == band


@pytest.mark.parametrize(
    ("from_", "to", "reason"),
    [
        ("2024-05-02", "2024-05-01", "must end after it starts"),
        ("2024-13-01", "2024-05-01", "not a date"),
        ("soon", "2024-05-01", "not a date"),
        ("2020-01-01", "2024-05-01", "at most 400 days"),
        ("2099-01-01", "2099-01-02", "starts in the future"),
    ],
)
def test_bad_periods_have_reasons(from_: str, to: str, reason: str) -> None:
    with pytest.raises(PeriodError, match=reason):
        enterprise_period(CONFIG, "ent-1", from_, to, NOW)


def test_period_forms() -> None:
    p = enterprise_period(CONFIG, "ent-1", "2024-05-01T08:30", "2024-05-01T09:00:00+08:00", NOW)
    assert (p.start, p.end) == (T0 + 8 * H + H // 2, T0 + 9 * H)
    p = enterprise_period(CONFIG, "ent-1", str(T0), "2024-05-01T16:00:00Z", NOW)  # epoch ms; UTC as written
    assert p.start == T0 and p.end == T0 + 24 * H
