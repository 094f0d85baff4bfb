"""The printable bilingual (zh-CN / English) HTML report of an evidence pack.

One self-contained file: inline CSS and inline SVG charts, no script, no fonts or images fetched.
Sections: indicator summary, per-device table, online timeline per device, OEE chart with the loss
breakdown, method and provenance (calendar, config hashes, equipment ledger import, notes).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from cloud_bridge.cloud.evidence.models import Evidence

CSS = """
@page { size: A4 landscape; margin: 12mm 10mm; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC",
       "WenQuanYi Micro Hei", sans-serif; color: #1a1a1a; margin: 0 auto; max-width: 1180px; padding: 16px;
       font-size: 12px; line-height: 1.45; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 22px 0 8px; padding-bottom: 3px; border-bottom: 2px solid #2b5d8a; color: #1f4466; }
.sub { color: #555; margin: 0 0 2px; }
.en { color: #555; font-weight: normal; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { border: 1px solid #c8ced6; padding: 3px 5px; text-align: left; vertical-align: top; }
th { background: #eef2f6; font-weight: 600; }
table.compact th, table.compact td { font-size: 10.5px; padding: 2px 4px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr { break-inside: avoid; }
thead { display: table-header-group; }
.ok { color: #1b7f3b; font-weight: 600; }
.no { color: #b3261e; font-weight: 600; }
.muted { color: #777; }
.score { font-size: 14px; font-weight: 700; }
.chart { break-inside: avoid; margin: 6px 0; }
.legend span { display: inline-block; margin-right: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: -1px; }
.notes li { margin: 2px 0; }
.mono { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 10px; word-break: break-all; }
section { break-inside: auto; }
footer { margin-top: 18px; color: #666; font-size: 10px; border-top: 1px solid #ccc; padding-top: 6px; }
@media print { body { padding: 0; max-width: none; } h2 { break-after: avoid; } }
"""

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
STATE_NAMES = {
    "running": ("运行", "running"),
    "micro_stops": ("短停", "micro-stops"),
    "idle": ("待机", "idle"),
    "setup": ("换型调整", "setup"),
    "fault": ("故障", "fault"),
    "planned_stop": ("计划停机", "planned stop"),
    "offline": ("离线", "offline"),
    "unknown": ("状态未知", "unknown"),
}
FLAG_TEXT = {
    "performance_above_one": (
        "性能开动率超过100%：理想节拍设置有误",
        "performance above 100%: the ideal cycle time is wrong",
    ),
    "quality_assumed": ("未配置良品/次品计数，质量率按1计", "no good/reject counter: quality taken as 1"),
    "no_counter": ("未配置产量计数", "no production counter"),
    "no_ideal_cycle_time": ("未配置理想节拍", "no ideal cycle time"),
    "not_observed_time": (
        "含离线或状态未知时间（单列，不计入负荷时间）",
        "offline/unknown time (reported apart, not in PBT)",
    ),
    "counter_rollover": ("计数器溢出回绕已处理", "counter rollover handled"),
    "counter_reset": ("计数器清零已处理", "counter reset handled"),
    "no_planned_busy_time": ("无负荷时间", "no planned busy time"),
    "counts_cover_part": (
        "计数仅覆盖部分运行时间：性能按已覆盖部分计算",
        "counters cover part of the run: P on that part",
    ),
    "counts_without_running": ("非运行状态下有计数", "counts without running time"),
    "quality_out_of_range": ("良品数大于产量：请检查计数配置", "good above produced: check the counters"),
}


def _e(x: object) -> str:
    return escape(str(x), quote=True)


def _pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x * 100:.{digits}f}%"


def _hours(s: float | None) -> str:
    if s is None:
        return "—"
    return f"{s / 3600:.2f} h" if s >= 360 else f"{s:.0f} s"


def _dt(ms: int | None, tz: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).strftime(fmt)


def _yes(b: bool | None) -> str:
    if b is None:
        return '<span class="muted">—</span>'
    return '<span class="ok">✓</span>' if b else '<span class="no">✗</span>'


def _bi(zh: str, en: str) -> str:
    return f'{_e(zh)} <span class="en">/ {_e(en)}</span>'


ONLINE_METHOD = _bi(
    "在线时长：设备上线/离线事件（经网关断网缓存，不丢失），区间截取至统计期",
    "online time: the devices' online/offline events (store-and-forward, nothing lost), clipped to the period",
)
OEE_METHOD = _bi(
    "OEE按ISO 22400-2：A=实际生产时间/负荷时间，P=理想节拍×产量/实际生产时间，Q=良品/产量",
    "OEE per ISO 22400-2: A = APT / PBT, P = ideal cycle time × produced / APT, Q = good / produced",
)
FOOTER = _bi(
    "本报告每个数字均有对应CSV（csv/目录）；manifest.json 记录每个文件的SHA-256及产生数据的网关与配置哈希，"
    "可用 edgegw evidence verify 核验未被改动。",
    "Every number here has its CSV (csv/); manifest.json holds the SHA-256 of every file and the gateways and "
    "config hashes behind the data: check with edgegw evidence verify.",
)


# ---------------------------------------------------------------- sections


def _summary(ev: dict[str, Any]) -> str:
    s = ev["summary"]
    rows = []

    def ratio_row(zh: str, en: str, d: dict[str, Any], note: str) -> None:
        score = "—" if d["score"] is None else f'<span class="score">{d["score"]:g}</span> / 6'
        rows.append(
            f"<tr><td>{_bi(zh, en)}</td><td class='num'>{_pct(d['ratio'])}</td>"
            f"<td class='num'>{d['numerator']} / {d['denominator']}</td><td>{_e(d['band'])}</td>"
            f"<td class='num'>{score}</td><td>{note}</td></tr>"
        )

    src = (
        _bi("分母为设备台账中全部生产设备", "denominator: all production equipment in the ledger")
        if s["denominator_source"] == "equipment_ledger"
        else _bi("未导入设备台账：分母为网关上报的生产设备", "no ledger imported: denominator from gateway metadata")
    )
    ratio_row("生产设备联网率", "networked equipment ratio", s["networked"], src)
    ratio_row(
        "生产设备数字化率",
        "digitized equipment ratio",
        s["digitized"],
        _bi("按设备台账申报", "as declared in the ledger"),
    )
    kp = s["key_process"]
    rows.append(
        f"<tr><td>{_bi('关键工序设备联网', 'key-process equipment networked')}</td><td class='num'>—</td>"
        f"<td class='num'>{kp['networked']} / {kp['total']}</td><td></td><td></td><td></td></tr>"
    )
    on = s["online_now"]
    rows.append(
        f"<tr><td>{_bi('期末在线设备', 'devices online at the end')}</td>"
        f"<td class='num'>{_pct(on['online'] / on['of'] if on['of'] else None)}</td>"
        f"<td class='num'>{on['online']} / {on['of']}</td><td></td><td></td>"
        f"<td>{_e(_dt(on['at_ms'], ev['period']['timezone']))}</td></tr>"
    )
    ot = s["online_time"]
    rows.append(
        f"<tr><td>{_bi('设备在线率（按时间）', 'device online rate (time-based)')}</td>"
        f"<td class='num'>{_pct(ot['rate'])}</td>"
        f"<td class='num'>{_hours(ot['online_planned_s'])} / {_hours(ot['planned_s'])}</td><td></td><td></td>"
        f"<td>{_bi('计划时间内在线时长 / 计划时长', 'online in planned time / planned time')}, "
        f"{ot['devices']} {_bi('台已接入', 'connected')}</td></tr>"
    )
    c = s["completeness"]
    rows.append(
        f"<tr><td>{_bi('数据完整率', 'data completeness')}</td><td class='num'>{_pct(c['ratio'])}</td>"
        f"<td class='num'>{c['received']:.0f} / {c['expected']:.0f}</td><td></td><td></td>"
        f"<td>{_bi('实采有效读数 / 采集计划读数（计划时间内）', 'good readings taken / readings planned')}</td></tr>"
    )
    area_text = "、".join(f"{a['zh']}" for a in s["areas"]) or "—"
    area_en = ", ".join(a["en"] for a in s["areas"])
    rows.append(
        f"<tr><td>{_bi('数据采集覆盖业务范围', 'business areas with automatic collection')}</td>"
        f"<td class='num'>{len(s['areas'])}</td><td></td><td></td><td></td>"
        f"<td>{_e(area_text)} <span class='en'>/ {_e(area_en)}</span></td></tr>"
    )
    rows.append(
        f"<tr><td>{_bi('开展OEE统计的设备', 'devices with OEE statistics')}</td><td class='num'>{s['oee_devices']}</td>"
        f"<td></td><td></td><td></td><td>{_bi('见第4节', 'see section 4')}</td></tr>"
    )
    head = (
        f"<tr><th>{_bi('指标', 'indicator')}</th><th class='num'>{_bi('值', 'value')}</th>"
        f"<th class='num'>{_bi('分子/分母', 'count')}</th><th>{_bi('区间', 'band')}</th>"
        f"<th class='num'>{_bi('得分', 'points')}</th><th>{_bi('说明', 'note')}</th></tr>"
    )
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _devices(ev: dict[str, Any]) -> str:
    tz = ev["period"]["timezone"]
    head = "".join(
        f"<th{' class=num' if num else ''}>{_bi(zh, en)}</th>"
        for zh, en, num in (
            ("设备编号", "id", False),
            ("名称", "name", False),
            ("产线", "line", False),
            ("关键工序", "key", False),
            ("数字化", "digitized", False),
            ("联网", "networked", False),
            ("首次/末次上报", "first / last seen", False),
            ("在线时长", "online", True),
            ("在线率", "online rate", True),
            ("完整率", "completeness", True),
            ("A", "avail.", True),
            ("P", "perf.", True),
            ("Q", "quality", True),
            ("OEE", "OEE", True),
        )
    )
    rows = []
    for r in ev["devices"]:
        o = r["oee"] or {}
        ledger = "" if r["in_ledger"] else ' <span class="muted">(不在台账 / not in ledger)</span>'
        via = f'<div class="muted">{_e(r["gateway"])}/{_e(r["device"])}</div>' if r["connected"] else ""
        seen = (
            f"{_e(_dt(r['first_seen_ms'], tz, '%m-%d %H:%M'))}<br>{_e(_dt(r['last_seen_ms'], tz, '%m-%d %H:%M'))}"
            if r["first_seen_ms"] is not None
            else "—"
        )
        perf = o.get("performance")
        perf_cell = _pct(perf) + (" ⚠" if perf is not None and perf > 1 else "")
        rows.append(
            "<tr>"
            f"<td>{_e(r['id'])}{ledger}{via}</td><td>{_e(r['name'])}<div class='muted'>{_e(r['type'])}</div></td>"
            f"<td>{_e(r['line'])}</td><td>{_yes(r['key_process'])}</td><td>{_yes(r['digitized'])}</td>"
            f"<td>{_yes(r['networked'])}</td><td>{seen}</td>"
            f"<td class='num'>{_hours(r['online_s'])}</td><td class='num'>{_pct(r['online_rate'])}</td>"
            f"<td class='num'>{_pct(r['completeness']['ratio'])}</td>"
            f"<td class='num'>{_pct(o.get('availability'))}</td><td class='num'>{perf_cell}</td>"
            f"<td class='num'>{_pct(o.get('quality'))}</td><td class='num'><b>{_pct(o.get('oee'))}</b></td>"
            "</tr>"
        )
    if not rows:
        rows.append(f"<tr><td colspan='14' class='muted'>{_bi('无设备', 'no equipment')}</td></tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


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


ONLINE = STATE_COLOURS["running"]


def _timeline(ev: dict[str, Any]) -> str:
    p = ev["period"]
    start, end, tz = p["from_ms"], p["to_ms"], p["timezone"]
    devices = [r for r in ev["devices"]]
    label_w, chart_w, row_h, top = 170, 830, 18, 22
    height = top + row_h * max(1, len(devices)) + 8
    span = max(1, end - start)

    def x(ms: int) -> float:
        return label_w + chart_w * (min(max(ms, start), end) - start) / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {label_w + chart_w + 10} {height}" '
        f'width="100%" role="img" aria-label="online timeline" font-size="10">'
    ]
    for ms, text in _ticks(start, end, tz):
        parts.append(
            f'<line x1="{x(ms):.1f}" y1="{top - 4}" x2="{x(ms):.1f}" y2="{height - 6}" stroke="#dde3ea"/>'
            f'<text x="{x(ms):.1f}" y="{top - 8}" text-anchor="middle" fill="#555">{_e(text)}</text>'
        )
    as_of = p["as_of_ms"]
    if as_of < end:
        parts.append(
            f'<rect x="{x(as_of):.1f}" y="{top}" width="{x(end) - x(as_of):.1f}" height="{height - top - 6}" '
            f'fill="url(#future)" opacity="0.5"/>'
        )
    for i, r in enumerate(devices):
        y = top + i * row_h
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end" fill="#222">{_e(r["id"])[:28]}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{chart_w}" height="{row_h - 6}" fill="#f4f6f8"/>'
        )
        for a, b in p.get("planned_intervals", []):
            parts.append(
                f'<rect x="{x(a):.1f}" y="{y + 3}" width="{max(0.0, x(b) - x(a)):.2f}" height="{row_h - 6}" '
                f'fill="#e2e7ee"/>'
            )
        for a, b in r["online_intervals"]:
            w = max(0.6, x(b) - x(a))
            parts.append(
                f'<rect x="{x(a):.2f}" y="{y + 4}" width="{w:.2f}" height="{row_h - 8}" fill="{ONLINE}">'
                f"<title>{_e(_dt(a, tz))} – {_e(_dt(b, tz))}</title></rect>"
            )
    parts.append(
        '<defs><pattern id="future" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="3" height="6" fill="#ccc"/></pattern></defs></svg>'
    )
    legend = (
        '<div class="legend">'
        f'<span><i style="background:{STATE_COLOURS["running"]}"></i>{_bi("在线", "online")}</span>'
        f'<span><i style="background:#e2e7ee"></i>{_bi("计划生产时间（离线）", "planned time (offline)")}</span>'
        f'<span><i style="background:#f4f6f8;border:1px solid #ccc"></i>{_bi("非计划时间", "unscheduled")}</span>'
        "</div>"
    )
    return f'<div class="chart">{"".join(parts)}{legend}</div>'


def _oee_chart(ev: dict[str, Any]) -> str:
    devices = [r for r in ev["devices"] if r["oee"] is not None]
    if not devices:
        none = _bi("无OEE统计（设备未配置状态信号）", "no OEE: no device has a state tag configured")
        return f"<p class='muted'>{none}</p>"
    keys = [
        ("availability", "#5b8def", "A"),
        ("performance", "#f2994a", "P"),
        ("quality", "#2e9d57", "Q"),
        ("oee", "#1f4466", "OEE"),
    ]
    top_value = max(1.2, *(r["oee"][k] or 0 for r in devices for k, _, _ in keys))
    label_w, chart_w, chart_h, top = 40, 960, 170, 10
    group_w = chart_w / len(devices)
    bar_w = min(22.0, group_w * 0.8 / 4)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {label_w + chart_w + 10} {top + chart_h + 40}" '
        f'width="100%" role="img" aria-label="OEE chart" font-size="10">'
    ]

    def y(v: float) -> float:
        return top + chart_h * (1 - v / top_value)

    for v in (0, 0.25, 0.5, 0.75, 1.0):
        stroke = "#888" if v in (0, 1.0) else "#e3e7ec"
        dash = ' stroke-dasharray="3,2"' if v == 1.0 else ""
        parts.append(
            f'<line x1="{label_w}" y1="{y(v):.1f}" x2="{label_w + chart_w}" y2="{y(v):.1f}" stroke="{stroke}"{dash}/>'
            f'<text x="{label_w - 4}" y="{y(v) + 3:.1f}" text-anchor="end" fill="#555">{v * 100:.0f}%</text>'
        )
    for i, r in enumerate(devices):
        gx = label_w + i * group_w + (group_w - bar_w * 4) / 2
        for j, (k, colour, short) in enumerate(keys):
            v = r["oee"][k]
            bx = gx + j * bar_w
            if v is None:
                parts.append(
                    f'<text x="{bx + bar_w / 2:.1f}" y="{y(0) - 3:.1f}" text-anchor="middle" fill="#999">–</text>'
                )
                continue
            parts.append(
                f'<rect x="{bx:.1f}" y="{y(v):.1f}" width="{bar_w - 1:.1f}" height="{y(0) - y(v):.1f}" fill="{colour}">'
                f"<title>{_e(r['id'])} {short} {v * 100:.1f}%</title></rect>"
            )
            if bar_w >= 14:
                parts.append(
                    f'<text x="{bx + bar_w / 2:.1f}" y="{y(v) - 2:.1f}" text-anchor="middle" font-size="8" '
                    f'fill="#333">{v * 100:.0f}</text>'
                )
        parts.append(
            f'<text x="{label_w + (i + 0.5) * group_w:.1f}" y="{top + chart_h + 14}" text-anchor="middle" '
            f'fill="#222">{_e(r["id"])[:18]}</text>'
        )
    parts.append("</svg>")
    legend = '<div class="legend">' + "".join(
        f'<span><i style="background:{c}"></i>{_e(s)} {_bi(zh, en)}</span>'
        for (_, c, s), (zh, en) in zip(
            keys,
            (
                ("时间开动率", "availability"),
                ("性能开动率", "performance"),
                ("合格品率", "quality"),
                ("设备综合效率", "OEE"),
            ),
            strict=True,
        )
    )
    legend += '<span class="muted">— — 100%</span></div>'
    return f'<div class="chart">{"".join(parts)}{legend}</div>{_loss_chart(devices)}'


def _loss_chart(devices: list[dict[str, Any]]) -> str:
    order = ["running", "micro_stops", "idle", "setup", "fault", "planned_stop", "offline", "unknown"]
    label_w, chart_w, row_h = 170, 830, 18
    height = row_h * len(devices) + 6
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {label_w + chart_w + 10} {height}" width="100%" '
        f'role="img" aria-label="time breakdown" font-size="10">'
    ]
    for i, r in enumerate(devices):
        t = r["oee"]["time_s"]
        total = sum(t[k] for k in order) or 1.0
        y = i * row_h
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{_e(r["id"])[:28]}</text>')
        xpos = float(label_w)
        for k in order:
            w = chart_w * t[k] / total
            if w <= 0:
                continue
            parts.append(
                f'<rect x="{xpos:.2f}" y="{y + 3}" width="{w:.2f}" height="{row_h - 6}" fill="{STATE_COLOURS[k]}">'
                f"<title>{_e(STATE_NAMES[k][1])}: {t[k]:.0f} s</title></rect>"
            )
            xpos += w
    parts.append("</svg>")
    legend = '<div class="legend">' + "".join(
        f'<span><i style="background:{STATE_COLOURS[k]}"></i>{_bi(*STATE_NAMES[k])}</span>' for k in order
    )
    legend += "</div>"
    caption = _bi("计划生产时间构成（时间损失）", "planned operation time by state (time losses)")
    return f'<div class="chart"><p style="margin:10px 0 2px"><b>{caption}</b></p>{"".join(parts)}{legend}</div>'


def _oee_table(ev: dict[str, Any]) -> str:
    rows = []
    notes: list[str] = []
    for r in ev["devices"]:
        o = r["oee"]
        if o is None:
            continue
        t, loss, c = o["time_s"], o["losses_s"], o["counts"]
        if o["flags"]:
            zh = "；".join(FLAG_TEXT.get(f, (f, f))[0] for f in o["flags"])
            en = "; ".join(FLAG_TEXT.get(f, (f, f))[1] for f in o["flags"])
            notes.append(f"<li><b>{_e(r['id'])}</b>: {_e(zh)} <span class='en'>/ {_e(en)}</span></li>")
        speed = "—" if loss["speed"] is None else _hours(loss["speed"])
        scrap = "—" if loss["scrap"] is None else _hours(loss["scrap"])
        rows.append(
            f"<tr><td>{_e(r['id'])}</td><td class='num'>{_hours(t['planned_operation'])}</td>"
            f"<td class='num'>{_hours(t['planned_busy'])}</td><td class='num'>{_hours(t['actual_production'])}</td>"
            f"<td class='num'>{_hours(loss['fault'])}</td><td class='num'>{_hours(loss['setup'])}</td>"
            f"<td class='num'>{_hours(loss['idle'])}</td><td class='num'>{_hours(loss['micro_stops'])}</td>"
            f"<td class='num'>{speed}</td><td class='num'>{scrap}</td>"
            f"<td class='num'>{_hours(t['offline'] + t['unknown'])}</td>"
            f"<td class='num'>{c['produced']:.0f} / {c['good']:.0f}</td></tr>"
        )
    if not rows:
        return ""
    head = "".join(
        f"<th{' class=num' if n else ''}>{_bi(zh, en)}</th>"
        for zh, en, n in (
            ("设备", "device", False),
            ("计划生产", "POT", True),
            ("负荷时间", "PBT", True),
            ("实际生产", "APT", True),
            ("故障", "fault", True),
            ("换型", "setup", True),
            ("待机", "idle", True),
            ("短停", "micro-stops", True),
            ("速度损失", "speed loss", True),
            ("废品损失", "scrap loss", True),
            ("离线/未知", "offline/unknown", True),
            ("产量/良品", "produced/good", True),
        )
    )
    flags = f"<ul class='notes'>{''.join(notes)}</ul>" if notes else ""
    return f"<table class='compact'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{flags}"


def _method(ev: dict[str, Any]) -> str:
    p = ev["period"]
    s = ev["summary"]
    oee_any = next((r["oee"] for r in ev["devices"] if r["oee"]), None)
    policy = ""
    if oee_any:
        loss = oee_any["micro_stop_loss"]
        policy = (
            f"<li>{_bi('短停阈值', 'micro-stop threshold')}: {oee_any['micro_stop_threshold_s']:g} s — "
            + (
                _bi("短停计为性能损失（六大损失口径）", "micro-stops are performance losses (six-loss form)")
                if loss == "performance"
                else _bi("短停计为时间开动率损失", "micro-stops are availability losses")
            )
            + "</li>"
        )
    cal = p["calendar"]
    if isinstance(cal, str):
        cal_text = _bi("未配置班次：每天24小时均为计划生产时间", "no shifts configured: 24 h a day planned")
    else:
        cal_text = "; ".join(
            f"{_e(sh['name'])} {_e(sh['start'])}–{_e(sh['end'])} ({_e(','.join(sh['days']))})"
            + (
                " " + _bi("休息", "breaks") + ": " + ", ".join(f"{b['start']}–{b['end']}" for b in sh["breaks"])
                if sh["breaks"]
                else ""
            )
            for sh in cal
        )
    li = [
        f"<li>{_bi('联网：期间内有有效数据送达云端', 'networked: good data reached the cloud in the period')}</li>",
        f"<li>{_bi('评分区间', 'score bands')}: [0,10%]→0, (10,20%]→1.5, (20,40%]→3, (40,60%]→4.5, (60,100%]→6</li>",
        "<li>" + ONLINE_METHOD + "</li>",
        "<li>" + OEE_METHOD + "</li>",
        policy,
        f"<li>{_bi('班次日历', 'shift calendar')} ({_e(p['timezone'])}): {cal_text}</li>",
    ]
    imp = s["ledger_import"]
    if imp:
        li.append(
            f"<li>{_bi('设备台账', 'equipment ledger')}: {_e(imp['source'])}, {imp['row_count']} "
            f"{_bi('台', 'rows')}, {_bi('导入于', 'imported')} {_e(_dt(imp['imported_ms'], p['timezone']))}, "
            f"SHA-256 <span class='mono'>{_e(imp['sha256'])}</span></li>"
        )
    gw_rows = "".join(
        f"<tr><td>{_e(g['gateway'])}</td><td>{_e(g.get('version') or '—')}</td>"
        f"<td class='mono'>{'<br>'.join(_e(h) for h in g['config_hashes']) or '—'}</td></tr>"
        for g in ev["gateways"]
    )
    gw_table = (
        f"<table><thead><tr><th>{_bi('网关', 'gateway')}</th><th>{_bi('版本', 'version')}</th>"
        f"<th>{_bi('配置哈希（SHA-256）', 'config hashes (SHA-256)')}</th></tr></thead><tbody>{gw_rows}</tbody></table>"
        if gw_rows
        else ""
    )
    notes = "".join(f"<li>{_e(n)}</li>" for n in ev["notes"])
    notes_html = (
        f"<h3 style='font-size:13px'>{_bi('提示', 'notes')}</h3><ul class='notes'>{notes}</ul>" if notes else ""
    )
    return f"<ul class='notes'>{''.join(li)}</ul>{gw_table}{notes_html}"


def render_report(evidence: Evidence) -> str:
    ev = evidence.jsonable()
    oee = _oee_chart(ev) + _oee_table(ev)
    p = ev["period"]
    tz = p["timezone"]
    ent = ev["enterprise"]
    title_zh, title_en = "设备联网、在线与OEE证据报告", "Equipment networking, online and OEE evidence report"
    name = f"{ent['name']} ({ent['id']})" if ent["name"] else ent["id"]
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title_zh)} / {_e(title_en)} — {_e(name)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{_e(title_zh)}<br><span class="en" style="font-size:15px">{_e(title_en)}</span></h1>
<p class="sub">{_bi("企业", "enterprise")}: <b>{_e(name)}</b></p>
<p class="sub">{_bi("统计期", "period")}: <b>{_e(_dt(p["from_ms"], tz, "%Y-%m-%d %H:%M"))} – {
        _e(_dt(p["to_ms"], tz, "%Y-%m-%d %H:%M"))
    }</b>
 ({_e(tz)}){
        ""
        if p["as_of_ms"] >= p["to_ms"]
        else " · " + _bi("数据截至", "figures up to") + " " + _e(_dt(p["as_of_ms"], tz))
    }</p>
<p class="sub">{_bi("依据", "basis")}: {
        _bi("《中小企业数字化水平评测指标（2024年版）》", "MIIT SME digital level evaluation indicators (2024)")
    };
 ISO 22400-2 · {_bi("生成", "generated")} {_e(_dt(ev["generated_at_ms"], tz))} · {_e(ev["generator"])}</p>
</header>
<section><h2>1. {_bi("指标汇总", "Indicator summary")}</h2>{_summary(ev)}</section>
<section><h2>2. {_bi("设备明细", "Equipment")}</h2>{_devices(ev)}</section>
<section><h2>3. {_bi("设备在线时间线", "Online timeline per device")}</h2>{_timeline(ev)}</section>
<section><h2>4. {_bi("设备综合效率（OEE）", "Overall equipment effectiveness (OEE)")}</h2>{oee}</section>
<section><h2>5. {_bi("口径与来源", "Method and provenance")}</h2>{_method(ev)}</section>
<footer>{FOOTER}</footer>
</body>
</html>
"""
