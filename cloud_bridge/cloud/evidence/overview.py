"""The pilot's overview: every enterprise's equipment indicators for one period, in one call.

`build_overview` gives, per enterprise, what `build_evidence` gives in its summary for the networked ratio,
online now and online time (and the number of OEE devices), without computing each enterprise's evidence:

- a period made of whole local days is cut at `cut` = its as-of, or earlier where a gateway is offline now
  (from its last sign of life on, its devices count offline: see `gateway_caps`);
- the closed days before the cut are summed in SQL from `device_days`, one row per device and day computed
  with the evidence's own functions (`_Context.transitions`, `online_summary`, the hourly activity) the first
  time a period needs it, and dropped by the ledger writer when late data arrives for the day or before it;
- what is after the cut (today, a gateway offline now) is computed as the evidence computes it;
- the per-device sums give the same networked test (`networked_fails`), and the enterprise's rows are put
  together as `compute_evidence` does (equipment ledger, production devices).

Online time is additive over days (intervals clipped to each day), so the sums are the evidence's figures.
An enterprise whose networked rule asks for data completeness, or a period not starting at a local midnight,
is computed in full (`build_evidence`): completeness is not cached per day.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cloud_bridge.cloud.evidence.build import (
    SILENCE_MS,
    EvidenceInputs,
    Key,
    _activity,
    _Context,
    _indicator,
    _matches,
    _order,
    _rule,
    build_evidence,
    enterprise_period,
    gateway_caps,
    gather_inputs,
    online_figures,
    rule_info,
)
from cloud_bridge.cloud.evidence.models import (
    ActivityRow,
    Enterprise,
    EventRow,
    Evidence,
    GatewayInfo,
    Overview,
    OverviewGateway,
    OverviewRow,
    OverviewTotals,
    PackPeriod,
    PeriodBounds,
)
from cloud_bridge.cloud.ledger import days as dd
from cloud_bridge.cloud.ledger.equipment import Equipment
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.metrics import networked_fails, online_at, online_summary, ratio
from cloud_bridge.metrics.calendar import local_date, local_ms
from cloud_bridge.metrics.period import Period
from cloud_bridge.wire.codec import DeviceMeta, WireError, decode_meta
from edge_config.models import CloudConfig, Shift


def calendar_key(tz: str, shifts: Sequence[Shift]) -> str:
    """Fingerprint of what planned time is made of: a day summary holds only under the same calendar."""
    text = json.dumps([tz, [s.model_dump(mode="json") for s in shifts]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def local_days(start: int, end: int, tz: str) -> list[tuple[int, int]]:
    """The whole local days [midnight, next midnight) in [start, end), `start` being a local midnight."""
    out: list[tuple[int, int]] = []
    day = local_date(start, tz)
    a = local_ms(day, 0, tz)
    while True:
        day += timedelta(days=1)
        b = local_ms(day, 0, tz)
        if b > end:
            return out
        out.append((a, b))
        a = b


def starts_a_day(ms: int, tz: str) -> bool:
    return local_ms(local_date(ms, tz), 0, tz) == ms


@dataclass(frozen=True, slots=True)
class Figures:
    """What a device's online and networked figures are summed from, over some days (or the tail)."""

    online_ms: int = 0
    online_planned_ms: int = 0
    planned_ms: int = 0
    samples: int = 0
    good_samples: int = 0
    online_end: bool = False

    def __add__(self, later: Figures) -> Figures:
        return Figures(
            self.online_ms + later.online_ms,
            self.online_planned_ms + later.online_planned_ms,
            self.planned_ms + later.planned_ms,
            self.samples + later.samples,
            self.good_samples + later.good_samples,
            later.online_end,
        )


_FIGURES = [f.name for f in dataclasses.fields(Figures)]


def _figures(ctx: _Context, key: Key, act: ActivityRow | None) -> tuple[Figures, int | None, int | None]:
    p = ctx.period
    trans = ctx.transitions(key)
    on = online_summary(trans, p.start, p.as_of, ctx.work)
    fig = Figures(
        on.online_ms,
        on.online_planned_ms,
        on.planned_ms,
        act.samples if act else 0,
        act.good_samples if act else 0,
        online_at(trans, p.as_of),
    )
    return fig, (act.first_ts_ms if act else None), (act.last_ts_ms if act else None)


def _hourly(rows: Sequence[ActivityRow]) -> dict[Key, ActivityRow]:
    return {
        k: ActivityRow(
            gateway=k[0],
            device=k[1],
            hour_ms=0,
            samples=a.samples,
            good_samples=a.good_samples,
            first_ts_ms=a.first_ts,
            last_ts_ms=a.last_ts,
        )
        for k, a in _activity(rows).items()
    }


def _one_day(inputs: EvidenceInputs, start: int, end: int, events: list[EventRow]) -> _Context:
    """The inputs' context over one closed day, no gateway offline (the overview cuts the days before that),
    with the `events` of that day (`_day_events`)."""
    tz = inputs.settings.period.timezone
    period = PackPeriod(from_ms=start, to_ms=end, as_of_ms=end, timezone=tz)
    settings = inputs.settings.model_copy(update={"period": period})
    return _Context(dataclasses.replace(inputs, settings=settings, gateways=[], events=events))


def _day_events(by_key: dict[Key, list[EventRow]], start: int, end: int) -> list[EventRow]:
    """Of each device's events (sorted by time): the one `_Context.transitions` picks as the last before
    `start`, and those in [start, end]; all it reads for a day, so each day does not sort the days before it."""
    out: list[EventRow] = []
    for rows in by_key.values():
        i = bisect_left(rows, start, key=lambda e: e.ts_ms)
        if i:
            last = rows[i - 1].ts_ms
            k = bisect_left(rows, last, hi=i, key=lambda e: e.ts_ms)
            out.append(max(rows[k:i], key=_order))
        out.extend(rows[i : bisect_right(rows, end, lo=i, key=lambda e: e.ts_ms)])
    return out


def compute_days(
    store: EvidenceStore, config: CloudConfig, ent: str, days: Sequence[tuple[int, int]], *, now_ms: int
) -> list[dict[str, object]]:
    """The `device_days` rows of every device of `ent` for the closed `days` (consecutive), computed with the
    evidence's functions from one read of the ledger over all of them."""
    tz, shifts = config.calendar(ent)
    cal = calendar_key(tz, shifts)
    a, b = days[0][0], days[-1][1]
    inputs = gather_inputs(store, config, ent, Period(a, b, b, tz), now_ms=now_ms, online_only=True)
    keys = [(d.gateway, d.device) for d in inputs.devices]
    by_day: dict[int, list[ActivityRow]] = defaultdict(list)
    bounds = [d0 for d0, _ in days]
    for h in inputs.activity:
        by_day[bounds[bisect_right(bounds, h.hour_ms) - 1]].append(h)
    events: dict[Key, list[EventRow]] = defaultdict(list)
    for e in sorted(inputs.events, key=lambda e: e.ts_ms):
        events[(e.gateway, e.device)].append(e)
    rows: list[dict[str, object]] = []
    for d0, d1 in days:
        ctx = _one_day(inputs, d0, d1, _day_events(events, d0, d1))
        acts = _hourly(by_day[d0])
        for key in keys:
            fig, first, last = _figures(ctx, key, acts.get(key))
            rows.append(
                {
                    "ent": ent,
                    "gw": key[0],
                    "dev": key[1],
                    "day": d0,
                    "day_end": d1,
                    "calendar": cal,
                    **{f: getattr(fig, f) for f in _FIGURES},
                    "first_ts": first,
                    "last_ts": last,
                    "computed_ms": now_ms,
                }
            )
    return rows


@dataclass
class _Device:
    fig: Figures
    production: bool | None
    oee: bool


@dataclass
class _Shown:
    """A row of the enterprise's device table as the summary counts it (`compute_evidence`'s `rows`)."""

    networked: bool
    online_now: bool
    connected: bool
    online_planned_s: float
    planned_s: float
    in_ledger: bool
    production: bool | None
    oee: bool
    digitized: bool | None = None


def _row(
    ent: str,
    name: str,
    period: Period,
    devices: dict[Key, _Device],
    equipment: Sequence[Equipment],
    config: CloudConfig,
    gateways: list[OverviewGateway],
) -> OverviewRow:
    """The enterprise's summary from its devices' figures, put together as `compute_evidence` does."""
    rule = _rule(rule_info(config, ent))
    window = period.as_of - period.start
    seen = sorted(devices)

    per: dict[Key, _Shown] = {}
    for k in seen:
        d = devices[k]
        f = d.fig
        fails = networked_fails(
            rule,
            good_samples=f.good_samples,
            online_planned_ms=f.online_planned_ms,
            planned_ms=f.planned_ms,
            online_ms=f.online_ms,
            window_ms=window,
            completeness=None,
        )
        per[k] = _Shown(
            not fails,
            f.online_end,
            True,
            f.online_planned_ms / 1000,
            f.planned_ms / 1000,
            False,
            d.production,
            d.oee and period.as_of > period.start,
        )
    rows: list[_Shown] = []
    matched: set[Key] = set()
    for e in equipment:
        keys = _matches(e, seen)
        if keys:
            rows.append(dataclasses.replace(per[keys[0]], in_ledger=True, digitized=e.digitized))
            matched.add(keys[0])
        else:
            rows.append(_Shown(False, False, False, 0.0, 0.0, True, None, False, e.digitized))
    rows.extend(per[k] for k in seen if k not in matched)
    basis = [r for r in rows if r.in_ledger] if equipment else [r for r in rows if r.production is not False]
    online_now, online_time = online_figures(basis, period.as_of)
    total = len(basis)
    return OverviewRow(
        enterprise=Enterprise(id=ent, name=name),
        period=PeriodBounds.of(period),
        denominator_source="equipment_ledger" if equipment else "gateway_metadata",
        equipment_total=total,
        networked=_indicator(sum(1 for r in basis if r.networked), total),
        digitized=_indicator(sum(1 for r in basis if r.digitized), total),
        online_now=online_now,
        online_time=online_time,
        oee_devices=sum(1 for r in rows if r.oee),
        gateways=gateways,
    )


def overview_row(ev: Evidence) -> OverviewRow:
    """The overview's row of an enterprise from its evidence (what `build_overview` must equal)."""
    s = ev.summary
    return OverviewRow(
        enterprise=ev.enterprise,
        period=PeriodBounds.model_validate(ev.period.model_dump(by_alias=True, include=set(PeriodBounds.model_fields))),
        denominator_source=s.denominator_source,
        equipment_total=s.equipment_total,
        networked=s.networked,
        digitized=s.digitized,
        online_now=s.online_now,
        online_time=s.online_time,
        oee_devices=s.oee_devices,
        gateways=[
            OverviewGateway(gateway=g.gateway, online=g.online, status_ts=g.status_ts)
            for g in ev.gateways
            if g.status_ts is not None
        ],
    )


def _metas(bodies: Sequence[tuple[str, str, str]]) -> dict[Key, DeviceMeta]:
    out: dict[Key, DeviceMeta] = {}
    for gw, dev, body in bodies:
        try:
            out[(gw, dev)] = decode_meta(body.encode())
        except WireError:
            continue  # as EvidenceStore.metas
    return out


def _uncapped(last: int | None, status: dict[str, Any] | None, now: int, as_of: int) -> bool:
    """Surely not offline now before `as_of` (`gateway_caps`), from a lower bound of its last sign of life."""
    if last is None:
        return False
    if last >= as_of:
        return True
    offline = status is not None and status.get("online") is False and status.get("ts") is not None
    return not offline and now - last <= SILENCE_MS


def _cut(
    store: EvidenceStore,
    ent: str,
    keys: Sequence[Key],
    status: dict[str, dict[str, Any]],
    stats_last: dict[str, int],
    period: Period,
    now: int,
) -> int:
    """Up to when the day summaries hold for the enterprise now: its as-of, or the earliest instant from which
    a gateway offline now has its devices counted offline. The gateways' newest samples (device_stats) prove
    most of them alive without reading their activity; the others are read as the evidence reads them."""
    if all(_uncapped(stats_last.get(g), status.get(g), now, period.as_of) for g in {g for g, _ in keys}):
        return period.as_of
    seen = store.gateway_last_seen(ent)
    infos = [
        GatewayInfo(
            gateway=gw,
            online=status.get(gw, {}).get("online"),
            status_ts=status.get(gw, {}).get("ts"),
            version=None,
            last_seen_ms=seen.get(gw),
            config_hashes=[],
        )
        for gw in sorted({*status, *seen, *(g for g, _ in keys)})
    ]
    return min([period.as_of, *gateway_caps(infos, now, SILENCE_MS, period.as_of).values()])


def build_overview(
    store: EvidenceStore,
    config: CloudConfig,
    ents: Sequence[str],
    from_text: str,
    to_text: str,
    *,
    now_ms: int | None = None,
) -> Overview:
    """Every enterprise of `ents`: its overview row for the period (in its time zone), equal to
    `overview_row(build_evidence(...))` (see the module doc). PeriodError if the period cannot be one."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    db = store.db
    all_devices = dd.devices_by_enterprise(db)
    bodies = dd.meta_bodies(db)
    statuses = dd.gateway_statuses(db)
    stats_last = dd.gateways_last_sample(db)
    with_ledger = dd.equipment_enterprises(db)
    names = {e.id: e.name for e in config.enterprises}
    rows: dict[str, OverviewRow] = {}
    plans: dict[tuple[str, int, int], list[str]] = defaultdict(list)  # (calendar, start, cut day) → ents
    state: dict[str, tuple[Period, dict[Key, DeviceMeta], list[Key], list[tuple[int, int]], list[OverviewGateway]]] = {}
    full = computed_rows = 0
    for ent in ents:
        period = enterprise_period(config, ent, from_text, to_text, now)
        tz, shifts = config.calendar(ent)
        rule, _ = config.networked_rule(ent)
        if rule.min_completeness is not None or not starts_a_day(period.start, tz):
            rows[ent] = overview_row(build_evidence(store, config, ent, period, now_ms=now))
            full += 1
            continue
        metas = _metas(bodies.get(ent, []))
        keys = sorted(all_devices.get(ent, set()) | set(metas))
        cut = _cut(store, ent, keys, statuses.get(ent, {}), stats_last.get(ent, {}), period, now)
        gateways = [
            OverviewGateway(gateway=g, online=st["online"], status_ts=st["ts"])
            for g, st in sorted(statuses.get(ent, {}).items())
        ]
        days = [d for d in local_days(period.start, period.as_of, tz) if d[1] <= cut]
        state[ent] = (period, metas, keys, days, gateways)
        plans[(calendar_key(tz, shifts), period.start, days[-1][1] if days else period.start)].append(ent)
    for (cal, start, end), group in plans.items():
        sums = dd.day_sums(db, group, cal, start, end) if end > start else {}
        for ent in group:
            period, metas, keys, days, gateways = state[ent]
            if days and any((sums.get((ent, *k)) or {}).get("days") != len(days) for k in keys):
                computed = compute_days(store, config, ent, days, now_ms=now)
                dd.write_days(db, computed)
                computed_rows += len(computed)
                sums.update(dd.day_sums(db, [ent], cal, start, end))
            figs = {k: _summed(sums.get((ent, *k))) for k in keys}
            tail_start = days[-1][1] if days else period.start
            if tail_start < period.as_of or not days:
                figs = _with_tail(store, config, ent, period, tail_start, keys, figs, now)
            devices = {
                k: _Device(
                    figs[k], metas[k].production if k in metas else None, k in metas and metas[k].oee is not None
                )
                for k in keys
            }
            equipment = store.equipment(ent) if ent in with_ledger else []
            rows[ent] = _row(ent, names.get(ent, ""), period, devices, equipment, config, gateways)
    ordered = [rows[e] for e in ents]
    planned = sum(r.online_time.planned_s for r in ordered)
    online = sum(r.online_time.online_planned_s for r in ordered)
    return Overview(
        generated_at_ms=now,
        enterprises=ordered,
        totals=OverviewTotals(
            enterprises=len(ordered),
            equipment_total=sum(r.equipment_total for r in ordered),
            networked=sum(r.networked.numerator for r in ordered),
            online_planned_s=online,
            planned_s=planned,
            online_rate=ratio(online, planned),
        ),
        computed_from_days=len(ordered) - full,
        computed_in_full=full,
        computed_day_rows=computed_rows,
    )


def _summed(s: dict[str, int | None] | None) -> Figures:
    if s is None:
        return Figures()
    return Figures(
        int(s["online_ms"] or 0),
        int(s["online_planned_ms"] or 0),
        int(s["planned_ms"] or 0),
        int(s["samples"] or 0),
        int(s["good_samples"] or 0),
        bool(s["online_end"]),
    )


def _with_tail(
    store: EvidenceStore,
    config: CloudConfig,
    ent: str,
    period: Period,
    start: int,
    keys: Sequence[Key],
    figs: dict[Key, Figures],
    now: int,
) -> dict[Key, Figures]:
    """The figures with what is after the cached days added, computed as the evidence does (offline gateways
    capped)."""
    tail = Period(start, period.end, period.as_of, period.timezone)
    inputs = gather_inputs(store, config, ent, tail, now_ms=now)
    ctx = _Context(inputs)
    acts = _hourly(inputs.activity)
    return {k: figs[k] + _figures(ctx, k, acts.get(k))[0] for k in keys}
