"""`edgegw evidence recompute DIR`: every figure of a pack computed again from the pack's own files, and compared.

The inputs are read back from the pack (`settings.json`, the input CSVs, the equipment sheet as imported) into
the same `EvidenceInputs` the exporter computed from; `compute_evidence` — the same code and the same pure
maths (`cloud_bridge.metrics`) as the export and the API — turns them into the figures; every file of the pack
that is made from them (`evidence.json`, the figure CSVs, the input CSVs as written, the report) is made again
and compared with the pack's, cell by cell and key by key. A report written by another version cannot be made
again: such a pack never passes (RecomputeError "cannot be made again and compared", or a difference beside the
others), since the generator it names is the pack's own, editable claim.

A hostile pack is read within bounds: no file is read when it is far larger than the manifest records or
larger than MAX_FILE_BYTES, and JSON nested too deep is a difference or a RecomputeError, not a crash.

What it proves: the figures follow from the input files by the published maths. Not that the input files are
what the platform exported (`verify --public-key` proves that), nor that the ledger held what the gateways
sent (the audit in `audit.json`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cloud_bridge.cloud.evidence.build import EvidenceInputs, compute_evidence
from cloud_bridge.cloud.evidence.export import (
    AUDIT,
    INPUT_TABLES,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    NOT_LISTED,
    SETTINGS,
    PackReadError,
    figure_files,
    input_files,
    load_json,
    pack_entries,
    read_in_pack,
)
from cloud_bridge.cloud.evidence.models import AuditRecord, PackSettings
from cloud_bridge.cloud.evidence.tables import TableError, csv_table, older_header, read_table
from cloud_bridge.cloud.ledger.equipment import Equipment, EquipmentError, parse_equipment
from edge_config.version import __version__

MAX_PER_FILE = 20  # differences listed per file; the rest are counted
# The most a file of a pack may hold to be read (recomputing takes several times a file's size in memory), and
# less when the manifest records its size: twice that and a mebibyte (room for an edit to show as a difference,
# not room for a file swapped for a huge one). A file larger than that is refused before it is read.
MAX_FILE_BYTES = 256 << 20
SIZE_SLACK = 1 << 20


class RecomputeError(Exception):
    """A pack that cannot be recomputed (not a pack, no inputs, a file that does not read back)."""


@dataclass
class Recomputation:
    differences: list[str]
    compared: list[str]  # the files made again and compared
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def _read(root: Path, name: str, sizes: dict[str, int] | None = None) -> bytes:
    """A file of the pack, refused before it is read when it is much larger than the manifest records
    (`sizes`) or larger than MAX_FILE_BYTES."""
    limit = MAX_MANIFEST_BYTES if name == MANIFEST else MAX_FILE_BYTES
    recorded = (sizes or {}).get(name)
    if recorded is not None:
        limit = min(limit, 2 * recorded + SIZE_SLACK)
    try:
        return read_in_pack(root, name, limit)
    except FileNotFoundError:
        raise RecomputeError(f"{name}: missing — the pack was exported without its inputs (--format csv)") from None
    except (OSError, PackReadError) as e:
        raise RecomputeError(f"{name}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def _ledger_rows(items: list[Equipment]) -> list[tuple[Any, ...]]:
    return [(e.id, e.name, e.type, e.line, e.key_process, e.digitized, e.gateway, e.device) for e in items]


def recorded_sizes(doc: Any) -> dict[str, int]:
    """The size of each file as manifest.json (parsed: `doc`) records it (nothing when it does not)."""
    listed = doc.get("files") if isinstance(doc, dict) else None
    out: dict[str, int] = {}
    for entry in listed if isinstance(listed, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            size = entry.get("bytes")
            if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
                out.setdefault(entry["path"], size)
    return out


def read_inputs(
    root: Path, differences: list[str] | None = None, sizes: dict[str, int] | None = None
) -> EvidenceInputs:
    """The inputs of a pack, read back from its files (RecomputeError when they do not read; `sizes`: what the
    manifest records, no file read is larger). The equipment sheet as imported is checked against the SHA-256
    the pack cites and the ledger rows it holds; what differs is added to `differences`."""
    diffs = differences if differences is not None else []
    try:
        settings = PackSettings.model_validate_json(_read(root, SETTINGS, sizes))
    except ValidationError as e:
        first = e.errors()[0]
        raise RecomputeError(f"{SETTINGS}: {'.'.join(str(x) for x in first['loc'])}: {first['msg']}") from None
    tables: dict[str, list[Any]] = {}
    try:
        for name, model in INPUT_TABLES.items():
            tables[name] = read_table(model, _read(root, f"csv/{name}", sizes), f"csv/{name}")
    except TableError as e:
        raise RecomputeError(str(e)) from None
    try:
        ledger = _read(root, "csv/equipment_ledger.csv", sizes)
        equipment = parse_equipment(ledger, "csv/equipment_ledger.csv", escaped=True).items
    except EquipmentError as e:
        raise RecomputeError("; ".join(e.issues)) from None
    sheet = None
    imp = settings.ledger_import
    if settings.equipment_file is not None:
        sheet = _read(root, settings.equipment_file, sizes)
        sha = hashlib.sha256(sheet).hexdigest()
        if imp is None or sha != imp.sha256:
            cited = imp.sha256 if imp else "none"
            diffs.append(f"{settings.equipment_file}: SHA-256 {sha}, not the imported sheet's {cited}")
        try:
            original = parse_equipment(sheet, settings.equipment_file).items
        except EquipmentError as e:
            diffs.append(f"{settings.equipment_file}: does not read as an equipment sheet ({e.issues[0]})")
        else:
            if _ledger_rows(original) != _ledger_rows(equipment):
                diffs.append(
                    f"csv/equipment_ledger.csv: its rows are not those of {settings.equipment_file} (the sheet "
                    "as imported)"
                )
            if imp is not None and imp.row_count != len(original):
                diffs.append(f"{SETTINGS}: ledger_import.row_count {imp.row_count}, the sheet has {len(original)}")
    return EvidenceInputs(
        settings=settings,
        devices=tables["device_meta.csv"],
        tags=tables["tags.csv"],
        oee_settings=tables["oee_settings.csv"],
        events=tables["events.csv"],
        counts=tables["counts.csv"],
        activity=tables["activity_hourly.csv"],
        gateways=tables["gateways.csv"],
        config_hashes=tables["config_hashes.csv"],
        equipment=equipment,
        equipment_file=sheet,
    )


# ---------------------------------------------------------------- comparing


def _capped(name: str, found: list[str]) -> list[str]:
    if len(found) <= MAX_PER_FILE:
        return found
    return [*found[:MAX_PER_FILE], f"{name}: … and {len(found) - MAX_PER_FILE} more differences"]


def _csv_diff(name: str, pack: bytes, made: bytes) -> list[str]:
    def rows(data: bytes) -> list[list[str]]:
        return list(csv.reader(io.StringIO(data.decode("utf-8-sig", errors="replace"), newline="")))

    try:
        a, b = rows(pack), rows(made)
    except csv.Error as e:
        return [f"{name}: not a CSV table ({e})"]
    if not a or not b or a[0] != b[0]:
        return [f"{name}: the header differs"]
    header = a[0]
    out: list[str] = []
    for i, (ra, rb) in enumerate(zip(a[1:], b[1:], strict=False), start=2):
        for col, x, y in zip(header, ra + [""] * (len(header) - len(ra)), rb, strict=False):
            if x != y:
                out.append(f"{name}:{i} ({rb[0] if rb else ''}) {col}: pack {x!r}, recomputed {y!r}")
    if len(a) != len(b):
        out.append(f"{name}: {len(a) - 1} rows, recomputed {len(b) - 1}")
    return out or [f"{name}: differs from the recomputed file (layout or encoding)"]


def _json_diff(path: str, a: Any, b: Any, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: {'only in the pack' if k in a else 'missing from the pack'}")
            else:
                _json_diff(f"{path}.{k}", a[k], b[k], out)
    elif isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _json_diff(f"{path}[{i}]", x, y, out)
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items, recomputed {len(b)}")
    elif a != b or type(a) is not type(b):
        out.append(f"{path}: pack {_shown(a)}, recomputed {_shown(b)}")


def _shown(v: Any, most: int = 200) -> str:
    """A JSON value in a difference: short, and whatever its depth."""
    try:
        text = json.dumps(v, ensure_ascii=False)
    except (ValueError, RecursionError):
        text = f"<{type(v).__name__} nested too deep>"
    return text if len(text) <= most else f"{text[:most]}… ({len(text)} characters)"


def _diff(name: str, pack: bytes, made: bytes) -> list[str]:
    if pack == made:
        return []
    if name.endswith(".csv"):
        return _capped(name, _csv_diff(name, pack, made))
    if name.endswith(".json"):
        try:
            a = json.loads(pack)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep to parse
            return [f"{name}: not JSON"]
        out: list[str] = []
        try:
            _json_diff("", a, json.loads(made), out)
        except RecursionError:  # made holds no such depth: the pack's nesting is what differs
            out.append(f"{name}: nested deeper than the recomputed file")
        found = [f"{name}: {d.removeprefix('.')}" for d in out]
        return _capped(name, found or [f"{name}: differs from the recomputed file (layout)"])
    return [f"{name}: differs from the one made from the recomputed figures"]


def recompute_pack(directory: str | Path) -> Recomputation:
    """Recompute every figure of the pack in `directory` from its own files and compare (see the module doc)."""
    root = Path(directory)
    if not root.is_dir():
        raise RecomputeError(f"{root}: not a directory")
    present, refused = pack_entries(root)
    if refused:
        raise RecomputeError("; ".join(refused))
    differences: list[str] = []
    doc: Any = None
    if MANIFEST in present:
        doc = load_json(_read(root, MANIFEST))
        if not isinstance(doc, dict):
            differences.append(f"{MANIFEST}: not JSON")
    sizes = recorded_sizes(doc)
    inputs = read_inputs(root, differences, sizes)
    try:
        computed = compute_evidence(inputs)
    except (ValueError, KeyError, TypeError, OverflowError) as e:  # e.g. a time zone or a period no calendar holds
        raise RecomputeError(f"{SETTINGS}: the inputs do not make figures: {type(e).__name__}: {e}") from None
    audit = None
    if AUDIT in present:
        try:
            audit = AuditRecord.model_validate_json(_read(root, AUDIT, sizes))
        except ValidationError:
            differences.append(f"{AUDIT}: not an audit record")
    named = doc.get("signer") if isinstance(doc, dict) else None
    signer = named.get("public_key_fingerprint") if isinstance(named, dict) else None
    signer = signer if isinstance(signer, str) else None
    formats = [f for f, name in (("json", "evidence.json"), ("csv", "csv/summary.csv"), ("html", "report.html"))
               if name in present]  # fmt: skip
    made = {**figure_files(computed, formats, audit=audit, signer=signer), **input_files(inputs, computed)}
    notes: list[str] = []
    uncompared = ""
    if "report.html" in made and inputs.settings.generator != f"edgegw {__version__}":
        del made["report.html"]
        uncompared = (
            f"report.html: written by {inputs.settings.generator}, this is edgegw {__version__}: the printed "
            f"report cannot be made again and compared (recompute with {inputs.settings.generator})"
        )
    for name in sorted(made):
        if name not in present:
            differences.append(f"{name}: missing from the pack")
            continue
        pack = _read(root, name, sizes)
        table = name.removeprefix("csv/")
        if name.startswith("csv/") and table in INPUT_TABLES and pack != made[name]:
            model = INPUT_TABLES[table]
            if _header(pack) == older_header(model) != _header(made[name]):  # written before a column was renamed
                rows = read_table(model, made[name], name)
                made[name] = csv_table(model, rows, inputs.period.timezone, precise=True, older_header=True)
        differences.extend(_diff(name, pack, made[name]))
    others = sorted(n for n in present if n not in made and n not in (*NOT_LISTED, AUDIT))
    if others:
        notes.append("not made from the figures, not compared: " + ", ".join(others))
    if uncompared:
        # a pack's own (editable) generator cannot excuse its printed report from the comparison: never a pass
        if differences:
            differences.append(uncompared)
        else:
            raise RecomputeError(uncompared)
    return Recomputation(differences, sorted(n for n in made if n in present), notes)


def _header(data: bytes) -> list[str]:
    """The first row of a CSV ([] when there is none)."""
    end = data.find(b"\n")
    text = data[: end + 1 if end >= 0 else None].decode("utf-8-sig", errors="replace")
    try:
        return next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error:
        return []
