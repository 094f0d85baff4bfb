"""Evidence from the ledger alone, on a hand-built day: networked and digitized ratios with their MIIT 2024
bands, online time and rate, completeness, OEE, business areas, and the offline-gateway rule. The figures
are checked as evaluators read them: the JSON of `evidence.json` and the API (`Evidence.jsonable()`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

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
    assert s["networked"] == {
        "numerator": 2,
        "denominator": 3,
        "ratio": pytest.approx(2 / 3),
        "score": 6.0,
        "band": "(60,100%]",
    }
    assert s["digitized"]["numerator"] == 2 and s["digitized"]["score"] == 6.0
    assert s["key_process"] == {"total": 1, "networked": 1}
    assert s["online_now"]["online"] == 1 and s["online_now"]["of"] == 3
    # press-01 7 h of 8 planned, press-02 3 h of 8
    assert s["online_time"]["rate"] == pytest.approx(10 / 16) and s["online_time"]["devices"] == 2
    assert [a["domain"] for a in s["areas"]] == ["production", "equipment", "energy"]
    assert s["areas"][2]["zh"] == "能耗管理" and s["areas"][2]["devices"] == ["press-01", "meter-01"]
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
    p2 = rows["press-02"]
    assert p2["networked"] and p2["online_rate"] == pytest.approx(3 / 8) and p2["oee"] is None
    assert p2["completeness"]["ratio"] == 0  # no reading counters reported: nothing proven
    lathe = rows["lathe-01"]
    assert (
        not lathe["connected"]
        and not lathe["networked"]
        and lathe["online_rate"] == 0
        and lathe["planned_s"] == 8 * 3600
    )
    meter = rows["meter-01"]
    assert not meter["in_ledger"] and meter["networked"] and meter["samples"] == 1 and meter["production"] is False


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
    assert ev["summary"]["networked"]["numerator"] == 1 and ev["summary"]["networked"]["denominator"] == 1
    assert ev["summary"]["areas"][0]["zh"] == "安全生产"
    assert any("no equipment ledger" in n for n in ev["notes"]) and any("gw-9" in n for n in ev["notes"])


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
