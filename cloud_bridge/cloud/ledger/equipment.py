"""The equipment ledger (设备台账) of an enterprise: every piece of production equipment, networked or not.

Imported from the CSV or XLSX sheet the enterprise keeps, one row per machine. Columns (English or
Chinese headers, any order, case-insensitive):

| column | also | required | meaning |
|---|---|---|---|
| `id` | 设备编号, 编号 | yes | the enterprise's equipment number |
| `name` | 设备名称, 名称 | yes | |
| `type` | 设备类型, 类型 | no | |
| `line` | 产线, 生产线 | no | |
| `key_process` | 关键工序 | no | key-process equipment (yes/no, 是/否, 1/0, true/false) |
| `digitized` | 数字化, 是否数字化 | no | digitized equipment, as the enterprise declares it |
| `gateway` | 网关 | no | id of the gateway the machine is connected through, if any |
| `device` | 采集设备, device_id | no | the machine's device id in that gateway's config (default: `id`) |

An import replaces the enterprise's whole ledger in one transaction and is logged with the SHA-256
of the file; the file's bytes are kept (`equipment_files`), so the evidence pack holds exactly the sheet
it counted against.

The ledger written out as CSV (`equipment_csv`: the API's `format=csv`, the pack's `equipment_ledger.csv`) is
opened in spreadsheets: a text cell that a spreadsheet would take for a formula (starting with = + - @, tab or
CR), or that starts with `'`, is written with a `'` in front (`formula_safe`, OWASP's defence against CSV
injection); `parse_equipment(..., escaped=True)` takes it off again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from cloud_bridge.cloud.ledger.schema import EQUIPMENT_TABLES, equipment, equipment_files, equipment_imports, metadata
from cloud_bridge.cloud.ledger.sqldb import Database, execute_many
from edge_config.sheets import Header, SheetError, read_header, sheet_rows

COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id", "equipment_id", "设备编号", "编号"),
    "name": ("name", "设备名称", "名称"),
    "type": ("type", "设备类型", "类型"),
    "line": ("line", "产线", "生产线"),
    "key_process": ("key_process", "关键工序", "关键工序设备"),
    "digitized": ("digitized", "digitised", "数字化", "是否数字化"),
    "gateway": ("gateway", "网关"),
    "device": ("device", "device_id", "采集设备", "采集设备编号"),
}
_TRUE = frozenset(("true", "yes", "y", "1", "是", "√", "✓"))
_FALSE = frozenset(("false", "no", "n", "0", "否", "", "×", "✗", "-"))
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_ROWS = 100_000
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as the start of a formula


def formula_safe(text: str) -> str:
    """A text cell as a spreadsheet shows it as text: `'` in front of one that would start a formula (= + - @,
    tab, CR) or that starts with `'` itself (so that `unescape_cell` undoes exactly this)."""
    return f"'{text}" if text.startswith((*FORMULA_START, "'")) else text


def unescape_cell(text: str) -> str:
    """The text `formula_safe` was given."""
    return text[1:] if text.startswith("'") else text


@dataclass(frozen=True, slots=True)
class Equipment:
    id: str
    name: str
    type: str = ""
    line: str = ""
    key_process: bool = False
    digitized: bool = False
    gateway: str = ""  # empty: any gateway of the enterprise
    device: str = ""  # device id in the gateway config; empty: same as id
    row: int = 0  # row in the imported sheet

    @property
    def device_id(self) -> str:
        return self.device or self.id

    def ledger_fields(self) -> dict[str, str | bool]:
        """What the ledger says of the equipment, as the APIs and the evidence show it."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "line": self.line,
            "key_process": self.key_process,
            "digitized": self.digitized,
        }


@dataclass(frozen=True, slots=True)
class EquipmentSheet:
    items: list[Equipment]
    columns: dict[str, str]  # our column → the sheet's header text
    ignored: list[str]  # header texts that are none of ours (other columns the enterprise keeps)


class EquipmentError(SheetError):
    """Problems in an equipment sheet: one `file:row: column: message` per line."""


# ---------------------------------------------------------------- reading sheets


def _bool(text: str) -> bool | None:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    return None


def parse_equipment(data: bytes, filename: str, *, escaped: bool = False) -> EquipmentSheet:
    """Rows of an equipment sheet (`.csv` or `.xlsx` by the file name); EquipmentError lists every problem.
    Columns that are none of ours are ignored (and listed in the result). `escaped`: a sheet `equipment_csv`
    wrote, whose text cells are escaped against formulas (`formula_safe`); a sheet as the enterprise keeps it
    is read as it is."""
    issues: list[str] = []
    header: Header | None = None
    out: list[Equipment] = []
    seen: dict[str, int] = {}
    try:
        rows = list(sheet_rows(data, filename, preferred=("设备台账", "equipment")))
    except SheetError as e:
        raise EquipmentError(e.issues) from None
    for row_no, cells in rows:
        if header is None:
            try:
                header = read_header(cells, COLUMNS, ("id", "name"), f"{filename}:{row_no}")
            except SheetError as e:
                raise EquipmentError(e.issues) from None
            continue
        if len(out) >= MAX_ROWS:
            issues.append(f"{filename}:{row_no}: more than {MAX_ROWS} rows")
            break

        def cell(key: str, _cells: list[str] = cells, _header: Header = header) -> str:
            text = _header.cell(_cells, key)
            return unescape_cell(text) if escaped else text

        item: dict[str, Any] = {"row": row_no}
        for key in ("id", "name", "type", "line", "gateway", "device"):
            item[key] = cell(key)
        for key in ("key_process", "digitized"):
            b = _bool(cell(key))
            if b is None:
                issues.append(f"{filename}:{row_no}: {key}: {cell(key)!r} is not yes/no (是/否, 1/0, true/false)")
            item[key] = bool(b)
        if not item["id"]:
            issues.append(f"{filename}:{row_no}: id: is empty")
        elif len(item["id"]) > 64 or any(ord(c) < 32 for c in item["id"]):
            issues.append(
                f"{filename}:{row_no}: id: {item['id']!r} is longer than 64 characters or has control characters"
            )
        elif item["id"] in seen:
            issues.append(f"{filename}:{row_no}: id: {item['id']!r} is already on row {seen[item['id']]}")
        else:
            seen[item["id"]] = row_no
        if not item["name"]:
            issues.append(f"{filename}:{row_no}: name: is empty")
        for key in ("gateway", "device"):
            if item[key] and not _SLUG.match(item[key]):
                issues.append(
                    f"{filename}:{row_no}: {key}: {item[key]!r} is not an ASCII slug (as in the gateway config)"
                )
        if not item["device"] and item["gateway"] and not _SLUG.match(item["id"]):
            issues.append(f"{filename}:{row_no}: device: needed, the id {item['id']!r} is not a device id")
        out.append(Equipment(**item))
    if header is None:
        issues.append(f"{filename}: no header row")
    if issues:
        raise EquipmentError(issues)
    assert header is not None
    return EquipmentSheet(out, header.names, header.ignored)


def equipment_csv(items: list[Equipment]) -> str:
    """The ledger as CSV with English headers, text cells escaped against formulas (what
    `parse_equipment(..., escaped=True)` reads back)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "name", "type", "line", "key_process", "digitized", "gateway", "device"])
    for e in items:
        text = [formula_safe(x) for x in (e.id, e.name, e.type, e.line)]
        w.writerow(
            [*text, str(e.key_process).lower(), str(e.digitized).lower(), *map(formula_safe, (e.gateway, e.device))]
        )
    return buf.getvalue()


# ---------------------------------------------------------------- storing


def migrate(db: Database) -> None:
    """Create the equipment ledger's tables where they are missing."""
    db.create(metadata, EQUIPMENT_TABLES)


def replace_equipment(db: Database, ent: str, items: list[Equipment], *, source: str, data: bytes) -> str:
    """Make `items` the enterprise's whole ledger (one transaction) and log the import; returns the
    file's SHA-256."""
    sha = hashlib.sha256(data).hexdigest()
    now = int(time.time() * 1000)
    with db.transaction() as conn:
        conn.execute(delete(equipment).where(equipment.c.ent == ent))
        f = equipment_files.c
        conn.execute(delete(equipment_files).where(f.ent == ent, f.sha256 == sha))
        conn.execute(
            equipment_files.insert(),
            {"ent": ent, "sha256": sha, "source": source[:500], "data": data, "imported_ms": now},
        )
        execute_many(
            conn,
            equipment.insert(),
            [
                {
                    "ent": ent,
                    "id": e.id,
                    "name": e.name,
                    "type": e.type,
                    "line": e.line,
                    "key_process": e.key_process,
                    "digitized": e.digitized,
                    "gateway": e.gateway,
                    "device": e.device,
                    "row_no": e.row,
                }
                for e in items
            ],
        )
        conn.execute(
            equipment_imports.insert(),
            {
                "ent": ent,
                "imported_ms": now,
                "source": source[:500],
                "sha256": sha,
                "row_count": len(items),
            },
        )
    return sha


def load_equipment(db: Database, ent: str) -> list[Equipment]:
    c = equipment.c
    rows = db.rows(
        select(c.id, c.name, c.type, c.line, c.key_process, c.digitized, c.gateway, c.device, c.row_no)
        .where(c.ent == ent)
        .order_by(c.row_no, c.id)
    )
    return [
        Equipment(
            r["id"],
            r["name"],
            r["type"],
            r["line"],
            bool(r["key_process"]),
            bool(r["digitized"]),
            r["gateway"],
            r["device"],
            int(r["row_no"]),
        )
        for r in rows
    ]


def last_import(db: Database, ent: str) -> dict[str, Any] | None:
    c = equipment_imports.c
    rows = db.rows(
        select(c.imported_ms, c.source, c.sha256, c.row_count)
        .where(c.ent == ent)
        .order_by(c.imported_ms.desc(), c.id.desc())
        .limit(1)
    )
    return rows[0] if rows else None


def equipment_file(db: Database, ent: str, sha256: str) -> bytes | None:
    """The sheet imported with this SHA-256, as received (None: imported before the files were kept)."""
    f = equipment_files.c
    rows = db.rows(select(f.data).where(f.ent == ent, f.sha256 == sha256))
    return bytes(rows[0]["data"]) if rows else None
