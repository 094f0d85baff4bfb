"""Tag maps as spreadsheets: read a CSV/XLSX tag list into validated tags, and write tags back out.

One row per tag. Columns are the tag fields of the config contract (`name`, `address`, `type`,
`scale`, `unit`, …, or `node`, `mode`, … for OPC UA), by their English names or the Chinese
headers engineers use (名称, 地址, 数据类型, 倍率, 单位, 死区, 业务域, …). Empty cells take the
default. Errors read `file:row: column: message`, every one at once.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from edge_config.loader import error_loc, format_path
from edge_config.models import ModbusTag, OpcUaTag
from edge_config.sheets import Header, SheetError, read_header, sheet_rows

TagKind = Literal["modbus", "opcua"]

CHINESE: dict[str, tuple[str, ...]] = {
    "name": ("名称", "标签名", "变量名", "点位名", "测点名"),
    "address": ("地址", "寄存器地址", "modbus地址"),
    "node": ("节点", "节点id", "nodeid", "node_id"),
    "type": ("类型", "数据类型"),
    "byte_order": ("字节序",),
    "bit": ("位",),
    "length": ("长度",),
    "scale": ("倍率", "系数", "比例"),
    "offset": ("偏移", "偏移量"),
    "unit": ("单位",),
    "deadband": ("死区",),
    "deadband_percent": ("死区百分比",),
    "heartbeat": ("心跳", "最长静默"),
    "domain": ("业务域", "数据域", "业务领域"),
    "description": ("描述", "说明", "备注"),
    "interval": ("采集周期", "周期"),
    "mode": ("模式", "采集模式"),
    "sampling_interval": ("采样周期",),
    "writable": ("可写",),
}

_MODELS: dict[TagKind, type[BaseModel]] = {"modbus": ModbusTag, "opcua": OpcUaTag}


def columns(kind: TagKind) -> dict[str, tuple[str, ...]]:
    """Our column keys (the model's fields, in order) and the header texts that name them."""
    return {f: (f, *CHINESE.get(f, ())) for f in _MODELS[kind].model_fields}


def _kind_of(header_cells: list[str]) -> TagKind:
    texts = {c.lower() for c in header_cells}
    return "opcua" if texts & set(columns("opcua")["node"]) else "modbus"


def read_tags(data: bytes, filename: str, kind: TagKind | None = None) -> tuple[list[Any], TagKind, list[str]]:
    """Validated tags of a sheet, the protocol they are for, and header texts that were ignored.

    The protocol comes from the columns (a `node` column means OPC UA) unless `kind` is given.
    Raises SheetError with every problem."""
    header: Header | None = None
    tags: list[Any] = []
    issues: list[str] = []
    seen: dict[str, int] = {}
    for row_no, cells in sheet_rows(data, filename, preferred=("tags", "点表", "标签")):
        if header is None:
            kind = kind or _kind_of(cells)
            key = "node" if kind == "opcua" else "address"
            header = read_header(cells, columns(kind), ("name", key), f"{filename}:{row_no}")
            continue
        assert kind is not None
        raw = {k: header.cell(cells, k) for k in header.columns}
        raw = {k: v for k, v in raw.items() if v != ""}
        try:
            tag = _MODELS[kind].model_validate(raw)
        except ValidationError as e:
            for err in e.errors():
                loc = error_loc(err)
                field = format_path(loc) or "row"
                col = header.names.get(str(loc[0]), field) if loc else "row"
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "missing":
                    msg = "is empty"
                issues.append(f"{filename}:{row_no}: {col}: {msg}")
            continue
        name = raw.get("name", "")
        if name in seen:
            issues.append(f"{filename}:{row_no}: name: {name!r} is already on row {seen[name]}")
            continue
        seen[name] = row_no
        tags.append(tag)
    if header is None:
        issues.append(f"{filename}: no header row")
    if issues:
        raise SheetError(issues)
    assert kind is not None and header is not None
    return tags, kind, header.ignored


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def tag_rows(tags: list[Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for a sheet; only the columns some tag sets away from its default."""
    if not tags:
        return ["name"], []
    model = type(tags[0])
    dumped = [t.model_dump(mode="json") for t in tags]
    keep = [
        f
        for f, info in model.model_fields.items()
        if info.is_required()
        or any(d[f] != model.model_fields[f].get_default(call_default_factory=True) for d in dumped)
    ]
    first = [f for f in ("name", "address", "node", "type") if f in keep]
    keep = first + [f for f in keep if f not in first]
    return keep, [[_plain(d[f]) for f in keep] for d in dumped]


def write_tags(tags: list[Any], path: str | Path) -> None:
    """Write tags to a `.csv` (UTF-8 with BOM, so Excel shows Chinese right) or `.xlsx` file."""
    header, rows = tag_rows(tags)
    write_sheet(header, rows, path)


def write_sheet(header: list[str], rows: list[list[str]], path: str | Path, sheet: str = "tags") -> None:
    """A header and rows as a `.csv` (UTF-8 with BOM) or `.xlsx` file (one sheet named `sheet`)."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        p.write_text(buf.getvalue(), encoding="utf-8-sig")
    elif p.suffix.lower() == ".xlsx":
        import openpyxl

        wb = openpyxl.Workbook()
        ws = wb.active
        ws.title = sheet
        ws.append(header)
        for r in rows:
            ws.append(r)
        wb.save(p)
    else:
        raise SheetError([f"{path}: use a .csv or .xlsx file"])
