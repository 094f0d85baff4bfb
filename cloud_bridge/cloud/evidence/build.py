"""The evidence of one enterprise for one period, from the ledger alone (no TSDB needed).

`build_evidence` gathers, per device and for the enterprise as a whole, every figure the MIIT SME
digital level evaluation (2024) asks of equipment data — networked and digitized equipment ratios
with their score bands, online time and rate, data completeness, OEE, business areas — as one
typed `Evidence` (`models.py`). The API serves it, the exporter writes it out with the CSVs behind each
number and the HTML report. The maths is in `cloud_bridge.metrics`; this module only feeds it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

from cloud_bridge.cloud.evidence.models import (
    Area,
    CompletenessFigures,
    ConfigHash,
    Device,
    Enterprise,
    Evidence,
    GatewayInfo,
    Indicator,
    KeyProcess,
    LedgerImport,
    OnlineNow,
    OnlineTime,
    PeriodInfo,
    PeriodOee,
    Summary,
    TagInfo,
)
from cloud_bridge.cloud.ledger.equipment import Equipment
from cloud_bridge.cloud.ledger.store import Activity, EvidenceStore
from cloud_bridge.metrics import (
    CountPoint,
    OeeResult,
    areas,
    band_label,
    cap_online,
    completeness,
    compute_oee,
    oee_params,
    online_at,
    online_summary,
    plan_slices,
    ratio,
    score_band,
    work_intervals,
)
from cloud_bridge.metrics.labels import TEXTS
from cloud_bridge.metrics.period import Period, parse_period
from cloud_bridge.wire.codec import DeviceMeta, OeeMeta
from edge_config.models import CloudConfig, Shift
from edge_config.version import __version__

Key = tuple[str, str]  # (gateway, device)


def enterprise_period(config: CloudConfig, ent: str, from_text: str, to_text: str, now_ms: int) -> Period:
    """A period read in the enterprise's time zone (PeriodError with the reason when it cannot be one)."""
    tz, _ = config.calendar(ent)
    return parse_period(from_text, to_text, tz, now_ms)


def expected_per_s(meta: DeviceMeta | None) -> float | None:
    """Readings per second the poll plan calls for (Σ 1 / interval); None if a tag has no fixed interval."""
    if meta is None or not meta.tags or any(not t.interval_s for t in meta.tags):
        return None
    return sum(1.0 / t.interval_s for t in meta.tags if t.interval_s)


# A gateway that sent nothing (no sample, no event, no snapshot) for this long has stopped: while it runs,
# every online device sends at least a snapshot a minute (history.snapshot_interval is at most 5 min).
SILENCE_MS = 10 * 60_000


class _Context:
    def __init__(
        self, store: EvidenceStore, ent: str, period: Period, shifts: Sequence[Shift], now_ms: int | None = None
    ) -> None:
        self.store = store
        self.ent = ent
        self.period = period
        self.shifts = shifts
        slices = plan_slices(shifts, period.timezone, period.start, period.as_of)
        self.work = work_intervals(slices)
        self.planned_ms = sum(b - a for a, b in self.work)
        status = store.gateway_status(ent)
        seen = store.gateway_last_seen(ent)
        # a gateway that is offline now (its status says so, or it has been silent for SILENCE_MS): its
        # devices are offline from its last sign of life. Provisional: when it comes back, its buffered
        # events tell the truth (and after an unclean stop it reports its devices offline itself)
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        self.caps: dict[str, int] = {}
        for gw in set(status) | set(seen):
            st, last = status.get(gw), seen.get(gw)
            if st is not None and not st["online"]:
                cap = max(last or 0, st["ts"])
            elif last is not None and now - last > SILENCE_MS:
                cap = last
            else:
                continue
            if cap < period.as_of:
                self.caps[gw] = cap

    def transitions(self, gw: str, dev: str, margin_ms: int = 0) -> list[tuple[int, bool]]:
        p = self.period
        raw = self.store.transitions(self.ent, gw, dev, p.start, p.as_of + margin_ms)
        return cap_online(raw, self.caps.get(gw))


def device_oee(ctx: _Context, gw: str, dev: str, o: OeeMeta, start: int, end: int) -> OeeResult:
    margin = round(o.micro_stop_s * 1000)
    return compute_oee(
        start=start,
        end=end,
        states=ctx.store.state_points(ctx.ent, gw, dev, start, end + margin),
        online=ctx.transitions(gw, dev, margin),
        counts=[
            CountPoint(r.ts, r.total, r.good, r.reject)
            for r in ctx.store.count_rows(ctx.ent, gw, dev, start, end)
            if r.total is not None
        ],
        shifts=ctx.shifts,
        tz=ctx.period.timezone,
        params=oee_params(o),
    )


def oee_of(
    store: EvidenceStore,
    config: CloudConfig,
    ent: str,
    period: Period,
    gw: str,
    dev: str,
    o: OeeMeta,
    *,
    now_ms: int | None = None,
) -> OeeResult:
    """OEE of one device over the period (up to its `as_of`)."""
    _, shifts = config.calendar(ent)
    return device_oee(_Context(store, ent, period, shifts, now_ms), gw, dev, o, period.start, period.as_of)


def _device(ctx: _Context, key: Key, meta: DeviceMeta | None, act: Activity | None) -> Device:
    """What the ledger holds of a device the gateways reported on, as if it were not in the equipment ledger."""
    gw, dev = key
    p = ctx.period
    trans = ctx.transitions(gw, dev)
    online = online_summary(trans, p.start, p.as_of, ctx.work)
    readings = [
        (r.ts, r.good_readings)
        for r in ctx.store.count_rows(ctx.ent, gw, dev, p.start, p.as_of)
        if r.good_readings is not None
    ]
    work = ctx.work
    if readings and online_at(trans, p.as_of):
        # an online device has not reported the readings since its last snapshot yet: not missing
        last = max(ts for ts, _ in readings)
        work = [(a, min(b, last)) for a, b in work if min(b, last) > a]
    comp = completeness(readings, work, expected_per_s(meta))
    oee = None
    if meta is not None and meta.oee is not None and p.as_of > p.start:
        oee = PeriodOee.of(device_oee(ctx, gw, dev, meta.oee, p.start, p.as_of), p.timezone)
    m = meta or DeviceMeta(gw, dev, 0)  # nothing announced yet: no name, no tags
    return Device(
        id=dev,
        name=m.name,
        type=m.type,
        line=m.line,
        connected=True,
        gateway=gw,
        device=dev,
        device_name=m.name,
        device_type=m.type,
        production=meta.production if meta else None,
        config_hash=m.config_hash,
        samples=act.samples if act else 0,
        good_samples=act.good_samples if act else 0,
        first_seen_ms=act.first_ts if act else None,
        last_seen_ms=act.last_ts if act else None,
        networked=bool(act and act.good_samples > 0),
        online_s=online.online_ms / 1000,
        online_planned_s=online.online_planned_ms / 1000,
        planned_s=online.planned_ms / 1000,
        online_rate=online.rate,
        online_now=online_at(trans, p.as_of),
        online_intervals=list(online.intervals),
        completeness=CompletenessFigures(
            received=round(comp.received, 3), expected=round(comp.expected, 3), ratio=comp.ratio
        ),
        domains=sorted({t.domain for t in m.tags if t.domain}),
        tags=[TagInfo(name=t.name, unit=t.unit, domain=t.domain) for t in m.tags],
        oee=oee,
    )


def _matches(e: Equipment, keys: Sequence[Key]) -> list[Key]:
    return [(gw, dev) for gw, dev in keys if dev == e.device_id and (not e.gateway or gw == e.gateway)]


def _indicator(n: int, d: int) -> Indicator:
    return Indicator(numerator=n, denominator=d, ratio=ratio(n, d), score=score_band(n, d), band=band_label(n, d))


def build_evidence(
    store: EvidenceStore, config: CloudConfig, ent: str, period: Period, *, now_ms: int | None = None
) -> Evidence:
    """Everything the evidence pack and API report for `ent` over `period` (see README "OEE and evidence").
    The period should be in the enterprise's time zone (`enterprise_period`)."""
    _, shifts = config.calendar(ent)
    ctx = _Context(store, ent, period, shifts, now_ms)
    metas = store.metas(ent)
    seen = sorted(set(store.devices(ent)) | set(metas))
    activity = store.activity(ent, period.start, period.as_of)
    per_device = {k: _device(ctx, k, metas.get(k), activity.get(k)) for k in seen}

    equipment = store.equipment(ent)
    ledger_import = store.equipment_import(ent)
    planned_s = ctx.planned_ms / 1000
    rows: list[Device] = []
    matched: set[Key] = set()
    notes: list[str] = []
    for e in equipment:
        keys = _matches(e, seen)
        if len(keys) > 1:
            notes.append(
                f"equipment {e.id!r}: device {e.device_id!r} is on several gateways ({', '.join(g for g, _ in keys)}); "
                "the first is used — give the gateway column in the ledger"
            )
        ledger = {**e.ledger_fields(), "in_ledger": True}
        if keys:
            rows.append(per_device[keys[0]].model_copy(update=ledger))
        else:  # not connected: nothing measured, all its planned time offline
            rows.append(Device.model_validate({**ledger, "planned_s": planned_s, "online_rate": ratio(0, planned_s)}))
        matched.update(keys[:1])
    rows.extend(per_device[k] for k in seen if k not in matched)

    if equipment:
        basis = [r for r in rows if r.in_ledger]
        denominator_source: Literal["equipment_ledger", "gateway_metadata"] = "equipment_ledger"
    else:
        basis = [r for r in rows if r.production is not False]
        denominator_source = "gateway_metadata"
        notes.append(
            "no equipment ledger imported: the denominators are the production devices the gateways announced, "
            f"not all production equipment — import the ledger ({TEXTS['equipment_ledger'].zh}) for the assessment"
        )
    total = len(basis)
    networked = sum(1 for r in basis if r.networked)
    digitized = sum(1 for r in basis if r.digitized)
    declared_digital = [r.id for r in basis if r.networked and r.digitized is False]
    if declared_digital and equipment:
        notes.append(
            "networked but not declared digitized in the ledger (check the ledger): " + ", ".join(declared_digital)
        )
    key_rows = [r for r in basis if r.key_process]
    connected = [r for r in basis if r.connected]
    measured = [r.completeness for r in connected if r.completeness.ratio is not None]
    online_planned = sum(r.online_planned_s for r in connected)
    planned = sum(r.planned_s for r in connected)
    received = sum(c.received for c in measured)
    expected = sum(c.expected for c in measured)
    area_devices: dict[str, list[str]] = {}
    area_tags: dict[str, int] = {}
    for r in rows:
        if not r.networked:
            continue
        for t in r.tags:
            if t.domain:
                area_devices.setdefault(t.domain, [])
                if r.id not in area_devices[t.domain]:
                    area_devices[t.domain].append(r.id)
                area_tags[t.domain] = area_tags.get(t.domain, 0) + 1
    covered = [
        Area(domain=a["domain"], zh=a["zh"], en=a["en"], devices=area_devices[a["domain"]], tags=area_tags[a["domain"]])
        for a in areas(area_devices)
    ]
    if period.as_of < period.end:
        notes.append(f"the period is not over: figures run up to {period.iso(period.as_of)}")
    if ctx.caps:
        notes.append(
            "gateway(s) offline now: "
            + ", ".join(f"{gw} (devices counted offline from {period.iso(ts)})" for gw, ts in sorted(ctx.caps.items()))
        )
    ent_cfg = config.enterprise(ent)
    gw_status = store.gateway_status(ent)
    hashes = [ConfigHash.model_validate(h) for h in store.config_hashes(ent, period.start, period.end)]
    gateways = []
    for gw in sorted({*gw_status, *(g for g, _ in seen)}):
        st = gw_status.get(gw, {})
        gateways.append(
            GatewayInfo(
                gateway=gw,
                online=st.get("online"),
                status_ts=st.get("ts"),
                version=st.get("version"),
                config_hashes=sorted({h.config_hash for h in hashes if h.gw == gw and h.config_hash}),
            )
        )
    return Evidence(
        generator=f"edgegw {__version__}",
        generated_at_ms=now_ms if now_ms is not None else int(time.time() * 1000),
        enterprise=Enterprise(id=ent, name=ent_cfg.name if ent_cfg else ""),
        period=PeriodInfo.of(
            period,
            planned_s=planned_s,
            planned_intervals=ctx.work,
            calendar=list(shifts) or "24 h a day (no shifts configured)",
        ),
        summary=Summary(
            denominator_source=denominator_source,
            equipment_total=total,
            ledger_import=None if ledger_import is None else LedgerImport.model_validate(ledger_import),
            networked=_indicator(networked, total),
            digitized=_indicator(digitized, total),
            key_process=KeyProcess(total=len(key_rows), networked=sum(1 for r in key_rows if r.networked)),
            online_now=OnlineNow(online=sum(1 for r in basis if r.online_now), of=total, at_ms=period.as_of),
            online_time=OnlineTime(
                devices=len(connected),
                online_planned_s=online_planned,
                planned_s=planned,
                rate=ratio(online_planned, planned),
            ),
            completeness=CompletenessFigures(
                received=round(received, 3), expected=round(expected, 3), ratio=ratio(received, expected)
            ),
            areas=covered,
            oee_devices=sum(1 for r in rows if r.oee is not None),
        ),
        devices=rows,
        gateways=gateways,
        config_hashes=hashes,
        notes=notes,
    )
