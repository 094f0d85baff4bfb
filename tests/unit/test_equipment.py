"""The equipment ledger (设备台账): CSV and XLSX, Chinese or English headers, precise errors, import replaces."""

from __future__ import annotations

import io
from pathlib import Path

import openpyxl
import pytest

from cloud_bridge.cloud.ledger.equipment import (
    Equipment,
    EquipmentError,
    equipment_csv,
    last_import,
    load_equipment,
    migrate,
    parse_equipment,
    replace_equipment,
)
from cloud_bridge.cloud.ledger.sqldb import Database

ROOT = Path(__file__).resolve().parents[2]

EN = b"""id,name,type,line,key_process,digitized,gateway,device,purchase_date
loom-01,Air-jet loom 1,air_jet_loom,weaving-1,yes,yes,gw-1,,2019-05
L-02,Air-jet loom 2,air_jet_loom,weaving-1,no,TRUE,gw-1,loom-02,2020-01
winder-1,Winder,winder,prep,0,0,,,
"""


def test_english_csv() -> None:
    sheet = parse_equipment(EN, "equipment.csv")
    assert [e.id for e in sheet.items] == ["loom-01", "L-02", "winder-1"]
    a, b, c = sheet.items
    assert (a.key_process, a.digitized, a.gateway, a.device_id, a.row) == (True, True, "gw-1", "loom-01", 2)
    assert (b.key_process, b.digitized, b.device_id) == (False, True, "loom-02")
    assert (c.key_process, c.digitized, c.gateway) == (False, False, "")
    assert sheet.ignored == ["purchase_date"]  # other columns the enterprise keeps are left alone


def test_chinese_headers_gb18030_semicolons() -> None:
    text = "设备编号;设备名称;设备类型;产线;关键工序;是否数字化\n织机-01;喷气织机 1#;织机;织造一;是;否\n"
    sheet = parse_equipment(text.encode("gb18030"), "台账.csv")
    [e] = sheet.items
    assert (e.id, e.name, e.type, e.line, e.key_process, e.digitized) == (
        "织机-01",
        "喷气织机 1#",
        "织机",
        "织造一",
        True,
        False,
    )
    assert sheet.columns["id"] == "设备编号"


def test_xlsx_with_the_ledger_sheet() -> None:
    wb = openpyxl.Workbook()
    wb.active.title = "说明"
    wb.active.append(["this sheet is notes"])
    ws = wb.create_sheet("设备台账")
    ws.append([None])
    ws.append(["编号", "名称", "关键工序", "数字化"])
    ws.append(["press-01", "冲压机", True, 1])
    ws.append([1002, "车床", "否", 0])
    buf = io.BytesIO()
    wb.save(buf)
    sheet = parse_equipment(buf.getvalue(), "ledger.xlsx")
    assert [(e.id, e.key_process, e.digitized, e.row) for e in sheet.items] == [
        ("press-01", True, True, 3),
        ("1002", False, False, 4),
    ]


def test_errors_name_file_row_and_column() -> None:
    bad = b"id,name,digitized,gateway\nloom-01,Loom,maybe,\nloom-01,Loom again,yes,\n,No id,no,\nx,,no,\ny,Y,no,gw 1\n"
    with pytest.raises(EquipmentError) as info:
        parse_equipment(bad, "e.csv")
    assert info.value.issues == [
        "e.csv:2: digitized: 'maybe' is not yes/no (是/否, 1/0, true/false)",
        "e.csv:3: id: 'loom-01' is already on row 2",
        "e.csv:4: id: is empty",
        "e.csv:5: name: is empty",
        "e.csv:6: gateway: 'gw 1' is not an ASCII slug (as in the gateway config)",
    ]


@pytest.mark.parametrize(
    ("data", "name", "issue"),
    [
        (b"name,type\nx,y\n", "e.csv", "e.csv:1: the header needs a 'id' column"),
        (b"id,id,name\n", "e.csv", "e.csv:1: column 'id' appears twice"),
        (b"", "e.csv", "e.csv: no header row"),
        (b"id,name\n", "e.txt", "e.txt: use a .csv or .xlsx file"),
        # errors about the whole file name it too (they did not: "not a readable XLSX workbook: …" alone)
        (b"not a zip", "e.xlsx", "e.xlsx: not a readable XLSX workbook"),
        (b"\xff\xfe\x00\x81\x30", "e.csv", "e.csv: the CSV file is neither UTF-8 nor GB18030"),
    ],
)
def test_sheet_level_errors(data: bytes, name: str, issue: str) -> None:
    with pytest.raises(EquipmentError) as info:
        parse_equipment(data, name)
    assert any(i.startswith(issue) for i in info.value.issues), info.value.issues


def test_import_replaces_the_ledger_and_logs_the_file(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/l.db")
    migrate(db)
    first = parse_equipment(EN, "equipment.csv").items
    replace_equipment(db, "ent-1", first, source="equipment.csv", data=EN)
    replace_equipment(db, "ent-2", [Equipment("x", "X")], source="b.csv", data=b"b")
    second = first[:1]
    sha = replace_equipment(db, "ent-1", second, source="v2.csv", data=b"v2")
    assert load_equipment(db, "ent-1") == second
    assert [e.id for e in load_equipment(db, "ent-2")] == ["x"]
    imp = last_import(db, "ent-1")
    assert imp is not None and (imp["source"], imp["sha256"], imp["row_count"]) == ("v2.csv", sha, 1)
    assert last_import(db, "nobody") is None
    db.close()


def test_csv_round_trip_and_the_example_file() -> None:
    items = parse_equipment(EN, "e.csv").items
    again = parse_equipment(equipment_csv(items).encode(), "e.csv").items
    assert [(e.id, e.key_process, e.digitized, e.device_id) for e in again] == [
        (e.id, e.key_process, e.digitized, e.device_id) for e in items
    ]
    example = parse_equipment((ROOT / "deploy" / "equipment.example.csv").read_bytes(), "equipment.example.csv")
    assert len(example.items) >= 3
