"""The evidence pack: `evidence.json`, the CSVs behind every number, the bilingual HTML report, and
`manifest.json` with the SHA-256 of every file plus the gateways and config hashes that produced the
data — so an evaluator can check that nothing was edited (`edgegw evidence verify DIR`).

The manifest cannot hold its own hash: the exporter prints it (and the report's footer cannot show it
either), so the evaluator writes it down when receiving the pack and passes it to `verify --expect`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cloud_bridge.cloud.evidence.models import Evidence
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.metrics.oee import TIME_KEYS
from cloud_bridge.metrics.period import Period, iso_local

FORMATS = ("json", "csv", "html")
MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "edgegw-evidence-manifest/1"


class ExportError(Exception):
    pass


def parse_formats(text: str) -> list[str]:
    fmts = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise ExportError(f"--format: {', '.join(bad) or 'nothing'} — use one or more of {','.join(FORMATS)}")
    return list(dict.fromkeys(fmts))


def redact_url(url: str) -> str:
    """A database URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- CSVs


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else _cell(v) for v in r])
    return buf.getvalue().encode("utf-8-sig")  # with a BOM: Excel then reads the Chinese text right


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) < 1e15 else repr(v)
    if isinstance(v, list | tuple):
        return ";".join(str(x) for x in v)
    return str(v)


def _iso(ms: int | None, tz: str) -> str:
    return "" if ms is None else iso_local(int(ms), tz)


def csv_files(ev: dict[str, Any], store: EvidenceStore, period: Period) -> dict[str, bytes]:
    tz = period.timezone
    ent = ev["enterprise"]["id"]
    s = ev["summary"]
    files: dict[str, bytes] = {}

    def ind(key: str, zh: str, en: str, d: dict[str, Any], note: str = "") -> list[Any]:
        return [
            key,
            zh,
            en,
            d.get("ratio"),
            d.get("numerator"),
            d.get("denominator"),
            d.get("score"),
            d.get("band"),
            note,
        ]

    ot, comp = s["online_time"], s["completeness"]
    files["summary.csv"] = _csv(
        ["indicator", "indicator_zh", "indicator_en", "value", "numerator", "denominator", "score", "band", "note"],
        [
            ind(
                "networked_ratio",
                "生产设备联网率",
                "networked equipment ratio",
                s["networked"],
                f"denominator: {s['denominator_source']}",
            ),
            ind(
                "digitized_ratio",
                "生产设备数字化率",
                "digitized equipment ratio",
                s["digitized"],
                "as declared in the ledger",
            ),
            [
                "key_process_networked",
                "关键工序设备联网数",
                "key-process equipment networked",
                None,
                s["key_process"]["networked"],
                s["key_process"]["total"],
                None,
                None,
                "",
            ],
            [
                "online_now",
                "当前在线设备数",
                "devices online at the end",
                None,
                s["online_now"]["online"],
                s["online_now"]["of"],
                None,
                None,
                _iso(s["online_now"]["at_ms"], tz),
            ],
            [
                "online_rate",
                "设备在线率（按时间）",
                "device online rate (time-based)",
                ot["rate"],
                ot["online_planned_s"],
                ot["planned_s"],
                None,
                None,
                f"seconds online in planned time / planned seconds, {ot['devices']} connected devices",
            ],
            [
                "data_completeness",
                "数据完整率",
                "data completeness",
                comp["ratio"],
                comp["received"],
                comp["expected"],
                None,
                None,
                "good readings taken / readings the poll plan calls for, in planned time",
            ],
            [
                "collection_areas",
                "数据采集业务范围数",
                "business areas with automatic collection",
                len(s["areas"]),
                None,
                None,
                None,
                None,
                ";".join(f"{a['zh']} {a['en']}" for a in s["areas"]),
            ],
        ],
    )
    dev_header = [
        "id",
        "name",
        "type",
        "line",
        "in_ledger",
        "key_process",
        "digitized",
        "connected",
        "gateway",
        "device",
        "networked",
        "samples",
        "good_samples",
        "first_seen",
        "last_seen",
        "online_s",
        "online_planned_s",
        "planned_s",
        "online_rate",
        "online_at_end",
        "readings_received",
        "readings_expected",
        "completeness",
        "domains",
        "availability",
        "performance",
        "quality",
        "oee",
        "config_hash",
    ]
    files["devices.csv"] = _csv(
        dev_header,
        (
            [
                r["id"],
                r["name"],
                r["type"],
                r["line"],
                r["in_ledger"],
                r["key_process"],
                r["digitized"],
                r["connected"],
                r["gateway"],
                r["device"],
                r["networked"],
                r["samples"],
                r["good_samples"],
                _iso(r["first_seen_ms"], tz),
                _iso(r["last_seen_ms"], tz),
                r["online_s"],
                r["online_planned_s"],
                r["planned_s"],
                r["online_rate"],
                r["online_now"],
                r["completeness"]["received"],
                r["completeness"]["expected"],
                r["completeness"]["ratio"],
                r["domains"],
                *((r["oee"] or {}).get(k) for k in ("availability", "performance", "quality", "oee")),
                r["config_hash"],
            ]
            for r in ev["devices"]
        ),
    )
    files["online_intervals.csv"] = _csv(
        ["id", "gateway", "device", "online_from", "online_to", "from_ms", "to_ms", "seconds"],
        (
            [r["id"], r["gateway"], r["device"], _iso(a, tz), _iso(b, tz), a, b, (b - a) / 1000]
            for r in ev["devices"]
            for a, b in r["online_intervals"]
        ),
    )
    time_keys = [k for k in TIME_KEYS if k not in ("offline_total", "running_outside_plan")]  # derived sums
    loss_keys = ["fault", "setup", "idle", "micro_stops", "speed", "scrap"]
    count_keys = ["produced", "good", "scrap", "during_offline", "outside_plan", "rollovers", "resets"]
    oee_rows: list[list[Any]] = []
    for r in ev["devices"]:
        o = r["oee"]
        if o is None:
            continue
        for scope, x in [("period", o), *(("shift", sh) for sh in o.get("shifts", []))]:
            oee_rows.append(
                [
                    r["id"],
                    r["gateway"],
                    r["device"],
                    scope,
                    x.get("shift_label", ""),
                    _iso(x["from_ms"], tz),
                    _iso(x["to_ms"], tz),
                    x["availability"],
                    x["performance"],
                    x["quality"],
                    x["oee"],
                    *(x["time_s"][k] for k in time_keys),
                    *(x["losses_s"][k] for k in loss_keys),
                    *(x["counts"][k] for k in count_keys),
                    x["ideal_cycle_time_s"],
                    x["micro_stop_threshold_s"],
                    x["micro_stop_loss"],
                    x["quality_from"],
                    x["flags"],
                ]
            )
    files["oee.csv"] = _csv(
        [
            "id",
            "gateway",
            "device",
            "scope",
            "shift",
            "from",
            "to",
            "availability",
            "performance",
            "quality",
            "oee",
            *(f"{k}_s" for k in time_keys),
            *(f"loss_{k}_s" for k in loss_keys),
            *(f"count_{k}" for k in count_keys),
            "ideal_cycle_time_s",
            "micro_stop_threshold_s",
            "micro_stop_loss",
            "quality_from",
            "flags",
        ],
        oee_rows,
    )
    files["areas.csv"] = _csv(
        ["domain", "area_zh", "area_en", "tags", "devices"],
        ([a["domain"], a["zh"], a["en"], a["tags"], a["devices"]] for a in s["areas"]),
    )
    files["events.csv"] = _csv(
        ["gateway", "device", "time", "ts_ms", "kind", "state", "reason"],
        (
            [e["gw"], e["dev"], _iso(e["ts"], tz), e["ts"], e["kind"], e["state"], e["reason"]]
            for e in store.event_log(ent, period.start, period.end)
        ),
    )
    files["counts.csv"] = _csv(
        ["gateway", "device", "time", "ts_ms", "kind", "state", "total", "good", "reject", "readings", "good_readings"],
        (
            [
                c["gw"],
                c["dev"],
                _iso(c["ts"], tz),
                c["ts"],
                c["kind"],
                c["state"],
                c["total"],
                c["good"],
                c["reject"],
                c["readings"],
                c["good_readings"],
            ]
            for c in store.count_log(ent, period.start, period.end)
        ),
    )
    files["activity_hourly.csv"] = _csv(
        ["gateway", "device", "hour", "hour_ms", "samples", "good_samples", "first_ts", "last_ts"],
        (
            [
                h["gw"],
                h["dev"],
                _iso(h["hour"], tz),
                h["hour"],
                h["samples"],
                h["good_samples"],
                _iso(h["first_ts"], tz),
                _iso(h["last_ts"], tz),
            ]
            for h in store.activity_hours(ent, period.start, period.as_of)
        ),
    )
    files["config_hashes.csv"] = _csv(
        ["gateway", "device", "announced", "ts_ms", "config_hash", "version"],
        ([h["gw"], h["dev"], _iso(h["ts"], tz), h["ts"], h["config_hash"], h["version"]] for h in ev["config_hashes"]),
    )
    from cloud_bridge.cloud.ledger.equipment import equipment_csv

    files["equipment_ledger.csv"] = equipment_csv(store.equipment(ent)).encode("utf-8-sig")
    return files


# ---------------------------------------------------------------- the pack


@dataclass
class Pack:
    directory: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    manifest_sha256: str = ""


def export_pack(
    evidence: Evidence,
    store: EvidenceStore,
    period: Period,
    out_dir: str | Path,
    formats: Sequence[str] = FORMATS,
) -> Pack:
    """Write the pack into `out_dir` (created; it must be empty) and return its manifest's SHA-256."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out}: the directory is not empty (an evidence pack holds exactly its own files)")
    out.mkdir(parents=True, exist_ok=True)
    ev = evidence.jsonable()
    files: dict[str, bytes] = {}
    if "json" in formats:
        files["evidence.json"] = (json.dumps(ev, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode()
    if "csv" in formats:
        files.update({f"csv/{name}": data for name, data in csv_files(ev, store, period).items()})
    if "html" in formats:
        from cloud_bridge.cloud.evidence.report import render_report

        files["report.html"] = render_report(evidence).encode()
    pack = Pack(out)
    for name in sorted(files):
        data = files[name]
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        pack.files.append({"path": name, "sha256": sha256_bytes(data), "bytes": len(data)})
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "generator": ev["generator"],
        "generated_at": iso_local(ev["generated_at_ms"], period.timezone),
        "generated_at_ms": ev["generated_at_ms"],
        "enterprise": ev["enterprise"],
        "period": ev["period"],
        "ledger": {"url": redact_url(store.url), "equipment_import": ev["summary"]["ledger_import"]},
        "gateways": [{"gateway": g["gateway"], "config_hashes": g["config_hashes"]} for g in ev["gateways"]],
        "config_hashes": [
            {"gateway": h["gw"], "device": h["dev"], "announced_ms": h["ts"], "config_hash": h["config_hash"]}
            for h in ev["config_hashes"]
        ],
        "files": pack.files,
        "check": "edgegw evidence verify DIR --expect <SHA-256 of manifest.json, noted when the pack was received>",
    }
    data = (json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode()
    (out / MANIFEST).write_bytes(data)
    pack.manifest_sha256 = sha256_bytes(data)
    return pack


# ---------------------------------------------------------------- verification

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Verification:
    ok: bool
    problems: list[str]
    manifest_sha256: str | None
    files: int


def verify_pack(directory: str | Path, expect: str | None = None) -> Verification:
    """Check every file against the manifest, and that no file was added or removed."""
    root = Path(directory)
    problems: list[str] = []
    mpath = root / MANIFEST
    try:
        raw = mpath.read_bytes()
    except OSError as e:
        return Verification(False, [f"{mpath}: cannot read the manifest ({e.strerror or e})"], None, 0)
    msha = sha256_bytes(raw)
    if expect is not None and expect.strip().lower() != msha:
        problems.append(f"{MANIFEST}: SHA-256 is {msha}, not the expected {expect.strip().lower()} (manifest edited?)")
    try:
        manifest = json.loads(raw)
        listed = manifest["files"]
        assert manifest.get("schema") == MANIFEST_SCHEMA and isinstance(listed, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        return Verification(False, [*problems, f"{MANIFEST}: not an edgegw evidence manifest"], msha, 0)
    names: set[str] = set()
    for entry in listed:
        name = entry.get("path") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        pp = PurePosixPath(str(name))
        if not isinstance(name, str) or pp.is_absolute() or ".." in pp.parts or name == MANIFEST:
            problems.append(f"{MANIFEST}: bad file entry {entry!r}")
            continue
        if not isinstance(digest, str) or not _HEX64.match(digest):
            problems.append(f"{MANIFEST}: {name}: bad SHA-256 {digest!r}")
            continue
        names.add(name)
        path = root / name
        try:
            data = path.read_bytes()
        except OSError:
            problems.append(f"{name}: missing")
            continue
        actual = sha256_bytes(data)
        if actual != digest:
            problems.append(f"{name}: SHA-256 {actual} does not match the manifest's {digest} (edited)")
    for path in sorted(root.rglob("*")):
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            if rel != MANIFEST and rel not in names:
                problems.append(f"{rel}: not listed in the manifest (added)")
    return Verification(not problems, problems, msha, len(names))
