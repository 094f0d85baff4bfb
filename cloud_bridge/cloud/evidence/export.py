"""The evidence pack: `evidence.json`, the CSVs behind every number, the bilingual HTML report, and
`manifest.json` with the SHA-256 of every file plus the gateways and config hashes that produced the
data — so an evaluator can check that nothing was edited (`edgegw evidence verify DIR`).

The manifest cannot hold its own hash: the exporter prints it (and the report's footer cannot show it
either), so the evaluator writes it down when receiving the pack and passes it to `verify --expect`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from pydantic import BaseModel

from cloud_bridge.cloud.evidence.models import (
    ActivityRow,
    Area,
    ConfigHashRow,
    CountRecord,
    Device,
    EventRow,
    Evidence,
    IntervalRow,
    OeeRow,
    SummaryRow,
)
from cloud_bridge.cloud.evidence.tables import csv_table, interval_rows, oee_rows, summary_rows
from cloud_bridge.cloud.ledger.equipment import equipment_csv
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.metrics.period import Period, iso_local
from edge_config.secrets import redact_url

M = TypeVar("M", bound=BaseModel)
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


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- CSVs


# what each CSV of a device row leaves out: lists that have CSVs of their own, and the OEE's detail (oee.csv)
DEVICE_CSV_EXCLUDE = ("online_intervals", "tags", "oee.time_s", "oee.losses_s", "oee.counts", "oee.shifts")


def _ledger_row(model: type[M], row: Mapping[str, Any], **renamed: str) -> M:
    """A record of the ledger as `model`, with `gw`, `dev` and the keys in `renamed` (new name=old) renamed."""
    names = {"gateway": "gw", "device": "dev", **renamed}
    kept = {k: v for k, v in row.items() if k not in names.values()}
    return model.model_validate({**kept, **{new: row[old] for new, old in names.items()}})


def csv_files(ev: Evidence, store: EvidenceStore, period: Period) -> dict[str, bytes]:
    """The pack's CSVs, each written from a model (see tables.py for how fields become columns)."""
    tz = period.timezone
    ent = ev.enterprise.id
    return {
        "summary.csv": csv_table(SummaryRow, summary_rows(ev), tz),
        "devices.csv": csv_table(Device, ev.devices, tz, exclude=DEVICE_CSV_EXCLUDE),
        "online_intervals.csv": csv_table(IntervalRow, interval_rows(ev), tz),
        "oee.csv": csv_table(OeeRow, oee_rows(ev), tz),
        "areas.csv": csv_table(Area, ev.summary.areas, tz),
        "events.csv": csv_table(
            EventRow, (_ledger_row(EventRow, e, ts_ms="ts") for e in store.event_log(ent, period.start, period.end)), tz
        ),
        "counts.csv": csv_table(
            CountRecord,
            (_ledger_row(CountRecord, c, ts_ms="ts") for c in store.count_log(ent, period.start, period.end)),
            tz,
        ),
        "activity_hourly.csv": csv_table(
            ActivityRow,
            (
                _ledger_row(ActivityRow, h, hour_ms="hour", first_ts_ms="first_ts", last_ts_ms="last_ts")
                for h in store.activity_hours(ent, period.start, period.as_of)
            ),
            tz,
        ),
        "config_hashes.csv": csv_table(
            ConfigHashRow,
            (
                ConfigHashRow(
                    gateway=h.gw, device=h.dev, announced_ms=h.ts, config_hash=h.config_hash, version=h.version
                )
                for h in ev.config_hashes
            ),
            tz,
        ),
        "equipment_ledger.csv": equipment_csv(store.equipment(ent)).encode("utf-8-sig"),
    }


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
        files.update({f"csv/{name}": data for name, data in csv_files(evidence, store, period).items()})
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
    except ValueError:  # not JSON, or not UTF-8
        manifest = None
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA or not isinstance(listed, list):
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
