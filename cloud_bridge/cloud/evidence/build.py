"""The evidence of one enterprise for one period, from the ledger alone (no TSDB needed).

Two steps, so that an evidence pack can be recomputed from its own files:

1. `gather_inputs` reads what the figures are computed from out of the ledger: the devices and what they
   announced (tags, OEE settings), their events and counter records in the period with the ones just
   before and after it that the maths uses (marked as such), the samples received per hour, the gateways'
   status and last sign of life, the config hashes, the equipment ledger and the sheet it was imported from,
   and the settings (calendar, networked rule, business areas, the moment of export). That is
   `EvidenceInputs`: exactly what a pack holds (`settings.json` and the CSVs of inputs).
2. `compute_evidence` turns the inputs into every figure the MIIT SME digital level evaluation (2024) asks of
   equipment data — networked and digitized equipment ratios with their score bands, online time and rate,
   data completeness, OEE with its state timeline, business areas — as one typed `Evidence` (`models.py`). It
   reads nothing else: `edgegw evidence recompute` runs it on the inputs read back from a pack.

The API serves the evidence, the exporter writes it out with its inputs and the HTML report. The maths is in
`cloud_bridge.metrics`; this module only feeds it.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal, Protocol, TypeVar

from cloud_bridge.cloud.evidence.models import (
    ActivityRow,
    Area,
    AreaOption,
    CompletenessFigures,
    ConfigHash,
    ConfigHashRow,
    CountRecord,
    Device,
    DeviceMetaRow,
    Enterprise,
    EventRow,
    Evidence,
    GatewayInfo,
    Indicator,
    KeyProcess,
    LedgerImport,
    NetworkedRuleInfo,
    OeeSettingsRow,
    OnlineNow,
    OnlineTime,
    PackPeriod,
    PackSettings,
    PeriodInfo,
    PeriodOee,
    Summary,
    TagInfo,
    TagRow,
)
from cloud_bridge.cloud.ledger.equipment import Equipment
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.metrics import (
    DEFAULT_AREAS,
    AreaSpec,
    CountPoint,
    NetworkedRule,
    OeeResult,
    TaggedDevice,
    TimelineSegment,
    area_coverage,
    band_label,
    cap_online,
    completeness,
    compute_oee,
    networked_fails,
    oee_params,
    online_at,
    online_summary,
    plan_slices,
    ratio,
    score_band,
    work_intervals,
)
from cloud_bridge.metrics.labels import COLLECTION_AREAS_SOURCE, TEXTS, Label
from cloud_bridge.metrics.period import Period, parse_period
from cloud_bridge.wire.codec import DeviceMeta, OeeMeta, TagMeta
from edge_config.models import CloudConfig, Shift
from edge_config.version import __version__

Key = tuple[str, str]  # (gateway, device)

# A gateway that sent nothing (no sample, no event, no snapshot) for this long has stopped: while it runs,
# every online device sends at least a snapshot a minute (history.snapshot_interval is at most 5 min).
SILENCE_MS = 10 * 60_000


def enterprise_period(config: CloudConfig, ent: str, from_text: str, to_text: str, now_ms: int) -> Period:
    """A period read in the enterprise's time zone (PeriodError with the reason when it cannot be one)."""
    tz, _ = config.calendar(ent)
    return parse_period(from_text, to_text, tz, now_ms)


def expected_per_s(meta: DeviceMeta | None) -> float | None:
    """Readings per second the poll plan calls for (Σ 1 / interval); None if a tag has no fixed interval."""
    if meta is None or not meta.tags or any(not t.interval_s for t in meta.tags):
        return None
    return sum(1.0 / t.interval_s for t in meta.tags if t.interval_s)


# ---------------------------------------------------------------- the inputs


@dataclass
class EvidenceInputs:
    """What the figures of an enterprise and period are computed from, and nothing else (see the module doc).
    `gateways` carry each gateway's status and last sign of life; their `offline_from_ms` and `config_hashes`
    are figures, recomputed."""

    settings: PackSettings
    devices: list[DeviceMetaRow]
    tags: list[TagRow]
    oee_settings: list[OeeSettingsRow]
    events: list[EventRow]
    counts: list[CountRecord]
    activity: list[ActivityRow]
    gateways: list[GatewayInfo]
    config_hashes: list[ConfigHashRow]
    equipment: list[Equipment]
    equipment_file: bytes | None = None  # the equipment sheet as imported (settings.equipment_file names it)

    @property
    def period(self) -> Period:
        p = self.settings.period
        return Period(p.from_ms, p.to_ms, p.as_of_ms, p.timezone)


def rule_info(config: CloudConfig, ent: str) -> NetworkedRuleInfo:
    """The networked rule of an enterprise with its wording (README "Definitions")."""
    rule, source = config.networked_rule(ent)
    online = f"{rule.min_online_ratio * 100:g}%"
    extra = Label("", "")
    if rule.min_completeness is not None:
        extra = TEXTS["rule.completeness"].format(c=f"{rule.min_completeness * 100:g}%")
    text = TEXTS["rule.networked"]
    return NetworkedRuleInfo(
        min_online_ratio=rule.min_online_ratio,
        min_completeness=rule.min_completeness,
        source=source,
        text=text.en.format(online=online, completeness=extra.en),
        text_zh=text.zh.format(online=online, completeness=extra.zh),
    )


def area_options(config: CloudConfig) -> tuple[list[AreaOption], str]:
    """The business areas in force (the pilot's list, or the indicators' of 2024) and where they come from."""
    cat = config.evidence.areas
    if cat is None:
        specs: Sequence[AreaSpec] = DEFAULT_AREAS
        source = COLLECTION_AREAS_SOURCE
    else:
        tag_domains = {d for s in DEFAULT_AREAS for d in s.domains}
        specs = [
            AreaSpec(
                a.key,
                a.zh,
                a.en or a.zh,
                tuple(a.domains) if a.domains is not None else ((a.key,) if a.key in tag_domains else ()),
            )
            for a in cat.areas
        ]
        source = cat.source
    return [AreaOption(key=s.key, zh=s.zh, en=s.en, domains=list(s.domains)) for s in specs], source


def _equipment_file_name(source: str) -> str:
    suffix = PurePosixPath(source.replace("\\", "/")).suffix.lower()
    return f"equipment/ledger-as-imported{suffix if suffix in ('.csv', '.xlsx') else '.bin'}"


def gather_inputs(
    store: EvidenceStore,
    config: CloudConfig,
    ent: str,
    period: Period,
    *,
    now_ms: int | None = None,
    only: Key | None = None,
    online_only: bool = False,
) -> EvidenceInputs:
    """Read from the ledger what the evidence of `ent` over `period` is computed from (`only`: of one device,
    for its OEE alone; `online_only`: no counter rows and only the online/offline events, what the online
    figures need, read for all devices at once)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    ent_cfg = config.enterprise(ent)
    _, shifts = config.calendar(ent)
    metas = store.metas(ent)
    keys = sorted(set(store.devices(ent)) | set(metas))
    if only is not None:
        keys = [k for k in keys if k == only]
    devices: list[DeviceMetaRow] = []
    tags: list[TagRow] = []
    oee: list[OeeSettingsRow] = []
    events: list[EventRow] = []
    counts: list[CountRecord] = []
    for gw, dev in keys:
        m = metas.get((gw, dev))
        devices.append(_meta_row(gw, dev, m))
        if m is not None:
            tags.extend(TagRow(gateway=gw, device=dev, tag=t.name, unit=t.unit, domain=t.domain, type=t.type,
                               interval_s=t.interval_s) for t in m.tags)  # fmt: skip
            if m.oee is not None:
                oee.append(_oee_row(gw, dev, m.config_hash, m.oee))
        if online_only:
            continue
        margin = round(m.oee.micro_stop_s * 1000) if m is not None and m.oee is not None else 0
        evs, cnts = store.device_window(ent, gw, dev, period.start, period.end, period.as_of + margin)
        events.extend(EventRow.model_validate({**_renamed(r), "ts_ms": r["ts"]}) for r in evs)
        counts.extend(CountRecord.model_validate({**_renamed(r), "ts_ms": r["ts"]}) for r in cnts)
    if online_only:
        events = [
            EventRow.model_validate({**_renamed(r), "ts_ms": r["ts"]})
            for r in store.onoff_window(ent, period.start, period.end)
        ]
    activity = [
        ActivityRow(
            gateway=h["gw"],
            device=h["dev"],
            hour_ms=h["hour"],
            samples=h["samples"],
            good_samples=h["good_samples"],
            first_ts_ms=h["first_ts"],
            last_ts_ms=h["last_ts"],
        )
        for h in store.activity_hours(ent, period.start, period.as_of)
        if only is None or (h["gw"], h["dev"]) == only
    ]
    status = store.gateway_status(ent)
    seen = store.gateway_last_seen(ent)
    gateways = [
        GatewayInfo(
            gateway=gw,
            online=status.get(gw, {}).get("online"),
            status_ts=status.get(gw, {}).get("ts"),
            version=status.get(gw, {}).get("version"),
            last_seen_ms=seen.get(gw),
            config_hashes=[],
        )
        for gw in sorted({*status, *seen, *(g for g, _ in keys)})
    ]
    hashes = [
        ConfigHashRow(
            gateway=h["gw"], device=h["dev"], announced_ms=h["ts"], config_hash=h["config_hash"], version=h["version"]
        )
        for h in store.config_hashes(ent, period.start, period.end)
    ]
    imp = store.equipment_import(ent)
    ledger_import = None if imp is None else LedgerImport.model_validate(imp)
    sheet = store.equipment_file(ent, ledger_import.sha256) if ledger_import is not None else None
    areas, areas_source = area_options(config)
    settings = PackSettings(
        generator=f"edgegw {__version__}",
        generated_at_ms=now,
        enterprise=Enterprise(id=ent, name=ent_cfg.name if ent_cfg else ""),
        period=PackPeriod(from_ms=period.start, to_ms=period.end, as_of_ms=period.as_of, timezone=period.timezone),
        calendar=list(shifts),
        networked_rule=rule_info(config, ent),
        areas=areas,
        areas_source=areas_source,
        silence_ms=SILENCE_MS,
        ledger_import=ledger_import,
        equipment_file=_equipment_file_name(ledger_import.source) if ledger_import and sheet is not None else None,
    )
    return EvidenceInputs(
        settings=settings,
        devices=devices,
        tags=tags,
        oee_settings=oee,
        events=events,
        counts=counts,
        activity=activity,
        gateways=gateways,
        config_hashes=hashes,
        equipment=store.equipment(ent),
        equipment_file=sheet,
    )


def _renamed(row: dict[str, object]) -> dict[str, object]:
    out = {k: v for k, v in row.items() if k not in ("gw", "dev", "ts")}
    return {**out, "gateway": row["gw"], "device": row["dev"]}


def _meta_row(gw: str, dev: str, m: DeviceMeta | None) -> DeviceMetaRow:
    if m is None:
        return DeviceMetaRow(gateway=gw, device=dev, announced=False)
    return DeviceMetaRow(
        gateway=gw,
        device=dev,
        announced=True,
        announced_ms=m.ts,
        name=m.name,
        type=m.type,
        line=m.line,
        production=m.production,
        config_hash=m.config_hash,
        version=m.version,
    )


def _oee_row(gw: str, dev: str, config_hash: str, o: OeeMeta) -> OeeSettingsRow:
    return OeeSettingsRow(gateway=gw, device=dev, config_hash=config_hash, **dataclasses.asdict(o))


def device_metas(inputs: EvidenceInputs) -> dict[Key, DeviceMeta]:
    """The devices' metadata as announced, put back together from the inputs' rows."""
    tags: dict[Key, list[TagMeta]] = defaultdict(list)
    for t in inputs.tags:
        tags[(t.gateway, t.device)].append(TagMeta(t.tag, t.unit, t.domain, t.type, t.interval_s))
    oee = {
        (o.gateway, o.device): OeeMeta(**o.model_dump(exclude={"gateway", "device", "config_hash"}))
        for o in inputs.oee_settings
    }
    return {
        (d.gateway, d.device): DeviceMeta(
            d.gateway,
            d.device,
            d.announced_ms or 0,
            name=d.name,
            type=d.type,
            line=d.line,
            production=d.production is not False,
            tags=tuple(tags.get((d.gateway, d.device), ())),
            oee=oee.get((d.gateway, d.device)),
            config_hash=d.config_hash,
            version=d.version,
        )
        for d in inputs.devices
        if d.announced
    }


# ---------------------------------------------------------------- the maths' view of the inputs

R = TypeVar("R", EventRow, CountRecord)


def _order(r: EventRow | CountRecord) -> tuple[int, str, str]:
    """A total order of a device's rows: by time, then the rest, so the last before the start is one row."""
    return (r.ts_ms, r.kind, r.model_dump_json())


def _last_before(rows: Sequence[R], start: int, n: int) -> list[R]:
    return sorted((r for r in rows if r.ts_ms < start), key=_order)[-n:]


def gateway_caps(gateways: Sequence[GatewayInfo], now: int, silence_ms: int, as_of: int) -> dict[str, int]:
    """Gateways offline now (their status says so, or they have been silent for `silence_ms`): their devices
    count as offline from their last sign of life. Provisional: when a gateway comes back, its buffered events
    tell the truth (and after an unclean stop it reports its devices offline itself)."""
    caps: dict[str, int] = {}
    for g in gateways:
        last = g.last_seen_ms
        if g.online is False and g.status_ts is not None:
            cap = max(last or 0, g.status_ts)
        elif last is not None and now - last > silence_ms:
            cap = last
        else:
            continue
        if cap < as_of:
            caps[g.gateway] = cap
    return caps


class _Context:
    def __init__(self, inputs: EvidenceInputs) -> None:
        self.inputs = inputs
        st = inputs.settings
        self.period = p = inputs.period
        self.shifts: list[Shift] = st.calendar
        self.work = work_intervals(plan_slices(self.shifts, p.timezone, p.start, p.as_of))
        self.planned_ms = sum(b - a for a, b in self.work)
        self.caps = gateway_caps(inputs.gateways, st.generated_at_ms, st.silence_ms, p.as_of)
        self.events: dict[Key, list[EventRow]] = defaultdict(list)
        for e in inputs.events:
            self.events[(e.gateway, e.device)].append(e)
        self.counts: dict[Key, list[CountRecord]] = defaultdict(list)
        for c in inputs.counts:
            self.counts[(c.gateway, c.device)].append(c)

    def transitions(self, key: Key, margin_ms: int = 0) -> list[tuple[int, bool]]:
        """Online/offline transitions: the last before the start, those in [start, as of + margin]."""
        p = self.period
        rows = [e for e in self.events[key] if e.kind in ("online", "offline")]
        used = [*_last_before(rows, p.start, 1), *(e for e in rows if p.start <= e.ts_ms <= p.as_of + margin_ms)]
        return cap_online([(e.ts_ms, e.kind == "online") for e in used], self.caps.get(key[0]))

    def state_points(self, key: Key, end: int) -> list[tuple[int, str]]:
        """OEE state changes: the last two before the start (to tell a micro-stop there), those in [start, end]."""
        rows = [c for c in self.counts[key] if c.kind == "state"]
        start = self.period.start
        used = [*_last_before(rows, start, 2), *(c for c in rows if start <= c.ts_ms <= end)]
        return sorted(((c.ts_ms, str(c.state)) for c in used), key=lambda pt: pt[0])

    def count_rows(self, key: Key) -> list[CountRecord]:
        """State changes and snapshots: the last before the start, those in [start, as of), the first after."""
        p = self.period
        rows = self.counts[key]
        after = sorted((c for c in rows if c.ts_ms >= p.as_of), key=_order)[:1]
        return [*_last_before(rows, p.start, 1), *(c for c in rows if p.start <= c.ts_ms < p.as_of), *after]


def _device_oee(ctx: _Context, key: Key, o: OeeMeta) -> OeeResult:
    p = ctx.period
    margin = round(o.micro_stop_s * 1000)
    return compute_oee(
        start=p.start,
        end=p.as_of,
        states=ctx.state_points(key, p.as_of + margin),
        online=ctx.transitions(key, margin),
        counts=[CountPoint(r.ts_ms, r.total, r.good, r.reject) for r in ctx.count_rows(key) if r.total is not None],
        shifts=ctx.shifts,
        tz=p.timezone,
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
    ctx = _Context(gather_inputs(store, config, ent, period, now_ms=now_ms, only=(gw, dev)))
    return _device_oee(ctx, (gw, dev), o)


@dataclass(frozen=True, slots=True)
class _Activity:
    samples: int
    good_samples: int
    first_ts: int
    last_ts: int


def _activity(rows: Sequence[ActivityRow]) -> dict[Key, _Activity]:
    """Samples per device over the period, from the hourly rows."""
    out: dict[Key, _Activity] = {}
    for h in rows:
        key = (h.gateway, h.device)
        a = out.get(key)
        out[key] = (
            _Activity(h.samples, h.good_samples, h.first_ts_ms, h.last_ts_ms)
            if a is None
            else _Activity(
                a.samples + h.samples,
                a.good_samples + h.good_samples,
                min(a.first_ts, h.first_ts_ms),
                max(a.last_ts, h.last_ts_ms),
            )
        )
    return out


def _rule(info: NetworkedRuleInfo) -> NetworkedRule:
    return NetworkedRule(min_online_ratio=info.min_online_ratio, min_completeness=info.min_completeness)


def _device(ctx: _Context, key: Key, meta: DeviceMeta | None, act: _Activity | None) -> tuple[Device, OeeResult | None]:
    """What the ledger holds of a device the gateways reported on, as if it were not in the equipment ledger."""
    gw, dev = key
    p = ctx.period
    trans = ctx.transitions(key)
    online = online_summary(trans, p.start, p.as_of, ctx.work)
    rows = ctx.count_rows(key)
    readings = [(r.ts_ms, r.good_readings) for r in rows if r.good_readings is not None]
    work = ctx.work
    if readings and online_at(trans, p.as_of):
        # an online device has not reported the readings since its last snapshot yet: not missing
        last = max(ts for ts, _ in readings)
        work = [(a, min(b, last)) for a, b in work if min(b, last) > a]
    comp = completeness(readings, work, expected_per_s(meta))
    result = None
    if meta is not None and meta.oee is not None and p.as_of > p.start:
        result = _device_oee(ctx, key, meta.oee)
    good = act.good_samples if act else 0
    fails = networked_fails(
        _rule(ctx.inputs.settings.networked_rule),
        good_samples=good,
        online_planned_ms=online.online_planned_ms,
        planned_ms=online.planned_ms,
        online_ms=online.online_ms,
        window_ms=p.as_of - p.start,
        completeness=comp.ratio,
    )
    m = meta or DeviceMeta(gw, dev, 0)  # nothing announced yet: no name, no tags
    device = Device(
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
        good_samples=good,
        first_seen_ms=act.first_ts if act else None,
        last_seen_ms=act.last_ts if act else None,
        networked=not fails,
        networked_fails=list(fails),
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
        oee=None if result is None else PeriodOee.of(result, p.timezone),
    )
    return device, result


def _matches(e: Equipment, keys: Sequence[Key]) -> list[Key]:
    return [(gw, dev) for gw, dev in keys if dev == e.device_id and (not e.gateway or gw == e.gateway)]


class _OnlineBasis(Protocol):
    @property
    def online_now(self) -> bool: ...
    @property
    def connected(self) -> bool: ...
    @property
    def online_planned_s(self) -> float: ...
    @property
    def planned_s(self) -> float: ...


def online_figures(basis: Sequence[_OnlineBasis], as_of: int) -> tuple[OnlineNow, OnlineTime]:
    """Devices online now (of the basis), and online time within planned time over the connected ones."""
    connected = [r for r in basis if r.connected]
    online_planned = sum(r.online_planned_s for r in connected)
    planned = sum(r.planned_s for r in connected)
    return (
        OnlineNow(online=sum(1 for r in basis if r.online_now), of=len(basis), at_ms=as_of),
        OnlineTime(
            devices=len(connected),
            online_planned_s=online_planned,
            planned_s=planned,
            rate=ratio(online_planned, planned),
        ),
    )


def _indicator(n: int, d: int) -> Indicator:
    return Indicator(numerator=n, denominator=d, ratio=ratio(n, d), score=score_band(n, d), band=band_label(n, d))


@dataclass
class Computed:
    """The evidence, and each OEE device's state timeline in the period (for `state_timeline.csv`)."""

    evidence: Evidence
    timelines: dict[str, tuple[Device, tuple[TimelineSegment, ...]]] = field(default_factory=dict)


def compute_evidence(inputs: EvidenceInputs) -> Computed:
    """Every figure of the evidence, from the inputs alone (see the module doc and README "OEE and evidence")."""
    ctx = _Context(inputs)
    st = inputs.settings
    period = ctx.period
    metas = device_metas(inputs)
    seen = [(d.gateway, d.device) for d in inputs.devices]
    activity = _activity(inputs.activity)
    per_device: dict[Key, Device] = {}
    results: dict[Key, OeeResult] = {}
    for k in seen:
        per_device[k], result = _device(ctx, k, metas.get(k), activity.get(k))
        if result is not None:
            results[k] = result

    equipment = inputs.equipment
    planned_s = ctx.planned_ms / 1000
    rows: list[Device] = []
    matched: dict[Key, Device] = {}
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
            matched[keys[0]] = rows[-1]
        else:  # not connected: nothing measured, all its planned time offline
            fails = networked_fails(
                _rule(st.networked_rule),
                good_samples=0,
                online_planned_ms=0,
                planned_ms=ctx.planned_ms,
                online_ms=0,
                window_ms=period.as_of - period.start,
                completeness=None,
            )
            rows.append(
                Device.model_validate(
                    {**ledger, "planned_s": planned_s, "online_rate": ratio(0, planned_s), "networked_fails": fails}
                )
            )
    rows.extend(per_device[k] for k in seen if k not in matched)
    shown = {**per_device, **matched}

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
    online_now, online_time = online_figures(basis, period.as_of)
    received = sum(c.received for c in measured)
    expected = sum(c.expected for c in measured)
    specs = [AreaSpec(a.key, a.zh, a.en, tuple(a.domains)) for a in st.areas]
    tagged = [
        TaggedDevice(r.id, [(t.name, t.domain) for t in r.tags], r.good_samples > 0, r.networked)
        for r in rows
        if r.connected
    ]
    areas = [
        Area(
            key=c.spec.key,
            zh=c.spec.zh,
            en=c.spec.en,
            domains=list(c.spec.domains),
            tags=list(c.tags),
            devices=list(c.devices),
            devices_with_data=list(c.devices_with_data),
            data_arrived=bool(c.devices_with_data),
            counted=c.counted,
        )
        for c in area_coverage(specs, tagged)
    ]
    if period.as_of < period.end:
        notes.append(f"the period is not over: figures run up to {period.iso(period.as_of)}")
    if ctx.caps:
        notes.append(
            "gateway(s) offline now: "
            + ", ".join(f"{gw} (devices counted offline from {period.iso(ts)})" for gw, ts in sorted(ctx.caps.items()))
        )
    if st.ledger_import is not None and st.equipment_file is None:
        notes.append(
            "the equipment sheet was imported before edgegw kept imported files: the pack holds the ledger's rows "
            "(csv/equipment_ledger.csv), not the file whose SHA-256 is cited — import it again to include it"
        )
    hashes = [
        ConfigHash(gw=h.gateway, dev=h.device, ts=h.announced_ms, config_hash=h.config_hash, version=h.version)
        for h in inputs.config_hashes
    ]
    gateways = [
        g.model_copy(
            update={
                "offline_from_ms": ctx.caps.get(g.gateway),
                "config_hashes": sorted({h.config_hash for h in hashes if h.gw == g.gateway and h.config_hash}),
            }
        )
        for g in inputs.gateways
    ]
    evidence = Evidence(
        generator=st.generator,
        generated_at_ms=st.generated_at_ms,
        enterprise=st.enterprise,
        period=PeriodInfo.of(
            period,
            planned_s=planned_s,
            planned_intervals=ctx.work,
            calendar=list(ctx.shifts) or "24 h a day (no shifts configured)",
        ),
        summary=Summary(
            denominator_source=denominator_source,
            equipment_total=total,
            ledger_import=st.ledger_import,
            networked_rule=st.networked_rule,
            networked=_indicator(networked, total),
            digitized=_indicator(digitized, total),
            key_process=KeyProcess(total=len(key_rows), networked=sum(1 for r in key_rows if r.networked)),
            online_now=online_now,
            online_time=online_time,
            completeness=CompletenessFigures(
                received=round(received, 3), expected=round(expected, 3), ratio=ratio(received, expected)
            ),
            areas=areas,
            areas_counted=sum(1 for a in areas if a.counted),
            areas_source=st.areas_source,
            oee_devices=sum(1 for r in rows if r.oee is not None),
        ),
        devices=rows,
        gateways=gateways,
        config_hashes=hashes,
        notes=notes,
    )
    timelines = {f"{k[0]}/{k[1]}": (shown[k], r.timeline) for k, r in results.items()}
    return Computed(evidence, timelines)


def build_evidence(
    store: EvidenceStore, config: CloudConfig, ent: str, period: Period, *, now_ms: int | None = None
) -> Evidence:
    """Everything the evidence pack and API report for `ent` over `period` (see README "OEE and evidence").
    The period should be in the enterprise's time zone (`enterprise_period`)."""
    return compute_evidence(gather_inputs(store, config, ent, period, now_ms=now_ms)).evidence
