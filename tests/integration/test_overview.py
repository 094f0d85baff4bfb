"""The pilot's overview equals each enterprise's evidence, on SQLite and PostgreSQL: closed days summed from
the day summaries, a period still running (today computed live), a gateway offline now (its devices capped
from its last sign of life), an equipment ledger, a completeness rule (computed in full), and late data that
drops the day summaries it changes."""

from __future__ import annotations

import time
from datetime import date

import pytest
import sqlalchemy as sa

from cloud_bridge.cloud.evidence.build import build_evidence, enterprise_period
from cloud_bridge.cloud.evidence.fill import fill_days
from cloud_bridge.cloud.evidence.overview import build_overview, overview_row
from cloud_bridge.cloud.ledger import schema
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.cloud.ledger.writer import Ledger
from cloud_bridge.metrics.calendar import local_ms
from cloud_bridge.wire.codec import DeviceMeta, Event, OeeMeta, Status
from edge_config.models import CloudConfig
from tests.unit.test_evidence_build import Feed

pytestmark = pytest.mark.integration

TZ = "Asia/Shanghai"
T0 = local_ms(date(2024, 5, 1), 0, TZ)
H = 3_600_000
DAY = 24 * H
ENTS = ["ent-1", "ent-2", "ent-3"]
CONFIG = CloudConfig.model_validate(
    {
        "enterprises": [
            {"id": "ent-1", "name": "某纺织", "shifts": [
                {"name": "A", "start": "08:00", "end": "17:00", "breaks": [{"start": "12:00", "end": "13:00"}]},
                {"name": "N", "start": "22:00", "end": "06:00"}]},
            {"id": "ent-2", "name": "某化工"},
            {"id": "ent-3", "name": "某食品", "networked": {"min_online_ratio": 0.3, "min_completeness": 0.5}},
        ]
    }
)  # fmt: skip
LEDGER_CSV = "id,name,type,line,key_process,digitized,gateway\nm-1,M1,press,L1,yes,yes,gw-a\nm-9,M9,lathe,L2,no,no,\n"


def fill(url: str, now: int) -> Ledger:
    ledger = Ledger(url)
    for ent in ENTS:
        f = Feed(ledger, ent, "gw-a")
        ledger.record_status(ent, "gw-a", None, Status(True, now, version="1"))
        oee = OeeMeta("run_state", "total", ideal_cycle_time_s=1.0, counter_max=65535)
        ledger.record_meta(ent, DeviceMeta("gw-a", "m-1", T0, oee=oee, config_hash="c" * 64))
        ledger.record_meta(ent, DeviceMeta("gw-a", "meter", T0, production=False, config_hash="c" * 64))
        f.events("m-1", Event("online", T0 - H, "ok"))
        for d in range(6):  # offline 10:00–13:30 every day, 1 sample an hour
            f.events("m-1", Event("offline", T0 + d * DAY + 10 * H, "timeout"))
            f.events("m-1", Event("online", T0 + d * DAY + 13 * H + H // 2, "ok"))
            f.data("m-1", *(T0 + d * DAY + h * H for h in range(24)))
            f.events("m-1", Event("snapshot", T0 + d * DAY + 23 * H, "", None, {"good_readings": 1000.0 * d}))
        # m-2: online from day 1 at 20:00 until day 3 at 07:00, some data
        f.events("m-2", Event("online", T0 + DAY + 20 * H, "ok"))
        f.events("m-2", Event("offline", T0 + 3 * DAY + 7 * H, "timeout"))
        f.data("m-2", T0 + 2 * DAY + 5 * H)
        f.data("meter", T0 + 5 * H)
    # ent-2's gateway went offline on day 3 at 15:00 and is still
    ledger.record_status("ent-2", "gw-a", None, Status(False, T0 + 3 * DAY + 15 * H, version="1"))
    return ledger


def expected(store: EvidenceStore, frm: str, to: str, now: int) -> list[object]:
    return [
        overview_row(build_evidence(store, CONFIG, e, enterprise_period(CONFIG, e, frm, to, now), now_ms=now))
        for e in ENTS
    ]


def day_rows(store: EvidenceStore) -> int:
    return int(store.db.scalar(sa.select(sa.func.count()).select_from(schema.device_days)))


@pytest.mark.parametrize("running", [False, True], ids=["closed", "running"])
def test_overview_equals_the_evidence(url: str, running: bool) -> None:
    now = T0 + 4 * DAY + 15 * H if running else T0 + 9 * DAY
    ledger = fill(url, now)
    store = EvidenceStore(url)
    try:
        store.import_equipment("ent-1", LEDGER_CSV.encode(), "ledger.csv")
        frm, to = "2024-05-01", "2024-05-05"
        cold = build_overview(store, CONFIG, ENTS, frm, to, now_ms=now)
        want = expected(store, frm, to, now)
        assert cold.enterprises == want
        assert (cold.computed_from_days, cold.computed_in_full) == (2, 1)  # ent-3 asks for completeness
        assert day_rows(store) > 0
        rows = cold.enterprises
        assert rows[0].equipment_total == 2 and rows[0].denominator_source == "equipment_ledger"
        assert rows[0].oee_devices == 1 and rows[1].online_time.rate is not None
        assert cold.computed_day_rows > 0
        warm = build_overview(store, CONFIG, ENTS, frm, to, now_ms=now)  # from the summaries
        assert warm == cold.model_copy(update={"computed_day_rows": 0})

        # late data: m-2 was online on day 0 too; its day summaries from then on are dropped, none else
        before = day_rows(store)
        Feed(ledger, "ent-2", "gw-b").events("m-2", Event("online", T0 + 2 * H, "late"))
        assert day_rows(store) == before  # another gateway's m-2: nothing of it was summarised
        f = Feed(ledger, "ent-2", "gw-a")
        f.seq = 10_000
        f.events("m-2", Event("online", T0 + 2 * H, "late"))
        assert day_rows(store) < before
        again = build_overview(store, CONFIG, ENTS, frm, to, now_ms=now)
        assert again.enterprises == expected(store, frm, to, now)
        assert again.enterprises[1].online_time != rows[1].online_time  # the late data counts
    finally:
        ledger.close()
        store.close()


def test_the_background_fill_leaves_the_overview_nothing_to_compute(url: str) -> None:
    now = T0 + 9 * DAY + 3 * H
    ledger = fill(url, now)
    store = EvidenceStore(url)
    try:
        report = fill_days(store, CONFIG, ENTS, back=9, now_ms=now)
        # ent-1 and ent-2: 9 closed days of their devices; ent-3 (completeness) is computed in full
        assert report.enterprises == 2 and report.rows == day_rows(store) > 0
        assert fill_days(store, CONFIG, ENTS, back=9, now_ms=now).rows == 0  # nothing missing any more
        frm, to = "2024-05-02", "2024-05-06"
        ov = build_overview(store, CONFIG, ENTS, frm, to, now_ms=now)
        assert ov.computed_day_rows == 0
        assert ov.enterprises == expected(store, frm, to, now)

        # late data drops m-2's days from day 0 on; the next fill computes exactly those again
        before = day_rows(store)
        f = Feed(ledger, "ent-2", "gw-a")
        f.seq = 10_000
        f.events("m-2", Event("online", T0 + 2 * H, "late"))
        dropped = before - day_rows(store)
        assert dropped > 0
        assert fill_days(store, CONFIG, ENTS, back=9, now_ms=now).rows >= dropped
        assert day_rows(store) == before
        again = build_overview(store, CONFIG, ENTS, frm, to, now_ms=now)
        assert again.computed_day_rows == 0
        assert again.enterprises == expected(store, frm, to, now)
    finally:
        ledger.close()
        store.close()


def test_edgegw_serve_fills_the_days_at_start(url: str) -> None:
    from fastapi.testclient import TestClient

    from cloud_bridge.cloud.api.app import create_cloud_app

    now = T0 + 9 * DAY + 3 * H
    fill(url, now).close()
    config = CONFIG.model_copy(update={"ledger": CONFIG.ledger.model_copy(update={"url": url})})
    app = create_cloud_app(config, clock=lambda: now)  # opens its own store: the fill runs
    with TestClient(app):
        filler = app.state.filler
        deadline = time.monotonic() + 60
        while filler.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert filler.last is not None and filler.last.rows > 0
        ov = build_overview(app.state.store, CONFIG, ENTS, "2024-05-02", "2024-05-06", now_ms=now)
        assert ov.computed_day_rows == 0
    assert not filler.alive  # stopped with the app
