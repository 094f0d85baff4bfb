"""The printable bilingual (zh-CN / English) HTML report of an evidence pack.

One self-contained file: inline CSS and inline SVG charts, no script, no fonts or images fetched.
Sections: indicator summary, per-device table, the business areas of data collection, online timeline per
device, OEE chart with the loss breakdown, method and provenance (networked rule, calendar, config hashes,
equipment ledger import, audit, signature, notes).

Rendered from the Jinja2 templates in `templates/` (`report.html.j2` on the printable page `base.html.j2`)
with autoescape, so every name from a ledger or a gateway is escaped. The charts' geometry is computed
here as plain shapes; the templates draw them (`charts.html.j2`), texts included.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import jinja2

from cloud_bridge.cloud.evidence.models import AuditRecord, Evidence, PeriodOee
from cloud_bridge.cloud.evidence.tables import summary_rows
from cloud_bridge.metrics.evidence import BANDS, band_label
from cloud_bridge.metrics.labels import STATES, Label, label
from cloud_bridge.web import environment, local_time

STATE_COLOURS = {
    "running": "#2e9d57",
    "micro_stops": "#9fd39a",
    "idle": "#f2c94c",
    "setup": "#5b8def",
    "fault": "#d9534f",
    "planned_stop": "#b9c0c8",
    "offline": "#6b6f75",
    "unknown": "#9a8fb5",
}
ONLINE = STATE_COLOURS["running"]
PLANNED = "#e2e7ee"
UNSCHEDULED = "#f4f6f8"
OEE_BARS = (  # the OEE factor, its colour, its letter
    ("availability", "#5b8def", "A"),
    ("performance", "#f2994a", "P"),
    ("quality", "#2e9d57", "Q"),
    ("oee", "#1f4466", "OEE"),
)


# ---------------------------------------------------------------- chart shapes


@dataclass(frozen=True, slots=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str
    dash: str = ""


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    title: str = ""
    opacity: float | None = None


@dataclass(frozen=True, slots=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "middle"
    fill: str = "#222"
    size: int | None = None


@dataclass(slots=True)
class Chart:
    width: float
    height: float
    label: str
    lines: list[Line] = field(default_factory=list)
    rects: list[Rect] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    hatch: str = ""  # id of the hatch pattern the chart defines, if any


def _r(x: float) -> float:
    return round(x, 2)


_STEPS_S = (1, 5, 10, 30, 60, 300, 900, 3600, 10800, 21600, 43200, 86400, 172800, 604800)


def _ticks(start: int, end: int, tz: str) -> list[tuple[int, str]]:
    """Axis ticks on round local times, at most about a dozen."""
    span_s = (end - start) / 1000
    step = next((x for x in _STEPS_S if span_s / x <= 12), _STEPS_S[-1])
    if step >= 86400:
        fmt = "%m-%d"
    elif span_s > 86400:
        fmt = "%m-%d %H:%M"
    elif step < 60:
        fmt = "%H:%M:%S"
    else:
        fmt = "%H:%M"
    zone = ZoneInfo(tz)
    t = datetime.fromtimestamp(start / 1000, zone).replace(microsecond=0)
    midnight = t.replace(hour=0, minute=0, second=0)
    if step >= 86400:
        t = midnight
    else:
        secs = (t - midnight).seconds
        t = midnight + timedelta(seconds=secs - secs % step)
    out = []
    for _ in range(100):
        ms = round(t.timestamp() * 1000)
        if ms > end:
            break
        if ms >= start:
            out.append((ms, t.strftime(fmt)))
        t = t + timedelta(seconds=step)
    return out


def timeline_chart(ev: Evidence) -> Chart:
    """One row per device: planned time, and the stretches it was online."""
    p = ev.period
    start, end, tz = p.from_ms, p.to_ms, p.timezone
    label_w, chart_w, row_h, top = 170, 830, 18, 22
    height = top + row_h * max(1, len(ev.devices)) + 8
    span = max(1, end - start)

    def x(ms: int) -> float:
        return label_w + chart_w * (min(max(ms, start), end) - start) / span

    c = Chart(label_w + chart_w + 24, height, "online timeline", hatch="future")  # room for the last tick
    for ms, text in _ticks(start, end, tz):
        c.lines.append(Line(_r(x(ms)), top - 4, _r(x(ms)), height - 6, "#dde3ea"))
        c.texts.append(Text(_r(x(ms)), top - 8, text, fill="#555"))
    if p.as_of_ms < end:
        w = x(end) - x(p.as_of_ms)
        c.rects.append(Rect(_r(x(p.as_of_ms)), top, _r(w), height - top - 6, f"url(#{c.hatch})", opacity=0.5))
    for i, d in enumerate(ev.devices):
        y = top + i * row_h
        c.texts.append(Text(label_w - 6, y + 12, d.id[:28], anchor="end"))
        c.rects.append(Rect(label_w, y + 3, chart_w, row_h - 6, UNSCHEDULED))
        c.rects.extend(
            Rect(_r(x(a)), y + 3, _r(max(0.0, x(b) - x(a))), row_h - 6, PLANNED) for a, b in p.planned_intervals
        )
        c.rects.extend(
            Rect(
                _r(x(a)),
                y + 4,
                _r(max(0.6, x(b) - x(a))),
                row_h - 8,
                ONLINE,
                title=f"{local_time(a, tz)} – {local_time(b, tz)}",
            )
            for a, b in d.online_intervals
        )
    return c


Measured = list[tuple[str, PeriodOee]]  # (equipment id, its OEE)


def oee_chart(devices: Measured) -> Chart:
    """A, P, Q and OEE side by side per device, against 100 %."""
    top_value = max(1.2, *(getattr(o, k) or 0 for _, o in devices for k, _, _ in OEE_BARS))
    label_w, chart_w, chart_h, top = 40, 960, 170, 10
    group_w = chart_w / len(devices)
    bar_w = min(22.0, group_w * 0.8 / len(OEE_BARS))
    c = Chart(label_w + chart_w + 10, top + chart_h + 40, "OEE chart")

    def y(v: float) -> float:
        return _r(top + chart_h * (1 - v / top_value))

    for v in (0, 0.25, 0.5, 0.75, 1.0):
        edge = v in (0, 1.0)
        dash = "3,2" if v == 1.0 else ""
        c.lines.append(Line(label_w, y(v), label_w + chart_w, y(v), "#888" if edge else "#e3e7ec", dash))
        c.texts.append(Text(label_w - 4, _r(y(v) + 3), f"{v * 100:.0f}%", anchor="end", fill="#555"))
    for i, (name, o) in enumerate(devices):
        gx = label_w + i * group_w + (group_w - bar_w * len(OEE_BARS)) / 2
        for j, (k, colour, short) in enumerate(OEE_BARS):
            v = getattr(o, k)
            bx = gx + j * bar_w
            if v is None:
                c.texts.append(Text(_r(bx + bar_w / 2), y(0) - 3, "–", fill="#999"))
                continue
            c.rects.append(
                Rect(_r(bx), y(v), _r(bar_w - 1), _r(y(0) - y(v)), colour, title=f"{name} {short} {v * 100:.1f}%")
            )
            if bar_w >= 14:
                c.texts.append(Text(_r(bx + bar_w / 2), y(v) - 2, f"{v * 100:.0f}", fill="#333", size=8))
        c.texts.append(Text(_r(label_w + (i + 0.5) * group_w), top + chart_h + 14, name[:18]))
    return c


def loss_chart(devices: Measured) -> Chart:
    """Each device's planned operation time by state, stacked in the order of the labels table."""
    label_w, chart_w, row_h = 170, 830, 18
    c = Chart(label_w + chart_w + 10, row_h * len(devices) + 6, "time breakdown")
    for i, (name, o) in enumerate(devices):
        seconds = {k: getattr(o.time_s, k) for k in STATE_COLOURS}
        total = sum(seconds.values()) or 1.0
        y = i * row_h
        c.texts.append(Text(label_w - 6, y + 12, name[:28], anchor="end"))
        xpos = float(label_w)
        for k, s in seconds.items():
            w = chart_w * s / total
            if w <= 0:
                continue
            c.rects.append(Rect(_r(xpos), y + 3, _r(w), row_h - 6, STATE_COLOURS[k], title=f"{STATES[k]}: {s:.0f} s"))
            xpos += w
    return c


# ---------------------------------------------------------------- the report


@functools.cache
def _template() -> jinja2.Template:
    return environment(__package__ or "cloud_bridge.cloud.evidence").get_template("report.html.j2")


def _flags(flags: list[str]) -> Label:
    labels = [label(f"flag.{f}", strict=False) for f in flags]
    return Label("；".join(lb.zh for lb in labels), "; ".join(lb.en for lb in labels))


def render_report(ev: Evidence, *, audit: AuditRecord | None = None, signer: str | None = None) -> str:
    """The report of `ev`; `audit`: the audit run at export; `signer`: the fingerprint of the key that signs
    the pack."""
    oee_devices = [d for d in ev.devices if d.oee is not None]
    measured = [(d.id, d.oee) for d in ev.devices if d.oee is not None]
    ent = ev.enterprise
    return _template().render(
        ev=ev,
        enterprise=f"{ent.name} ({ent.id})" if ent.name else ent.id,
        summary=summary_rows(ev),
        max_points=f"{BANDS[-1][1]:g}",
        band_text=", ".join(f"{band_label(upper, 100)}→{points:g}" for upper, points in BANDS),
        timeline=timeline_chart(ev),
        online_colour=ONLINE,
        planned_colour=PLANNED,
        unscheduled_colour=UNSCHEDULED,
        oee_devices=oee_devices,
        oee_chart=oee_chart(measured) if measured else None,
        loss_chart=loss_chart(measured) if measured else None,
        oee_bars=OEE_BARS,
        state_colours=STATE_COLOURS,
        flag_notes=[(name, _flags(o.flags)) for name, o in measured if o.flags],
        policy=measured[0][1] if measured else None,
        audit=audit,
        signer=signer,
        max_tags=8,
    )
