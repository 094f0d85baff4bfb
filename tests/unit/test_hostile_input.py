"""Hostile input at the cloud (#11 item 8): bounded before it is parsed, dead letters bounded in size and
age, a bound on the series a gateway may create; spreadsheets bounded (a zip bomb refused at once)."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ledger.equipment import EquipmentError, parse_equipment
from cloud_bridge.wire.codec import Sample, Topics, encode_data_body, envelope
from edge_config.models import CloudConfig, IngestMqttSection, LedgerSection, LimitsSection, TrustSection
from edge_config.sheets import MAX_ROWS, SheetError, sheet_rows
from edge_config.timing import now_ms

TOPICS = Topics("sf/v1", "ent-1", "gw-1")


def ingester(tmp_path: Path, **limits: object) -> Ingester:
    return Ingester(
        CloudConfig(
            mqtt=IngestMqttSection(url="mqtt://127.0.0.1:1", inflight=100),
            ledger=LedgerSection(url=f"sqlite:///{tmp_path}/ledger.db"),
            trust=TrustSection(mode="off"),
            limits=LimitsSection.model_validate(limits),
        )
    )


def data(seq: int, samples: list[Sample], dev: str = "d1") -> mqtt.MQTTMessage:
    m = mqtt.MQTTMessage(topic=TOPICS.data(dev).encode())
    m.payload = envelope("gw-1", dev, seq, False, encode_data_body(samples))
    return m


def test_oversized_payloads_and_too_many_samples_are_refused_before_parsing(tmp_path: Path) -> None:
    ing = ingester(tmp_path, max_payload="4KB", max_samples=50, dead_letter_bytes="1KB")
    ts = now_ms()
    try:
        ing.handle_batch(
            [
                data(1, [Sample(f"t{i}", 1.0, ts) for i in range(200)]),  # > 4 KB
                data(2, [Sample(f"t{i % 5}", 1.0, ts + i) for i in range(51)]),
                data(3, [Sample("t", 1.0, ts)]),
            ]
        )
        letters = {r["reason"]: len(r["payload"]) for r in ing.ledger.dead_letters()}
        assert ing.ledger.received_count() == 1
        assert any("limits.max_payload" in r for r in letters), letters
        assert any("limits.max_samples" in r for r in letters), letters
        assert all(n <= 1024 for n in letters.values()), "a dead letter keeps at most dead_letter_bytes"
    finally:
        ing.ledger.close()


def test_a_gateway_may_create_only_so_many_series(tmp_path: Path) -> None:
    ing = ingester(tmp_path, max_series_per_gateway=10)
    ts = now_ms()
    try:
        ing.handle_batch([data(1, [Sample(f"t{i}", 1.0, ts) for i in range(8)])])
        ing.handle_batch([data(2, [Sample(f"x{i}", 1.0, ts) for i in range(3)], dev="d2")])  # 11 > 10
        ing.handle_batch([data(3, [Sample("t1", 2.0, ts + 1)])])  # a known series: fine
        assert ing.ledger.received_count() == 2
        [letter] = ing.ledger.dead_letters()
        assert "max_series_per_gateway" in letter["reason"]
    finally:
        ing.ledger.close()
    again = ingester(tmp_path, max_series_per_gateway=10)  # a restarted ingester knows them from the ledger
    try:
        again.handle_batch([data(4, [Sample(f"y{i}", 1.0, ts) for i in range(3)])])
        assert again.ledger.received_count() == 2 and again.ledger.dead_letter_count() == 2
    finally:
        again.ledger.close()


def test_the_series_cap_counts_exactly_only_near_the_cap(tmp_path: Path) -> None:
    """A restarted ingester starts each gateway's count from the ledger's (no series fetched) and adds the
    tags it has not seen: an upper bound. Known tags near the cap are counted exactly, never refused."""
    ts = now_ms()
    first = ingester(tmp_path, max_series_per_gateway=10)
    try:
        first.handle_batch([data(1, [Sample(f"t{i}", 1.0, ts) for i in range(9)])])
        assert first.ledger.received_count() == 1 and not first._series_exact, "far from the cap: no series loaded"
    finally:
        first.ledger.close()
    again = ingester(tmp_path, max_series_per_gateway=10)
    try:
        assert again.ledger.series_counts([("ent-1", "gw-1")]) == {("ent-1", "gw-1"): 0}, "pending: not counted"
        assert again.ledger.fold_tag_stats() == 1
        assert again.ledger.series_counts([("ent-1", "gw-1"), ("ent-1", "gw-2")]) == {
            ("ent-1", "gw-1"): 9,
            ("ent-1", "gw-2"): 0,
        }
        again.handle_batch([data(2, [Sample(f"t{i}", 2.0, ts + 1) for i in range(9)])])  # 9 + 9 > 10: exact
        assert again._series_exact == {("ent-1", "gw-1")} and again.ledger.dead_letter_count() == 0
        again.handle_batch([data(3, [Sample("new-1", 1.0, ts + 2)], dev="d2")])  # the 10th series
        again.handle_batch([data(4, [Sample("new-2", 1.0, ts + 3)], dev="d2")])  # the 11th: refused
        assert again.ledger.received_count() == 3
        [letter] = again.ledger.dead_letters()
        assert "max_series_per_gateway (10)" in letter["reason"]
    finally:
        again.ledger.close()


def test_the_series_sets_keep_one_string_per_name(tmp_path: Path) -> None:
    """The cap's sets hold each tag and device name once, however many devices, gateways and messages
    carry it (each message decodes its own strings): ≈ 10⁶ series of a city in 43 MB instead of 95."""
    ts = now_ms()
    ing = ingester(tmp_path, max_series_per_gateway=1000)
    other = Topics("sf/v1", "ent-1", "gw-2")
    try:
        for seq, dev in enumerate(["d1", "d2", "d3"], start=1):
            ing.handle_batch([data(seq, [Sample(f"tag-{i}", 1.0, ts) for i in range(5)], dev=dev)])
        m = mqtt.MQTTMessage(topic=other.data("d1").encode())
        m.payload = envelope("gw-2", "d1", 1, False, encode_data_body([Sample("tag-0", 1.0, ts)]))
        ing.handle_batch([m])
        assert ing.ledger.received_count() == 4
        kept = [(dev, tag) for devices in ing._series.values() for dev, tags in devices.items() for tag in tags]
        assert len(kept) == 16
        by_name: dict[str, set[int]] = {}
        for dev, tag in kept:
            by_name.setdefault(tag, set()).add(id(tag))
            by_name.setdefault(dev, set()).add(id(dev))
        assert len(by_name["tag-0"]) == 1 and len(by_name["d1"]) == 1, "one object per name"
        assert all(len(ids) == 1 for ids in by_name.values())
    finally:
        ing.ledger.close()


def test_dead_letters_are_deleted_after_their_retention(tmp_path: Path) -> None:
    ing = ingester(tmp_path, dead_letter_retention="1s")
    try:
        ing.handle_batch([data(1, [])])  # no samples: a dead letter
        assert ing.ledger.dead_letter_count() == 1
        time.sleep(1.1)
        assert ing.prune() == 1 and ing.ledger.dead_letter_count() == 0
    finally:
        ing.ledger.close()


# ---------------------------------------------------------------- spreadsheets


_PARTS = {
    "[Content_Types].xml": b'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
    b'package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    b'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook'
    b'.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override '
    b'PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.'
    b'spreadsheetml.worksheet+xml"/></Types>',
    "_rels/.rels": b'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
    b'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
    b'2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>',
    "xl/workbook.xml": b'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/'
    b'spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    b'<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>',
    "xl/_rels/workbook.xml.rels": b'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
    b'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.'
    b'org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
}
SHEET_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
    b'2006/main"><sheetData>'
)


def workbook(rows: bytes, head: bytes = b"") -> bytes:
    """The smallest XLSX a spreadsheet program opens: one sheet holding `rows`, stored deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, body in _PARTS.items():
            z.writestr(name, body)
        sheet = SHEET_HEAD.replace(b"<sheetData>", head + b"<sheetData>") + rows + b"</sheetData></worksheet>"
        z.writestr("xl/worksheets/sheet1.xml", sheet)
    return out.getvalue()


def cell(ref: str, text: str) -> bytes:
    return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'.encode()


def test_a_good_minimal_workbook_reads() -> None:
    sheet = workbook(b'<row r="1">' + cell("A1", "id") + cell("B1", "name") + b'</row><row r="2">'
                     + cell("A2", "L-01") + cell("B2", "loom") + b"</row>")  # fmt: skip
    assert list(sheet_rows(sheet, "ledger.xlsx")) == [(1, ["id", "name"]), (2, ["L-01", "loom"])]


@pytest.mark.parametrize(
    "rows",
    [
        # one row at the sheet's last row and column: read as it comes, a billion empty cells before it
        b'<row r="1">' + cell("A1", "id") + b'</row><row r="1048576">' + cell("XFD1048576", "x") + b"</row>",
        # 100,000 rows each with a cell in the last column, stored 300× smaller than they unpack
        (b"<row>" + cell("XFD1", "x") + b"</row>") * 100_000,
    ],
    ids=["far-cell", "many-wide-rows"],
)
def test_small_xlsx_bombs_are_refused(rows: bytes) -> None:
    bomb = workbook(rows)
    assert len(bomb) < 20_000
    started = time.perf_counter()
    with pytest.raises(SheetError):
        list(sheet_rows(bomb, "ledger.xlsx"))
    print(f"{len(bomb)} byte XLSX bomb refused in {time.perf_counter() - started:.2f} s")  # measured, not asserted
    with pytest.raises(EquipmentError):
        parse_equipment(bomb, "ledger.xlsx")


def test_declared_and_actual_sizes_are_bounded() -> None:
    declared = workbook(
        SHEET_HEAD.replace(b"<sheetData>", b'<dimension ref="A1:XFD1048576"/><sheetData>') + b"</sheetData></worksheet>"
    )
    with pytest.raises(SheetError, match="rows"):
        list(sheet_rows(declared, "ledger.xlsx"))
    wide = ",".join(f"c{i}" for i in range(300)).encode()
    with pytest.raises(SheetError, match="columns"):
        list(sheet_rows(wide, "ledger.csv"))
    tall = b"id,name\n" + b"x,y\n" * (MAX_ROWS + 1)
    with pytest.raises(SheetError, match="rows"):
        list(sheet_rows(tall, "ledger.csv"))


def test_a_csv_cell_over_the_csv_module_s_limit_is_a_sheet_error_naming_its_row() -> None:
    big = b"id,name\nL-01,loom\nL-02," + b"x" * 200_000 + b"\n"
    with pytest.raises(SheetError, match=r"ledger.csv: row 3: not a readable CSV row: field larger"):
        list(sheet_rows(big, "ledger.csv"))
    with pytest.raises(EquipmentError):  # the cloud API's PUT answered 500 for it
        parse_equipment(big, "ledger.csv")
